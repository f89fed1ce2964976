"""Stage `generate@T`: n teacher samples per question at temperature T, every token's logprob kept.
The questions are those `decontaminate` kept (data/decontaminate/kept.parquet).

Output `data/generations/T=<t>/part-*.parquet` (schema `tables.GENERATIONS`) is persisted across
runs: a shard holds all samples of a fixed slice of questions and is written atomically, so a run
killed at any point resumes at the first missing shard and never duplicates or loses a
(question_id, sample_index). The folder's manifest holds every parameter that changes outputs; when
any differs, the folder is cleared first so old and new samples never mix.
"""
from __future__ import annotations

import dataclasses

from pathlib import Path
from typing import Literal

import pyarrow as pa

from . import responses, tables
from .backends import ModelParams, Request, Sampling
from .executor import ExecutorParams, make_executor
from .jobs import run_shards
from .params import Count, ParamsError, Seed, StageError, Temperature, TopP, schema
from .stages import Stage, T


@schema
class GenerateParams:
    temperatures: list[Temperature]
    n: Count = 4
    top_p: TopP = 1.0
    max_tokens: Count = 1024
    seed: Seed = 1234
    logprobs_mode: Literal["raw_logprobs", "processed_logprobs"] = "raw_logprobs"
    shard_questions: Count = 64  # questions per shard: the unit of atomic writes and of resume

    def __post_init__(self):
        if not self.temperatures:
            raise ParamsError("temperatures: give at least one")


def question_seed(seed: int, question_id: str, temperature: float) -> int:
    """The sampling seed of one question: independent of batching, order and resume."""
    return int(tables.content_hash(seed, question_id, f"{temperature:g}", length=8), 16) & 0x7FFFFFFF


def manifest(gp: GenerateParams, teacher: ModelParams, temperature: float, questions: pa.Table) -> dict:
    return {
        "temperature": temperature, "n": gp.n, "top_p": gp.top_p, "max_tokens": gp.max_tokens, "seed": gp.seed,
        "logprobs_mode": gp.logprobs_mode, "shard_questions": gp.shard_questions,
        "teacher": teacher.identity(),
        # the question set: ids and prompts in order
        "questions": tables.content_hash(*questions.column("question_id").to_pylist(),
                                         *map(str, questions.column("messages").to_pylist()), length=32),
    }


def generation_row(r: responses.Response, response_id: str, question_id: str, temperature: float, sample_index: int,
                   seed, teacher: ModelParams, backend: str, logprobs_mode: str) -> dict:
    """One GENERATIONS row from a built response (a sampled one, or an imported one)."""
    return dict(
        response_id=response_id, question_id=question_id, temperature=temperature, sample_index=sample_index,
        seed=seed, teacher_model=teacher.model, teacher_revision=teacher.revision, backend=backend,
        logprobs_mode=logprobs_mode, text=r.text, finish_reason=r.finish_reason, teacher_token_count=r.token_count,
        token_ids=r.token_ids, token_logprobs=r.logprobs, token_starts=r.starts, token_ends=r.ends,
        raw_output=r.raw_output)


def response_rows(question_ids, samples, seeds, temperature, teacher: ModelParams, backend, tokenizer):
    for qid, per_q, seed in zip(question_ids, samples, seeds):
        for k, sample in enumerate(per_q):
            r = responses.build(sample, tokenizer, teacher.format)
            yield generation_row(r, tables.content_hash(qid, f"{temperature:g}", k, seed), qid, temperature, k, seed,
                                 teacher, backend.name, backend.logprobs_mode)


def fitting(backend, reqs: list[Request]) -> tuple[list[Request], list[tuple[Request, int, int]]]:
    """The requests whose prompt leaves room for an answer within the backend's context length, and the
    others as (request, prompt tokens, context length)."""
    limit = backend.context_length()
    if not limit:
        return reqs, []
    fit, too_long = [], []
    for r in reqs:
        n = len(backend.prompt_ids(r.messages, r.prefill))
        (fit.append(r) if n < limit else too_long.append((r, n, limit)))
    return fit, too_long


def rejections(too_long, temperature: float, n: int, backend) -> pa.Table | None:
    """One `prompt_too_long` rejection row per sample a too-long question would have had (so responses +
    rejections = questions x n); it lands beside the shard as `rejections-<shard>.parquet.r` (the suffix
    keeps it out of the generations' *.parquet; the `rejections` view of `dasd sql` reads it)."""
    if not too_long:
        return None
    rows = [dict(response_id=tables.content_hash(r.key, f"{temperature:g}", k, r.seed), stage="generate",
                 rule="prompt_too_long", value=float(tokens), threshold=float(limit),
                 detail=f"question {r.key}: {tokens} prompt tokens, context length {limit} ({backend.name})")
            for r, tokens, limit in too_long for k in range(n)]
    return pa.Table.from_pylist(rows, schema=tables.REJECTIONS)


