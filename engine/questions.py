"""Stage `questions`: every source in params -> one table of distinct chat prompts.

Sources are local JSONL / JSON / Parquet / CSV files (plain or .gz), Hugging Face Hub datasets, local
dataset folders and `save_to_disk` output, each with a mapping of its columns. Bad input stops the
stage with an error naming file, line and field, or (on_error: quarantine) becomes a row of
`data/quarantine/questions.parquet` with the reason. Exact duplicates (after whitespace normalisation)
collapse to one question_id in SQL (sql/questions.sql). Accounting: rows = staged + quarantined and
staged = questions + duplicates collapsed, written to metrics/questions.json.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import re
from dataclasses import field
from pathlib import Path
from typing import Annotated, Iterator, Literal, get_args

import pyarrow as pa
from pydantic import Field

from . import sql, tables
from .errors import InputError
from .params import Count, ParamsError, Share, schema
from .stages import Stage

Domain = Literal["math", "code", "science", "instruction"]
Format = Literal["jsonl", "json", "parquet", "csv", "hf"]
DOMAINS, FORMATS = get_args(Domain), get_args(Format)


@schema
class Fields:
    """Which column holds what (`questions.sources[].fields`)."""
    question: str | None = None
    answer: str | None = None
    id: str | None = None


@schema
class Source:
    """One entry of `questions.sources` in params.yaml."""
    name: str
    path: str | None = None          # local file or folder, relative to the project root
    hf: str | None = None            # a Hub dataset name (load_dataset)
    split: str = "train"
    config: str | None = None
    format: Format | None = None  # inferred from the path when absent
    domain: Domain | None = None  # a constant domain…
    domain_field: str | None = None  # …or a column holding it
    fields: Fields = field(default_factory=Fields)
    template: str | None = None      # question built from columns, e.g. "{question}\n\nA. {A}…"
    columns: list[str] | None = None  # names for a header-less CSV
    license: str | None = None
    limit: Count | None = None       # keep only the first N rows (samples of big sources)
    drop: list[str] = field(default_factory=list)  # columns left out of `metadata` (e.g. a response's text)

    def __post_init__(self):
        if (self.path is None) == (self.hf is None):
            raise ParamsError(f"source {self.name!r}: give exactly one of 'path' or 'hf'")
        if self.domain is None and self.domain_field is None:
            raise ParamsError(f"source {self.name!r}: give 'domain' ({'|'.join(DOMAINS)}) or 'domain_field'")
        if not self.template and self.fields.question is None:
            raise ParamsError(f"source {self.name!r}: map 'fields.question' to a column, or give a 'template'")

    def resolved_format(self, root: Path) -> str:
        if self.hf:
            return "hf"
        if self.format:
            return self.format
        p = root / self.path
        if p.is_dir():
            return "hf"
        suffixes = [s for s in p.suffixes if s != ".gz"]
        ext = suffixes[-1].lstrip(".") if suffixes else ""
        ext = {"jsonlines": "jsonl", "ndjson": "jsonl", "pq": "parquet", "tsv": "csv"}.get(ext, ext)
        if ext not in FORMATS:
            raise ParamsError(f"source {self.name!r}: cannot tell the format of {self.path}; set 'format'")
        return ext


@schema
class QuestionsParams:
    sources: Annotated[list[Source], Field(min_length=1)]
    on_error: Literal["raise", "quarantine"] = "raise"
    max_quarantined: Share = 1.0  # quarantining a larger share of rows stops the stage (all rows always does)


# -- readers: yield (line, row dict) or raise InputError for a bad row --------------------------

Row = tuple[int, dict | InputError]


def _open_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def _read_jsonl(path: Path, label: str) -> Iterator[Row]:
    for n, line in enumerate(_open_bytes(path).split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            yield n, InputError(label, n, None, f"invalid UTF-8 at byte {e.start}", line.decode("utf-8", "replace"))
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            yield n, InputError(label, n, None, f"invalid JSON: {e.msg} (column {e.colno})", text)
            continue
        yield n, obj if isinstance(obj, dict) else InputError(label, n, None, "not a JSON object", text)


def _read_json(path: Path, label: str) -> Iterator[Row]:
    try:
        obj = json.loads(_open_bytes(path).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(label, getattr(e, "lineno", None), None, f"unreadable JSON: {e}") from None
    rows = obj.get("data", obj.get("rows")) if isinstance(obj, dict) else obj
    if not isinstance(rows, list):
        raise InputError(label, None, None, "expected a JSON array of objects (or {'data': [...]})")
    for n, r in enumerate(rows, 1):
        yield n, r if isinstance(r, dict) else InputError(label, n, None, "not a JSON object", json.dumps(r)[:200])


def _read_csv(path: Path, label: str, columns: list[str] | None) -> Iterator[Row]:
    data = _open_bytes(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        bad_line = data.count(b"\n", 0, e.start) + 1
        yield bad_line, InputError(label, bad_line, None, f"invalid UTF-8 at byte {e.start}")
        text = data.decode("utf-8-sig", "replace")
        bad = bad_line
    else:
        bad = None
    delimiter = "\t" if ".tsv" in path.suffixes else ","
    reader = csv.DictReader(io.StringIO(text, newline=""), fieldnames=columns, delimiter=delimiter)
    start = 1
    for row in reader:
        line, start = start, reader.line_num + 1
        if bad is not None and line <= bad <= reader.line_num:
            continue  # the row holding the invalid bytes was reported above
        if None in row or any(v is None for v in row.values()):
            yield line, InputError(label, line, None, "wrong number of columns", json.dumps(row, default=str)[:2000])
            continue
        yield line, row


def _read_parquet(path: Path, label: str) -> Iterator[Row]:
    import pyarrow.parquet as pq

    for n, r in enumerate(pq.read_table(path).to_pylist(), 1):
        yield n, r


def _read_hf(src: Source, root: Path) -> Iterator[Row]:
    import datasets

    if src.hf:
        ds = datasets.load_dataset(src.hf, src.config, split=src.split)
    else:
        folder = root / src.path
        if (folder / "dataset_info.json").exists() or (folder / "state.json").exists() or \
                (folder / "dataset_dict.json").exists():
            ds = datasets.load_from_disk(str(folder))
        else:
            ds = datasets.load_dataset(str(folder), src.config, split=src.split)
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[src.split]
    for n, r in enumerate(ds, 1):
        yield n, r


def read_source(src: Source, root: Path) -> Iterator[Row]:
    fmt = src.resolved_format(root)
    if fmt == "hf":
        rows = _read_hf(src, root)
    else:
        path = root / src.path
        if not path.exists():
            raise InputError(src.path, None, None, "file not found")
        rows = {"jsonl": _read_jsonl, "json": _read_json, "parquet": _read_parquet}.get(fmt)
        rows = rows(path, src.path) if rows else _read_csv(path, src.path, src.columns)
    for k, item in enumerate(rows):
        if src.limit is not None and k >= src.limit:
            break
        yield item


# -- rows -> staged questions --------------------------------------------------------------------

def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def question_text(value, label, line, name) -> str:
    """A question's text: a string and nothing else. Numbers, booleans, NaN and bytes are not converted
    (`b'What is 1+1?'` is no question). U+FFFD is a legitimate character: invalid UTF-8 is caught where the
    bytes are decoded (JSONL, CSV), and Parquet / Arrow strings are valid UTF-8 by construction."""
    if value is None:
        raise InputError(label, line, name, "missing or null")
    if not isinstance(value, str):
        raise InputError(label, line, name, f"expected text, got {type(value).__name__} {_short(value)}")
    if not value.strip():
        raise InputError(label, line, name, "empty text")
    return value


def answer_text(value, label, line, name) -> str | None:
    """A reference answer: text, or an integer / finite number written as text (GSM8K-style numeric
    answers); booleans, NaN and bytes are errors."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return repr(value)
    raise InputError(label, line, name, f"expected text or a number, got {type(value).__name__} {_short(value)}")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def stage_row(src: Source, label: str, line: int, row: dict, system_prompt: str | None) -> dict:
    q_col = src.fields.question
    if src.template:
        try:
            question = src.template.format_map(row)
        except KeyError as e:
            raise InputError(label, line, e.args[0], "missing (used by template)") from None
        question = question_text(question, label, line, "template")
    else:
        if q_col not in row:
            raise InputError(label, line, q_col, "missing")
        question = question_text(row[q_col], label, line, q_col)
    a_col = src.fields.answer
    answer = None
    if a_col is not None:
        if a_col not in row:
            raise InputError(label, line, a_col, "missing")
        answer = answer_text(row[a_col], label, line, a_col)
    domain = src.domain
    if src.domain_field:
        if src.domain_field not in row:
            raise InputError(label, line, src.domain_field, "missing")
        domain = str(row[src.domain_field])
        if domain not in DOMAINS:
            raise InputError(label, line, src.domain_field, f"domain {domain!r} is not one of {DOMAINS}")
    id_col = src.fields.id
    used = {q_col, a_col, *src.drop}
    meta = {k: v for k, v in row.items() if k not in used}
    messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + \
        [{"role": "user", "content": question}]
    return dict(question_id=tables.content_hash(normalize(question)), domain=domain, source=src.name,
                messages=messages, reference_answer=answer,
                source_id=str(row[id_col]) if id_col and row.get(id_col) is not None else f"{label}:{line}",
                license=src.license, metadata=json.dumps(meta, sort_keys=True, default=str, ensure_ascii=False))


