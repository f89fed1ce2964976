"""Stage `evaluate`: what each phase of the method does to the student, on held-out problems.

The student before training (`base`) and after each SFT phase answers the miniature's held-out
problems (data/miniature/eval.jsonl, never in the question set nor in any training pool): exact-match
accuracy on the final answer, the mean over `samples` sampled answers per problem (greedy with
`temperature: 0`), overall, by difficulty level, and the share of well-formed answers (`<think>` ... answer).
Output metrics/evaluate.json and plots/evaluate.csv (one row per model, in params order). The paper
profile evaluates on its benchmarks outside this engine (`enabled: false` there).
"""
from __future__ import annotations

import json
from dataclasses import field
from pathlib import Path

import pyarrow as pa

from . import tables
from .errors import InputError, StageError
from .miniature import evaluate, tasks
from .params import Count, NonNegative, Seed, Temperature, schema
from .stages import Stage


@schema
class EvaluateParams:
    enabled: bool = True
    problems: str = "data/miniature/eval.jsonl"
    models: dict[str, str] = field(default_factory=dict)  # name -> model folder, in the order the phases ran
    samples: NonNegative = 4    # sampled answers per problem (0: one greedy answer)
    temperature: Temperature = 0.6
    max_new_tokens: Count = 192
    seed: Seed = 0


def load_problems(path: Path) -> list[tasks.Problem]:
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            row = json.loads(line)
            try:
                out.append(tasks.Problem(id=row["id"], level=int(row["level"]), question=row["question"],
                                         answer=int(row["answer"]), solution=row.get("solution", "")))
            except KeyError as e:
                raise InputError(str(path), n, e.args[0], "missing (a problem needs id, level, question, answer)") from None
            except ValueError:
                raise InputError(str(path), n, "answer", "'answer' and 'level' must be integers") from None
    return out


def run(ep: EvaluateParams, root: Path, system_prompt: str | None, metrics_path: Path, plot_path: Path) -> dict:
    if not ep.enabled:
        report = {"enabled": False}
        tables.write_json(report, metrics_path)
        tables.write_csv(pa.table({"model": pa.array([], pa.string()), "accuracy": pa.array([], pa.float64())}), plot_path)
        return report
    path = root / ep.problems
    if not path.exists():
        raise StageError(f"{path}: no held-out problems; run `dasd miniature` first")
    problems = load_problems(path)
    report = {"enabled": True, "problems": len(problems), "samples": ep.samples, "temperature": ep.temperature,
              "models": {}}
    for name, folder in ep.models.items():
        folder = root / folder
        if not folder.exists():
            raise StageError(f"{folder}: no model {name!r}; run its `dasd train --phase` first")
        r = evaluate.accuracy(folder, problems, system_prompt, max_new_tokens=ep.max_new_tokens, samples=ep.samples,
                              temperature=ep.temperature, seed=ep.seed)
        report["models"][name] = {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}
    rows = report["models"]
    tables.write_csv(pa.table({"model": list(rows), "accuracy": [r["accuracy"] for r in rows.values()],
                               "well_formed": [r["well_formed"] for r in rows.values()]}), plot_path)
    tables.write_json(report, metrics_path)
    return report


def main(ctx) -> None:
    r = run(ctx.section("evaluate"), ctx.root, ctx.value("system_prompt"), ctx.path("metrics"), ctx.path("plot"))
    for name, m in r.get("models", {}).items():
        print(f"evaluate {name}: accuracy {m['accuracy']:.3f}, well-formed {m['well_formed']:.2f}")


# reads params evaluate.problems and evaluate.models: the miniature's held-out set and the trained phases
STAGE = Stage("evaluate", main, sections={"evaluate": EvaluateParams}, params=("evaluate", "system_prompt"),
              inputs={"miniature": "data/miniature", "train": "data/train"},
              outputs={"plot": "plots/evaluate.csv", "metrics": "metrics/evaluate.json"})
