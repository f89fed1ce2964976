"""Stage `mixed_filter`: the off-policy pools' quality rules on every joined mixed-policy response.

The rules and thresholds are params `filter` itself (METHOD.md §6: "the same quality filters"),
measured on prefix + continuation, the response the student is trained on: length in student tokens
(the `student` tokenizer, which the rollout student shares), structure, repetition, truncation (the
teacher's continuation hit its cap), and the optional wrong_answer. One more rule, `boundary`,
rejects a sample whose joined text does not start with the student's prefix exactly (stage `continue`).
Output data/mixed_filter/{kept,rejections}.parquet; kept + rejected = continued samples.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from . import filter as rules
from . import tables
from .params import ModelParams


def run(fp: rules.FilterParams, student: ModelParams, continue_dir: Path, questions_dir: Path, out_dir: Path,
        metrics_path: Path) -> dict:
    samples = tables.read_table(continue_dir, columns=["sample_id", "question_id", "text", "finish_reason", "boundary"])
    if samples is None:
        if not (Path(continue_dir) / tables.ShardedOutput.MANIFEST).exists():
            raise FileNotFoundError(f"{continue_dir}: no continuations; run `dasd continue` first")
        samples = pa.table({c: pa.array([], pa.string()) for c in
                            ("sample_id", "question_id", "text", "finish_reason", "boundary")})
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(student.model, revision=student.revision)
    texts = samples.column("text").to_pylist()
    gens = pa.table({"response_id": samples.column("sample_id"), "question_id": samples.column("question_id"),
                     "text": samples.column("text"), "finish_reason": samples.column("finish_reason")})
    lengths = pa.table({"response_id": samples.column("sample_id"), "student_token_count": pa.array(
        [len(tok.encode(t, add_special_tokens=False)) for t in texts], pa.int64())})
    measured = rules.measures(gens, lengths, fp, rules.references(fp, questions_dir))
    boundary = pa.array([int(b != "ok") for b in samples.column("boundary").to_pylist()], pa.int64())
    if measured.num_rows:
        measured = measured.append_column("boundary", boundary)
    else:  # no sample: the columns the rule SQL unpivots still have to exist
        measured = pa.table({"response_id": pa.array([], pa.string()), "question_id": pa.array([], pa.string()),
                             **{r: pa.array([], pa.float64()) for r in [*fp.thresholds(), "boundary"]}})
    con, rejections, kept = rules.decide(measured, {**fp.thresholds(), "boundary": 0.0}, "mixed_filter")
    report = rules.write(con, rejections, kept, samples.num_rows, out_dir, questions_dir)
    tables.write_json(report, metrics_path)
    return report