def run(gp: GenerateParams, teacher: ModelParams, temperature: float, questions_dir: Path, out_dir: Path,
        metrics_path: Path, backend=None, progress: bool = True, executor=None) -> dict:
    questions = tables.read_table(questions_dir, columns=["question_id", "messages"])
    if questions is None:
        raise StageError(f"{questions_dir}: no questions; run `dasd questions` and `dasd decontaminate` first")
    out = tables.ShardedOutput(out_dir, manifest(gp, teacher, temperature, questions)).open()
    ids, msgs = questions.column("question_id").to_pylist(), questions.column("messages").to_pylist()
    sampling = Sampling(n=gp.n, temperature=temperature, top_p=gp.top_p, max_tokens=gp.max_tokens,
                        logprobs_mode=gp.logprobs_mode)

    def work(backend, rows):
        reqs = [Request(ids[i], msgs[i], question_seed(gp.seed, ids[i], temperature)) for i in rows]
        reqs, too_long = fitting(backend, reqs)
        samples = backend.generate(reqs, sampling) if reqs else []
        table = pa.Table.from_pylist(list(response_rows(
            [r.key for r in reqs], samples, [r.seed for r in reqs], temperature, teacher, backend,
            backend.tokenizer)), schema=tables.GENERATIONS)
        # the shard's rejections land before the shard itself: a shard on disk has its rejections too
        side = rejections(too_long, temperature, gp.n, backend)
        return table, sum(len(s.logprobs) for per_q in samples for s in per_q), \
            ({"rejections": side} if side is not None else {})

    run_shards(out, len(ids), gp.shard_questions, work, backend=backend, items_per_row=gp.n, unit="sample",
               open_backend=dataclasses.replace(teacher, options={**teacher.options,
                                                                   "logprobs_mode": gp.logprobs_mode}).opener(),
               desc=f"generate T={temperature}", progress=progress, executor=executor)
    return write_report(out_dir, metrics_path, temperature)


def write_report(out_dir: Path, metrics_path: Path, temperature: float) -> dict:
    from . import sql

    con = sql.connect()
    path = sql.quote_path(Path(out_dir) / "*.parquet")
    row = con.execute(f"""
        SELECT count(*), count(DISTINCT question_id), sum(teacher_token_count),
               count(*) FILTER (finish_reason = 'stop'), count(*) FILTER (finish_reason = 'length'),
               count(*) FILTER (finish_reason = 'tool_call'), avg(len(token_logprobs)),
               avg(list_avg(token_logprobs))
        FROM read_parquet('{path}')""").fetchall()[0]
    rejected = con.execute(f"""SELECT count(*) FROM read_parquet('{sql.quote_path(Path(out_dir) / "rejections-*.parquet.r")}')"""
                           ).fetchall()[0][0] if list(Path(out_dir).glob("rejections-*.parquet.r")) else 0
    report = {"temperature": temperature, "responses": row[0], "questions": row[1], "teacher_tokens": row[2],
              "rejected": {"prompt_too_long": rejected},
              "finish_reason": {"stop": row[3], "length": row[4], "tool_call": row[5]},
              "mean_response_tokens": row[6],
              "mean_token_logprob": sql.steady(row[7])}
    tables.write_json(report, metrics_path)
    return report


def main(ctx) -> None:
    gp, teacher = ctx.section("generate"), ctx.section("teacher")
    # one executor for every temperature: its engine (or replicas) loaded once
    with make_executor(ctx.section("executor"), "teacher").hold() as ex:
        for t, item, d in ctx.temperatures():
            report = run(gp, teacher, t, ctx.path("questions") / "kept.parquet", ctx.path("out", **item),
                         ctx.path("metrics", **item), progress=ctx.progress, executor=ex)
            print(f"generate {d}: {report['responses']} responses for {report['questions']} questions, "
                  f"{report['teacher_tokens']} teacher tokens")


STAGE = Stage("generate", main,
              sections={"generate": GenerateParams, "teacher": ModelParams, "executor": ExecutorParams},
              params=("teacher", "generate.n", "generate.top_p", "generate.max_tokens", "generate.seed",
                      "generate.logprobs_mode", "generate.shard_questions"),
              inputs={"questions": "data/decontaminate", "miniature": "data/miniature"},
              outputs={"out": f"data/generations/{T}", "metrics": f"metrics/generate/{T}.json"},
              per_temperature=True, progress=True)
