"""Stage `naturalness@T`: local naturalness (LALP, arXiv 2510.03988) of every response still in the pool.

For each step of a response (its sentences, from `sentences`), the student scores the step given the
question and only the `window` steps before it, teacher-forced on the same chat as `score`; a step's
value is the mean logprob of its student tokens, and a response's local naturalness is the mean over its
steps. `select.selector: local_naturalness` keeps the highest per question. It costs one student pass per
step, so it only runs with `naturalness.enabled: true` (otherwise the stage writes an empty table and
the selector refuses to run). Resumable like `score`. Output data/naturalness/T=<t>/ (schema
`tables.NATURALNESS`).
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from . import sql, tables
from .backends import ModelParams, ScoreRequest
from .executor import ExecutorParams, make_executor
from .jobs import run_shards
from .params import Count, NonNegative, ParamsError, schema
from .score import tokenize_response
from .stages import Stage, T


@schema
class NaturalnessParams:
    enabled: bool = False
    window: NonNegative = 2      # preceding steps the student sees
    shard_responses: Count = 64

    def __post_init__(self):
        if self.window < 0 or self.shard_responses < 1:
            raise ParamsError("naturalness: window must be >= 0 and shard_responses >= 1")


def step_requests(text: str, spans: list[tuple[int, int]], window: int) -> list[tuple[str, int]]:
    """(window text + step text, where the step starts in it) for every step."""
    out = []
    for i, (a, b) in enumerate(spans):
        ctx = spans[max(0, i - window)][0]
        out.append((text[ctx:b], a - ctx))
    return out


def run(np_: NaturalnessParams, student: ModelParams, temperature: float, inputs: dict[str, Path],
        questions_dir: Path, out_dir: Path, metrics_path: Path, backend=None, progress: bool = True, executor=None) -> dict:
    """`inputs`: kept (the filter's), sentences, generations (folders or files)."""
    con = sql.connect()
    sql.create_views(con, {**inputs, "questions": questions_dir})
    rows = con.sql("""SELECT k.response_id, k.question_id, g.text, q.messages,
                             list([s.char_start, s.char_end] ORDER BY s.sentence_index) AS spans
                      FROM kept k JOIN generations g USING (response_id) JOIN questions q ON q.question_id = k.question_id
                      JOIN sentences s ON s.response_id = k.response_id
                      GROUP BY ALL ORDER BY k.response_id""").to_arrow_table().to_pylist() if np_.enabled else []
    out = tables.ShardedOutput(out_dir, {"enabled": np_.enabled, "window": np_.window, "student": student.identity(),
                                         "shard_responses": np_.shard_responses,
                                         "responses": tables.content_hash(*(r["response_id"] for r in rows), length=32)}
                               ).open()

    def work(backend, idx):
        reqs, owners, cuts = [], [], []
        for i in idx:
            r = rows[i]
            for piece, cut in step_requests(r["text"], [tuple(s) for s in r["spans"]], np_.window):
                ids, starts, _ = tokenize_response(backend.tokenizer, piece)
                reqs.append(ScoreRequest(r["response_id"], r["messages"], ids))
                owners.append(i)
                cuts.append([k for k, s in enumerate(starts) if s >= cut])
        scored = backend.score(reqs)
        steps = {i: [] for i in idx}
        for i, keep, s in zip(owners, cuts, scored):
            if keep:  # a step with no token of its own (all of it merged into a token before) has no value
                steps[i].append(sum(s.logprobs[k] for k in keep) / len(keep))
        table = pa.Table.from_pylist([dict(
            response_id=rows[i]["response_id"], question_id=rows[i]["question_id"], temperature=temperature,
            window=np_.window, steps=len(steps[i]), step_logprobs=steps[i],
            local_naturalness=sum(steps[i]) / len(steps[i]) if steps[i] else None) for i in idx],
            schema=tables.NATURALNESS)
        return table, sum(len(q.completion_ids) for q in reqs)

    run_shards(out, len(rows), np_.shard_responses, work, backend=backend, unit="response",
               open_backend=student.opener(),
               desc=f"naturalness T={temperature}", progress=progress, executor=executor)
    if not rows:  # disabled (or nothing kept): an empty table, so readers find the schema
        out.write_shard(0, tables.NATURALNESS.empty_table())
    report = {"temperature": temperature, "enabled": np_.enabled, "window": np_.window, "responses": len(rows)}
    tables.write_json(report, metrics_path)
    return report


def main(ctx) -> None:
    np_, student = ctx.section("naturalness"), ctx.section("student")
    # one executor for every temperature: its engine (or replicas) loaded once
    with make_executor(ctx.section("executor"), "student").hold() as ex:
        for t, item, d in ctx.temperatures():
            r = run(np_, student, t, {"kept": ctx.path("filter", **item) / "kept.parquet",
                                      "sentences": ctx.path("sentences", **item),
                                      "generations": ctx.path("generations", **item)},
                    ctx.path("questions"), ctx.path("out", **item), ctx.path("metrics", **item), progress=ctx.progress,
                    executor=ex)
            print(f"naturalness {d}: " + (f"{r['responses']} responses scored step by step (window {r['window']})"
                                          if r["enabled"] else "off (naturalness.enabled: false)"))


STAGE = Stage("naturalness", main,
              sections={"naturalness": NaturalnessParams, "student": ModelParams, "executor": ExecutorParams},
              params=("naturalness", "student"),
              inputs={"filter": f"data/filter/{T}", "sentences": f"data/sentences/{T}",
                      "generations": f"data/generations/{T}", "questions": "data/questions",
                      "miniature": "data/miniature"},
              outputs={"out": f"data/naturalness/{T}", "metrics": f"metrics/naturalness/{T}.json"},
              per_temperature=True, progress=True)
