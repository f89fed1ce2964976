"""Dedup: the engine's MinHash against datasketch (signatures and LSH candidate pairs equal), precision and
recall on a corpus with planted near-duplicates, and the `dedup` stage's survivors and accounting."""
from __future__ import annotations

import json
import random

import numpy as np
import pyarrow.parquet as pq
import pytest
from datasketch import MinHash, MinHashLSH

from conftest import shared
from engine import dedup, tables
from engine.kernels import minhash
from engine.select import SelectParams
from test_select import setup
from test_sentences import gen_table

EDGE_CASES = ["", "   \n\t ", "one", "Two Words", "exactly five words in here", "UPPER lower MiXeD case words here ok",
              "héllo wörld — ünïcode ∑ x² text with é and 中文 words", "tabs\tand\nnewlines\r\nand  double  spaces x y",
              # the kernel hashes a text's two halves (cut at whitespace) side by side: one word, words on one
              # side of the cut only, whitespace runs at the cut and at either end
              "x" * 97, "a b c " + "d" * 60, "e" * 60 + " f g h i j", "k l m n o p" + " " * 40, " " * 40 + "q r s t u v",
              "w1 w2 w3" + " \n " * 20 + "w4 w5 w6 w7"]


def real_responses() -> list[str]:
    """800 real responses: 100 MATH questions × 8 samples each (natural near-duplicates among them)."""
    path = shared("traces", "traces_qwen25math_cot_rm_example.jsonl")
    return [json.loads(line)["response"] for line in open(path, encoding="utf-8")]


def reference(text: str, num_perm: int = 128, ngram: int = 5) -> MinHash:
    m = MinHash(num_perm=num_perm, seed=1, hashfunc=minhash.shingle_hash32)
    m.update_batch(minhash.shingles(text, ngram))
    return m


def test_signatures_equal_datasketch():
    texts = EDGE_CASES + real_responses()[:200]
    sigs = minhash.signatures(texts)
    assert sigs.shape == (len(texts), 128) and sigs.dtype == np.uint32
    for text, sig in zip(texts, sigs):
        assert np.array_equal(sig, reference(text).hashvalues), text[:60]
    # ASCII case folds, whitespace kinds do not matter; one changed word changes the signature
    assert np.array_equal(*minhash.signatures(["The Cat sat on the mat", "the  cat\nSAT on\tthe mat"]))
    assert not np.array_equal(*minhash.signatures(["the cat sat on the mat", "the dog sat on the mat"]))
    # other sizes and n-grams follow datasketch too
    for text, sig in zip(texts[5:12], minhash.signatures(texts[5:12], num_perm=64, ngram=3)):
        assert np.array_equal(sig, reference(text, num_perm=64, ngram=3).hashvalues)
    for num_perm in (1, 6):  # the kernel takes permutations four at a time
        for text, sig in zip(texts[:20], minhash.signatures(texts[:20], num_perm=num_perm)):
            assert np.array_equal(sig, reference(text, num_perm=num_perm).hashvalues), (num_perm, text[:60])


def edit(text: str, rate: float, rng: random.Random) -> str:
    """A near-copy: each word replaced, dropped or doubled with probability `rate`."""
    out = []
    for w in text.split():
        r = rng.random()
        if r < rate / 3:
            out.append(rng.choice(["x", "thus", "value", "we", "then"]))
        elif r < 2 * rate / 3:
            continue
        elif r < rate:
            out += [w, w]
        else:
            out.append(w)
    return " ".join(out)


def planted_corpus(seed: int = 0):
    """Real responses (one per question) plus edited copies at 1-8% word edits."""
    rng = random.Random(seed)
    bases = [t for t in real_responses()[::8] if len(t.split()) >= 60]
    texts = list(bases)
    for i, base in enumerate(bases):
        for _ in range(rng.randint(0, 3)):
            texts.append(edit(base, rng.choice([0.01, 0.02, 0.03, 0.05, 0.08]), rng))
    return texts


def true_pairs(texts, threshold):
    sets = [set(minhash.shingles(t)) for t in texts]
    return {(i, j) for i in range(len(texts)) for j in range(i + 1, len(texts))
            if len(sets[i] | sets[j]) and len(sets[i] & sets[j]) / len(sets[i] | sets[j]) >= threshold}


def datasketch_pairs(texts, bands, rows):
    lsh = MinHashLSH(num_perm=128, params=(bands, rows))
    refs = [reference(t) for t in texts]
    for i, m in enumerate(refs):
        lsh.insert(i, m)
    return {(min(i, j), max(i, j)) for i, m in enumerate(refs) for j in lsh.query(m) if i != j}


