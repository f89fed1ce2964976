"""Stage `select@T`: per question, keep the candidate(s) the student most needs to learn.

Candidates are the responses the filter and dedup kept. Every selector scores every candidate in SQL
(sql/select_candidates.sql, from the registry in engine/candidates.py) and one ranking rule picks the
top_k per question by params `select.selector` (sql/select.sql), ties broken by response_id.
Output data/select/T=<t>/selected.parquet (schema `tables.SELECTED`) and metrics/select/T=<t>.json.

Selectors:
"""
from __future__ import annotations

from pathlib import Path

from . import sql, tables
from .candidates import POOL_INPUTS, REGISTRY, SelectParams, pool, score_candidates
from .stages import Stage, T


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



def main(ctx) -> None:
    sp = ctx.section("select")
    for t, item, d in ctx.temperatures():
        r = run(sp, t, pool(ctx, item, ctx.path("dedup", **item) / "kept.parquet"), ctx.path("out", **item),
                ctx.path("metrics", **item), ctx.path("plot", **item))
        print(f"select {d}: {r['selected']} chosen by {r['selector']} from {r['candidates']} candidates "
              f"of {r['questions']} questions")


STAGE = Stage("select", main, sections={"select": SelectParams}, params=("select",),
              inputs={"dedup": f"data/dedup/{T}", **POOL_INPUTS},
              outputs={"out": f"data/select/{T}", "plot": f"plots/select/{T}.csv",
                       "metrics": f"metrics/select/{T}.json"}, per_temperature=True)


__doc__ += "\n".join(f"- {s.name}: {s.doc}" for s in REGISTRY) + "\n"  # from the registry
