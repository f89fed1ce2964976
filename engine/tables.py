"""Schemas of every table the engine writes, written down once, and the shard writer/readers.

Every stage output is a folder of Parquet files under `data/<stage>/` (one folder per temperature for
per-temperature stages). Readers go through DuckDB views (`engine.sql`) or `read_table` below; writers
go through `ShardWriter`, which writes atomically (temp file + rename) so a killed job never leaves a
half-written shard that a reader or a resumed run could see.
"""
from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import threading
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

def per_token(value_type: pa.DataType) -> pa.DataType:
    """One value per token: a list whose elements are never null (a missing list is null as a whole).
    Declared so, Parquet stores no per-element null levels and Arrow reads the lists 1.7x faster
    (benchmarks/selection.py: 10M logprobs in 92 ms instead of 157)."""
    return pa.list_(pa.field("item", value_type, nullable=False))


MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))

# One row per distinct question (after whitespace-normalised exact dedup).
QUESTIONS = pa.schema([
    ("question_id", pa.string()),        # sha256 of the normalised question text, 16 hex chars
    ("domain", pa.string()),             # math | code | science | instruction
    ("source", pa.string()),             # the params source name the row came from
    ("messages", MESSAGES),              # system (from params) + user prompt
    ("reference_answer", pa.string()),   # nullable
    ("source_id", pa.string()),          # id within the source, when it has one (else file:line)
    ("license", pa.string()),            # the source's license, from params
    ("metadata", pa.string()),           # JSON object of the source's remaining fields
    ("duplicates", pa.int32()),          # how many input rows collapsed into this one (>= 1)
])

# One row per question that shares text with a benchmark item (data/decontaminate/rejections.parquet).
CONTAMINATION = pa.schema([
    ("question_id", pa.string()),
    ("source", pa.string()),
    ("source_id", pa.string()),
    ("benchmark", pa.string()),          # the params `benchmarks` set
    ("item_id", pa.string()),            # the benchmark item it matched
    ("rule", pa.string()),               # exact | ngram | fuzzy
    ("value", pa.float64()),             # ngram: n-grams shared with that item; fuzzy: the ratio; exact: 1
    ("threshold", pa.float64()),         # the value must exceed it (ngram, exact: 0) or reach it (fuzzy)
    ("evidence", pa.string()),           # ngram: the first shared n-gram; exact, fuzzy: the item's text
])

# One row per answer of an evaluated model to a benchmark problem (data/evaluate/<model>/<benchmark>/).
EVALUATION = pa.schema([
    ("model", pa.string()),              # the name in params evaluate.models (base, stage1, …)
    ("benchmark", pa.string()),
    ("item_id", pa.string()),
    ("sample_index", pa.int32()),
    ("seed", pa.int64()),
    ("text", pa.string()),
    ("finish_reason", pa.string()),
    ("response_tokens", pa.int32()),
    ("correct", pa.bool_()),             # engine/answers.py for the benchmark's kind
    ("well_formed", pa.bool_()),         # reasoning closed and an answer of the kind stated
])

# One row per input row a stage could not use (on_error: quarantine); data/quarantine/<stage>.parquet.
QUARANTINE = pa.schema([
    ("stage", pa.string()),
    ("source", pa.string()),
    ("file", pa.string()),
    ("line", pa.int64()),                # 1-based line (JSONL/CSV) or row index + 1 (Parquet/HF)
    ("field", pa.string()),              # the offending field, or null for whole-row errors
    ("reason", pa.string()),
    ("raw", pa.string()),                # the input as read, for audit (truncated to 2,000 chars)
])

