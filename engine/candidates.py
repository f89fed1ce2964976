"""The candidate pool scored by every selector (sql/select_candidates.sql): what `select` ranks, and what
`dedup` keeps the best of in each near-duplicate cluster, so dedup never removes what select would
choose. The selectors and their params live here, one place for both stages.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from . import sql
from .params import Count, ParamsError, Seed, StageError, schema
from .stages import T


@dataclass(frozen=True)
class Selector:
    """A way to rank the candidates of a question: `score` is a DuckDB expression over the candidate's
    sentence counts `c` (teacher_sentences, sentences, mean_student_logprob…), its student ranks `r` and
    its naturalness `n` (sql/select_candidates.sql); higher is better. Adding one is one entry below.
    `tiebreak`: the selector's own second key among candidates with an equal score (higher first), so a
    tie is decided by the method, and response_id only when that ties too; None: response_id next."""
    name: str
    doc: str
    score: str
    tiebreak: str | None = None
    tiebreak_doc: str | None = None


REGISTRY: tuple[Selector, ...] = (
    Selector("das", "divergence-aware sampling: the count of teacher sentences (p_teacher - p_student > beta), "
             "or their proportion with das_measure: proportion",
             "CASE WHEN getvariable('das_measure') = 'proportion' THEN c.teacher_sentences / c.sentences "
             "ELSE c.teacher_sentences END::DOUBLE",
             # an equal count (short responses often tie): the one whose teacher sentences the student
             # lacks most, the quantity the count thresholds
             tiebreak="c.teacher_margin",
             tiebreak_doc="the mean margin p_teacher - p_student of the teacher sentences"),
    Selector("longest", "the most sentences: a control for DAS's count (what of DAS is only length)",
             "c.sentences::DOUBLE", tiebreak="c.student_tokens", tiebreak_doc="the most student tokens"),
    Selector("random", "the paper's baseline: a hash of (seed, response_id), reproducible, independent of order",
             "(hash(getvariable('seed'), k.response_id) % 1000000007)::DOUBLE"),
    Selector("global_naturalness", "the mean student token logprob", "c.mean_student_logprob"),
    Selector("local_naturalness", "the mean step logprob given a short window (stage naturalness)",
             "n.local_naturalness"),
    Selector("rank_surprisal", "minus sum(min(student rank, 100)) / sum(student surprisal); the only one that "
             "reads every student token again, so it is computed only when it is the selector",
             "-r.rank_surprisal_ratio"),
)
SELECTORS = tuple(s.name for s in REGISTRY)
SelectorName = Literal[SELECTORS]  # params select.selector: one of the registry's names


def fragments() -> dict[str, str]:
    """The registry as SQL for sql/select_candidates.sql: a column per selector, `tiebreak_<name>` for those
    with a second key, and `score` / `tiebreak`, the chosen one's."""
    def case(column):
        return "CASE getvariable('selector') " + " ".join(
            f"WHEN '{s.name}' THEN {column(s)}" for s in REGISTRY if column(s)) + " ELSE NULL END"
    return {"scores": ",\n           ".join([f"{s.score} AS {s.name}" for s in REGISTRY] +
                                             [f"{s.tiebreak}::DOUBLE AS tiebreak_{s.name}" for s in REGISTRY if s.tiebreak]),
            "score": case(lambda s: s.name) + " AS score, " +
                     case(lambda s: s.tiebreak and f"tiebreak_{s.name}") + " AS tiebreak"}


def ranking(selector: str) -> str:
    """In words, how `select` orders a question's candidates (the report records it)."""
    s = next(x for x in REGISTRY if x.name == selector)
    return f"{s.name} score, then " + (f"{s.tiebreak_doc}, then " if s.tiebreak else "") + "response_id"


@schema
class SelectParams:
    selector: SelectorName = "das"
    top_k: Count = 1
    das_measure: Literal["count", "proportion"] = "count"
    seed: Seed = 0


def score_candidates(con, sp: SelectParams, inputs: dict[str, Path]) -> None:
    """Table `select_candidates` on `con`: every response of `kept` with every selector's score.
    `inputs`: view name -> Parquet file/glob/folder for kept, sentences, student_scores, naturalness."""
    sql.create_views(con, inputs)
    sql.run_file(con, "select_candidates", fragments(), das_measure=sp.das_measure, seed=sp.seed,
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

def pool(ctx, item: dict, kept: Path) -> dict[str, Path]:
    """What select_candidates scores: the responses still in the pool (`kept`), their sentences and scores."""
    return {"kept": kept, **{name: ctx.path(name, **item) for name in POOL_INPUTS}}


# the pool's inputs besides `kept`, as select and dedup declare them (engine/stages.py)
POOL_INPUTS = {"sentences": f"data/sentences/{T}", "student_scores": f"data/student_scores/{T}",
               "naturalness": f"data/naturalness/{T}"}
