"""Stage `select@T`: per question, keep the candidate(s) the student most needs to learn.

Candidates are the responses the filter and dedup kept. Every selector scores every candidate in SQL
(sql/select_candidates.sql, from the registry in engine/candidates.py) and one ranking rule picks the
top_k per question by params `select.selector` (sql/select.sql); an equal score goes to the selector's
own second key (DAS: the mean margin of the teacher sentences), then to response_id.
Output data/select/T=<t>/selected.parquet (schema `tables.SELECTED`) and metrics/select/T=<t>.json: the
candidates' sentence types and how the selector decided (sql/select_report.sql: ties on the score, ties
left to response_id, choices that are not the longest candidate, choices that differ from random's).

Selectors:
"""
from __future__ import annotations

from pathlib import Path

from . import sql, tables
from .candidates import POOL_INPUTS, REGISTRY, SelectParams, pool, ranking, score_candidates
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
    con.register("selected", chosen)
    if plot_path is not None:
        tables.write_csv(sql.run_file(con, "select_histogram").to_arrow_table(), plot_path)
    n_cand, n_q, teacher, student, shared, total = con.execute(
        "SELECT count(*), count(DISTINCT question_id), sum(teacher_sentences), sum(student_sentences), "
        "sum(shared_sentences), sum(sentences) FROM select_candidates").fetchall()[0]
    report = {"temperature": temperature, "selector": sp.selector, "top_k": sp.top_k, "candidates": n_cand,
              "questions": n_q, "selected": chosen.num_rows, "ranking": ranking(sp.selector),
              "mean_teacher_sentences_selected": _mean(chosen.column("teacher_sentences").to_pylist()),
              "mean_teacher_sentences_candidates": teacher / n_cand if n_cand else None,
              # the candidates' sentences by type: DAS has something to choose only where all three occur
              "sentence_types": {k: _share(v, total) for k, v in (("teacher", teacher), ("student", student),
                                                                  ("shared", shared),
                                                                  ("unaligned", (total or 0) - (teacher or 0)
                                                                   - (student or 0) - (shared or 0)))},
              "decisions": _decisions(sql.run_file(con, "select_report").to_arrow_table().to_pylist())}
    tables.write_json(report, metrics_path)
    return report


def _decisions(rows) -> dict:
    """Shares over the questions with two or more candidates (sql/select_report.sql): how often the top
    score ties, how often response_id decides, how often the choice is not the longest candidate (for DAS
    by count: how often it is more than "the longest response"), and how often it is not random's."""
    n = len(rows)
    return {"questions_with_choice": n,
            **{name: _share(sum(bool(r[name]) for r in rows), n)
               for name in ("tie_on_score", "to_response_id", "not_most_sentences", "differs_from_random")}}


def _share(k, n):
    return round(k / n, 4) if n else None


def _mean(xs):
    return sum(xs) / len(xs) if xs else None


def main(ctx) -> None:
    sp = ctx.section("select")
    for t, item, d in ctx.temperatures():
        r = run(sp, t, pool(ctx, item, ctx.path("dedup", **item) / "kept.parquet"), ctx.path("out", **item),
                ctx.path("metrics", **item), ctx.path("plot", **item))
        dec, types = r["decisions"], r["sentence_types"]
        print(f"select {d}: {r['selected']} chosen by {r['selector']} from {r['candidates']} candidates "
              f"of {r['questions']} questions; sentences teacher {types['teacher']} / shared {types['shared']} / "
              f"student {types['student']}; of {dec['questions_with_choice']} questions with a choice: top tie "
              f"{dec['tie_on_score']}, left to response_id {dec['to_response_id']}, not the longest "
              f"{dec['not_most_sentences']}, not random's {dec['differs_from_random']}")


STAGE = Stage("select", main, sections={"select": SelectParams}, params=("select",),
              inputs={"dedup": f"data/dedup/{T}", **POOL_INPUTS},
              outputs={"out": f"data/select/{T}", "plot": f"plots/select/{T}.csv",
                       "metrics": f"metrics/select/{T}.json"}, per_temperature=True)


__doc__ += "\n".join(f"- {s.name}: {s.doc}" for s in REGISTRY) + "\n"  # from the registry
