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
The alignment and aggregation run in DuckDB (sql/sentences.sql).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from . import sql, tables

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
    for m in _END.finditer(text):
        if not any(a < m.end() < b for a, b in blocks):
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


SPANS = pa.schema([("response_id", pa.string()), ("sentence_index", pa.int32()),
                   ("char_start", pa.int32()), ("char_end", pa.int32())])


def sentence_spans(generations: pa.Table, min_chars: int) -> pa.Table:
    rids, idx, starts, ends = [], [], [], []
    for rid, text in zip(generations.column("response_id").to_pylist(), generations.column("text").to_pylist()):
        for k, (a, b) in enumerate(split(text, min_chars)):
            rids.append(rid)
            idx.append(k)
            starts.append(a)
            ends.append(b)
    return pa.table([rids, idx, starts, ends], schema=SPANS)


def run(sp: SentencesParams, temperature: float, generations_dir: Path, scores_dir: Path, out_dir: Path,
        metrics_path: Path) -> dict:
    gens = tables.read_table(generations_dir, columns=["response_id", "text"])
    if gens is None:
        raise FileNotFoundError(f"{generations_dir}: no generations; run `dasd generate` first")
    if tables.read_table(scores_dir, columns=["response_id"]) is None:
        raise FileNotFoundError(f"{scores_dir}: no student scores; run `dasd score` first")
    con = sql.connect(memory_limit=sp.memory_limit, threads=sp.threads,
                      temp_directory=str(Path(out_dir).parent / ".duckdb-tmp"))
    con.register("sentence_spans", sentence_spans(gens, sp.min_chars))
    sql.create_views(con, {"generations": generations_dir, "student_scores": scores_dir})
    rel = sql.run_file(con, "sentences", beta=sp.beta)
    table = rel.to_arrow_table().cast(tables.SENTENCES)
    tables.write_parquet(table, Path(out_dir) / "sentences.parquet")
    types = table.column("type").value_counts().to_pylist()
    summary = {"temperature": temperature, "beta": sp.beta, "responses": gens.num_rows,
               "sentences": table.num_rows, "by_type": {t["values"]: t["counts"] for t in types}}
    tables.write_json(summary, metrics_path)
    return summary
