"""decontaminate on real benchmark files: AIME24 problems planted in a question set (verbatim, re-spaced,
re-cased, one sentence changed) are caught; GSM8K questions that share no 8-gram with the benchmarks are
kept; the counts are exact and the n-gram index agrees with a brute-force comparison."""
from __future__ import annotations

import json
import re

import pyarrow.parquet as pq
import pytest

from conftest import shared
from engine import decontaminate, questions
from engine.benchmarks import Benchmark, Benchmarks, load
from engine.errors import InputError


def benchmarks() -> Benchmarks:
    fields = {"id": "id", "question": "question", "answer": "answer"}
    return Benchmarks(aime24={"path": str(shared("math", "aime24.jsonl")), "kind": "math", "fields": fields},
                      math500={"path": str(shared("math", "math500.jsonl")), "kind": "math", "fields": fields})


def planted_set(tmp_path):
    """200 GSM8K questions and 4 x 5 AIME24 problems, each planted one way."""
    aime = [json.loads(line) for line in open(shared("math", "aime24.jsonl"))]
    gsm = [json.loads(line) for line in open(shared("math", "gsm8k_test.jsonl"))][:200]

    def one_sentence_changed(q):  # the question sentence (the last) asked another way
        sentences = re.split(r"(?<=[.?])\s+", q.strip())
        assert len(sentences) > 1
        return " ".join(sentences[:-1] + ["What is the value asked for, written as an integer?"])

    ways = {"verbatim": lambda q: q, "respaced": lambda q: "  " + re.sub(r" ", "   ", q).replace("\n", " \n\n "),
            "recased": lambda q: q.upper(), "sentence_changed": one_sentence_changed}
    rows, planted = [], {}
    for k, (way, change) in enumerate(ways.items()):
        for p in aime[k * 5:(k + 1) * 5]:
            rows.append({"id": f"planted-{way}-{p['id']}", "question": change(p["question"])})
            planted[rows[-1]["id"]] = p["id"]
    rows += [{"id": g["id"], "question": g["question"]} for g in gsm]
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    qp = questions.QuestionsParams(sources=[questions.Source(name="mixed", path=str(path), domain="math",
                                                             fields=questions.Fields(question="question", id="id"))])
    questions.run(qp, None, tmp_path, tmp_path / "questions", tmp_path / "q.parquet", tmp_path / "q.json")
    return rows, planted


def brute_force(question: str, items, n: int) -> bool:
    words = decontaminate.normalize(question).split()
    mine = {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}
    for it in items:
        w = decontaminate.normalize(it.question).split()
        if mine & {tuple(w[i:i + n]) for i in range(len(w) - n + 1)} or \
                decontaminate.normalize(question) == decontaminate.normalize(it.question):
            return True
    return False


def test_planted_benchmark_problems_are_caught_and_the_rest_kept(tmp_path):
    rows, planted = planted_set(tmp_path)
    bench = benchmarks()
    report = decontaminate.run(decontaminate.DecontaminateParams(), bench, tmp_path, tmp_path / "questions",
                               tmp_path / "out", tmp_path / "metrics.json")
    rej = pq.read_table(tmp_path / "out" / "rejections.parquet").to_pylist()
    kept = pq.read_table(tmp_path / "out" / "kept.parquet")
    by_source_id = {r["source_id"]: r for r in rej}
    # every planted problem, whichever way it was planted, is caught and traced to its AIME item
    assert {sid: (r["benchmark"], r["item_id"]) for sid, r in by_source_id.items() if sid in planted} == \
        {sid: ("aime24", item) for sid, item in planted.items()}
    assert {by_source_id[s]["rule"] for s in planted if "changed" not in s} == {"exact"}
    assert {by_source_id[s]["rule"] for s in planted if "changed" in s} == {"ngram"}
    for r in rej:
        if r["rule"] == "ngram":
            assert len(r["evidence"].split()) == 8 and r["evidence"] in decontaminate.normalize(
                next(x["question"] for x in rows if x["id"] == r["source_id"]))
    # the index agrees with comparing every question against every item, n-gram by n-gram
    items = [it for b in bench.values() for it in load(b, tmp_path)]
    expected = {r["id"] for r in rows if brute_force(r["question"], items, 8)}
    assert set(by_source_id) == expected
    gsm_hits = expected - set(planted)
    assert len(gsm_hits) <= 2  # GSM8K and the benchmarks share (almost) no 8-gram: the rest is kept
    # counts: kept + rejected = questions, per benchmark, per rule, per source
    assert report["questions"] == len(rows) == kept.num_rows + len(rej)
    assert report["rejected"] == len(expected) and report["kept"] == len(rows) - len(expected)
    assert report["by_benchmark"] == {"aime24": 20 + sum(by_source_id[s]["benchmark"] == "aime24" for s in gsm_hits),
                                      "math500": sum(by_source_id[s]["benchmark"] == "math500" for s in gsm_hits)}
    assert report["benchmarks"] == {"aime24": 30, "math500": 500}
    assert report["by_source"] == {"mixed": {"questions": len(rows), "rejected": len(expected)}}
    assert set(kept.column("source_id").to_pylist()) == {r["id"] for r in rows} - expected
    assert json.loads((tmp_path / "metrics.json").read_text()) == report


