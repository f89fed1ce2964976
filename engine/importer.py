"""`dasd import` (module `importer`: `import` is a Python keyword): an existing SFT dataset whose teacher
token logprobs were released, as the engine's own tables — so a user who cannot run a 120B teacher can
still score it with their own student and run the filters, dedup and DAS on it.

Input, e.g. the DASD authors' release: an SFT table (`uuid`, `input` the question, `output` the response,
`domain`, `meta`) and a logprob table (`sample_uuid`, `token_ids` in the teacher's tokenizer — gpt-oss's
harmony tokens for their release — and `logprobs`, one per token), joined on the id; or one table holding
all of it. Each may be a local file (JSONL/JSON/Parquet/CSV), a local dataset folder or a Hub dataset.

Output, as `questions` and `generate@T` would have written them:
- data/questions/ through the questions stage itself (the SFT table as one question source);
- data/generations/T=<t>/ — each response rebuilt from its token ids by the same code path as a sampled
  one (`responses.build`: harmony channels → `<think>…</think>answer`, token spans), and checked against
  the released text: rows whose tokens do not decode to it (whitespace aside), lack logprobs, or carry
  values that are not log probabilities go to data/quarantine/import-T=<t>.parquet with the file, line, field
  and reason (kept + quarantined = input, metrics/import/T=<t>.json);
- resumable: shards of `shard_rows` source rows, atomic, skipped when done (same manifest).
Then `dasd score`, `sentences`, `filter`, `dedup`, `select`, `export` run on them as usual, or `dvc repro`
with the stages that would overwrite them frozen (`dvc freeze miniature questions generate@<t>`).
"""
from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from . import questions as Q
from . import responses, tables
from .backends import ModelParams, Sample
from .generate import generation_row, write_report
from .params import ParamsError, StageError, folder_fingerprint, temperature_dir, temperature_value
from .stages import Stage


@dataclass
class ImportParams:
    source: dict                        # a question source (engine/questions.Source) + fields.response
    logprobs: dict | None = None        # {path|hf, config, split, fields: {id, token_ids, logprobs}}; None: in `source`
    temperature: float = 1.0            # the temperature the teacher sampled at (the folder T=<t>)
    logprobs_mode: str = "raw_logprobs"  # what the released logprobs are (raw_logprobs | processed_logprobs)
    finish_reason: str = "stop"         # for responses whose tokens end without a stop token (released SFT data
                                        # holds finished responses; its token lists often omit the stop token)
    shard_rows: int = 1000
    on_error: str = "quarantine"        # quarantine | raise

    def __post_init__(self):
        if "response" not in self.source.get("fields", {}):
            raise ParamsError("import: map fields.response to the column holding the teacher's response text")
        if self.on_error not in ("raise", "quarantine"):
            raise ParamsError(f"import: on_error must be 'raise' or 'quarantine', not {self.on_error!r}")
        lp = self.logprobs_fields()
        if self.logprobs is not None and "id" not in lp:
            raise ParamsError("import: the logprob table is joined on an id: map logprobs.fields.id")
        if self.logprobs is not None and "id" not in self.source.get("fields", {}):
            raise ParamsError("import: the logprob table is joined on an id: map the source's fields.id")

    def logprobs_fields(self) -> dict:
        return {"token_ids": "token_ids", "logprobs": "logprobs", **((self.logprobs or {}).get("fields") or {})}


