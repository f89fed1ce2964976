"""Stage `mixed_filter`: the off-policy pools' quality rules on every joined mixed-policy response.

The rules and thresholds are params `filter` itself (METHOD.md §6: "the same quality filters"),
measured on prefix + continuation, the response the student is trained on: length in student tokens
(the `student` tokenizer, which the rollout student shares), structure, repetition, truncation (the
teacher's continuation hit its cap), and the optional wrong_answer. One more rule, `boundary`,
rejects a sample whose joined text does not start with the student's prefix exactly (stage `continue`).
Optional (params `mixed_filter.dedup`, off by default): MinHash near-duplicates among the samples the
rules kept, with the `dedup` stage's settings; with one rollout per question only `dedup.scope: pool`
can find any. A cluster keeps its smallest sample_id (no selector scores mixed samples); the others get
a `near_duplicate` rejection naming it.
Output data/mixed_filter/{kept,rejections}.parquet; kept + rejected = continued samples.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from . import dedup as near
from . import filter as filter_stage
from . import tables
from .backends import ModelParams
from .kernels import minhash
from .params import StageError, schema
from .stages import Stage


@schema
class MixedFilterParams:
    dedup: bool = False  # near-duplicates among the kept samples, with params `dedup` (scope, n-grams, threshold)


def near_duplicates(kept: pa.Table, texts: dict[str, str], dp: near.DedupParams) -> tuple[pa.Table, pa.Table]:
    """(kept survivors, near_duplicate rejections) among `kept` (response_id, question_id)."""
    ids = kept.column("response_id").to_pylist()
    if not ids:
        return kept, pa.Table.from_pylist([], schema=tables.REJECTIONS)
    groups = None
    if dp.scope == "question":
        groups = kept.column("question_id").combine_chunks().dictionary_encode().indices.to_numpy()
    found = near.near_duplicates(pa.array([texts[i] for i in ids]), groups, dp)
    labels = found["clusters"].tolist()
    survivor = {}
    for k, c in enumerate(labels):  # the smallest sample_id of each cluster survives
        if c not in survivor or ids[k] < ids[survivor[c]]:
            survivor[c] = k
    of = [survivor[c] for c in labels]
    similarity = minhash.jaccard(found["signatures"], np.array(list(enumerate(of)), dtype=np.int64).reshape(-1, 2)).tolist()
    removed = [k for k in range(len(ids)) if of[k] != k]
    rejections = pa.Table.from_pylist([dict(
        response_id=ids[k], stage="mixed_filter", rule="near_duplicate", value=similarity[k], threshold=dp.threshold,
        detail=f"survivor {ids[of[k]]}") for k in removed], schema=tables.REJECTIONS)
    return kept.take([k for k in range(len(ids)) if of[k] == k]), rejections


def run(fp: filter_stage.FilterParams, student: ModelParams, continue_dir: Path, questions_dir: Path, out_dir: Path,
        metrics_path: Path, mfp: MixedFilterParams | None = None, dp: near.DedupParams | None = None,
        min_chars: int = filter_stage.SENTENCE_MIN_CHARS) -> dict:
    samples = tables.read_table(continue_dir, columns=["sample_id", "question_id", "text", "finish_reason", "boundary"])
    if samples is None:
        if not (Path(continue_dir) / tables.ShardedOutput.MANIFEST).exists():
            raise StageError(f"{continue_dir}: no continuations; run `dasd continue` first")
        samples = pa.table({c: pa.array([], pa.string()) for c in
                            ("sample_id", "question_id", "text", "finish_reason", "boundary")})
    tok = student.tokenizer()
    texts = samples.column("text").to_pylist()
    gens = pa.table({"response_id": samples.column("sample_id"), "question_id": samples.column("question_id"),
                     "text": samples.column("text"), "finish_reason": samples.column("finish_reason")})
    lengths = pa.table({"response_id": samples.column("sample_id"), "student_token_count": pa.array(
        [len(tok.encode(t, add_special_tokens=False)) for t in texts], pa.int64())})
    measured = filter_stage.measures(gens, lengths, fp, filter_stage.questions_of(fp, questions_dir), min_chars)
    boundary = pa.array([int(b != "ok") for b in samples.column("boundary").to_pylist()], pa.int64())
    measured = measured.append_column("boundary", boundary)  # no sample: still every column, 0 rows
    con, rejections, kept = filter_stage.decide(measured, {**fp.thresholds(), "boundary": 0.0}, "mixed_filter")
    if mfp and mfp.dedup:
        kept, dups = near_duplicates(kept, dict(zip(samples.column("sample_id").to_pylist(), texts)), dp or near.DedupParams())
        rejections = pa.concat_tables([rejections, dups])
        con.register("rejections", rejections)
    report = filter_stage.write(con, rejections, kept, samples.num_rows, out_dir, questions_dir)
    tables.write_json(report, metrics_path)
    return report


def main(ctx) -> None:
    r = run(ctx.section("filter"), ctx.section("student"), ctx.path("continue"), ctx.path("questions"), ctx.path("out"),
            ctx.path("metrics"), ctx.section("mixed_filter"), ctx.section("dedup"),
            min_chars=ctx.value("sentences.min_chars", filter_stage.SENTENCE_MIN_CHARS))
    print(f"mixed_filter: {r['input']} in -> {r['kept']} kept, {r['rejected']} rejected "
          f"(by rule: {r['rejections_by_rule']})")


STAGE = Stage("mixed_filter", main, sections={"filter": filter_stage.FilterParams, "student": ModelParams,
                                              "mixed_filter": MixedFilterParams, "dedup": near.DedupParams},
              params=("filter", "student", "mixed_filter", "dedup", "sentences.min_chars"),
              inputs={"continue": "data/continue", "questions": "data/questions", "miniature": "data/miniature"},
              outputs={"out": "data/mixed_filter", "metrics": "metrics/mixed_filter.json"})
