"""Stage `filter@T`: quality rules on every teacher response; Python measures, SQL decides.

`measure` computes one row of numbers per response (sizes, structure flags, Gopher-style repetition
statistics, the longest run of a repeated substring); sql/filter.sql unpivots them against the
thresholds of params (`filter.rules`) and writes one rejection row per failed rule
(response_id, stage, rule, value, threshold). A response is kept when no rule fails, so
kept + rejected = input exactly, per temperature, per domain and per rule (metrics/filter/T=<t>.json).

`dasd filter --input SRC --out DIR` runs the same rules on any dataset of responses (a local file or a
Hub dataset; options below, engine/filter_dataset.py, a mode of this command that is not part of the
stage), outside the pipeline and outside any project.

Rules (`value > threshold` rejects; the registry is engine/rules.py, defaults in parentheses):
"""
from __future__ import annotations

import re
from dataclasses import field
from pathlib import Path
from typing import Annotated

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from . import rules, sql, tables
from .kernels import repetition
from .kernels.measures import COLUMNS, measure_texts
from .params import NonNegative, ParamsError, StageError, schema
from .sentences import split
from .stages import Stage, T

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
# a loop repeats a piece of 10 to 4,096 characters (looping traces repeat units of 236 and 247
# characters, beyond the 200 first looked at); runaway loops run until max_tokens, so they show at the
# end: a piece of p characters is looked for in the last max(LOOP_TAIL, 9p) characters, 9 copies of it
# (engine/kernels/repetition.py), ~LOOP_TAIL x ln(444 / 10) + 9 x 3,650 comparisons per text.
LOOP_PERIODS = range(10, 4097)
LOOP_TAIL = 4000
SENTENCE_MIN_CHARS = 8  # params sentences.min_chars' default: the filter splits as the sentences stage does

DEFAULT_RULES = rules.DEFAULTS  # rule -> default threshold (None: off)


@schema
class FilterParams:
    rules: dict[str, Annotated[float, Field(ge=0)] | None] = field(default_factory=dict)  # rule -> threshold; null: off
    ngram_min_words: NonNegative = 100         # n-gram statistics only for responses this long

    def __post_init__(self):
        unknown = set(self.rules) - set(DEFAULT_RULES)
        if unknown:
            raise ParamsError(f"rules: unknown rule(s) {sorted(unknown)}; known: {', '.join(DEFAULT_RULES)}")

    def thresholds(self) -> dict[str, float]:
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


def measure(text: str, finish_reason: str, student_tokens: int, ngram_min_words: int = 100,
            min_chars: int = SENTENCE_MIN_CHARS) -> dict:
    """The definition of every measure, for one text, in plain Python and numpy; the stage computes
    the same numbers in one compiled pass per batch (`measures`)."""
    opened = text.lstrip().startswith(THINK_OPEN)
    closed = THINK_CLOSE in text
    reasoning = text.split(THINK_CLOSE, 1)[0].replace(THINK_OPEN, "", 1) if opened else ""
    answer = text.split(THINK_CLOSE, 1)[1] if closed else ""
    lines = text.split("\n")
    paras = re.split(r"\n\s*\n", text)
    sents = [text[a:b].strip() for a, b in split(text, min_chars)]
    m = {"length": student_tokens, "truncated": int(finish_reason == "length"),
         "tool_call": int(finish_reason == "tool_call"),
         "missing_reasoning": int(not opened or not reasoning.strip()),
         "unclosed_reasoning": int(opened and not closed), "empty_answer": int(not answer.strip())}
    m["dup_line_frac"], m["dup_line_char_frac"] = _dup_stats(lines)
    m["dup_para_frac"], m["dup_para_char_frac"] = _dup_stats(paras)
    m["dup_sentence_frac"], _ = _dup_stats(sents)
    # n-gram statistics describe long texts (Gopher applies them to documents of 50+ words); on a
    # short answer one repeated phrase is most of the text, so below ngram_min_words they read 0. The
    # reasoning and the answer are measured apart, the larger value counting: a final answer that
    # restates the reasoning repeats it once, which is not a loop (measured on the whole text, it
    # rejected short, clean traces)
    head, tail = text.split(THINK_CLOSE, 1) if closed else (text, "")
    parts = [repetition.ngram_stats_reference(x, ngram_min_words) for x in (head, tail)]
    m.update({k: max(p[k] for p in parts) for k in parts[0]})
    m["runaway_repeats"] = max(repetition.tandem_repeats_reference(text, LOOP_PERIODS, LOOP_TAIL),
                               _longest_run(sents))
    return m


