"""Why DAS's count ties at the top on the miniature (printed, never asserted), from the workspace's outputs.

1. measured: per temperature and per number of steps in the problem, the questions whose top count of
   teacher sentences is shared by two or more candidates (after dedup, as `select` sees them), with the
   mean candidates, sentences and teacher sentences per response;
2. the floor a count of whole sentences puts under that share: m candidates whose counts are independent
   Binomial(L, p) draws (each of L sentences that can go either way a teacher sentence with
   probability p) tie at the top with
   probability 1 - sum_v m P(X=v) P(X<v)^(m-1), computed exactly. Real candidates of one question are
   more alike than independent draws, so the measured shares sit above this floor.

Usage: python benchmarks/ties.py [--candidates 7]   (run `dvc repro select` first)
"""
from __future__ import annotations

import argparse
import sys
from math import comb
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MEASURED = """
WITH counts AS (
    SELECT response_id, count(*) FILTER (type = 'teacher') AS teacher, count(*) AS sentences
    FROM 'data/sentences/T={t}/*.parquet' GROUP BY 1
), candidates AS (
    SELECT g.question_id, q.level, c.teacher, c.sentences
    FROM counts c
    JOIN 'data/generations/T={t}/*.parquet' g USING (response_id)
    JOIN 'data/dedup/T={t}/kept.parquet' k USING (response_id)
    JOIN (SELECT question_id, CAST(split_part(source_id, '-', 2) AS INT) AS level  -- mini-<steps>-<n>
          FROM 'data/questions/questions.parquet') q ON q.question_id = g.question_id
), questions AS (
    SELECT question_id, any_value(level) AS level, count(*) AS candidates,
           count(*) FILTER (teacher = (SELECT max(teacher) FROM candidates x WHERE x.question_id = c.question_id))
               AS at_top,
           avg(sentences) AS sentences, avg(teacher) AS teacher
    FROM candidates c GROUP BY 1
)
SELECT level, count(*) AS questions, avg((at_top > 1)::INT) AS tied, avg(candidates) AS candidates,
       avg(sentences) AS sentences, avg(teacher) AS teacher
FROM questions WHERE candidates > 1 GROUP BY ROLLUP (level) ORDER BY level NULLS LAST
"""


def tie_floor(steps: int, p: float, m: int) -> float:
    """P(the largest of m independent Binomial(steps, p) counts is shared)."""
    pmf = [comb(steps, v) * p ** v * (1 - p) ** (steps - v) for v in range(steps + 1)]
    below, unique = 0.0, 0.0
    for v in range(steps + 1):
        unique += m * pmf[v] * below ** (m - 1)
        below += pmf[v]
    return 1 - unique


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--candidates", type=int, default=7, help="m for the floor (the miniature keeps ~7 of 8)")
    args = ap.parse_args()
    import duckdb

    if not (ROOT / "data" / "dedup").exists():
        sys.exit("ties.py: no data/dedup here; run `dvc repro select` first")
    con = duckdb.connect()
    for t in ("0.6", "1.0"):
        print(f"T={t}: steps | questions | top count tied | candidates | sentences | teacher sentences")
        rows = con.sql(MEASURED.format(t=t).replace("'data/", f"'{ROOT}/data/")).fetchall()
        for level, n, tied, cands, sents, teacher in rows:
            print(f"  {level if level is not None else 'all':>5} | {n:9d} | {tied:14.0%} | {cands:10.1f} | "
                  f"{sents:9.1f} | {teacher:.1f}")
    print(f"\nfloor: {args.candidates} candidates with independent Binomial(L, p) counts, top tied")
    print("  L = sentences that can go either way")
    print("  L     " + "  ".join(f"p={p:<4}" for p in (0.3, 0.5, 0.7)))
    for steps in (1, 2, 3, 4, 5, 6, 8, 10, 12):
        print(f"  {steps:<5} " + "  ".join(f"{tie_floor(steps, p, args.candidates):6.0%}" for p in (0.3, 0.5, 0.7)))


if __name__ == "__main__":
    main()
