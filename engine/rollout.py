"""Stage `rollout`: the mixed-policy phase's first step (METHOD.md §6) — the student answers on its own.

`questions` questions are drawn (seeded, by hash order, so a bigger draw extends a smaller one) from an
exported off-policy set (params `rollout.source`, stage2 by default: the set the stage-2 student was
last trained on). The student (params `rollout.student`, the stage-2 model) samples one answer per
question with the same sampling controls as generation, capped at ceil(length_factor x the length of
that question's selected teacher response in *student* tokens). Answers that hit the cap are what
`truncate` cuts and the teacher continues.

Output `data/rollout/` (schema `tables.ROLLOUTS`), persisted and resumable exactly as generation is:
atomic shards of a fixed slice of questions, a manifest of every output-changing param.
"""
from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa

from . import responses, tables
from .backends import ModelParams, Request, Sampling
from .executor import ExecutorParams, make_executor
from .generate import question_seed
from .jobs import run_shards
from .params import Count, Positive, Seed, StageError, Temperature, TopP, schema
from .stages import Stage


@schema
class RolloutParams:
    student: ModelParams          # the stage-2 student: a model section (model, backend, options)
    source: str = "stage2"        # the exported set the questions and the teacher lengths come from
    questions: Count = 50000      # drawn from it (all when it holds fewer)
    length_factor: Positive = 1.5  # cap = ceil(length_factor x the teacher response's student tokens)
    temperature: Temperature = 1.0
    top_p: TopP = 1.0
    seed: Seed = 1234
    shard_questions: Count = 64


def draw(source: pa.Table, k: int, seed: int) -> pa.Table:
    """Up to k questions of an exported set, one teacher response each (its first, the selector's best):
    ordered by a hash of (seed, question_id), so the draw does not depend on the file's order."""
    first = {}
    for i, qid in enumerate(source.column("question_id").to_pylist()):
        first.setdefault(qid, i)
    order = sorted(first, key=lambda q: (tables.content_hash(seed, q), q))[:k]
    return source.take([first[q] for q in order])


def manifest(rp: RolloutParams, chosen: pa.Table, caps: list[int]) -> dict:
    return {"student": rp.student.identity(), "temperature": rp.temperature, "top_p": rp.top_p, "seed": rp.seed,
            "shard_questions": rp.shard_questions,
            # the drawn questions, their prompts and caps, in order
            "draw": tables.content_hash(*chosen.column("question_id").to_pylist(),
                                        *map(str, chosen.column("messages").to_pylist()), *caps, length=32)}


def run(rp: RolloutParams, source_dir: Path, out_dir: Path, metrics_path: Path, backend=None,
        progress: bool = True, executor=None) -> dict:
    source = tables.read_table(source_dir, columns=["response_id", "question_id", "messages"])
    if source is None:
        raise StageError(f"{source_dir}: no exported set {rp.source!r}; run `dasd export` first")
    chosen = draw(source, rp.questions, rp.seed)
    qids, rids = chosen.column("question_id").to_pylist(), chosen.column("response_id").to_pylist()
    convs = chosen.column("messages").to_pylist()
    prompts = [[{"role": m["role"], "content": m["content"]} for m in c[:-1]] for c in convs]
    tok = rp.student.tokenizer()
    lengths = [len(tok.encode(c[-1]["content"], add_special_tokens=False)) for c in convs]
    caps = [max(1, math.ceil(rp.length_factor * n)) for n in lengths]
    out = tables.ShardedOutput(out_dir, manifest(rp, chosen, caps)).open()
    sampling = Sampling(n=1, temperature=rp.temperature, top_p=rp.top_p, max_tokens=max(caps, default=1))

    def work(backend, rows):
        reqs = [Request(qids[i], prompts[i], question_seed(rp.seed, qids[i], rp.temperature), max_tokens=caps[i])
                for i in rows]
        samples = backend.generate(reqs, sampling)
        out_rows = []
        for i, req, (sample,) in zip(rows, reqs, samples):
            r = responses.build(sample, backend.tokenizer, "chat")
            out_rows.append(dict(
                rollout_id=tables.content_hash(qids[i], "rollout", rp.temperature, req.seed), question_id=qids[i],
                source_response_id=rids[i], teacher_student_tokens=lengths[i], max_tokens=caps[i],
                temperature=rp.temperature, seed=req.seed, student_model=rp.student.model, backend=backend.name,
                text=r.text, finish_reason=r.finish_reason, student_token_count=r.token_count,
                token_ids=r.token_ids, token_logprobs=r.logprobs, token_starts=r.starts, token_ends=r.ends))
        return pa.Table.from_pylist(out_rows, schema=tables.ROLLOUTS), sum(len(s[0].logprobs) for s in samples)

    run_shards(out, len(qids), rp.shard_questions, work, backend=backend, unit="rollout",
               open_backend=rp.student.opener(),
               desc="rollout", progress=progress, executor=executor)
    from . import sql

    con = sql.connect()
    sql.create_views(con, {"rollouts": out_dir})
    n, hit, tokens, capped = con.sql("SELECT count(*), count(*) FILTER (finish_reason = 'length'), "
                                     "sum(student_token_count), avg(max_tokens) FROM rollouts").fetchall()[0]
    report = {"source": rp.source, "questions_available": len(set(source.column("question_id").to_pylist())),
              "questions": n, "rollouts": n, "hit_cap": hit, "student_tokens": tokens, "mean_cap": capped}
    tables.write_json(report, metrics_path)
    return report


def main(ctx) -> None:
    rp = ctx.section("rollout")
    r = run(rp, ctx.path("source"), ctx.path("out"), ctx.path("metrics"), progress=ctx.progress,
            executor=make_executor(ctx.section("executor"), "rollout"))
    print(f"rollout: {r['rollouts']} student answers, {r['hit_cap']} hit their cap (mean cap {r['mean_cap'] or 0:.0f} tokens)")


STAGE = Stage("rollout", main, sections={"rollout": RolloutParams, "executor": ExecutorParams}, params=("rollout",),
              inputs={"source": "data/export/${rollout.source}", "student": "${rollout.student.model}"},
              outputs={"out": "data/rollout", "metrics": "metrics/rollout.json"}, progress=True)