class LogprobTable:
    """The logprob table, memory-mapped (datasets/Arrow) and indexed by id; rows fetched per shard."""

    def __init__(self, spec: dict, fields: dict, root: Path):
        import datasets

        self.label = spec.get("path") or f"hf:{spec.get('hf')}"
        if spec.get("hf"):
            ds = datasets.load_dataset(spec["hf"], spec.get("config"), split=spec.get("split", "train"))
        else:
            path = root / spec["path"]
            if not path.exists():
                raise StageError(f"{spec['path']}: logprob table not found")
            if path.is_dir():
                ds = datasets.load_dataset(str(path), spec.get("config"), split=spec.get("split", "train"))
            else:
                kind = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}.get(path.suffix)
                if kind is None:
                    raise ParamsError(f"{spec['path']}: unknown format (jsonl, json, parquet, csv)")
                ds = datasets.load_dataset(kind, data_files=str(path), split="train")
        missing = [c for c in (fields["id"], fields["token_ids"], fields["logprobs"]) if c not in ds.column_names]
        if missing:
            raise Q.InputError(self.label, None, missing[0], f"missing column (has: {ds.column_names})")
        self.ds, self.fields, self.index, self.repeated = ds, fields, {}, set()
        for i, key in enumerate(ds[fields["id"]]):
            if str(key) in self.index:
                self.repeated.add(str(key))
            self.index[str(key)] = i

    def fetch(self, keys: list[str]) -> dict[str, tuple[int, list, list]]:
        """id -> (1-based row, token ids, logprobs) for the ids present."""
        rows = sorted({self.index[k] for k in keys if k in self.index})
        got = self.ds.select(rows)
        ids, lps = got[self.fields["token_ids"]], got[self.fields["logprobs"]]
        by_row = {r: (r + 1, i, lp) for r, i, lp in zip(rows, ids, lps)}
        return {k: by_row[self.index[k]] for k in keys if k in self.index}


def merge_questions(new: pa.Table, into: Path) -> None:
    """`into` becomes the union of both question tables, one row per question_id (the one already there wins)."""
    parts = ([pq.read_table(into)] if into.exists() else []) + [new]
    merged = pa.concat_tables(parts)
    first = {}
    for i, qid in enumerate(merged.column("question_id").to_pylist()):
        first.setdefault(qid, i)
    tables.write_parquet(merged.take(sorted(first.values())).cast(tables.QUESTIONS), into)