def test_lsh_matches_datasketch_and_planted_precision_recall(capsys):
    texts = planted_corpus()
    sigs = minhash.signatures(texts)
    truth = true_pairs(texts, 0.8)
    assert len(truth) >= 20  # the corpus holds near-duplicates at the threshold to find
    figures = {}
    for bands, rows in ((14, 9), (9, 13)):
        pairs = minhash.candidate_pairs(sigs, bands, rows)
        assert {tuple(p) for p in pairs.tolist()} == datasketch_pairs(texts, bands, rows)
        found = {tuple(p) for p in pairs[minhash.jaccard(sigs, pairs) >= 0.8].tolist()}
        tp = len(found & truth)
        figures[(bands, rows)] = (tp / len(truth), tp / max(1, len(found)))
    with capsys.disabled():
        for (b, r), (rec, prec) in figures.items():
            print(f"\n  planted corpus ({len(texts)} texts, {len(truth)} true pairs at J>=0.8): "
                  f"{b} bands x {r} rows + verification: recall {rec:.2f}, precision {prec:.2f}")
    assert figures[(14, 9)][0] >= figures[(9, 13)][0]  # more, shorter bands find more of the true pairs
    assert figures[(14, 9)][0] >= 0.8 and figures[(14, 9)][1] >= 0.8


def test_groups_and_empty_texts():
    sigs = minhash.signatures(["a b c d e f g", "a b c d e f g", "", "", "a b c d e f g"])
    assert minhash.candidate_pairs(sigs, 14, 9).tolist() == [[0, 1], [0, 4], [1, 4]]  # empty texts pair with none
    assert minhash.candidate_pairs(sigs, 14, 9, groups=np.array([0, 0, 0, 0, 1])).tolist() == [[0, 1]]
    assert minhash.clusters(5, np.array([[0, 1], [1, 4]])).tolist()[::4] == [0, 0]
    with pytest.raises(ValueError, match="permutations"):
        minhash.candidate_pairs(sigs, 20, 9)


T, S, H = "teacher", "student", "shared"
BASE = " ".join(f"step {i}: we add {i} and {i + 1} to get {2 * i + 1}." for i in range(30))
NEAR = BASE.replace("step 7:", "step seven:")


def stage(tmp_path, **kw):
    # q1: a and b are near-duplicates, b has more teacher sentences (DAS keeps b); c differs.
    # q2: d is a's exact text under another question: a duplicate only across the pool.
    candidates = [("a", "q1", [T, S], [-1.0], [1]), ("b", "q1", [T, T, T], [-1.0], [1]),
                  ("c", "q1", [T], [-1.0], [1]), ("d", "q2", [S], [-1.0], [1])]
    texts = {"a": BASE, "b": NEAR, "c": "<think>\nsomething else entirely, said another way.\n</think>\n\n7",
             "d": BASE}
    inputs = setup(tmp_path, candidates)
    tables.write_parquet(gen_table([{"response_id": r, "question_id": q, "text": texts[r]}
                                    for r, q, *_ in candidates]), tmp_path / "g" / "p.parquet")
    report = dedup.run(dedup.DedupParams(**kw), SelectParams(), 0.6, inputs, tmp_path / "g", tmp_path / "out",
                       tmp_path / "m.json")
    read = {n: pq.read_table(tmp_path / "out" / f"{n}.parquet").to_pylist() for n in ("kept", "clusters", "rejections")}
    return report, read


def test_stage_keeps_the_selectors_best_and_accounts_for_every_response(tmp_path):
    report, out = stage(tmp_path)
    assert [r["response_id"] for r in out["kept"]] == ["b", "c", "d"]
    [rej] = out["rejections"]
    assert (rej["response_id"], rej["stage"], rej["rule"], rej["threshold"]) == ("a", "dedup", "near_duplicate", 0.8)
    assert 0.8 <= rej["value"] < 1.0 and rej["detail"] == "cluster of 2, survivor b"
    clusters = {r["response_id"]: r for r in out["clusters"]}
    assert clusters["a"]["survivor_id"] == "b" and clusters["a"]["cluster"] == clusters["b"]["cluster"]
    assert clusters["c"]["cluster_size"] == 1 and clusters["c"]["jaccard_to_survivor"] == 1.0
    assert report["input"] == 4 == report["kept"] + report["rejected"] and report["duplicate_clusters"] == 1

    report, out = stage(tmp_path, scope="pool")  # a, b and d form one cluster across questions
    assert [r["response_id"] for r in out["kept"]] == ["b", "c"] and report["rejected"] == 2
    report, out = stage(tmp_path, enabled=False)
    assert len(out["kept"]) == 4 and out["rejections"] == [] and report["candidate_pairs"] == 0


def test_params_are_checked():
    from engine.params import ParamsError

    with pytest.raises(ParamsError, match="scope"):
        dedup.DedupParams(scope="everything")
    with pytest.raises(ParamsError, match="exceeds num_perm"):
        dedup.DedupParams(bands=20, rows=9)
