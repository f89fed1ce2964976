"""Stage `dedup@T`: near-duplicate removal among the responses the filter kept, with MinHash + LSH.

Signatures of word `ngram`-shingles (`num_perm` permutations, datasketch-compatible: engine/kernels/minhash.py);
LSH with `bands` × `rows` finds candidate pairs within each question (`scope: question`, the default)
or across the whole pool (`scope: pool`); a pair whose estimated Jaccard reaches `threshold` is an
edge, clusters are the connected components, and each cluster keeps one survivor: the response the
configured selector scores highest (sql/dedup.sql), so dedup never removes what select would choose.
Every other member gets a `near_duplicate` rejection (value: its estimated Jaccard with the survivor,
which can be below the threshold when it joined the cluster through another member).

14 bands × 9 rows (the default) measured recall 0.90 / precision 0.89 at Jaccard 0.8 against
datasketch's own choice for 0.8 (9 × 13: 0.77 / 0.92); tests/test_dedup.py reports both.
Output data/dedup/T=<t>/{kept,clusters,rejections}.parquet and metrics/dedup/T=<t>.json.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from . import sql, tables
from .candidates import POOL_INPUTS, SelectParams, pool, score_candidates
from .kernels import minhash
from .params import Count, ParamsError, Seed, StageError, schema
from .stages import Stage, T


@schema
class DedupParams:
    enabled: bool = True
    scope: Literal["question", "pool"] = "question"  # question: one question's candidates | pool: all of them
    ngram: Count = 5          # word shingles
    num_perm: Count = 128
    seed: Seed = 1            # datasketch's default permutation seed
    threshold: Annotated[float, Field(gt=0, le=1)] = 0.8  # estimated Jaccard that makes two responses near-duplicates
    bands: Count = 14
    rows: Count = 9

    def __post_init__(self):
        if self.bands * self.rows > self.num_perm:
            raise ParamsError(f"bands x rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")


def near_duplicates(texts: pa.Array, groups: np.ndarray | None, dp: DedupParams) -> dict:
    """Signatures, candidate pairs, verified edges and a cluster label per text."""
    sigs = minhash.signatures(texts, dp.num_perm, dp.seed, dp.ngram)
    pairs = minhash.candidate_pairs(sigs, dp.bands, dp.rows, groups)
    edges = pairs[minhash.jaccard(sigs, pairs) >= dp.threshold]
    return {"signatures": sigs, "candidate_pairs": pairs, "edges": edges,
            "clusters": minhash.clusters(len(sigs), edges)}


def run(dp: DedupParams, selp: SelectParams, temperature: float, inputs: dict[str, Path], generations_dir: Path,
        out_dir: Path, metrics_path: Path) -> dict:
    """`inputs`: kept (the filter's), sentences, student_scores, as for `select.run`."""
    con = sql.connect()
    score_candidates(con, selp, inputs)
    sql.create_views(con, {"generations": generations_dir})
    pool = con.sql("SELECT c.response_id, c.question_id, g.text FROM select_candidates c "
                   "JOIN generations g USING (response_id) ORDER BY c.response_id").to_arrow_table()
    n = pool.num_rows
    if n != con.sql("SELECT count(*) FROM select_candidates").fetchall()[0][0]:
        raise StageError(f"{generations_dir}: some kept responses have no generation row; rerun the stages before dedup")
    if dp.enabled:
        groups = None
        if dp.scope == "question":
            groups = pool.column("question_id").combine_chunks().dictionary_encode().indices.to_numpy()
        found = near_duplicates(pool.column("text"), groups, dp)
        labels, sigs = found["clusters"], found["signatures"]
    else:
        found, labels, sigs = None, np.arange(n), None
    con.register("dedup_members", pa.table({"response_id": pool.column("response_id"),
                                            "question_id": pool.column("question_id"), "cluster": labels}))
    members = sql.run_file(con, "dedup").to_arrow_table()
    rids = members.column("response_id").to_pylist()
    survivors = members.column("survivor_id").to_pylist()
    row = {rid: i for i, rid in enumerate(pool.column("response_id").to_pylist())}
    if sigs is None:
        similarity = [1.0] * len(rids)
    else:  # estimated Jaccard of each response with its survivor, all at once
        similarity = minhash.jaccard(sigs, np.array([[row[r], row[s]] for r, s in zip(rids, survivors)],
                                                    dtype=np.int64).reshape(-1, 2)).tolist()
    clusters = pa.table({"response_id": rids, "question_id": members.column("question_id"),
                         "cluster": members.column("cluster").cast(pa.int64()),
                         "cluster_size": members.column("cluster_size").cast(pa.int32()),
                         "survivor_id": survivors, "jaccard_to_survivor": similarity}, schema=tables.DEDUP_CLUSTERS)
    removed = [i for i, (r, s) in enumerate(zip(rids, survivors)) if r != s]
    sizes = members.column("cluster_size").to_pylist()
    rejections = pa.table({
        "response_id": [rids[i] for i in removed], "stage": ["dedup"] * len(removed),
        "rule": ["near_duplicate"] * len(removed), "value": [similarity[i] for i in removed],
        "threshold": [dp.threshold] * len(removed),
        "detail": [f"cluster of {sizes[i]}, survivor {survivors[i]}" for i in removed]}, schema=tables.REJECTIONS)
    kept = clusters.filter(pc.equal(clusters.column("response_id"), clusters.column("survivor_id")))
    with tables.replacing(out_dir) as tmp:  # the three tables of one run, or the old three
        tables.write_parquet(clusters, tmp / "clusters.parquet")
        tables.write_parquet(kept.select(["response_id", "question_id"]), tmp / "kept.parquet")
        tables.write_parquet(rejections, tmp / "rejections.parquet")
    report = {"temperature": temperature, "enabled": dp.enabled, "scope": dp.scope, "threshold": dp.threshold,
              "bands": dp.bands, "rows": dp.rows, "input": n, "kept": kept.num_rows, "rejected": len(removed),
              "duplicate_clusters": len({c for c, s in zip(members.column("cluster").to_pylist(), sizes) if s > 1}),
              "candidate_pairs": len(found["candidate_pairs"]) if found else 0,
              "verified_pairs": len(found["edges"]) if found else 0}
    assert report["kept"] + report["rejected"] == report["input"]
    tables.write_json(report, metrics_path)
    return report


def main(ctx) -> None:
    dp, selp = ctx.section("dedup"), ctx.section("select")
    for t, item, d in ctx.temperatures():
        r = run(dp, selp, t, pool(ctx, item, ctx.path("filter", **item) / "kept.parquet"),
                ctx.path("generations", **item), ctx.path("out", **item), ctx.path("metrics", **item))
        print(f"dedup {d}: {r['input']} in -> {r['kept']} kept, {r['rejected']} near-duplicates removed "
              f"({r['duplicate_clusters']} clusters, {r['candidate_pairs']} candidate pairs)")


STAGE = Stage("dedup", main, sections={"dedup": DedupParams, "select": SelectParams},
              params=("dedup", "select.selector", "select.das_measure", "select.seed"),
              inputs={"filter": f"data/filter/{T}", "generations": f"data/generations/{T}",
                      **POOL_INPUTS},
              outputs={"out": f"data/dedup/{T}", "metrics": f"metrics/dedup/{T}.json"}, per_temperature=True)
