"""The resumable shard loop shared by every stage that calls a model (generate, score, …).

Items are cut into fixed shards; shards already on disk (written atomically by `ShardedOutput`) are
skipped, so a run killed at any point resumes where it stopped. The backend is only started when
there is work left. A progress bar shows done/total, tokens/s and the ETA.
"""
from __future__ import annotations

import sys
import time
from typing import Callable

import pyarrow as pa
from tqdm import tqdm

from .tables import ShardedOutput


def run_shards(out: ShardedOutput, n_items: int, shard_size: int, work: Callable[[object, range], tuple[pa.Table, int]],
               open_backend: Callable[[], object], backend=None, desc: str = "", unit: str = "item",
               items_per_row: int = 1, progress: bool = True) -> int:
    """Run `work(backend, rows) -> (table, tokens)` for every missing shard; returns items resumed. The
    output's lock is released at the end, whatever happens."""
    try:
        return _run(out, n_items, shard_size, work, open_backend, backend, desc, unit, items_per_row, progress)
    finally:
        out.close()


def _run(out, n_items, shard_size, work, open_backend, backend, desc, unit, items_per_row, progress) -> int:
    shards = [(k, range(i, min(i + shard_size, n_items))) for k, i in enumerate(range(0, n_items, shard_size))]
    done = out.done_shards()
    todo = [(k, rows) for k, rows in shards if k not in done]
    resumed = sum(len(rows) for k, rows in shards if k in done) * items_per_row
    own = backend is None and bool(todo)
    if own:
        backend = open_backend()
    bar = tqdm(total=n_items * items_per_row, initial=resumed, unit=unit, desc=desc, disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    tokens, t0 = 0, time.time()
    try:
        for k, rows in todo:
            table, n_tokens = work(backend, rows)
            out.write_shard(k, table)
            tokens += n_tokens
            bar.update(len(rows) * items_per_row)
            bar.set_postfix_str(f"{tokens / max(time.time() - t0, 1e-9):,.0f} tok/s")
    finally:
        bar.close()
        if own:
            backend.close()
    out.clear_stale()  # a new run with no shard to write (no items) still replaces the stale one
    if resumed:
        print(f"{desc}: resumed, {resumed} of {n_items * items_per_row} {unit}s were already done", file=sys.stderr)
    return resumed