def test_fuzzy_ratio_and_the_benchmark_subset(tmp_path):
    rows, planted = planted_set(tmp_path)
    bench = benchmarks()
    only_math500 = decontaminate.DecontaminateParams(benchmarks=["math500"])
    r = decontaminate.run(only_math500, bench, tmp_path, tmp_path / "questions", tmp_path / "out", tmp_path / "m.json")
    assert r["benchmarks"] == {"math500": 500} and r["by_benchmark"]["math500"] == r["rejected"] < 5
    # n-grams longer than any problem leave the exact and the fuzzy checks: the changed-sentence plants
    # are caught where their Indel ratio to the item reaches 0.85 (3 of these 5: 0.90, 0.95, 0.87)
    from rapidfuzz import fuzz

    fuzzy = decontaminate.DecontaminateParams(ngram=400, fuzzy=0.85)
    r = decontaminate.run(fuzzy, bench, tmp_path, tmp_path / "questions", tmp_path / "out", tmp_path / "m.json")
    rej = {x["source_id"]: x for x in pq.read_table(tmp_path / "out" / "rejections.parquet").to_pylist()}
    items = {it.item_id: it.question for b in bench.values() for it in load(b, tmp_path)}
    text = {x["id"]: x["question"] for x in rows}
    changed = {s for s in planted if "changed" in s}
    close = {s for s in changed if fuzz.ratio(decontaminate.normalize(text[s]),
                                              decontaminate.normalize(items[planted[s]])) >= 85}
    assert len(close) == 3 and close == {s for s in changed if s in rej}
    assert all(rej[s]["rule"] == "fuzzy" and rej[s]["item_id"] == planted[s] and rej[s]["value"] >= 0.85 for s in close)
    assert r["by_rule"]["exact"] == 15  # verbatim, re-spaced, re-cased: equal after normalisation
    with pytest.raises(Exception, match="'aime25' is not in params `benchmarks`"):
        decontaminate.run(decontaminate.DecontaminateParams(benchmarks=["aime25"]), bench, tmp_path,
                          tmp_path / "questions", tmp_path / "out", tmp_path / "m.json")


def test_benchmark_rows_load_with_their_checks_and_bad_rows_name_the_field(tmp_path):
    he = Benchmark(name="humaneval", path=str(shared("code", "humaneval.jsonl")), kind="code",
                   fields=questions.Fields(question="question", id="id"),
                   tests={"format": "check", "test": "test", "entry_point": "entry_point"})
    items = load(he, tmp_path)
    assert len(items) == 164 and json.loads(items[0].reference)["entry_point"] == "has_close_elements"
    mbpp = Benchmark(name="mbpp", path=str(shared("code", "mbpp.jsonl")), kind="code",
                     fields=questions.Fields(question="question", id="id"),
                     tests={"format": "asserts", "asserts": "test_list", "setup": "test_setup_code"})
    assert json.loads(load(mbpp, tmp_path)[0].reference)["asserts"][0].startswith("assert min_cost(")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": 1, "question": "q", "answer": "2"}) + "\n" + json.dumps({"id": 2, "question": "q"}) + "\n")
    with pytest.raises(InputError, match=r"bad.jsonl:2: field 'answer': missing"):
        load(Benchmark(name="b", path=str(bad), kind="math", fields=questions.Fields(question="question", answer="answer")),
             tmp_path)
