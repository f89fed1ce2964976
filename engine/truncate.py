"""Stage `truncate`: keep the rollouts that hit their cap and cut each past half (METHOD.md §6).

A rollout that finished on its own (finish_reason stop) is not a mixed-policy sample: it gets a
`not_truncated` rejection row, as does one too short to cut past `low` and still leave a token
(`too_short`), so kept + rejected = rollouts. For the others a fraction u is drawn uniformly in
(low, high) of params `truncate.cut` — from a hash of (seed, rollout_id), so independent of order and
resume — and the cut lands on a student token boundary: the prefix is the first cut_token tokens,
with floor(low x n) < cut_token < n, so strictly past `low` and strictly inside the rollout. With
`snap: sentence` the cut moves forward to the first sentence end (engine/sentences.py's rules; trailing
spaces stay with the next sentence, newlines with this one) at or after the draw, snapped to the token
that ends there; when the rest of the rollout is one sentence it stays at the drawn token (`snap` says
which happened). The prefix is the rollout's exact text up to the cut.

Output data/truncate/{truncated,rejections}.parquet (schemas `tables.TRUNCATIONS`, `tables.REJECTIONS`).
"""
from __future__ import annotations

import bisect
import math
from collections import Counter
from pathlib import Path
from typing import Literal

import pyarrow as pa

from . import tables
from .params import ParamsError, Seed, Share, StageError, schema
from .sentences import split
from .stages import Stage


@schema
class TruncateParams:
    cut: tuple[Share, Share] = (0.5, 1.0)  # (low, high): the cut's fraction of the rollout
    snap: Literal["token", "sentence"] = "token"
    seed: Seed = 0

    def __post_init__(self):
        if not self.cut[0] < self.cut[1]:
            raise ParamsError(f"cut must be [low, high] with low < high, not {list(self.cut)}")


def unit(seed: int, key: str) -> float:
    """A uniform draw in [0, 1) from (seed, key): the same for a rollout whatever the order or resume."""
    return int(tables.content_hash(seed, key, length=13), 16) / 16 ** 13


def cut_range(n: int, low: float) -> tuple[int, int]:
    """Allowed cut tokens [first, last]: strictly past low x n, and at least one token left after."""
    return math.floor(n * low) + 1, n - 1


def sentence_ends(text: str, min_chars: int = 8) -> list[int]:
    """Where sentences end, trailing spaces and tabs excluded (they start the next word's token)."""
    return [a + len(text[a:b].rstrip(" \t")) for a, b in split(text, min_chars)]


def cut(text: str, ends: list[int], u: float, tp: TruncateParams, min_chars: int = 8) -> tuple[int, int, str] | None:
    """(cut_token, cut_char, snap) for a rollout with token ends `ends`, or None if too short."""
    n = len(ends)
    first, last = cut_range(n, tp.cut[0])
    if first > last:
        return None
    low, high = tp.cut
    k = min(max(math.floor((low + (high - low) * u) * n), first), last)
    if tp.snap == "sentence":
        at = ends[k - 1]
        sent = [e for e in sentence_ends(text, min_chars) if e >= at]
        if sent:
            k2 = bisect.bisect_left(ends, sent[0]) + 1  # the first token ending at or after that sentence end
            if k2 <= last:
                return k2, ends[k2 - 1], "sentence"
    return k, ends[k - 1], "token"


def run(tp: TruncateParams, rollouts_dir: Path, out_dir: Path, metrics_path: Path, min_chars: int = 8) -> dict:
    """`min_chars`: params sentences.min_chars, so a sentence here is one of stage `sentences`."""
    cols = ["rollout_id", "question_id", "text", "finish_reason", "token_ends", "max_tokens", "student_token_count"]
    rollouts = tables.read_table(rollouts_dir, columns=cols)
    if rollouts is None:
        raise StageError(f"{rollouts_dir}: no rollouts; run `dasd rollout` first")
    kept, rejected = [], []
    for rid, qid, text, finish, ends, cap, count in zip(*(rollouts.column(c).to_pylist() for c in cols)):
        if finish != "length":
            rejected.append(dict(response_id=rid, stage="truncate", rule="not_truncated", value=count, threshold=cap,
                                 detail=f"finished ({finish}) within its cap: not a truncated answer"))
            continue
        c = cut(text, ends, unit(tp.seed, rid), tp, min_chars)
        if c is None:
            rejected.append(dict(response_id=rid, stage="truncate", rule="too_short", value=len(ends),
                                 threshold=cut_range(len(ends), tp.cut[0])[0] + 1,
                                 detail="too few tokens to cut past the low fraction and keep one after"))
            continue
        k, char, snap = c
        kept.append(dict(rollout_id=rid, question_id=qid, rollout_tokens=len(ends), cut_token=k,
                         cut_fraction=k / len(ends), cut_char=char, snap=snap, prefix=text[:char]))
    truncated = pa.Table.from_pylist(kept, schema=tables.TRUNCATIONS)
    with tables.replacing(out_dir) as tmp:
        tables.write_parquet(truncated, tmp / "truncated.parquet")
        tables.write_parquet(pa.Table.from_pylist(rejected, schema=tables.REJECTIONS), tmp / "rejections.parquet")
    by_rule = dict(sorted(Counter(r["rule"] for r in rejected).items()))
    fractions = truncated.column("cut_fraction").to_pylist()
    report = {"input": rollouts.num_rows, "truncated": len(kept), "rejected": len(rejected), "rejections_by_rule": by_rule,
              "snapped_to_sentence": sum(s == "sentence" for s in truncated.column("snap").to_pylist()),
              "mean_cut_fraction": sum(fractions) / len(fractions) if fractions else None}
    assert report["truncated"] + report["rejected"] == report["input"]
    tables.write_json(report, metrics_path)
    return report


def main(ctx) -> None:
    r = run(ctx.section("truncate"), ctx.path("rollout"), ctx.path("out"), ctx.path("metrics"),
            min_chars=ctx.value("sentences.min_chars", 8))
    print(f"truncate: {r['input']} rollouts -> {r['truncated']} cut (by rule: {r['rejections_by_rule']})")


STAGE = Stage("truncate", main, sections={"truncate": TruncateParams}, params=("truncate", "sentences.min_chars"),
              inputs={"rollout": "data/rollout"}, outputs={"out": "data/truncate", "metrics": "metrics/truncate.json"})
