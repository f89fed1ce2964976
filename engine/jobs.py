"""The resumable shard loop shared by every stage that calls a model (generate, score, …).

Items are cut into fixed shards; shards already on disk (written atomically by `ShardedOutput`) are
skipped, so a run killed at any point resumes where it stopped. The executor (engine/executor.py: this
process, or replicas on a Ray cluster) runs `work` on each missing shard and starts backends only when
there is work left; this process alone writes. A progress bar shows done/total, tokens/s, the ETA and
the replicas alive.
"""
from __future__ import annotations

import sys
import time
from typing import Callable

from tqdm import tqdm

from .tables import ShardedOutput


def run_shards(out: ShardedOutput, n_items: int, shard_size: int, work: Callable[[object, range], tuple],
               open_backend: Callable[[], object], backend=None, desc: str = "", unit: str = "item",
               items_per_row: int = 1, progress: bool = True, executor=None) -> int:
    """Run `work(backend, rows) -> (table, tokens[, {side name: table}])` for every missing shard; side
    tables land beside the shard, before it. Returns items resumed. The output's lock is released at the
    end, whatever happens. `work` must not touch `out`: on Ray it runs in another process."""
    from .executor import Local

    try:
        return _run(out, n_items, shard_size, work, open_backend, executor or Local(backend), desc, unit,
                    items_per_row, progress)
    finally:
        out.close()


def _run(out, n_items, shard_size, work, open_backend, executor, desc, unit, items_per_row, progress) -> int:
    shards = [(k, range(i, min(i + shard_size, n_items))) for k, i in enumerate(range(0, n_items, shard_size))]
    done = out.done_shards()
    todo = [(k, rows) for k, rows in shards if k not in done]
    resumed = sum(len(rows) for k, rows in shards if k in done) * items_per_row
    bar = tqdm(total=n_items * items_per_row, initial=resumed, unit=unit, desc=desc, disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    tokens, t0 = 0, time.time()
    try:
        for k, rows, result in executor.map(todo, work, open_backend):
            table, n_tokens, *sides = result
            for name, side in (sides[0] if sides else {}).items():
                out.write_side(k, name, side)
            out.write_shard(k, table)
            tokens += n_tokens
            bar.update(len(rows) * items_per_row)
            bar.set_postfix_str(f"{tokens / max(time.time() - t0, 1e-9):,.0f} tok/s"
                                + (f", {executor.alive()} replicas" if executor.replicas > 1 else ""))
    finally:
        bar.close()
    out.clear_stale()  # a new run with no shard to write (no items) still replaces the stale one
    if resumed:
        print(f"{desc}: resumed, {resumed} of {n_items * items_per_row} {unit}s were already done", file=sys.stderr)
    return resumed
