"""Stage `filter@T`: quality rules on every teacher response; Python measures, SQL decides.

`measure` computes one row of numbers per response (sizes, structure flags, Gopher-style repetition
statistics, the longest run of a repeated substring); sql/filter.sql unpivots them against the
thresholds of params (`filter.rules`) and writes one rejection row per failed rule
(response_id, stage, rule, value, threshold). A response is kept when no rule fails, so
kept + rejected = input exactly, per temperature, per domain and per rule (metrics/filter/T=<t>.json).

Rules (each `value > threshold` rejects):
- length: the response in *student* tokens (the training context, 65,536 in the paper);
- truncated: finish_reason = length; tool_call: a tool/function call in the response;
- missing_reasoning / unclosed_reasoning / empty_answer: the `<think>…</think>answer` structure;
- dup_line_frac, dup_para_frac, dup_sentence_frac (share of items that repeat an earlier one) and
  dup_line_char_frac, dup_para_char_frac (share of characters in them), as in Gopher;
- top_{2,3,4}gram_char_frac: characters covered by the most frequent word n-gram;
- dup_{5..10}gram_char_frac: characters covered by word n-grams that occur more than once;
- runaway_repeats: the most consecutive repeats of one substring of 10-200 characters (loops);
- wrong_answer (off by default, as in the paper; `rules: {wrong_answer: 0}` turns it on): for math
  questions with a reference answer, 1 unless the final answer (the last `\\boxed{}` after `</think>`;
  none without `</think>`) equals the reference by math-verify (engine/answers.py); other questions 0.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from . import sql, tables
from .kernels import repetition
from .kernels.measures import COLUMNS, measure_texts
from .params import StageError
from .sentences import split

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
LOOP_TAIL = 4000  # runaway loops run until max_tokens: they show in the tail
LOOP_PERIODS = range(10, 201)  # a loop repeats a piece of 10-200 characters
SENTENCE_MIN_CHARS = 8  # the sentences stage's default: duplicated sentences are the same sentences

# Defaults. Gopher's web-text values where real reasoning traces pass them (paragraph, sentence and
# top-n-gram rules); where they do not, the 99th percentile of 870 real traces (DeepSeek-R1, R1-distill,
# Qwen2.5-Math CoT in ../shared/data/traces), rounded up: long reasoning repeats lines ("Wait,") and
# 5-10-grams far more than web pages — Gopher's 0.15 for 5-grams rejects over half of those traces.
DEFAULT_RULES = {
    "length": 65536, "truncated": 0, "tool_call": 0, "missing_reasoning": 0, "unclosed_reasoning": 0,
    "empty_answer": 0, "dup_line_frac": 0.5, "dup_para_frac": 0.3, "dup_sentence_frac": 0.3,
    "dup_line_char_frac": 0.2, "dup_para_char_frac": 0.2, "top_2gram_char_frac": 0.2,
    "top_3gram_char_frac": 0.18, "top_4gram_char_frac": 0.16, "dup_5gram_char_frac": 0.5,
    "dup_6gram_char_frac": 0.45, "dup_7gram_char_frac": 0.44, "dup_8gram_char_frac": 0.4,
    "dup_9gram_char_frac": 0.36, "dup_10gram_char_frac": 0.32, "runaway_repeats": 8, "wrong_answer": None,
}


@dataclass
class FilterParams:
    rules: dict = field(default_factory=dict)  # rule -> threshold; a rule set to null is off
    ngram_min_words: int = 100                 # n-gram statistics only for responses this long

    def thresholds(self) -> dict[str, float]:
        unknown = set(self.rules) - set(DEFAULT_RULES)
        if unknown:
            from .params import ParamsError

            raise ParamsError(f"filter.rules: unknown rule(s) {sorted(unknown)}; known: {sorted(DEFAULT_RULES)}")
        merged = dict(DEFAULT_RULES, **self.rules)
        return {k: float(v) for k, v in merged.items() if v is not None}


def _dup_stats(items: list[str]) -> tuple[float, float]:
    """(share of items equal to an earlier one, share of characters in those items)."""
    items = [x for x in items if x.strip()]
    if not items:
        return 0.0, 0.0
    seen, dup, dup_chars = set(), 0, 0
    for x in items:
        if x in seen:
            dup += 1
            dup_chars += len(x)
        seen.add(x)
    return dup / len(items), dup_chars / max(1, sum(len(x) for x in items))


def _longest_run(items: list[str]) -> int:
    best = run = 1
    for a, b in zip(items, items[1:]):
        run = run + 1 if a == b and a else 1
        best = max(best, run)
    return best if items else 1


def measure(text: str, finish_reason: str, student_tokens: int, ngram_min_words: int = 100) -> dict:
    """The definition of every measure, for one text, in plain Python and numpy; the stage computes
    the same numbers in one compiled pass per batch (`measures`)."""
    opened = text.lstrip().startswith(THINK_OPEN)
    closed = THINK_CLOSE in text
    reasoning = text.split(THINK_CLOSE, 1)[0].replace(THINK_OPEN, "", 1) if opened else ""
    answer = text.split(THINK_CLOSE, 1)[1] if closed else ""
    lines = text.split("\n")
    paras = re.split(r"\n\s*\n", text)
    sents = [text[a:b].strip() for a, b in split(text, SENTENCE_MIN_CHARS)]
    m = {"length": student_tokens, "truncated": int(finish_reason == "length"),
         "tool_call": int(finish_reason == "tool_call"),
         "missing_reasoning": int(not opened or not reasoning.strip()),
         "unclosed_reasoning": int(opened and not closed), "empty_answer": int(not answer.strip())}
    m["dup_line_frac"], m["dup_line_char_frac"] = _dup_stats(lines)
    m["dup_para_frac"], m["dup_para_char_frac"] = _dup_stats(paras)
    m["dup_sentence_frac"], _ = _dup_stats(sents)
    # n-gram statistics describe long texts (Gopher applies them to documents of 50+ words); on a
    # short answer one repeated phrase is most of the text, so below ngram_min_words they read 0
    m.update(repetition.ngram_stats_reference(text, ngram_min_words))
    m["runaway_repeats"] = max(repetition.tandem_repeats_reference(text[-LOOP_TAIL:], LOOP_PERIODS),
                               _longest_run(sents))
    return m


def wrong_answer(text: str, reference: str) -> int:
    """1 unless the final answer (after </think>) is the reference answer (engine/answers.py)."""
    from .answers import math_correct

    return int(not math_correct(text, reference))


def measures(gens: pa.Table, scores: pa.Table, fp: FilterParams, references: dict[str, tuple] | None = None) -> pa.Table:
    """One row of measures per response: `measure`'s numbers, computed for the whole table by one
    compiled pass (engine/kernels/measures.py, held to `measure` by tests). `references`: question_id ->
    (domain, reference answer), used by the wrong_answer rule when it is on."""
    score_row = pc.index_in(gens.column("response_id"), value_set=scores.column("response_id"))
    if score_row.null_count:
        missing = gens.column("response_id").filter(pc.is_null(score_row))[0]
        raise StageError(f"response {missing} has no student score: rerun `dasd score`")
    finish = gens.column("finish_reason")
    columns = {"response_id": gens.column("response_id"), "question_id": gens.column("question_id"),
               "length": pc.take(scores.column("student_token_count"), score_row).cast(pa.int64()),
               "truncated": pc.cast(pc.equal(finish, "length"), pa.int64()),
               "tool_call": pc.cast(pc.equal(finish, "tool_call"), pa.int64())}
    text_measures = measure_texts(gens.column("text"), SENTENCE_MIN_CHARS, fp.ngram_min_words, LOOP_TAIL, LOOP_PERIODS)
    columns.update({name: text_measures[:, k] for k, name in enumerate(COLUMNS)})
    if "wrong_answer" in fp.thresholds():
        refs = [(references or {}).get(qid, (None, None)) for qid in gens.column("question_id").to_pylist()]
        columns["wrong_answer"] = pa.array(
            [wrong_answer(text, ref) if domain == "math" and ref else 0
             for text, (domain, ref) in zip(gens.column("text").to_pylist(), refs)], pa.int64())
    return pa.table(columns)


def decide(measures_table: pa.Table, thresholds: dict[str, float], stage: str):
    """sql/filter.sql over one row of measures per response: (connection holding views `measures` and
    `rejections`, rejections, kept) — one rejection row per failed rule, kept = responses with none."""
    con = sql.connect()
    con.register("measures", measures_table)
    con.register("thresholds", pa.table({"rule": list(thresholds), "threshold": list(thresholds.values())}))
    rejections = sql.run_file(con, "filter", stage=stage).to_arrow_table().cast(tables.REJECTIONS)
    con.register("rejections", rejections)
    kept = con.sql("SELECT response_id, question_id FROM measures WHERE response_id NOT IN "
                   "(SELECT response_id FROM rejections) ORDER BY response_id").to_arrow_table()
    return con, rejections, kept


def write(con, rejections: pa.Table, kept: pa.Table, n_input: int, out_dir: Path, questions_dir: Path) -> dict:
    """Both tables into out_dir (replacing it whole: never one new table beside an old one), and the counts
    every report of a rule stage holds."""
    with tables.replacing(out_dir) as tmp:
        tables.write_parquet(rejections, tmp / "rejections.parquet")
        tables.write_parquet(kept, tmp / "kept.parquet")
    sql.create_views(con, {"questions": questions_dir})
    report = {"input": n_input, "kept": kept.num_rows, "rejected": n_input - kept.num_rows,
              "rejections_by_rule": dict(con.sql("SELECT rule, count(*) FROM rejections GROUP BY 1 ORDER BY 1").fetchall()),
              "by_domain": {d: {"input": i, "kept": k} for d, i, k in con.sql(
                  "SELECT q.domain, count(*), count(*) FILTER (m.response_id NOT IN (SELECT response_id FROM rejections)) "
                  "FROM measures m JOIN questions q USING (question_id) GROUP BY 1 ORDER BY 1").fetchall()}}
    assert report["kept"] + report["rejected"] == report["input"]
    return report


def references(fp: FilterParams, questions_dir: Path) -> dict[str, tuple]:
    """question_id -> (domain, reference answer), read only when the wrong_answer rule is on."""
    if "wrong_answer" not in fp.thresholds():
        return {}
    qs = tables.read_table(questions_dir, columns=["question_id", "domain", "reference_answer"])
    return {q: (d, a) for q, d, a in zip(*(qs.column(c).to_pylist() for c in qs.column_names))}


def run(fp: FilterParams, temperature: float, generations_dir: Path, scores_dir: Path, questions_dir: Path,
        out_dir: Path, metrics_path: Path) -> dict:
    gens = tables.read_table(generations_dir, columns=["response_id", "question_id", "text", "finish_reason"])
    scores = tables.read_table(scores_dir, columns=["response_id", "student_token_count"])
    if gens is None or scores is None:
        raise FileNotFoundError(f"{generations_dir} or {scores_dir}: run `dasd generate` and `dasd score` first")
    con, rejections, kept = decide(measures(gens, scores, fp, references(fp, questions_dir)), fp.thresholds(), "filter")
    report = {"temperature": temperature, **write(con, rejections, kept, gens.num_rows, out_dir, questions_dir)}
    tables.write_json(report, metrics_path)
    return report