# One row per teacher response. Token arrays cover the sampled tokens that carry text of `text`
# (stop tokens and harmony headers are counted in teacher_token_count but have no span). Token i
# spans text[token_starts[i]:token_ends[i]]; a token that only completes a multi-byte character
# elsewhere has an empty span.
GENERATIONS = pa.schema([
    ("response_id", pa.string()),
    ("question_id", pa.string()),
    ("temperature", pa.float64()),
    ("sample_index", pa.int32()),
    ("seed", pa.int64()),                # the per-question sampling seed
    ("teacher_model", pa.string()),
    ("teacher_revision", pa.string()),
    ("backend", pa.string()),            # vllm | openai | transformers
    ("logprobs_mode", pa.string()),      # raw_logprobs (unscaled distribution) | processed_logprobs
    ("text", pa.string()),               # as the student sees it: <think>\n…\n</think>\n\n{answer}
    ("finish_reason", pa.string()),      # stop | length | tool_call
    ("teacher_token_count", pa.int32()),  # all sampled tokens, including stop and header tokens
    ("token_ids", per_token(pa.int32())),
    ("token_logprobs", per_token(pa.float32())),
    ("token_starts", per_token(pa.int32())),
    ("token_ends", per_token(pa.int32())),
    ("raw_output", pa.string()),         # the backend's text before any rewrite, for audit
])

# One row per teacher response: the student's teacher-forced logprob of every token of the response text
# (tokenised by the student's tokenizer) after the same chat prompt; spans as in GENERATIONS.
STUDENT_SCORES = pa.schema([
    ("response_id", pa.string()),
    ("question_id", pa.string()),
    ("temperature", pa.float64()),
    ("student_model", pa.string()),
    ("student_revision", pa.string()),
    ("backend", pa.string()),
    ("student_token_count", pa.int32()),  # the response length in student tokens (the length filter's unit)
    ("token_ids", per_token(pa.int32())),
    ("student_logprobs", per_token(pa.float32())),  # raw distribution
    ("student_ranks", per_token(pa.int32())),        # 1 = the student's top choice
    ("token_starts", per_token(pa.int32())),
    ("token_ends", per_token(pa.int32())),
])

# One row per response × sentence (sql/sentences.sql); sentence spans tile the response text.
SENTENCES = pa.schema([
    ("question_id", pa.string()),
    ("temperature", pa.float64()),
    ("response_id", pa.string()),
    ("sentence_index", pa.int32()),
    ("char_start", pa.int32()),
    ("char_end", pa.int32()),
    ("teacher_tokens", pa.int32()),
    ("student_tokens", pa.int32()),
    ("teacher_logprob", pa.float64()),  # mean teacher token logprob (null: no teacher token)
    ("student_logprob", pa.float64()),
    ("p_teacher", pa.float64()),        # exp(teacher_logprob): geometric mean of token probabilities
    ("p_student", pa.float64()),
    ("type", pa.string()),              # teacher | student | shared | unaligned
])

# One row per (response, failed rule) of any stage that removes responses (filter, dedup, mixed_filter).
REJECTIONS = pa.schema([
    ("response_id", pa.string()),
    ("stage", pa.string()),
    ("rule", pa.string()),
    ("value", pa.float64()),      # what was measured
    ("threshold", pa.float64()),  # the limit it exceeded
    ("detail", pa.string()),      # e.g. dedup: the cluster and its survivor
])

# One row per response the filter kept (data/dedup/T=<t>/clusters.parquet): its near-duplicate cluster.
DEDUP_CLUSTERS = pa.schema([
    ("response_id", pa.string()),
    ("question_id", pa.string()),
    ("cluster", pa.int64()),               # connected component of the verified near-duplicate graph
    ("cluster_size", pa.int32()),          # 1: no near-duplicate
    ("survivor_id", pa.string()),          # the member kept (best selector score); itself when kept
    ("jaccard_to_survivor", pa.float64()),  # estimated from the MinHash signatures
])

# One row per response the filter kept (data/naturalness/T=<t>/; empty unless naturalness.enabled).
NATURALNESS = pa.schema([
    ("response_id", pa.string()),
    ("question_id", pa.string()),
    ("temperature", pa.float64()),
    ("window", pa.int32()),                      # preceding steps (sentences) the student saw
    ("steps", pa.int32()),                       # steps with at least one student token of their own
    ("step_logprobs", pa.list_(pa.float64())),   # mean student logprob of each step given its window
    ("local_naturalness", pa.float64()),         # their mean (null: no step)
])

