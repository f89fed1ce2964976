"""Stage `select@T`: per question, keep the candidate(s) the student most needs to learn.

Candidates are the responses the filter kept. Every selector scores every candidate in SQL
(sql/select_candidates.sql) and one ranking rule picks the top_k per question (sql/select.sql):
- `das` (default): divergence-aware sampling, the largest count of teacher sentences
  (p_teacher − p_student > β, β from `sentences`), or their proportion (`das_measure: proportion`);
- `random`: the paper's baseline; `global_naturalness`: max mean student logprob;
- `rank_surprisal`: lowest sum(min(student rank, 100)) / sum(student surprisal) (the only score that
  reads every student token again, so `select_candidates` fills it only when it is the selector);
- `local_naturalness`: highest mean step logprob given a short window (stage `naturalness`, which
  only runs with `naturalness.enabled: true`).
Output data/select/T=<t>/selected.parquet (schema `tables.SELECTED`) and metrics/select/T=<t>.json.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import sql, tables
from .params import ParamsError, StageError

SELECTORS = ("das", "random", "global_naturalness", "local_naturalness", "rank_surprisal")


@dataclass
class SelectParams:
    selector: str = "das"
    top_k: int = 1
    das_measure: str = "count"  # count | proportion
    seed: int = 0

    def __post_init__(self):
        if self.selector not in SELECTORS:
            raise ParamsError(f"select: selector must be one of {SELECTORS}, not {self.selector!r}")
        if self.das_measure not in ("count", "proportion"):
            raise ParamsError(f"select: das_measure must be 'count' or 'proportion', not {self.das_measure!r}")
        if self.top_k < 1:
            raise ParamsError("select: top_k must be >= 1")


def score_candidates(con, sp: SelectParams, inputs: dict[str, Path]) -> None:
    """Table `select_candidates` on `con`: every response of `kept` with every selector's score.
    `inputs`: view name -> Parquet file/glob/folder for kept, sentences, student_scores, naturalness."""
    sql.create_views(con, inputs)
    sql.run_file(con, "select_candidates", das_measure=sp.das_measure, seed=sp.seed,
                 selector=sp.selector).create("select_candidates")
    if sp.selector == "local_naturalness" and not con.sql(
            "SELECT count(local_naturalness) FROM select_candidates").fetchall()[0][0]:
        raise ParamsError("select.selector local_naturalness needs the `naturalness` stage: set "
                          "naturalness.enabled: true and rerun")
    missing = con.sql("SELECT response_id FROM kept EXCEPT SELECT response_id FROM select_candidates "
                      "ORDER BY 1 LIMIT 5").fetchall()
    if missing:  # a kept response without sentences or student scores would vanish from the pool silently
        raise StageError(f"{inputs['kept']}: responses without sentences or student scores, e.g. "
                         f"{[m[0] for m in missing]}; rerun `dasd score` and `dasd sentences`")


def run(sp: SelectParams, temperature: float, inputs: dict[str, Path], out_dir: Path, metrics_path: Path,
        plot_path: Path | None = None) -> dict:
    """`inputs`: view name -> Parquet file/glob/folder for kept (the responses still in the pool after
    filter and dedup), sentences, student_scores, naturalness. `plot_path`: a CSV of response-probability histograms,
    selected vs random (sql/select_histogram.sql), a DVC plot."""
    con = sql.connect()
    score_candidates(con, sp, inputs)
    chosen = sql.run_file(con, "select", top_k=sp.top_k, temperature=temperature)
    chosen = chosen.to_arrow_table().select(tables.SELECTED.names).cast(tables.SELECTED)
    tables.write_parquet(chosen, Path(out_dir) / "selected.parquet")
    if plot_path is not None:
        con.register("selected", chosen)
        tables.write_csv(sql.run_file(con, "select_histogram").to_arrow_table(), plot_path)
    n_cand, n_q = con.execute("SELECT count(*), count(DISTINCT question_id) FROM select_candidates").fetchall()[0]
    report = {"temperature": temperature, "selector": sp.selector, "top_k": sp.top_k, "candidates": n_cand,
              "questions": n_q, "selected": chosen.num_rows,
              "mean_teacher_sentences_selected": _mean(chosen.column("teacher_sentences").to_pylist()),
              "mean_teacher_sentences_candidates": con.execute(
                  "SELECT avg(teacher_sentences) FROM select_candidates").fetchall()[0][0]}
    tables.write_json(report, metrics_path)
    return report


def _mean(xs):
    return sum(xs) / len(xs) if xs else None
