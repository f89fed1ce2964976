"""Stage `truncate`: cuts strictly past the low fraction, inside the rollout, on token (and sentence) ends."""
from __future__ import annotations

import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import shared
from engine import tables, truncate
from engine.score import tokenize_response


@pytest.fixture(scope="module")
def rollouts(mini, tmp_path_factory):
    """Real reasoning traces as student rollouts (the tiny student's tokens and spans); a few finished."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(mini["student"])
    rows = [json.loads(line) for line in open(shared("traces", "traces_math500_r1_and_distill.jsonl"))][:40]
    out = []
    for k, r in enumerate(rows):
        text = "<think>\n" + r["response"][:3000]
        ids, starts, ends = tokenize_response(tok, text)
        out.append(dict(rollout_id=f"r{k:03d}", question_id=f"q{k}", source_response_id=f"t{k}",
                        teacher_student_tokens=len(ids), max_tokens=len(ids), temperature=1.0, seed=k,
                        student_model="s", backend="transformers", text=text,
                        finish_reason="stop" if k % 8 == 0 else "length", student_token_count=len(ids),
                        token_ids=ids, token_logprobs=[-1.0] * len(ids), token_starts=starts, token_ends=ends))
    # too short to cut past half and keep a token after it
    out.append(dict(out[1], rollout_id="short", text="ab", token_ids=[1, 2], token_starts=[0, 1], token_ends=[1, 2],
                    token_logprobs=[-1.0, -1.0], student_token_count=2, max_tokens=2))
    folder = tmp_path_factory.mktemp("rollout")
    tables.write_parquet(pa.Table.from_pylist(out, schema=tables.ROLLOUTS), folder / "part-00000.parquet")
    return folder, {r["rollout_id"]: r for r in out}


@pytest.mark.parametrize("snap", ["token", "sentence"])
def test_cuts_lie_past_half_inside_the_rollout_on_token_ends(tmp_path, rollouts, snap):
    folder, by_id = rollouts
    report = truncate.run(truncate.TruncateParams(snap=snap, seed=3), folder, tmp_path / "out", tmp_path / "m.json")
    cut = pq.read_table(tmp_path / "out" / "truncated.parquet").to_pylist()
    rejected = pq.read_table(tmp_path / "out" / "rejections.parquet").to_pylist()
    assert report["truncated"] + report["rejected"] == report["input"] == len(by_id)
    assert {r["rule"] for r in rejected if r["response_id"] == "short"} == {"too_short"}
    finished = {k for k, r in by_id.items() if r["finish_reason"] == "stop"}
    assert {r["response_id"] for r in rejected if r["rule"] == "not_truncated"} == finished
    assert len(cut) == len(by_id) - len(finished) - 1
    for c in cut:
        r = by_id[c["rollout_id"]]
        n = len(r["token_ends"])
        assert c["rollout_tokens"] == n
        assert 0.5 < c["cut_fraction"] < 1 and n / 2 < c["cut_token"] < n
        assert c["cut_fraction"] == c["cut_token"] / n
        assert c["cut_char"] == r["token_ends"][c["cut_token"] - 1]  # a student token boundary
        assert r["text"].startswith(c["prefix"]) and len(c["prefix"]) == c["cut_char"] < len(r["text"])
        if c["snap"] == "sentence":
            assert c["cut_char"] in truncate.sentence_ends(r["text"])
    snaps = {c["snap"] for c in cut}
    assert snaps == {"token"} if snap == "token" else "sentence" in snaps
    fractions = [c["cut_fraction"] for c in cut]
    if snap == "token":  # uniform over (0.5, 1): the mean sits near 0.75
        assert 0.65 < sum(fractions) / len(fractions) < 0.85 and max(fractions) - min(fractions) > 0.25


def test_cuts_do_not_depend_on_row_order(tmp_path, rollouts):
    folder, by_id = rollouts
    rows = list(by_id.values())
    random.Random(0).shuffle(rows)
    tables.write_parquet(pa.Table.from_pylist(rows, schema=tables.ROLLOUTS), tmp_path / "shuffled" / "part-00000.parquet")
    tp = truncate.TruncateParams(seed=5)
    truncate.run(tp, folder, tmp_path / "a", tmp_path / "a.json")
    truncate.run(tp, tmp_path / "shuffled", tmp_path / "b", tmp_path / "b.json")
    a, b = (sorted(pq.read_table(tmp_path / d / "truncated.parquet").to_pylist(), key=lambda r: r["rollout_id"])
            for d in "ab")
    assert a == b
    truncate.run(truncate.TruncateParams(seed=6), folder, tmp_path / "c", tmp_path / "c.json")
    c = sorted(pq.read_table(tmp_path / "c" / "truncated.parquet").to_pylist(), key=lambda r: r["rollout_id"])
    assert [r["cut_token"] for r in c] != [r["cut_token"] for r in a]  # the seed decides the draw


def test_bad_cut_range_is_refused():
    from engine.params import ParamsError

    with pytest.raises(ParamsError, match=r"cut must be \[low, high\] with low < high"):
        truncate.TruncateParams(cut=[0.7, 0.5])