# One row per selected response (up to top_k per question) of one temperature.
SELECTED = pa.schema([
    ("response_id", pa.string()),
    ("question_id", pa.string()),
    ("temperature", pa.float64()),
    ("selector", pa.string()),
    ("score", pa.float64()),
    ("rank", pa.int32()),
    ("teacher_sentences", pa.int32()),
    ("student_sentences", pa.int32()),
    ("shared_sentences", pa.int32()),
    ("sentences", pa.int32()),
])

# One row per student rollout of the mixed-policy phase (data/rollout/): the stage-2 student answers a
# question of the selected set, capped at length_factor x the teacher response's length in student
# tokens. Token arrays and spans as in GENERATIONS, the logprobs the student's own.
ROLLOUTS = pa.schema([
    ("rollout_id", pa.string()),
    ("question_id", pa.string()),
    ("source_response_id", pa.string()),   # the selected teacher response whose length sets the cap
    ("teacher_student_tokens", pa.int32()),  # that response's length in student tokens
    ("max_tokens", pa.int32()),            # the cap: ceil(length_factor x teacher_student_tokens)
    ("temperature", pa.float64()),
    ("seed", pa.int64()),
    ("student_model", pa.string()),
    ("backend", pa.string()),
    ("text", pa.string()),
    ("finish_reason", pa.string()),        # length: hit the cap (what truncate keeps)
    ("student_token_count", pa.int32()),   # every sampled token
    ("token_ids", per_token(pa.int32())),
    ("token_logprobs", per_token(pa.float32())),
    ("token_starts", per_token(pa.int32())),
    ("token_ends", per_token(pa.int32())),
])

# One row per rollout that hit its cap, cut past half (data/truncate/truncated.parquet).
TRUNCATIONS = pa.schema([
    ("rollout_id", pa.string()),
    ("question_id", pa.string()),
    ("rollout_tokens", pa.int32()),  # student tokens carrying text of the rollout
    ("cut_token", pa.int32()),       # the prefix is the first cut_token of them
    ("cut_fraction", pa.float64()),  # cut_token / rollout_tokens, in (low, high) of params truncate.cut
    ("cut_char", pa.int32()),        # = len(prefix): a token end, and with snap sentence a sentence end
    ("snap", pa.string()),           # token | sentence (sentence asked, but no sentence end after the draw: token)
    ("prefix", pa.string()),         # the rollout's exact text up to the cut
])

# One row per truncated rollout the teacher continued (data/continue/): the joined response as the student
# sees it. Token arrays cover the continuation's tokens only, spans in the joined text.
CONTINUATIONS = pa.schema([
    ("sample_id", pa.string()),
    ("rollout_id", pa.string()),
    ("question_id", pa.string()),
    ("cut_token", pa.int32()),
    ("cut_fraction", pa.float64()),
    ("prefix_chars", pa.int32()),         # text[:prefix_chars] is the student's prefix
    ("boundary", pa.string()),            # ok | no_teacher_form | mismatch (the joined text does not start with the prefix)
    ("seed", pa.int64()),
    ("teacher_model", pa.string()),
    ("backend", pa.string()),
    ("text", pa.string()),                # prefix + the teacher's continuation
    ("finish_reason", pa.string()),
    ("teacher_token_count", pa.int32()),  # every sampled continuation token
    ("token_ids", per_token(pa.int32())),
    ("token_logprobs", per_token(pa.float32())),
    ("token_starts", per_token(pa.int32())),
    ("token_ends", per_token(pa.int32())),
    ("raw_output", pa.string()),          # the teacher's raw prefill + continuation, for audit
])

# A message of an exported conversation. `train_detail` (Axolotl's message_field_training_detail) marks
# character ranges, end inclusive, as trained or not: set on the assistant turn of a mixed-policy sample
# (student prefix: train false; teacher continuation: train true), null elsewhere. A trainer uses it only
# when the phase sets mask_student_prefix: true.
TRAIN_DETAIL = pa.list_(pa.struct([("begin_offset", pa.int32()), ("end_offset", pa.int32()), ("train", pa.bool_())]))
EXPORT_MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string()), ("train_detail", TRAIN_DETAIL)]))