def wrong_answer(text: str, reference: str) -> int:
    """1 unless the final answer (after </think>) is the reference answer (engine/answers.py)."""
    return int(rules.BY_NAME["wrong_answer"].measure(text, {"domain": "math", "reference_answer": reference}))


def measures(gens: pa.Table, scores: pa.Table, fp: FilterParams, questions: dict[str, dict] | None = None,
             min_chars: int = SENTENCE_MIN_CHARS) -> pa.Table:
    """One row of measures per response, a column per rule that is on: `measure`'s numbers, computed for
    the whole table by one compiled pass (engine/kernels/measures.py, held to `measure` by tests), the
    response rules from its record, and each Python rule that is on (engine/rules.py) per response.
    `questions`: question_id -> {domain, reference_answer}, for the Python rules. `min_chars`: params
    sentences.min_chars, so a duplicated sentence is one the sentences stage would split out."""
    score_row = pc.index_in(gens.column("response_id"), value_set=scores.column("response_id"))
    if score_row.null_count:
        missing = gens.column("response_id").filter(pc.is_null(score_row))[0]
        raise StageError(f"response {missing} has no student score: rerun `dasd score`")
    finish = gens.column("finish_reason")
    columns = {"response_id": gens.column("response_id"), "question_id": gens.column("question_id"),
               "length": pc.take(scores.column("student_token_count"), score_row).cast(pa.int64()),
               "truncated": pc.cast(pc.equal(finish, "length"), pa.int64()),
               "tool_call": pc.cast(pc.equal(finish, "tool_call"), pa.int64())}
    text_measures = measure_texts(gens.column("text"), min_chars, fp.ngram_min_words, LOOP_TAIL, LOOP_PERIODS)
    columns.update({name: text_measures[:, k] for k, name in enumerate(COLUMNS)})
    on = fp.thresholds()
    python_rules = [r for r in rules.RULES if r.by == "python" and r.name in on]
    if python_rules:
        texts = gens.column("text").to_pylist()
        asked = [(questions or {}).get(q, {}) for q in gens.column("question_id").to_pylist()]
        for rule in python_rules:
            columns[rule.name] = pa.array([float(rule.measure(t, q)) for t, q in zip(texts, asked)], pa.float64())
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


def questions_of(fp: FilterParams, questions_dir: Path) -> dict[str, dict]:
    """question_id -> {domain, reference_answer}, read only when a Python rule (wrong_answer) is on."""
    if not any(r.by == "python" and r.name in fp.thresholds() for r in rules.RULES):
        return {}
    qs = tables.read_table(questions_dir, columns=["question_id", "domain", "reference_answer"]).to_pylist()
    return {q.pop("question_id"): q for q in qs}


def run(fp: FilterParams, temperature: float, generations_dir: Path, scores_dir: Path, questions_dir: Path,
        out_dir: Path, metrics_path: Path, min_chars: int = SENTENCE_MIN_CHARS) -> dict:
    gens = tables.read_table(generations_dir, columns=["response_id", "question_id", "text", "finish_reason"])
    scores = tables.read_table(scores_dir, columns=["response_id", "student_token_count"])
    if gens is None or scores is None:
        raise StageError(f"{generations_dir} or {scores_dir}: run `dasd generate` and `dasd score` first")
    con, rejections, kept = decide(measures(gens, scores, fp, questions_of(fp, questions_dir), min_chars),
                                     fp.thresholds(), "filter")
    report = {"temperature": temperature, **write(con, rejections, kept, gens.num_rows, out_dir, questions_dir)}
    tables.write_json(report, metrics_path)
    return report


def main(ctx) -> None:
    fp, min_chars = ctx.section("filter"), ctx.value("sentences.min_chars", SENTENCE_MIN_CHARS)
    for t, item, d in ctx.temperatures():
        r = run(fp, t, ctx.path("generations", **item), ctx.path("student_scores", **item), ctx.path("questions"),
                ctx.path("out", **item), ctx.path("metrics", **item), min_chars=min_chars)
        print(f"filter {d}: {r['input']} in -> {r['kept']} kept, {r['rejected']} rejected "
              f"(by rule: {r['rejections_by_rule']})")


STAGE = Stage("filter", main, sections={"filter": FilterParams}, params=("filter", "sentences.min_chars"),
              inputs={"generations": f"data/generations/{T}",
                      "student_scores": f"data/student_scores/{T}", "questions": "data/questions"},
              outputs={"out": f"data/filter/{T}", "metrics": f"metrics/filter/{T}.json"},
              per_temperature=True)


__doc__ += rules.describe() + "\n"  # the rule list, from the registry
