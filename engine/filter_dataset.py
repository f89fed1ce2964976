"""`dasd filter --input SRC --out DIR`: the filter's rules on any dataset of responses, not only the
pipeline's own (OpenThoughts, Sky-T1, AM-DeepSeek-R1-Distilled, DASD's released sets, a local file). A
mode of the `filter` command (engine/stages.py MODES), not part of the pipeline's filter stage.

SRC is a local JSONL / JSON / Parquet / CSV file, a dataset folder, or a Hub dataset id (`--split`,
`--config`). `--text-field` names the response (a path into the row: `response`,
`conversations[-1].value`, `messages[-1].content`), `--id-field` its id (else `file:line`),
`--question-field` the question (for the report), `--answer-field` a reference answer (for the
`wrong_answer` rule, when params turn it on), `--finish-field` a finish reason (`length` marks a
response cut by its token limit; without it, cut responses are found by their structure). The reasoning
is mapped to the engine's `<think>…</think>` form first (`--reasoning-format`, engine/reasoning.py).
`--tokenizer DIR` (a student tokenizer) gives the `length` rule its student-token counts; without it
that rule is skipped, and the report says so.

Thresholds: params `filter` of the project the command runs in (or `--params FILE`), else the
defaults. Output DIR/kept.parquet (id, line, format, text in the engine's form), DIR/rejections.parquet
(one row per response x failed rule, as in the pipeline, `response_id` = the input's id) and
DIR/report.json (counts per rule, per format read, the rules skipped); kept + rejected = input.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pyarrow as pa

from . import tables
from .backends import looks_local
from .errors import InputError, StageError
from .questions import Source, read_source
from .reasoning import to_think

_PART = re.compile(r"([^.\[\]]+)|\[(-?\d+)\]")

KEPT = pa.schema([("id", pa.string()), ("line", pa.int64()), ("format", pa.string()), ("question", pa.string()),
                  ("text", pa.string())])


def pick(row: dict, path: str, label: str, line: int):
    """The value at `path` in `row` (`a.b`, `a[-1].b`); an InputError naming the field when absent."""
    value = row
    for name, index in _PART.findall(path):
        try:
            value = value[int(index)] if index else value[name]
        except (KeyError, IndexError, TypeError):
            raise InputError(label, line, path, "missing") from None
    return value


def source_of(src: str, split: str, config: str | None) -> Source:
    local = Path(src).expanduser()
    if not local.exists() and looks_local(src):
        raise InputError(src, None, None, "no such file or folder (a Hub dataset id is owner/name)")
    where = {"path": str(local.resolve())} if local.exists() else {"hf": src, "split": split, "config": config}
    return Source(name="input", domain="math", fields={"question": "-"}, **where)


def read(args) -> tuple[pa.Table, pa.Table, dict]:
    """(generations-like table: response_id, question_id, text, finish_reason; kept-candidates table
    (KEPT); question_id -> {domain, reference_answer})."""
    src = source_of(args.input, args.split, args.config)
    label = args.input
    rows, meta, questions, seen = [], [], {}, {}
    for line, row in read_source(src, Path.cwd()):
        if isinstance(row, InputError):
            raise row
        text = pick(row, args.text_field, label, line)
        if not isinstance(text, str):
            raise InputError(label, line, args.text_field, f"expected text, got {type(text).__name__}")
        rid = str(pick(row, args.id_field, label, line)) if args.id_field else f"{label}:{line}"
        if rid in seen:
            raise InputError(label, line, args.id_field, f"id {rid!r} repeats line {seen[rid]}: ids must be unique")
        seen[rid] = line
        mapped, fmt = to_think(text, args.reasoning_format)
        finish = str(pick(row, args.finish_field, label, line)) if args.finish_field else "stop"
        question = str(pick(row, args.question_field, label, line)) if args.question_field else None
        qid = tables.content_hash(question) if question is not None else rid
        if args.answer_field:
            questions[qid] = {"domain": "math", "reference_answer": str(pick(row, args.answer_field, label, line))}
        rows.append((rid, qid, mapped, finish))
        meta.append((rid, line, fmt or "none", question, mapped))
    if not rows:
        raise InputError(label, None, None, "no rows")
    gens = pa.table(dict(zip(("response_id", "question_id", "text", "finish_reason"), map(list, zip(*rows)))))
    kept = pa.Table.from_pylist([dict(zip(KEPT.names, m)) for m in meta], schema=KEPT)
    return gens, kept, questions


def student_lengths(texts: list[str], tokenizer: str | None) -> list[int]:
    if tokenizer is None:
        return [0] * len(texts)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer)
    return [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]


def run(args, fp, min_chars: int) -> dict:
    from .filter import decide, measures

    out = Path(args.out)
    gens, candidates, questions = read(args)
    skipped = {}
    if args.tokenizer is None:
        skipped["length"] = "no --tokenizer: student-token length not measured"
    texts = gens.column("text").to_pylist()
    scores = pa.table({"response_id": gens.column("response_id"),
                       "student_token_count": pa.array(student_lengths(texts, args.tokenizer), pa.int64())})
    thresholds = {k: v for k, v in fp.thresholds().items() if k not in skipped}
    if "wrong_answer" in thresholds and not args.answer_field:
        skipped["wrong_answer"] = "no --answer-field: no reference answers"
        thresholds.pop("wrong_answer")
    con, rejections, kept_ids = decide(measures(gens, scores, fp, questions, min_chars), thresholds, "filter")
    keep = set(kept_ids.column("response_id").to_pylist())
    kept = candidates.filter(pa.array([r in keep for r in candidates.column("id").to_pylist()]))
    with tables.replacing(out) as tmp:
        tables.write_parquet(kept, tmp / "kept.parquet")
        tables.write_parquet(rejections, tmp / "rejections.parquet")
    formats = Counter(candidates.column("format").to_pylist())
    report = {"input": gens.num_rows, "kept": kept.num_rows, "rejected": gens.num_rows - kept.num_rows,
              "rejections_by_rule": dict(con.sql("SELECT rule, count(*) FROM rejections GROUP BY 1 ORDER BY 1").fetchall()),
              "formats": dict(sorted(formats.items())), "thresholds": thresholds, "skipped": skipped}
    assert report["kept"] + report["rejected"] == report["input"]
    tables.write_json(report, out / "report.json")
    return report


def arguments(p) -> None:
    """`dasd filter`'s options for a dataset of its own (`--input`)."""
    from .reasoning import FORMATS

    g = p.add_argument_group("any dataset (instead of the pipeline's generations)")
    g.add_argument("--input", metavar="SRC", help="a local file / dataset folder, or a Hub dataset id")
    g.add_argument("--out", metavar="DIR", help="where kept.parquet, rejections.parquet and report.json go")
    g.add_argument("--text-field", default="response", help="the response: a column or a path, e.g. "
                   "conversations[-1].value (default: response)")
    g.add_argument("--id-field", help="a unique id per response (default: file:line)")
    g.add_argument("--question-field", help="the question (kept beside the response)")
    g.add_argument("--answer-field", help="a reference answer, for the wrong_answer rule")
    g.add_argument("--finish-field", help="a finish reason per response (length: cut by the token limit)")
    g.add_argument("--tokenizer", metavar="DIR", help="a student tokenizer for the length rule (else skipped)")
    g.add_argument("--reasoning-format", choices=FORMATS, default="auto",
                   help="how the reasoning is marked (default: auto, per response)")
    g.add_argument("--split", default="train", help="Hub dataset split (default: train)")
    g.add_argument("--config", help="Hub dataset config")


def wanted(args) -> bool:
    return bool(getattr(args, "input", None))


def main(ctx) -> None:
    from .filter import SENTENCE_MIN_CHARS

    args = ctx.args
    fp, min_chars = ctx.section("filter"), ctx.value("sentences.min_chars", SENTENCE_MIN_CHARS)
    if not args.out:
        raise StageError("--input needs --out DIR (where kept.parquet, rejections.parquet and report.json go)")
    r = run(args, fp, min_chars)
    skipped = "".join(f"; skipped {k}: {v}" for k, v in r["skipped"].items())
    print(f"filter {args.input}: {r['input']} in -> {r['kept']} kept, {r['rejected']} rejected "
          f"(by rule: {r['rejections_by_rule']}; formats: {r['formats']}){skipped}")