# One row per training example of an SFT phase (data/export/<stage>/train.parquet).
EXPORT = pa.schema([
    ("messages", EXPORT_MESSAGES),     # system, user, assistant (<think>…</think> + answer)
    ("response_id", pa.string()),      # the teacher response, or the mixed-policy sample_id
    ("question_id", pa.string()),
    ("domain", pa.string()),
    ("temperature", pa.float64()),
    ("selector", pa.string()),
    ("score", pa.float64()),
    ("teacher_sentences", pa.int32()),
    ("sentences", pa.int32()),
    ("policy", pa.string()),           # off_policy (the teacher's own response) | mixed (student prefix + teacher)
    ("prefix_chars", pa.int32()),      # the student prefix's length in the assistant turn (0: off_policy)
    ("cut_fraction", pa.float64()),    # where the student rollout was cut (null: off_policy)
])

# Float logprobs compress ~12% better split into byte streams before zstd (measured on generations).
# Character spans only grow along a response: delta-packed they are ~13% smaller than plain + zstd and,
# what the sentences stage waits on, read 1.6x and write 2x faster (benchmarks/selection.py's pool).
_ENCODINGS = {"token_logprobs": "BYTE_STREAM_SPLIT", "student_logprobs": "BYTE_STREAM_SPLIT",
              "token_starts": "DELTA_BINARY_PACKED", "token_ends": "DELTA_BINARY_PACKED"}


def content_hash(*parts: object, length: int = 16) -> str:
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8"))
    return h.hexdigest()[:length]


def write_parquet(table: pa.Table, path: Path, compression: str = "zstd") -> None:
    """Write one Parquet file atomically: readers see the old file or the whole new one. zstd (level 6)
    for what is stored long (generations, scores); streams of derived rows rebuilt in seconds can take
    "lz4" (the sentences: writes 1.4x faster than zstd at level 1, files 14% bigger)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    encoded = [c for c in _ENCODINGS if c in table.column_names]
    # dictionaries for strings only (ids, types, rules repeat); on numbers they were dropped page after
    # page and cost 2x the write time of the sentences table, for a 20% bigger file
    strings = [f.name for f in table.schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    pq.write_table(table, tmp, compression=compression, compression_level=6 if compression == "zstd" else None,
                   use_dictionary=strings,
                   column_encoding={f"{c}.list.element": _ENCODINGS[c] for c in encoded} or None)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_ahead(batches: Iterable, depth: int = 1) -> Iterator:
    """The items of `batches`, produced `depth` ahead by a thread: Parquet decoding (which releases the
    GIL) runs while the caller works on the previous batch. Errors reach the caller in order."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop, end = threading.Event(), object()

    def produce():
        try:
            for item in batches:
                while not stop.is_set():
                    try:
                        items.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put((end, None))
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            items.put((None, e))

    thread = threading.Thread(target=produce, daemon=True, name="read-ahead")
    thread.start()
    try:
        while True:
            item, error = items.get()
            if error is not None:
                raise error
            if item is end:
                return
            yield item
    finally:
        stop.set()  # the caller stopped early: let the thread finish instead of waiting on a full queue


