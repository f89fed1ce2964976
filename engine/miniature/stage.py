"""Stage `miniature`: the default profile's question set and its trained teacher and weak student.

Writes data/miniature/{questions.jsonl, eval.jsonl, teacher/, student/} and metrics/miniature.json.
- teacher: trained on step-by-step `<think>` solutions of the task family, every kind of step in both
  phrasings (engine/miniature/tasks.py), until it writes well-formed reasoning (its held-out accuracy is
  reported, not tuned for);
- student: a smaller model with a different tokenizer, shown part of that (`student_kinds`,
  `student_phrasings`: the default profile shows it adding, taking away and doubling, in both phrasings,
  and never the teacher's tallies), as the paper's student already writes much of its teacher's reasoning:
  what it shares are the teacher's shared sentences, what it lacks (halving, the tallies) its teacher
  sentences, so DAS has candidates that differ to choose among. With `student_target:
  answer` it sees bare answers only ("The answer is N.") and never learns the format in the pipeline's
  few SFT steps.
Training problems never share a question text with the question set or the held-out evaluation set.
With `enabled: false` (profiles that bring their own models) the folder only says so.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import field
from pathlib import Path
from typing import Any, Literal

from .. import tables
from ..params import Count, ParamsError, Seed, schema
from ..stages import Stage
from . import evaluate, models, tasks, train


@schema
class MiniatureParams:
    enabled: bool                  # true: build the miniature; false: this profile brings its own models
    seed: Seed = 0
    questions: Count = 64          # the pipeline's question set
    eval_problems: Count = 64      # held out, for accuracy
    train_problems: Count = 20000  # pool the teacher's and student's training examples come from
    corpus_problems: Count = 2000  # problems whose text trains the tokenizers
    levels: list[Count] = field(default_factory=lambda: [3, 4])  # steps in a problem (fewer: little to differ in)
    teacher: dict[str, Any] = field(default_factory=dict)  # engine/miniature/models.ModelSpec
    student: dict[str, Any] = field(default_factory=dict)
    # engine/miniature/train.train's arguments; the default profile's (params.yaml says why these)
    teacher_train: dict[str, Any] = field(default_factory=lambda: {"steps": 1200, "batch_size": 32, "lr": 3e-3})
    student_train: dict[str, Any] = field(default_factory=lambda: {"steps": 1600, "batch_size": 32, "lr": 3e-3})
    student_target: Literal["solution", "answer"] = "solution"  # what the student's brief pretraining shows it
    # what of the task family the student is shown before the pipeline (the teacher sees it all): the
    # kinds of step and their phrasings (engine/miniature/tasks.py); the rest is what it has to learn
    student_kinds: list[Literal[tasks.KINDS]] = field(default_factory=lambda: ["add", "sub", "mul"])
    student_phrasings: list[Literal[tasks.PHRASINGS]] = field(default_factory=lambda: list(tasks.PHRASINGS))

    def __post_init__(self):
        if "add" not in self.student_kinds:
            raise ParamsError(f"miniature.student_kinds {self.student_kinds}: must hold `add` (the one step "
                              "every value allows)")
        if not self.student_phrasings:
            raise ParamsError("miniature.student_phrasings is empty: name at least one of "
                              f"{list(tasks.PHRASINGS)}")


def _write(problems: list[tasks.Problem], path: Path) -> None:
    with open(path, "w") as f:
        for p in problems:
            f.write(json.dumps({"id": p.id, "level": p.level, "question": p.question, "answer": str(p.answer),
                                "solution": p.solution}) + "\n")


def _student_pool(mp: MiniatureParams, seed: int, seen: set[str]) -> list[tasks.Problem]:
    """The student's pretraining problems: only its kinds of step (`add` must be one), drawn from their
    own seed so every level is as frequent as in the teacher's pool."""
    kinds = tuple(k for k in tasks.KINDS if k in mp.student_kinds)
    return [p for p in tasks.make_problems(mp.train_problems, seed=seed, levels=tuple(mp.levels), kinds=kinds)
            if p.question not in seen]


def run(mp: MiniatureParams, out_dir: Path, metrics_path: Path, system_prompt: str | None) -> dict:
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    if not mp.enabled:
        (out_dir / "DISABLED").write_text("miniature.enabled is false: this profile brings its own models\n")
        tables.write_json({"enabled": False}, metrics_path)
        return {"enabled": False}
    levels = tuple(mp.levels)
    base = mp.seed * 10
    questions = tasks.make_problems(mp.questions, seed=base + 1, levels=levels)
    held_out = tasks.make_problems(mp.eval_problems, seed=base + 2, levels=levels)
    _write(questions, out_dir / "questions.jsonl")
    _write(held_out, out_dir / "eval.jsonl")
    seen = {p.question for p in questions + held_out}
    pool = [p for p in tasks.make_problems(mp.train_problems, seed=base + 3, levels=levels) if p.question not in seen]
    corpus = [p.question + "\n" + p.solution
              for p in tasks.make_problems(mp.corpus_problems, seed=base + 4, levels=levels)]

    def prompt(p):
        return ([{"role": "system", "content": system_prompt}] if system_prompt else []) + \
            [{"role": "user", "content": p.question}]

    report = {"enabled": True, "questions": len(questions), "eval_problems": len(held_out),
              "train_pool": len(pool)}
    phrasings = tuple(x for x in tasks.PHRASINGS if x in mp.student_phrasings)
    student_pool = pool if set(mp.student_kinds) >= set(tasks.KINDS) else _student_pool(mp, base + 6, seen)
    report["student_pool"] = len(student_pool)
    for name, spec, recipe, problems, answer in (
            ("teacher", mp.teacher, mp.teacher_train, pool, lambda p: p.solution),
            ("student", mp.student, mp.student_train, student_pool,
             (lambda p: p.render(phrasings)) if mp.student_target == "solution"
             else (lambda p: f"The answer is {p.answer}."))):
        folder = models.build(out_dir / name, models.ModelSpec(**spec), corpus, seed=base + (11 if name == "teacher" else 12),
                              name=name)
        fit = train.train(folder, [(prompt(p), answer(p)) for p in problems], seed=base + 5, **recipe) \
            if recipe.get("steps", 0) > 0 else {"steps": 0}
        report[name] = {"train": {k: round(v, 4) if isinstance(v, float) else v for k, v in fit.items()
                                  if k != "seconds"},
                        **evaluate.accuracy(folder, held_out, system_prompt)}
    tables.write_json(report, metrics_path)
    return report


def main(ctx) -> None:
    report = run(ctx.section("miniature"), ctx.path("out"), ctx.path("metrics"), ctx.value("system_prompt"))
    if report["enabled"]:
        for name in ("teacher", "student"):
            r = report[name]
            print(f"miniature {name}: held-out accuracy {r['accuracy']:.2f}, well-formed {r['well_formed']:.2f}")


STAGE = Stage("miniature", main, sections={"miniature": MiniatureParams}, params=("system_prompt", "miniature"),
              outputs={"out": "data/miniature", "metrics": "metrics/miniature.json"})
