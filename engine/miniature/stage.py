"""Stage `miniature`: the default profile's question set and its teacher and student models.

Writes data/miniature/{questions.jsonl, teacher/, student/}. The models have random (seeded) weights
in this version; both tokenizers are trained on the task family's own corpus with different vocabulary
sizes. With `enabled: false` (profiles that bring their own models) the folder only says so.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from . import models, tasks


@dataclass
class MiniatureParams:
    enabled: bool = True
    seed: int = 0
    questions: int = 64
    levels: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    corpus_problems: int = 2000       # problems whose text trains the tokenizers
    teacher: dict = field(default_factory=dict)
    student: dict = field(default_factory=dict)


def run(mp: MiniatureParams, out_dir: Path) -> None:
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    if not mp.enabled:
        (out_dir / "DISABLED").write_text("miniature.enabled is false: this profile brings its own models\n")
        return
    levels = tuple(mp.levels)
    # questions and tokenizer corpus come from disjoint seeds; evaluation will use a third
    questions = tasks.make_problems(mp.questions, seed=mp.seed * 3 + 1, levels=levels)
    with open(out_dir / "questions.jsonl", "w") as f:
        for p in questions:
            f.write(json.dumps({"id": p.id, "level": p.level, "question": p.question, "answer": str(p.answer),
                                "solution": p.solution}) + "\n")
    corpus = [p.question + "\n" + p.solution
              for p in tasks.make_problems(mp.corpus_problems, seed=mp.seed * 3 + 2, levels=levels)]
    models.build(out_dir / "teacher", models.ModelSpec(**mp.teacher), corpus, seed=mp.seed * 2 + 11, name="teacher")
    models.build(out_dir / "student", models.ModelSpec(**mp.student), corpus, seed=mp.seed * 2 + 12, name="student")
