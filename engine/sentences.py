"""Stage `sentences@T`: each response split into sentences, both models' tokens aligned to them by
character span, and each sentence typed by the divergence between teacher and student.

Sentence rules (rule-based, one pass of regular expressions, documented so results can be audited):
1. a newline ends a sentence (a run of newlines stays with the sentence it ends);
2. inside a line, `.`, `!` or `?` (plus closing quotes/brackets) followed by spaces and an uppercase
   letter, a quote, a bracket or `<` ends a sentence — "3.5", "e.g. x" and "x = 2. 4 + 1" do not split;
3. a fenced code block (``` … ```) or display math ($$ … $$, \\[ … \\]) is one sentence, so code and
   derivations do not explode into line fragments;
4. a piece with fewer than `min_chars` non-space characters joins the sentence before it.
Sentence spans tile the text: every character, hence every token, lands in exactly one sentence.

Token -> sentence: the sentence holding the token's first character (an empty span: its position).
Sentence probability under a model = exp(mean logprob of its tokens) (geometric mean of token
probabilities). Type for margin β: teacher if p_teacher − p_student > β, student if p_student −
p_teacher > β, shared otherwise; `unaligned` when a model has no token starting in the sentence.
The alignment is a compiled merge walk (engine/kernels/align.py); means, probabilities and types are
decided in DuckDB (sql/sentences.sql). Responses stream through in batches (a DuckDB join of
generations and student scores ordered by response_id, within `memory_limit`), one shard per batch.
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from . import sql, tables
from .kernels.align import align

_BLOCK = re.compile(r"```.*?(?:```|\Z)|\$\$.*?(?:\$\$|\Z)|\\\[.*?(?:\\\]|\Z)", re.S)
_END = re.compile(r"\n+|(?<=[.!?])[\"'”’)\]]*[ \t]+(?=[A-Z\"'“‘(\[<])")


@dataclass
class SentencesParams:
    beta: float = 0.1
    min_chars: int = 8
    memory_limit: str | None = "2GB"
    threads: int | None = None


def split(text: str, min_chars: int = 8) -> list[tuple[int, int]]:
    """Sentence spans [(start, end)] tiling `text` (empty text -> one empty sentence)."""
    cuts = set()
    blocks = [(m.start(), m.end()) for m in _BLOCK.finditer(text)]
    for a, b in blocks:
        cuts.update((a, b))
    block_starts = [a for a, _ in blocks]
    for m in _END.finditer(text):
        k = bisect.bisect_left(block_starts, m.end()) - 1  # the last block starting before this cut
        if k < 0 or m.end() >= blocks[k][1]:
            cuts.add(m.end())
    bounds = sorted(c for c in cuts if 0 < c < len(text))
    spans, start = [], 0
    for c in bounds + [len(text)]:
        piece = text[start:c]
        if spans and len("".join(piece.split())) < min_chars:
            spans[-1] = (spans[-1][0], c)  # too short to stand alone: join the sentence before
        else:
            spans.append((start, c))
        start = c
    if len(spans) > 1 and len(text[spans[0][0]:spans[0][1]].strip()) < min_chars:
        spans[0:2] = [(spans[0][0], spans[1][1])]  # a short first piece ("<think>") joins the next
    return spans or [(0, 0)]


def sentence_sums(batch: pa.RecordBatch, spans: list[list[tuple[int, int]]]) -> pa.Table:
    """One row per response × sentence: the spans and each model's token count and logprob sum.
    `batch`: response_id, question_id, temperature, teacher_starts, teacher_logprobs, student_starts,
    student_logprobs (one row per response); `spans`: the sentence spans of each response."""
    per = np.array([len(s) for s in spans], dtype=np.int64)
    sent_off = np.concatenate(([0], np.cumsum(per)))
    flat = np.array([span for s in spans for span in s], dtype=np.int32).reshape(-1, 2)
    row = np.repeat(np.arange(len(spans)), per)
    out = {"question_id": batch.column("question_id").take(row), "temperature": batch.column("temperature").take(row),
           "response_id": batch.column("response_id").take(row),
           "sentence_index": np.concatenate([np.arange(n, dtype=np.int32) for n in per]) if len(per) else
           np.zeros(0, np.int32), "char_start": flat[:, 0], "char_end": flat[:, 1]}
    for side in ("teacher", "student"):
        starts, logprobs = batch.column(f"{side}_starts"), batch.column(f"{side}_logprobs")
        if starts.null_count or logprobs.null_count:
            raise ValueError(f"{side} tokens missing (null) for some response of {batch.column('response_id')[0]}…")
        out[f"{side}_tokens"], out[f"{side}_logprob_sum"] = align(sent_off, flat[:, 0], starts, logprobs)
    return pa.table(out)


# one row per response with both models' tokens, in a fixed order (so shards are reproducible)
_PAIRED = """SELECT g.response_id, g.question_id, g.temperature, g.text,
       g.token_starts AS teacher_starts, g.token_logprobs AS teacher_logprobs,
       s.token_starts AS student_starts, s.student_logprobs