def write_json(obj: object, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def write_csv(table: pa.Table, path: Path) -> None:
    """A small report table (DVC plots) as CSV, atomically."""
    import pyarrow.csv as pcsv

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pcsv.write_csv(table, tmp, pcsv.WriteOptions(quoting_style="none"))
    os.replace(tmp, path)


def read_table(folder: Path, columns: list[str] | None = None) -> pa.Table | None:
    """Every Parquet file of `folder` as one table (a file path: that file); None when there is none."""
    folder = Path(folder)
    files = [folder] if folder.is_file() else sorted(folder.glob("*.parquet"))
    if not files:
        return None
    return pa.concat_tables(pq.read_table(f, columns=columns) for f in files)


class OutputLock:
    """One writer per output folder: an exclusive `flock` on `.<folder>.lock` beside the folder, holding
    the holder's pid and host. A second run (another process, here or on a host sharing the disk) stops
    with one line naming the holder instead of mixing its shards with the first's. The kernel drops the
    lock when its process dies (kill -9 included), so a stale file never blocks a rerun. Re-entrant
    within one process: a stage that opens its output twice (resume in the same run) holds it once."""

    _held: dict[Path, "OutputLock"] = {}

    def __init__(self, folder: Path):
        self.folder = Path(folder).resolve()
        self.path = self.folder.parent / f".{self.folder.name}.lock"
        self.fd: int | None = None
        self.depth = 0

    @classmethod
    def acquire(cls, folder: Path) -> "OutputLock":
        lock = cls._held.get(Path(folder).resolve()) or cls(folder)
        if lock.depth == 0:
            lock._take()
            cls._held[lock.folder] = lock
        lock.depth += 1
        return lock

    def _take(self) -> None:
        import fcntl
        import socket
        import time

        from .params import StageError

        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
                os.close(fd)
                raise StageError(f"{self.folder}: another run is writing this output ({holder}); wait for it to "
                                 f"end or stop it (the lock goes with its process)") from None
            # a holder that was releasing may have removed the file we opened: lock the one on disk
            try:
                current = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()}, since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        self.depth -= 1
        if self.depth > 0:
            return
        try:
            os.unlink(self.path)  # removed while still held, so no other run can be holding this file
        except FileNotFoundError:
            pass
        os.close(self.fd)  # closing drops the flock
        self.fd = None
        self._held.pop(self.folder, None)


# what stages write into their output folders: all that replacing an output ever drops
ENGINE_FILES = ("*.parquet", "*.parquet.q", "*.parquet.r", "manifest.json", "shards.json", ".*.tmp-*")


def swap_in(new: Path, folder: Path) -> None:
    """`new` (a finished output written beside `folder`) takes `folder`'s place: two renames on one file
    system, then the old output is removed. Readers see the old folder or the new one. Anything in the
    old folder that the engine does not write (a user's notes, say) is moved into the new one first."""
    import fnmatch

    new, folder = Path(new), Path(folder)
    old = folder.parent / f".{folder.name}.old-{os.getpid()}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    if folder.exists():
        for p in folder.iterdir():
            if not any(fnmatch.fnmatch(p.name, pattern) for pattern in ENGINE_FILES) and not (new / p.name).exists():
                os.replace(p, new / p.name)
        os.replace(folder, old)
    os.replace(new, folder)
    shutil.rmtree(old, ignore_errors=True)


