"""Stage `sentences@T`: each response split into sentences, both models' tokens aligned to them by
character span, and each sentence typed by the divergence between teacher and student.

Sentence rules (rule-based, documented so results can be audited; `split` states them as regular
expressions, engine/kernels/split.py runs them compiled over a batch, tests hold the two equal):
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
decided in DuckDB (sql/sentences.sql). Responses stream through in batches: `score` writes its rows
in the generations' order, so both tables are read side by side, never joined; one shard per batch.
"""
from __future__ import annotations

import bisect
import re
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from . import sql, tables
from .kernels.align import align
from .kernels.split import split_texts
from .params import Count, Margin, MemorySize, NonNegative, StageError, schema
from .stages import Stage, T

_BLOCK = re.compile(r"```.*?(?:```|\Z)|\$\$.*?(?:\$\$|\Z)|\\\[.*?(?:\\\]|\Z)", re.S)
_END = re.compile(r"\n+|(?<=[.!?])[\"'”’)\]]*[ \t]+(?=[A-Z\"'“‘(\[<])")


@schema
class SentencesParams:
    beta: Margin = 0.1                     # teacher sentence: p_teacher - p_student > beta
    min_chars: NonNegative = 8             # shorter pieces join the sentence before them
    memory_limit: MemorySize | None = "2GB"  # DuckDB spills to disk beyond this
    threads: Count | None = None


def split(text: str, min_chars: int = 8) -> list[tuple[int, int]]:
    """Sentence spans [(start, end)] tiling `text` (empty text -> one empty sentence). The definition:
    the stage runs the same rules compiled over a whole batch (engine/kernels/split.py)."""
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


def sentence_sums(batch: pa.RecordBatch, spans: tuple[np.ndarray, np.ndarray, np.ndarray]) -> pa.Table:
    """One row per response × sentence: the spans and each model's token count and logprob sum.
    `batch`: response_id, question_id, temperature, teacher_starts, teacher_logprobs, student_starts,
    student_logprobs (one row per response); `spans`: (sent_off, starts, ends), response r's sentences
    being starts[sent_off[r]:sent_off[r + 1]] (kernels.split.sentence_spans)."""
    sent_off, starts, ends = spans
    per = np.diff(sent_off)
    row = np.repeat(np.arange(len(per)), per)
    out = {"question_id": batch.column("question_id").take(row), "temperature": batch.column("temperature").take(row),
           "response_id": batch.column("response_id").take(row),
           "sentence_index": (np.arange(len(starts)) - np.repeat(sent_off[:-1], per)).astype(np.int32),
           "char_start": starts, "char_end": ends}
    for side in ("teacher", "student"):
        tokens, logprobs = batch.column(f"{side}_starts"), batch.column(f"{side}_logprobs")
        if tokens.null_count or logprobs.null_count:
            raise StageError(f"{side} tokens missing (null) for some response of {batch.column('response_id')[0]}…")
        out[f"{side}_tokens"], out[f"{side}_logprob_sum"] = align(sent_off, starts, tokens, logprobs)
    return pa.table(out)


_GEN_COLUMNS = ["response_id", "question_id", "temperature", "text", "token_starts", "token_logprobs"]
_SCORE_COLUMNS = ["response_id", "token_starts", "student_logprobs"]


def _batches(folder: Path, columns: list[str], batch_rows: int):
    for f in sorted(Path(folder).glob("*.parquet")):
        yield from pq.ParquetFile(f).iter_batches(batch_size=batch_rows, columns=columns)


def paired_batches(generations_dir: Path, scores_dir: Path, batch_rows: int = 4096):
    """Generations and their student scores side by side, one row per response, streamed: `score` writes
    its rows in the generations' order, so the two tables pair row by row without a join (memory stays
    at a batch). Columns: response_id, question_id, temperature, text, teacher_starts, teacher_logprobs,
    student_starts, student_logprobs."""
    scores, pending = _batches(scores_dir, _SCORE_COLUMNS, batch_rows), None
    for gen in _batches(generations_dir, _GEN_COLUMNS, batch_rows):
        parts, need = [], gen.num_rows
        while need:
            if pending is None or pending.num_rows == 0:
                pending = next(scores, None)
                if pending is None:
                    raise StageError(f"{scores_dir}: fewer student scores than generations; rerun `dasd score`")
            take = min(need, pending.num_rows)
            parts.append(pending.slice(0, take))
            pending, need = pending.slice(take), need - take
        score = pa.Table.from_batches(parts, schema=parts[0].schema) if parts else None
        if score is not None and not score.column("response_id").equals(pa.chunked_array([gen.column("response_id")])):
            raise StageError(f"{scores_dir}: student scores are not in the generations' order (scored by an older "
                             "engine, or for other generations): rerun `dasd score`")
        yield pa.RecordBatch.from_pydict({
            "response_id": gen.column("response_id"), "question_id": gen.column("question_id"),
            "temperature": gen.column("temperature"), "text": gen.column("text"),
            "teacher_starts": gen.column("token_starts"), "teacher_logprobs": gen.column("token_logprobs"),
            "student_starts": score.column("token_starts").combine_chunks(),
            "student_logprobs": score.column("student_logprobs").combine_chunks()})
    if (pending is not None and pending.num_rows) or next(scores, None) is not None:
        raise StageError(f"{scores_dir}: more student scores than generations; rerun `dasd score`")