def _first_difference(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def convert(key: str, label: str, line: int, tokens, response_text, tokenizer, fmt: str, ip: ImportParams,
            lp_label: str, stop_ids: set) -> responses.Response:
    """One released response as the engine's Response; InputError naming file, line and field when it cannot be."""
    f = ip.logprobs_fields()
    if tokens is None:
        raise Q.InputError(lp_label, None, f.get("id"), f"no logprob row for id {key!r}")
    lp_line, ids, lps = tokens
    if ids is None or lps is None or len(ids) == 0:
        raise Q.InputError(lp_label, lp_line, f["token_ids"] if not ids else f["logprobs"], "missing or empty")
    if len(ids) != len(lps):
        raise Q.InputError(lp_label, lp_line, f["logprobs"], f"{len(lps)} logprobs for {len(ids)} token ids")
    bad = next((x for x in lps if x is None or not math.isfinite(x) or x > 1e-4), "ok")
    if bad != "ok":
        raise Q.InputError(lp_label, lp_line, f["logprobs"], f"{bad!r} is not a log probability")
    vocab = len(tokenizer)
    out_of_vocab = next((t for t in ids if not 0 <= int(t) < vocab), None)
    if out_of_vocab is not None:
        raise Q.InputError(lp_label, lp_line, f["token_ids"],
                           f"token id {out_of_vocab} is outside the teacher tokenizer's vocabulary ({vocab})")
    finish = "stop" if int(ids[-1]) in stop_ids else ip.finish_reason
    r = responses.build(Sample(logprobs=[float(x) for x in lps], finish_reason=finish, token_ids=[int(t) for t in ids]),
                        tokenizer, fmt)
    if response_text is not None:
        got, want = Q.normalize(r.text), Q.normalize(str(response_text))
        if got != want:
            at = _first_difference(got, want)
            raise Q.InputError(label, line, ip.source["fields"]["response"],
                               f"differs from what its token ids decode to (from normalised character {at}: "
                               f"{want[at:at + 40]!r} vs {got[at:at + 40]!r})")
    return r


def _stream(src: Q.Source, root: Path, system_prompt: str | None):
    """(line, staged question row or InputError, raw row) for every source row, in file order."""
    label = src.path or f"hf:{src.hf}"
    for line, row in Q.read_source(src, root):
        if isinstance(row, Q.InputError):
            yield line, row, None
            continue
        try:
            yield line, Q.stage_row(src, label, line, row, system_prompt), row
        except Q.InputError as e:
            yield line, e, row


def run(ip: ImportParams, teacher: ModelParams, system_prompt: str | None, root: Path, data: Path,
        metrics_dir: Path, progress: bool = True) -> dict:
    lp_fields = ip.logprobs_fields()
    # the question source: the response and token columns are not the question's metadata
    spec = {**ip.source, "name": "import",
            "fields": {k: v for k, v in ip.source["fields"].items() if k != "response"},
            "drop": [ip.source["fields"]["response"], *([] if ip.logprobs else [lp_fields["token_ids"], lp_fields["logprobs"]])]}
    src = Q.Source(**spec)
    label = src.path or f"hf:{src.hf}"
    # the questions, exactly as the questions stage ingests a source (dedup, quarantine, report), then
    # added to those already in data/questions/ (another temperature's import, or the user's own)
    data.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=data))
    try:
        qreport = Q.run(Q.QuestionsParams(sources=[spec], on_error=ip.on_error), system_prompt, root, staging / "questions",
                        staging / "quarantine.parquet", staging / "questions.json")
        staged_questions = pq.read_table(staging / "questions" / "questions.parquet")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    t, folder = float(ip.temperature), temperature_dir(ip.temperature)  # the folder as params.yaml spells it
    # local inputs by content too: a re-released file under the same name starts the import clean
    inputs = {spec["path"]: folder_fingerprint(root / spec["path"]) for spec in (ip.source, ip.logprobs or {})
              if spec.get("path")}
    manifest = {"import": {k: v for k, v in ip.__dict__.items() if k not in ("shard_rows", "on_error")},
                "inputs": inputs, "shard_rows": ip.shard_rows, "teacher": teacher.identity()}
    # The import is written beside the existing generations (resumable there) and takes their place only
    # when it is complete and imported something; a finished import with these params resumes in place.
    final = data / "generations" / folder
    out = tables.ShardedOutput(final, manifest)
    if out.manifest != out.stored_manifest(final):
        out = tables.ShardedOutput(data / ".import" / folder, manifest)
    out.open()
    try:
        return _import(out, final, ip, teacher, src, label, lp_fields, root, system_prompt, data, metrics_dir,
                       qreport, staged_questions, t, folder, progress)
    finally:
        out.close()