class replacing:
    """`with replacing(folder) as tmp:` — a stage writes its whole new output into `tmp`, a fresh folder
    beside `folder`; on success `tmp` takes `folder`'s place (two renames), on any error (disk full, a
    bad row, Ctrl-C) `tmp` is removed and `folder` is as it was. The output's lock is held throughout."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def __enter__(self) -> Path:
        self.lock = OutputLock.acquire(self.folder)
        for stale in self.folder.parent.glob(f".{self.folder.name}.new-*"):
            shutil.rmtree(stale, ignore_errors=True)  # a killed run's half-written output
        self.tmp = self.folder.parent / f".{self.folder.name}.new-{os.getpid()}"
        self.tmp.mkdir(parents=True)
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)
                return False
            swap_in(self.tmp, self.folder)
            return False
        finally:
            self.lock.release()


class ShardedOutput:
    """A persisted stage output made of numbered shards plus a manifest of the output-changing params.

    `open()` takes the folder's lock (one writer) and keeps existing shards only when the stored
    manifest equals the new one. On any difference (another model, seed, temperature, question set…)
    the old shards stay on disk until the first new shard is written, so a run that fails before it
    (a misspelt backend, a missing model) loses nothing; then the engine's own files are removed so old
    and new are never mixed. Each shard's row count and size are recorded in `shards.json` when it is
    written and checked on resume: a damaged shard (truncated by a full disk, say) is rewritten, with a
    line saying so. Leftover temp files of a killed writer are removed.
    """

    MANIFEST = "manifest.json"
    RECORDS = "shards.json"
    # what the engine writes here, and so all it ever removes (quarantine-*.q, rejections-*.r: rows that
    # belong with a shard, see write_side)
    OWN = ("part-*.parquet", MANIFEST, RECORDS, "quarantine-*.parquet.q", "rejections-*.parquet.r", ".*.tmp-*")

    def __init__(self, folder: Path, manifest: dict):
        self.folder = Path(folder)
        self.manifest = json.loads(json.dumps(manifest, sort_keys=True, default=str))
        self.lock: OutputLock | None = None
        self.stale = False
        self.records: dict[str, dict] = {}

    def open(self) -> "ShardedOutput":
        import sys

        self.lock = OutputLock.acquire(self.folder)
        old = self.stored_manifest(self.folder)
        self.stale = self.folder.exists() and any(self.folder.iterdir()) and old != self.manifest
        if self.stale:
            changed = sorted(k for k in set(self.manifest) | set(old or {}) if (old or {}).get(k) != self.manifest.get(k))
            print(f"{self.folder}: output-changing params differ from the stored run's ({', '.join(changed) or 'no manifest'}); "
                  "its shards stay until the first new shard replaces them", file=sys.stderr)
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        for tmp in self.folder.glob(".*.tmp-*"):
            tmp.unlink()
        if old is None:
            write_json(self.manifest, self.folder / self.MANIFEST)
        records = self.folder / self.RECORDS
        self.records = json.loads(records.read_text()) if records.exists() else {}
        return self

    @classmethod
    def stored_manifest(cls, folder: Path) -> dict | None:
        """The manifest of the run that wrote `folder`, None when there is none."""
        path = Path(folder) / cls.MANIFEST
        return json.loads(path.read_text()) if path.exists() else None

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def shard_path(self, index: int) -> Path:
        return self.folder / f"part-{index:05d}.parquet"

    def _intact(self, path: Path, record: dict | None) -> str | None:
        """None when the shard reads back as written; else what is wrong with it."""
        try:
            rows = pq.ParquetFile(path).metadata.num_rows
        except Exception as e:  # noqa: BLE001 - any unreadable footer means a damaged file
            return f"unreadable ({type(e).__name__}: {str(e)[:120]})"
        if record is not None and (rows, path.stat().st_size) != (record["rows"], record["bytes"]):
            return f"{rows} rows in {path.stat().st_size} bytes, {record['rows']} rows in {record['bytes']} written"
        return None

    def done_shards(self) -> set[int]:
        import sys

        if self.stale:
            return set()
        done = set()
        for p in sorted(self.folder.glob("part-*.parquet")):
            index = int(p.stem.split("-")[1])
            problem = self._intact(p, self.records.get(str(index)))
            if problem is None:
                done.add(index)
            else:
                print(f"{p}: damaged shard ({problem}); it is written again", file=sys.stderr)
                p.unlink()
                self.records.pop(str(index), None)
        return done

    def clear_stale(self) -> None:
        if self.stale:
            self._clear()

    def _clear(self) -> None:
        """Remove the stale run's files (only those the engine writes) and start this run's manifest."""
        for pattern in self.OWN:
            for p in self.folder.glob(pattern):
                p.unlink()
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json(self.manifest, self.folder / self.MANIFEST)
        self.records, self.stale = {}, False

    def write_side(self, index: int, name: str, table: pa.Table) -> None:
        """Rows that belong with shard `index` but not in it (its rejections, its quarantine), written before
        the shard: `<name>-<index>.parquet.<n>`, the suffix keeping them out of the shards' *.parquet."""
        if self.stale:
            self._clear()
        write_parquet(table, self.folder / f"{name}-{index:05d}.parquet.{name[0]}")

    def write_shard(self, index: int, table: pa.Table) -> None:
        if self.stale:
            self._clear()
        path = self.shard_path(index)
        write_parquet(table, path)
        self.records[str(index)] = {"rows": table.num_rows, "bytes": path.stat().st_size}
        write_json(self.records, self.folder / self.RECORDS)
