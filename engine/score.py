"""Stage `score@T`: the student's logprob (and rank) of every token of every teacher response at T.

Teacher-forced on the chat the student will be trained on: system + question, then the response text
tokenised by the *student's* tokenizer. Each student token keeps its character span in the response
text, so `sentences` can align student and teacher tokens although their tokenizers differ. Output
`data/student_scores/T=<t>/` (schema `tables.STUDENT_SCORES`), persisted and resumable like
generation: shards of a fixed slice of responses, a manifest of what changes outputs. Rows follow the
generations' order exactly (generation files in name order, rows in file order).
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from . import tables
from .backends import ModelParams, ScoreRequest
from .executor import ExecutorParams, make_executor
from .jobs import run_shards
from .params import Count, StageError, schema
from .spans import decode_with_spans
from .stages import Stage, T


@schema
class ScoreParams:
    shard_responses: Count = 256  # responses per shard: the unit of atomic writes and of resume


def tokenize_response(tokenizer, text: str) -> tuple[list[int], list[int], list[int]]:
    """Student token ids of `text` with tiling character spans; the ids decode back to `text`."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    decoded, starts, ends = decode_with_spans(tokenizer, ids)
    if decoded != text:
        raise StageError(f"the student tokenizer does not round-trip a response ({len(text)} chars -> "
                         f"{len(decoded)}): spans would not align; first difference at char "
                         f"{next((i for i, (a, b) in enumerate(zip(text, decoded)) if a != b), min(len(text), len(decoded)))}")
    return ids, starts, ends


def manifest(sp: ScoreParams, student: ModelParams, generations_dir: Path, response_ids: list[str]) -> dict:
    gen_manifest = Path(generations_dir) / tables.ShardedOutput.MANIFEST
    return {
        "student": student.identity(),
        "shard_responses": sp.shard_responses,
        "generations": gen_manifest.read_text() if gen_manifest.exists() else None,
        "responses": tables.content_hash(*response_ids, length=32),  # also pins the order
        "order": "generations",
    }


def run(sp: ScoreParams, student: ModelParams, temperature: float, generations_dir: Path, questions_dir: Path,
        out_dir: Path, metrics_path: Path, backend=None, progress: bool = True, executor=None) -> dict:
    gens = tables.read_table(generations_dir, columns=["response_id", "question_id", "text"])
    if gens is None:
        raise StageError(f"{generations_dir}: no generations; run `dasd generate` first")
    # rows stay in the generations' order (files, then rows), so `sentences` can pair the two tables by
    # streaming both side by side, without a join that would have to hold token lists in memory
    qs = tables.read_table(questions_dir, columns=["question_id", "messages"])
    prompts = dict(zip(qs.column("question_id").to_pylist(), qs.column("messages").to_pylist()))
    rids, qids, texts = (gens.column(c).to_pylist() for c in ("response_id", "question_id", "text"))
    out = tables.ShardedOutput(out_dir, manifest(sp, student, generations_dir, rids)).open()

    def work(backend, rows):
        toks = [tokenize_response(backend.tokenizer, texts[i]) for i in rows]
        scored = backend.score([ScoreRequest(rids[i], prompts[qids[i]], ids) for i, (ids, _, _) in zip(rows, toks)])
        table = pa.Table.from_pylist([dict(
            response_id=rids[i], question_id=qids[i], temperature=temperature, student_model=student.model,
            student_revision=student.revision, backend=backend.name, student_token_count=len(ids),
            token_ids=ids, student_logprobs=s.logprobs, student_ranks=s.ranks, token_starts=st, token_ends=en)
            for i, (ids, st, en), s in zip(rows, toks, scored)], schema=tables.STUDENT_SCORES)
        return table, sum(len(t[0]) for t in toks)

    run_shards(out, len(rids), sp.shard_responses, work, backend=backend, unit="response",
               open_backend=student.opener(),
               desc=f"score T={temperature}", progress=progress, executor=executor)
    return write_report(out_dir, metrics_path, temperature)


def write_report(out_dir: Path, metrics_path: Path, temperature: float) -> dict:
    from . import sql

    path = sql.quote_path(Path(out_dir) / "*.parquet")
    row = sql.connect().execute(f"""
        SELECT count(*), sum(student_token_count), avg(student_token_count), avg(list_avg(student_logprobs)),
               avg(list_avg(student_ranks))
        FROM read_parquet('{path}')""").fetchall()[0]
    report = {"temperature": temperature, "responses": row[0], "student_tokens": row[1],
              "mean_response_student_tokens": row[2],
              "mean_student_logprob": sql.steady(row[3]), "mean_student_rank": sql.steady(row[4])}
    tables.write_json(report, metrics_path)
    return report


def main(ctx) -> None:
    sp, student = ctx.section("score"), ctx.section("student")
    # one executor for every temperature: its engine (or replicas) loaded once
    with make_executor(ctx.section("executor"), "student").hold() as ex:
        for t, item, d in ctx.temperatures():
            report = run(sp, student, t, ctx.path("generations", **item), ctx.path("questions"),
                         ctx.path("out", **item), ctx.path("metrics", **item), progress=ctx.progress, executor=ex)
            print(f"score {d}: {report['responses']} responses, {report['student_tokens']} student tokens, "
                  f"mean student logprob {report['mean_student_logprob']:.3f}")


STAGE = Stage("score", main, sections={"score": ScoreParams, "student": ModelParams, "executor": ExecutorParams},
              params=("student", "score"),
              inputs={"generations": f"data/generations/{T}", "questions": "data/questions",
                      "miniature": "data/miniature"},
              outputs={"out": f"data/student_scores/{T}", "metrics": f"metrics/score/{T}.json"},
              per_temperature=True, progress=True)