def _import(out, final, ip, teacher, src, label, lp_fields, root, system_prompt, data, metrics_dir, qreport,
            staged_questions, t, folder, progress) -> dict:
    tokenizer = teacher.tokenizer()
    stop_ids = set(getattr(tokenizer, "all_special_ids", None) or [])
    table = LogprobTable(ip.logprobs, lp_fields, root) if ip.logprobs else None
    lp_label = table.label if table else label
    done = out.done_shards()
    quarantined, rows_in, per_question = [], 0, {}
    bar = tqdm(unit="row", desc=f"import T={t:g}", disable=not progress)
    shard, k = [], 0

    def flush(shard, k):
        if k in done:
            return
        keys = [str(raw.get(src.fields.id)) if raw is not None else None for _, _, raw, _ in shard]
        fetched = table.fetch([x for x in keys if x is not None]) if table else {}
        out_rows, shard_quarantine = [], []
        for (line, staged, raw, index), key in zip(shard, keys):
            try:
                if isinstance(staged, Q.InputError):
                    raise staged
                if table:
                    if key in table.repeated:
                        raise Q.InputError(lp_label, None, lp_fields["id"], f"id {key!r} appears more than once")
                    tokens = fetched.get(key)
                else:
                    tokens = (line, raw.get(lp_fields["token_ids"]), raw.get(lp_fields["logprobs"]))
                r = convert(key, label, line, tokens, raw.get(ip.source["fields"]["response"]), tokenizer,
                            teacher.format, ip, lp_label, stop_ids)
            except Q.InputError as e:
                if ip.on_error == "raise":
                    raise
                shard_quarantine.append(dict(stage="import", source="import", file=e.file, line=e.line, field=e.field,
                                             reason=e.reason, raw=(e.raw or json.dumps(
                                                 {c: v for c, v in (raw or {}).items() if c not in lp_fields.values()},
                                                 default=str, ensure_ascii=False))[:2000]))
                continue
            qid = staged["question_id"]
            out_rows.append(generation_row(r, tables.content_hash("import", key or f"{label}:{line}"), qid, t, index,
                                           None, teacher, "import", ip.logprobs_mode))
        # the shard's quarantine rows are written just before it, so a resumed run counts them once
        out.write_side(k, "quarantine", pa.Table.from_pylist(shard_quarantine, schema=tables.QUARANTINE))
        out.write_shard(k, pa.Table.from_pylist(out_rows, schema=tables.GENERATIONS))

    for line, staged, raw in _stream(src, root, system_prompt):
        rows_in += 1
        qid = None if isinstance(staged, Q.InputError) else staged["question_id"]
        index = per_question.get(qid, 0)  # sample_index: the response's order among its question's, in file order
        if qid is not None:
            per_question[qid] = index + 1
        shard.append((line, staged, raw, index))
        if len(shard) == ip.shard_rows:
            flush(shard, k)
            shard, k = [], k + 1
        bar.update(1)
    if shard:
        flush(shard, k)
    bar.close()
    for q in sorted(out.folder.glob("quarantine-*.parquet.q")):
        quarantined += pq.read_table(q).to_pylist()
    # every row failing is an error: the generations and questions already there stay as they were
    try:
        Q.check_quarantine_share(rows_in, len(quarantined), 1.0, quarantined[:1])
    except StageError:
        if out.folder != final:  # nothing worth resuming: the staged shards hold no row
            shutil.rmtree(out.folder, ignore_errors=True)
        raise
    if out.folder != final:  # complete: the new generations take the old ones' place
        lock = tables.OutputLock.acquire(final)
        try:
            tables.swap_in(out.folder, final)
        finally:
            lock.release()
    merge_questions(staged_questions, data / "questions" / "questions.parquet")
    tables.write_parquet(pa.Table.from_pylist(quarantined, schema=tables.QUARANTINE),
                         data / "quarantine" / f"import-{folder}.parquet")
    gen = write_report(final, metrics_dir / "generate" / f"{folder}.json", t)
    report = {"rows": rows_in, "imported": gen["responses"], "quarantined": len(quarantined),
              "questions": qreport["questions"], "temperature": t, "folder": folder,
              "quarantined_by_reason": _count(q["reason"].split(" (")[0] for q in quarantined),
              "generations": gen}
    if report["imported"] + report["quarantined"] != rows_in:
        raise AssertionError(f"import: {rows_in} rows in, {report['imported']} imported + "
                             f"{report['quarantined']} quarantined")
    tables.write_json(report, metrics_dir / "import" / f"{folder}.json")
    return report


def _count(items) -> dict:
    out = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return dict(sorted(out.items()))


def _table_spec(where: str, root: Path, config: str | None, split: str) -> dict:
    """A local file/folder (relative to the working directory or the project root) or a Hub dataset id."""
    for base in (Path.cwd(), root):
        if (base / where).exists():
            return {"path": str((base / where).resolve()), "config": config, "split": split}
    return {"hf": where, "config": config, "split": split}