def check_quarantine_share(rows: int, quarantined: int, limit: float, first: list[dict]) -> None:
    """A stage that would quarantine every row (a wrong `fields` mapping, the wrong file) or more than
    `limit` of them stops before writing anything: the output it had stays as it was."""
    from .params import StageError

    if rows and (quarantined == rows or quarantined / rows > limit):
        e = first[0] if first else {}
        where = f"{e.get('file')}:{e.get('line')}" + (f" field {e['field']!r}" if e.get("field") else "")
        raise StageError(f"{quarantined} of {rows} rows failed, the first {where}: {e.get('reason')}; nothing was "
                         "written and the earlier output stays. Check the input and its `fields` mapping" +
                         ("" if quarantined == rows else f", or raise max_quarantined (now {limit})"))


STAGED = tables.QUESTIONS.remove(tables.QUESTIONS.get_field_index("duplicates")).append(pa.field("ordinal", pa.int64()))


def run(qp: QuestionsParams, system_prompt: str | None, root: Path, out_dir: Path, quarantine_path: Path,
        metrics_path: Path) -> dict:
    staged, quarantined, per_source = [], [], {}
    for src in qp.sources:
        label = src.path or f"hf:{src.hf}"
        counts = per_source.setdefault(src.name, {"rows": 0, "quarantined": 0, "staged": 0})
        for line, row in read_source(src, root):
            counts["rows"] += 1
            try:
                if isinstance(row, InputError):
                    raise row
                rec = stage_row(src, label, line, row, system_prompt)
            except InputError as e:
                if qp.on_error == "raise":
                    raise
                counts["quarantined"] += 1
                quarantined.append(dict(stage="questions", source=src.name, file=e.file, line=e.line,
                                        field=e.field, reason=e.reason,
                                        raw=(e.raw or json.dumps(row, default=str, ensure_ascii=False))[:2000]))
                continue
            rec["ordinal"] = len(staged)
            staged.append(rec)
            counts["staged"] += 1

    check_quarantine_share(sum(c["rows"] for c in per_source.values()), len(quarantined),
                           qp.max_quarantined, quarantined[:1])
    con = sql.connect()
    con.register("questions_staged", pa.Table.from_pylist(staged, schema=STAGED))
    result = sql.run_file(con, "questions").to_arrow_table()
    out = result.select(tables.QUESTIONS.names).cast(tables.QUESTIONS)
    tables.write_parquet(out, out_dir / "questions.parquet")
    tables.write_parquet(pa.Table.from_pylist(quarantined, schema=tables.QUARANTINE), quarantine_path)

    by_domain = {}
    for d in out.column("domain").to_pylist():
        by_domain[d] = by_domain.get(d, 0) + 1
    report = {
        "rows": sum(c["rows"] for c in per_source.values()),
        "quarantined": len(quarantined),
        "staged": len(staged),
        "duplicates_collapsed": len(staged) - out.num_rows,
        "questions": out.num_rows,
        "by_domain": by_domain,
        "by_source": per_source,
    }
    assert report["rows"] == report["staged"] + report["quarantined"]
    tables.write_json(report, metrics_path)
    return report


def main(ctx) -> None:
    report = run(ctx.section("questions"), ctx.value("system_prompt"), ctx.root, ctx.path("out"),
                 ctx.path("quarantine"), ctx.path("metrics"))
    print(f"questions: {report['rows']} rows -> {report['questions']} questions "
          f"({report['duplicates_collapsed']} duplicates collapsed, {report['quarantined']} quarantined)")


# inputs: the sources' own files are params (questions.sources[].path); the miniature's is data/miniature
STAGE = Stage("questions", main, sections={"questions": QuestionsParams}, params=("system_prompt", "questions"),
              inputs={"miniature": "data/miniature"},
              outputs={"out": "data/questions", "quarantine": "data/quarantine/questions.parquet",
                       "metrics": "metrics/questions.json"})
