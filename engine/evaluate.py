"""Stage `evaluate`: what each phase of the method does to the student, on every benchmark in params
`benchmarks` (the default profile's is the miniature's held-out problems).

Each model in `evaluate.models` (the student before training, then after each phase) answers every
problem of every benchmark `samples` times (the benchmark's own `samples`, `temperature`, `top_p`,
`max_tokens`; a per-problem seed, so the answers do not depend on batching or replicas), through the
engine's backends (params `student`: its backend, format and options; the model folder is the
phase's) on the executor's `student` replicas. Each answer is checked by engine/answers.py for the
benchmark's kind (math, choice, code).

Output `data/evaluate/<model>/<benchmark>/` (every answer, schema `tables.EVALUATION`; persisted and
resumable like generation: a retrained model or a changed benchmark starts its folder clean), and
metrics/evaluate.json, per model x benchmark:
- `accuracy`: the mean over all answers (avg@k), with `ci95`: a 95% percentile bootstrap over problems
  (`bootstrap` resamples, seeded);
- `pass@k` for k = 1, 2, 4, … up to the samples: the unbiased estimator 1 - C(n-c, k) / C(n, k)
  averaged over problems (Chen et al. 2021);
- `well_formed`: the share of answers whose reasoning closed and that state an answer of the kind;
- `mean_tokens`: response tokens, and `truncated`: the share that hit max_tokens.
plots/evaluate.csv holds one row per model x benchmark with the interval (`dvc plots show`).

`dasd evaluate --responses FILE --benchmark NAME` scores existing answers (a released model's, say: a
JSONL or Parquet file with `item_id` and `response` columns, any number per item, and optionally
`response_tokens` and `finish_reason`) the same way, with no model call, and prints the metrics
(`mean_tokens` null where the file gives no token counts).
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import field
from pathlib import Path

import pyarrow as pa

from . import answers, tables
from .backends import ModelParams, Request, Sampling, looks_local
from .benchmarks import Benchmark, Benchmarks, Item, load
from .errors import InputError, StageError
from .executor import ExecutorParams, Local, make_executor
from .generate import question_seed
from .jobs import run_shards
from .params import Count, Seed, schema
from .stages import Stage


@schema
class EvaluateParams:
    enabled: bool = True
    models: dict[str, str] = field(default_factory=dict)  # name -> model folder, in the order the phases ran
    benchmarks: list[str] | None = None  # which of params `benchmarks` (default: all)
    seed: Seed = 0
    bootstrap: Count = 1000             # resamples of the problems for each ci95
    shard_problems: Count = 64          # problems per shard: the unit of resume


# -- the figures ----------------------------------------------------------------------------------

def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k of one problem with c correct among n samples (Chen et al. 2021)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def bootstrap_ci(per_problem: list[float], resamples: int, seed: int) -> list[float]:
    """95% percentile interval of the mean of `per_problem` (each problem's accuracy), problems resampled."""
    if not per_problem:
        return [0.0, 0.0]
    rng = random.Random(seed)
    n = len(per_problem)
    means = sorted(sum(per_problem[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    return [round(means[int(0.025 * (resamples - 1))], 4), round(means[int(math.ceil(0.975 * (resamples - 1)))], 4)]


def figures(rows: list[dict], items: list[Item], resamples: int, seed: int) -> dict:
    """The metrics of one model x benchmark from its answers (rows: item_id, correct, well_formed,
    response_tokens, finish_reason)."""
    by_item: dict[str, list[dict]] = {it.item_id: [] for it in items}
    for r in rows:
        by_item[r["item_id"]].append(r)
    answered = {k: v for k, v in by_item.items() if v}
    per_problem = [sum(r["correct"] for r in v) / len(v) for v in answered.values()]
    k_max = min((len(v) for v in answered.values()), default=0)
    ks = [k for k in (2 ** i for i in range(0, 12)) if k <= k_max] + ([k_max] if k_max and k_max & (k_max - 1) else [])
    n = len(rows)
    return {
        "problems": len(items), "answered": len(answered), "answers": n,
        "accuracy": round(sum(r["correct"] for r in rows) / n, 4) if n else 0.0,
        "ci95": bootstrap_ci(per_problem, resamples, seed),
        "pass@k": {str(k): round(sum(pass_at_k(len(v), sum(r["correct"] for r in v), k) for v in answered.values())
                                 / len(answered), 4) for k in ks},
        "well_formed": round(sum(r["well_formed"] for r in rows) / n, 4) if n else 0.0,
        "mean_tokens": _mean_tokens(rows),
        "truncated": round(sum(r["finish_reason"] == "length" for r in rows) / n, 4) if n else 0.0,
    }


def _mean_tokens(rows: list[dict]) -> float | None:
    """Over the answers whose token count is known (a file of existing answers may not say it: words are
    not tokens, so such answers are left out, and none known gives null)."""
    known = [r["response_tokens"] for r in rows if r["response_tokens"] is not None]
    return round(sum(known) / len(known), 1) if known else None


def judged(b: Benchmark, item: Item, text: str) -> dict:
    return {"correct": answers.correct(b.kind, text, item.reference),
            "well_formed": answers.extract(b.kind, text) is not None}


# -- answering --------------------------------------------------------------------------------------

def manifest(model: ModelParams, b: Benchmark, items: list[Item], ep: EvaluateParams, system_prompt,
             folder: str) -> dict:
    # the model as params name it (`data/train/stage1/model`), not where this checkout put it: the same
    # answers in another clone, or a moved project, resume instead of starting over
    return {"model": {**model.identity(), "model": folder}, "samples": b.samples, "temperature": b.temperature, "top_p": b.top_p,
            "max_tokens": b.max_tokens, "seed": ep.seed, "system_prompt": system_prompt, "kind": b.kind,
            "shard_problems": ep.shard_problems,
            "items": tables.content_hash(*(f"{it.item_id}\0{it.question}\0{it.reference}" for it in items), length=32)}


def answer(name: str, model: ModelParams, b: Benchmark, items: list[Item], ep: EvaluateParams, system_prompt,
           out_dir: Path, progress: bool, executor=None) -> None:
    from . import responses

    out = tables.ShardedOutput(out_dir, manifest(model, b, items, ep, system_prompt, ep.models[name])).open()
    sampling = Sampling(n=b.samples, temperature=b.temperature, top_p=b.top_p, max_tokens=b.max_tokens)
    prefix = [{"role": "system", "content": system_prompt}] if system_prompt else []

    def work(backend, rows):
        reqs = [Request(items[i].item_id, prefix + [{"role": "user", "content": items[i].question}],
                        question_seed(ep.seed, f"{b.name}/{items[i].item_id}", b.temperature)) for i in rows]
        out_rows = []
        for i, req, samples in zip(rows, reqs, backend.generate(reqs, sampling)):
            for s, sample in enumerate(samples):
                r = responses.build(sample, backend.tokenizer, model.format)
                out_rows.append(dict(model=name, benchmark=b.name, item_id=items[i].item_id, sample_index=s,
                                     seed=req.seed, text=r.text, finish_reason=r.finish_reason,
                                     response_tokens=r.token_count, **judged(b, items[i], r.text)))
        return pa.Table.from_pylist(out_rows, schema=tables.EVALUATION), sum(r["response_tokens"] for r in out_rows)

    run_shards(out, len(items), ep.shard_problems, work, unit="answer", items_per_row=b.samples,
               open_backend=model.opener(),
               desc=f"evaluate {name} on {b.name}", progress=progress, executor=executor)


def run(ep: EvaluateParams, benchmarks: Benchmarks, student: ModelParams, root: Path, system_prompt: str | None,
        out_dir: Path, metrics_path: Path, plot_path: Path, progress: bool = True, executor=None) -> dict:
    plot_schema = pa.schema([("model", pa.string()), ("benchmark", pa.string()), ("accuracy", pa.float64()),
                             ("low", pa.float64()), ("high", pa.float64()), ("well_formed", pa.float64())])
    if not ep.enabled:
        report = {"enabled": False}
        tables.write_json(report, metrics_path)
        tables.write_csv(plot_schema.empty_table(), plot_path)
        return report
    names = benchmarks.chosen(ep.benchmarks, "evaluate.benchmarks")
    sets = {n: load(benchmarks[n], root) for n in names}
    report, plot = {"enabled": True, "benchmarks": {n: len(v) for n, v in sets.items()}, "models": {}}, []
    ex = executor if executor is not None else Local()
    # one engine (or set of replicas) per model for all its benchmarks, opened only if one has answers left
    # to write; the next model's replaces it (on Ray: its replicas, in the same session)
    with ex.hold():
        for name, folder in ep.models.items():
            path = root / folder
            if not path.exists() and (folder.startswith("data/") or looks_local(folder)):
                raise StageError(f"{path}: no model {name!r}; run its `dasd train --phase` first")
            # a project folder (a trained phase), else a Hub id (a released base model)
            model = ModelParams(model=str(path) if path.exists() else folder, backend=student.backend, revision=None,
                                format=student.format, options=student.options)
            report["models"][name] = {}
            for bname, items in sets.items():
                b = benchmarks[bname]
                folder_out = out_dir / name / bname
                answer(name, model, b, items, ep, system_prompt, folder_out, progress, ex)
                rows = tables.read_table(folder_out, columns=["item_id", "correct", "well_formed", "response_tokens",
                                                              "finish_reason"]).to_pylist()
                m = report["models"][name][bname] = figures(rows, items, ep.bootstrap, ep.seed)
                plot.append(dict(model=name, benchmark=bname, accuracy=m["accuracy"], low=m["ci95"][0],
                                 high=m["ci95"][1], well_formed=m["well_formed"]))
    tables.write_csv(pa.Table.from_pylist(plot, schema=plot_schema), plot_path)
    tables.write_json(report, metrics_path)
    return report


# -- existing answers -------------------------------------------------------------------------------

def score_file(path: Path, b: Benchmark, items: list[Item], resamples: int = 1000, seed: int = 0) -> dict:
    """The metrics of a file of existing answers (JSONL or Parquet: `item_id`, `response`, and optionally
    `response_tokens`, `finish_reason`: without them `mean_tokens` is null and no answer counts as
    truncated); an answer to an item the benchmark lacks is an error naming it."""
    from .questions import Source, read_source

    src = Source(name="responses", path=str(path), domain="math", fields={"question": "response"})
    known = {it.item_id: it for it in items}
    rows = []
    for line, row in read_source(src, Path("/")):
        if isinstance(row, InputError):
            raise row
        for col in ("item_id", "response"):
            if row.get(col) is None:
                raise InputError(str(path), line, col, "missing")
        item = known.get(str(row["item_id"]))
        if item is None:
            raise InputError(str(path), line, "item_id", f"{row['item_id']!r} is not an item of benchmark {b.name!r}")
        text = str(row["response"])
        tokens = row.get("response_tokens")
        rows.append(dict(item_id=item.item_id, response_tokens=None if tokens is None else int(tokens),
                         finish_reason=row.get("finish_reason") or "stop", **judged(b, item, text)))
    if not rows:
        raise InputError(str(path), None, None, "no answers")
    return figures(rows, items, resamples, seed)


def main(ctx) -> None:
    args, benchmarks = ctx.args, ctx.section("benchmarks")
    if args.benchmark and not args.responses:
        raise StageError("--benchmark goes with --responses FILE (scoring existing answers)")
    if args.responses:
        if args.benchmark not in benchmarks:
            raise StageError(f"--benchmark {args.benchmark!r}: not in params `benchmarks` "
                             f"(there: {', '.join(benchmarks) or 'none'})")
        b = benchmarks[args.benchmark]
        print(json.dumps(score_file(Path(args.responses).resolve(), b, load(b, ctx.root)), indent=2))
        return
    r = run(ctx.section("evaluate"), benchmarks, ctx.section("student"), ctx.root, ctx.value("system_prompt"),
            ctx.path("out"), ctx.path("metrics"), ctx.path("plot"), progress=ctx.progress,
            executor=make_executor(ctx.section("executor"), "student"))
    for name, per in r.get("models", {}).items():
        for bname, m in per.items():
            print(f"evaluate {name} on {bname}: accuracy {m['accuracy']:.3f} [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}], "
                  f"well-formed {m['well_formed']:.2f}")


def arguments(p) -> None:
    p.add_argument("--responses", metavar="FILE", help="score existing answers (JSONL/Parquet: item_id, response) "
                                                        "instead of generating; needs --benchmark")
    p.add_argument("--benchmark", metavar="NAME", help="with --responses: the params `benchmarks` set they answer")


# the models are params (evaluate.models: the miniature's student and the trained phases), their folders
# data/miniature and data/train; the benchmark files are params, as the question sources are
STAGE = Stage("evaluate", main, sections={"evaluate": EvaluateParams, "benchmarks": Benchmarks,
                                          "student": ModelParams, "executor": ExecutorParams},
              params=("evaluate", "benchmarks", "student", "system_prompt"),  # student: its backend and options
              inputs={"miniature": "data/miniature", "train": "data/train"},
              outputs={"out": "data/evaluate", "plot": "plots/evaluate.csv", "metrics": "metrics/evaluate.json"},
              progress=True, arguments=arguments)