def write_sentences(batches, beta: float, out_dir: Path, spans_of, con=None, total: int | None = None) -> tuple[int, dict]:
    """For each batch of paired responses (`paired_batches`): sentence spans by `spans_of(batch)` (as
    `sentence_sums` takes them), alignment, then sql/sentences.sql; one shard per batch. Returns
    (responses, sentences by type). The next batch is read by a thread while this one is computed (a
    second thread writing shards behind measured slower: two cores are already busy). `total`:
    responses, for a progress bar. `out_dir` is expected empty (`run` writes into a fresh folder)."""
    con = con or sql.connect()
    con.execute("SET VARIABLE beta = ?", [beta])
    query = (sql.SQL_DIR / "sentences.sql").read_text()
    n_resp, by_type = 0, {}
    # closed whatever happens, so an error's one line starts on a line of its own
    with tqdm(total=total, unit="response", desc="sentences", disable=total is None, file=sys.stderr,
              dynamic_ncols=True) as bar:
        for part, batch in enumerate(tables.read_ahead(batches)):
            con.register("sentence_sums", sentence_sums(batch, spans_of(batch)))
            table = con.sql(query).to_arrow_table().cast(tables.SENTENCES)
            con.unregister("sentence_sums")
            # derived in seconds from the tables above it: fast compression rather than the smallest file
            tables.write_parquet(table, Path(out_dir) / f"part-{part:05d}.parquet", compression="lz4")
            n_resp += batch.num_rows
            for t in table.column("type").value_counts().to_pylist():
                by_type[t["values"]] = by_type.get(t["values"], 0) + t["counts"]
            bar.update(batch.num_rows)
    return n_resp, dict(sorted(by_type.items()))


def run(sp: SentencesParams, temperature: float, generations_dir: Path, scores_dir: Path, out_dir: Path,
        metrics_path: Path, batch_rows: int = 4096) -> dict:
    if tables.read_table(generations_dir, columns=["response_id"]) is None:
        raise StageError(f"{generations_dir}: no generations; run `dasd generate` first")
    if tables.read_table(scores_dir, columns=["response_id"]) is None:
        raise StageError(f"{scores_dir}: no student scores; run `dasd score` first")
    con = sql.connect(memory_limit=sp.memory_limit, threads=sp.threads,
                      temp_directory=str(Path(out_dir).parent / ".duckdb-tmp"))
    total = sum(pq.ParquetFile(f).metadata.num_rows for f in Path(generations_dir).glob("*.parquet"))
    # written beside the old shards, which stay until every new one is on disk (a full disk loses nothing)
    with tables.replacing(out_dir) as tmp:
        n_resp, by_type = write_sentences(paired_batches(generations_dir, scores_dir, batch_rows), sp.beta, tmp,
                                          lambda batch: split_texts(batch.column("text"), sp.min_chars),
                                          con, total)
    summary = {"temperature": temperature, "beta": sp.beta, "responses": n_resp,
               "sentences": sum(by_type.values()), "by_type": by_type}
    tables.write_json(summary, metrics_path)
    return summary


def main(ctx) -> None:
    sp = ctx.section("sentences")
    for t, item, d in ctx.temperatures():
        r = run(sp, t, ctx.path("generations", **item), ctx.path("student_scores", **item), ctx.path("out", **item),
                ctx.path("metrics", **item))
        print(f"sentences {d}: {r['sentences']} sentences in {r['responses']} responses, by type {r['by_type']}")


STAGE = Stage("sentences", main, sections={"sentences": SentencesParams}, params=("sentences",),
              inputs={"generations": f"data/generations/{T}",
                      "student_scores": f"data/student_scores/{T}"},
              outputs={"out": f"data/sentences/{T}", "metrics": f"metrics/sentences/{T}.json"},
              per_temperature=True,
              help="split responses into sentences, align both models' tokens, type each (teacher | student | shared)")
