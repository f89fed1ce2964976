"""Stage `naturalness`: each step scored by the real tiny student given only its window, checked against a
transformers forward pass on exactly that window; off by default."""
from __future__ import annotations

import json

import pyarrow as pa
import pytest
from transformers import AutoTokenizer

from conftest import forward_logprobs
from engine import naturalness, tables
from engine.backends import ModelParams
from engine.score import tokenize_response
from engine.sentences import split
from test_generate import make_project
from test_sentences import gen_table

TEXTS = ["<think>\nWe add 3 and 4 to get 7. Then we double it to get 14. So it is 14.\n</think>\n\nThe answer is 14.",
         "<think>\nFirst, 5 times 2 is 10. Next, 10 minus 1 is 9.\n</think>\n\nThe answer is 9."]


def project(tmp_path, mini):
    root = make_project(tmp_path, mini, 2)
    qids = tables.read_table(root / "data" / "questions", columns=["question_id"]).column("question_id").to_pylist()
    rows = [dict(response_id=f"r{k}", question_id=qids[k], temperature=1.0, text=t) for k, t in enumerate(TEXTS)]
    tables.write_parquet(gen_table(rows), root / "g" / "p.parquet")
    tables.write_parquet(pa.table({"response_id": ["r0", "r1"], "question_id": qids}), root / "kept.parquet")
    sent = [dict(dict.fromkeys(tables.SENTENCES.names), response_id=r["response_id"], sentence_index=i,
                 char_start=a, char_end=b) for r in rows for i, (a, b) in enumerate(split(r["text"]))]
    tables.write_parquet(pa.Table.from_pylist(sent, schema=tables.SENTENCES), root / "s" / "p.parquet")
    return root, {"kept": root / "kept.parquet", "sentences": root / "s", "generations": root / "g"}


def test_steps_match_a_forward_pass_on_each_window(tmp_path, mini):
    root, inputs = project(tmp_path, mini)
    student = ModelParams(model=str(mini["student"]), backend="transformers", options={"dtype": "float32"})
    report = naturalness.run(naturalness.NaturalnessParams(enabled=True, window=1, shard_responses=1), student, 1.0,
                             inputs, root / "data" / "questions", root / "out", root / "m.json", progress=False)
    assert report == {"temperature": 1.0, "enabled": True, "window": 1, "responses": 2}
    got = {r["response_id"]: r for r in tables.read_table(root / "out").to_pylist()}
    tok = AutoTokenizer.from_pretrained(mini["student"])
    messages = tables.read_table(root / "data" / "questions").sort_by("question_id").to_pylist()
    by_q = {q["question_id"]: q["messages"] for q in messages}
    for k, text in enumerate(TEXTS):
        row = got[f"r{k}"]
        spans = split(text)
        want = []
        for i, (a, b) in enumerate(spans):
            ctx = spans[max(0, i - 1)][0]
            ids, starts, _ = tokenize_response(tok, text[ctx:b])
            lps = forward_logprobs(mini["student"], by_q[row["question_id"]], ids)
            own = [lp for lp, s in zip(lps, starts) if s >= a - ctx]
            if own:
                want.append(sum(own) / len(own))
        assert row["steps"] == len(want) == len(spans) > 1
        assert row["step_logprobs"] == pytest.approx(want, abs=2e-4)
        assert row["local_naturalness"] == pytest.approx(sum(want) / len(want), abs=2e-4)
    # a window of 0 sees no earlier step: the first step's value is the same, later ones change
    naturalness.run(naturalness.NaturalnessParams(enabled=True, window=0), student, 1.0, inputs,
                    root / "data" / "questions", root / "out0", root / "m0.json", progress=False)
    zero = {r["response_id"]: r for r in tables.read_table(root / "out0").to_pylist()}
    assert zero["r0"]["step_logprobs"][0] == pytest.approx(got["r0"]["step_logprobs"][0], abs=1e-5)
    assert zero["r0"]["step_logprobs"][1:] != pytest.approx(got["r0"]["step_logprobs"][1:], abs=1e-3)
    assert json.loads((root / "m0.json").read_text())["window"] == 0


def test_off_by_default_writes_an_empty_table(tmp_path, mini):
    root, inputs = project(tmp_path, mini)
    student = ModelParams(model="no/such/model", backend="transformers")  # never loaded when off
    report = naturalness.run(naturalness.NaturalnessParams(), student, 1.0, inputs, root / "data" / "questions",
                             root / "out", root / "m.json", progress=False)
    assert report["enabled"] is False and report["responses"] == 0
    t = tables.read_table(root / "out")
    assert t.num_rows == 0 and t.schema.equals(tables.NATURALNESS)
