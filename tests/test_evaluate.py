"""Stage `evaluate`: held-out accuracy per model, from real generations of the tiny models."""
from __future__ import annotations

import csv
import json

import pytest

from conftest import SYSTEM
from engine import evaluate


def test_each_model_answers_every_problem_samples_times(tmp_path, mini):
    problems = [{"id": p.id, "level": p.level, "question": p.question, "answer": str(p.answer)} for p in mini["problems"][:4]]
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(p) + "\n" for p in problems))
    ep = evaluate.EvaluateParams(problems="eval.jsonl", models={"base": str(mini["student"]), "other": str(mini["teacher"])},
                                 samples=3, temperature=1.0, max_new_tokens=24)
    report = evaluate.run(ep, tmp_path, SYSTEM, tmp_path / "m.json", tmp_path / "p.csv")
    assert list(report["models"]) == ["base", "other"]
    for m in report["models"].values():
        assert m["problems"] == 4 and m["answers"] == 12 and 0 <= m["accuracy"] <= 1 and 0 <= m["well_formed"] <= 1
        assert set(m["by_level"]) == {str(p["level"]) for p in problems}
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert [r["model"] for r in rows] == ["base", "other"]
    assert json.loads((tmp_path / "m.json").read_text()) == report
    # the same seed draws the same answers
    assert evaluate.run(ep, tmp_path, SYSTEM, tmp_path / "m2.json", tmp_path / "p2.csv") == report


def test_a_bad_problem_names_its_line(tmp_path):
    (tmp_path / "eval.jsonl").write_text('{"id": "a", "level": 1, "question": "q", "answer": "3"}\n'
                                         '{"id": "b", "level": 1, "question": "q", "answer": "three"}\n')
    with pytest.raises(ValueError, match="eval.jsonl:2"):
        evaluate.load_problems(tmp_path / "eval.jsonl")