FROM generations g JOIN student_scores s USING (response_id)
ORDER BY g.response_id"""


def write_sentences(con, beta: float, out_dir: Path, spans_of, batch_rows: int = 4096) -> tuple[int, dict]:
    """Stream the paired responses of `con` (views generations, student_scores) in batches: spans by
    `spans_of(batch)`, alignment, then sql/sentences.sql; one shard per batch. Returns (responses, by type)."""
    for old in Path(out_dir).glob("*.parquet"):  # a rerun replaces every shard
        old.unlink()
    typing = con.cursor()  # a second cursor: the paired stream stays open while each batch is typed
    typing.execute("SET VARIABLE beta = ?", [beta])
    query = (sql.SQL_DIR / "sentences.sql").read_text()
    n_resp, by_type = 0, {}
    for part, batch in enumerate(con.sql(_PAIRED).to_arrow_reader(batch_rows)):
        typing.register("sentence_sums", sentence_sums(batch, spans_of(batch)))
        table = typing.sql(query).to_arrow_table().cast(tables.SENTENCES)
        typing.unregister("sentence_sums")
        tables.write_parquet(table, Path(out_dir) / f"part-{part:05d}.parquet")
        n_resp += batch.num_rows
        for t in table.column("type").value_counts().to_pylist():
            by_type[t["values"]] = by_type.get(t["values"], 0) + t["counts"]
    return n_resp, dict(sorted(by_type.items()))


def run(sp: SentencesParams, temperature: float, generations_dir: Path, scores_dir: Path, out_dir: Path,
        metrics_path: Path, batch_rows: int = 4096) -> dict:
    if tables.read_table(generations_dir, columns=["response_id"]) is None:
        raise FileNotFoundError(f"{generations_dir}: no generations; run `dasd generate` first")
    if tables.read_table(scores_dir, columns=["response_id"]) is None:
        raise FileNotFoundError(f"{scores_dir}: no student scores; run `dasd score` first")
    out_dir = Path(out_dir)
    con = sql.connect(memory_limit=sp.memory_limit, threads=sp.threads, temp_directory=str(out_dir.parent / ".duckdb-tmp"))
    sql.create_views(con, {"generations": generations_dir, "student_scores": scores_dir})
    missing = con.sql("SELECT response_id FROM generations EXCEPT SELECT response_id FROM student_scores "
                      "ORDER BY 1 LIMIT 5").fetchall()
    if missing:
        raise ValueError(f"{scores_dir}: no student score for responses {[m[0] for m in missing]}; rerun `dasd score`")
    n_resp, by_type = write_sentences(con, sp.beta, out_dir, lambda batch: [
        split(t, sp.min_chars) for t in batch.column("text").to_pylist()], batch_rows)
    summary = {"temperature": temperature, "beta": sp.beta, "responses": n_resp,
               "sentences": sum(by_type.values()), "by_type": by_type}
    tables.write_json(summary, metrics_path)
    return summary