def main(ctx) -> None:
    args, root = ctx.args, ctx.root
    teacher = ctx.section("teacher")
    if args.teacher_model:
        teacher.model = args.teacher_model
    if args.tokenizer:
        teacher.options = {**teacher.options, "tokenizer": args.tokenizer}
    if args.format:
        teacher.format = args.format
    source = {**_table_spec(args.source, root, args.config, args.split), "license": args.license,
              "fields": {"id": args.id_field, "question": args.question_field, "response": args.response_field},
              **({"domain": args.domain} if args.domain else {"domain_field": args.domain_field})}
    if args.answer_field:
        source["fields"]["answer"] = args.answer_field
    logprobs = None
    if args.logprobs:
        logprobs = {**_table_spec(args.logprobs, root, args.logprobs_config, args.split),
                    "fields": {"id": args.logprobs_id_field, "token_ids": args.token_ids_field,
                               "logprobs": args.logprobs_field}}
    t = temperature_value(args.temperature, ctx.value("generate.temperatures", []))
    ip = ImportParams(source=source, logprobs=logprobs, temperature=t,
                               logprobs_mode=args.logprobs_mode, finish_reason=args.finish_reason,
                               on_error=args.on_error)
    r = run(ip, teacher, ctx.value("system_prompt"), root, root / "data", root / "metrics",
                     progress=not args.no_progress)
    print(f"import: {r['rows']} rows -> {r['imported']} responses of {r['questions']} questions in "
          f"data/generations/{r['folder']}/, {r['quarantined']} quarantined "
          f"(data/quarantine/import-{r['folder']}.parquet: {r['quarantined_by_reason']})")


def _arguments(parser) -> None:
    parser.add_argument("source", help="the SFT table: a local file or folder, or a Hub dataset id")
    parser.add_argument("--logprobs", help="the logprob table (file, folder or Hub id); default: columns of SOURCE")
    parser.add_argument("--config", help="Hub config of SOURCE")
    parser.add_argument("--logprobs-config", help="Hub config of the logprob table")
    parser.add_argument("--split", default="train")
    parser.add_argument("--temperature", default="1.0", help="the temperature the teacher sampled at")
    parser.add_argument("--id-field", default="uuid")
    parser.add_argument("--question-field", default="input")
    parser.add_argument("--response-field", default="output")
    parser.add_argument("--answer-field", help="a reference answer column, if any")
    parser.add_argument("--domain-field", default="domain", help="the column holding math|code|science|instruction")
    parser.add_argument("--domain", help="one domain for every row instead of --domain-field")
    parser.add_argument("--license", help="the source's license, recorded on every question")
    parser.add_argument("--logprobs-id-field", default="sample_uuid")
    parser.add_argument("--token-ids-field", default="token_ids")
    parser.add_argument("--logprobs-field", default="logprobs")
    parser.add_argument("--logprobs-mode", default="raw_logprobs", choices=["raw_logprobs", "processed_logprobs"],
                        help="what the released logprobs are: the teacher's own distribution, or after temperature")
    parser.add_argument("--finish-reason", default="stop", choices=["stop", "length"],
                        help="for responses whose tokens end without a stop token")
    parser.add_argument("--teacher-model", help="the teacher's name to record (default: params teacher.model)")
    parser.add_argument("--tokenizer", help="the teacher's tokenizer folder (default: params teacher)")
    parser.add_argument("--format", choices=["chat", "harmony"],
                        help="the token ids' format (default: params teacher.format)")
    parser.add_argument("--on-error", default="quarantine", choices=["quarantine", "raise"])


# not a DVC stage: a command that writes what generate would (data/questions, data/generations/T=<t>)
STAGE = Stage("import", main, sections={"teacher": ModelParams},
              params=("system_prompt", "teacher", "generate.temperatures"),
              outputs={"questions": "data/questions", "generations": "data/generations"}, progress=True,
              arguments=_arguments, dvc=False,
              help="an existing SFT dataset with released teacher token logprobs -> data/questions, data/generations/T=<t>")
