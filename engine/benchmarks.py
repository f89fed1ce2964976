"""The benchmarks, declared once (top-level params `benchmarks:`) and read by two stages: `decontaminate`
(no training question may share text with a benchmark item) and `evaluate` (the student on each of them).

A benchmark is a question source in the form of `questions.sources` (a local file or folder, or a Hub
dataset; `fields`, `template`, `license`, `limit`) plus:
- `kind`: how an answer is checked (engine/answers.py) — `math` (the reference answer, `fields.answer`),
  `choice` (the right letter, `fields.answer`), `code` (the tests, `tests:` below);
- `tests` (code): which columns hold the tests, in one of three forms: `check` (HumanEval: a
  `def check(candidate)` column and an `entry_point` column; the prompt is the question), `asserts`
  (MBPP: a list of assert lines, optional setup code), `stdio` (LiveCodeBench: a list of
  {input, output} cases, or its JSON; a case with `testtype: functional` is a call of the function that
  `function` names: a column holding the name, or LiveCodeBench's `metadata` JSON with its `func_name`);
- its sampling for `evaluate`: `samples` (k), `temperature`, `max_tokens`, `top_p`.

    benchmarks:
      aime24: {path: bench/aime24.jsonl, kind: math, fields: {id: id, question: question, answer: answer}}
      humaneval: {path: bench/humaneval.jsonl, kind: code, fields: {id: id, question: question},
                  tests: {format: check, test: test, entry_point: entry_point}}
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .errors import InputError, ParamsError, StageError
from .params import Count, Temperature, TopP, describe, schema
from .questions import Source, answer_text, question_text, read_source

Kind = Literal["math", "choice", "code"]
DOMAIN_OF = {"math": "math", "choice": "science", "code": "code"}


@schema
class Tests:
    """Where a code benchmark's tests are (`benchmarks.<name>.tests`): column names."""
    format: Literal["check", "asserts", "stdio"]
    test: str | None = None         # check: the column holding `def check(candidate): ...`
    entry_point: str | None = None  # check: the column naming the function under test
    asserts: str | None = None      # asserts: the column holding the assert lines (a list, or its JSON)
    setup: str | None = None        # asserts: optional setup code, run after the program
    cases: str | None = None        # stdio: the column holding [{input, output}, ...] (a list, or its JSON)
    function: str | None = None     # stdio: the column naming the function of `functional` cases (or a JSON
                                    # object holding it as `func_name`: LiveCodeBench's `metadata`)

    def __post_init__(self):
        need = {"check": ("test", "entry_point"), "asserts": ("asserts",), "stdio": ("cases",)}[self.format]
        missing = [k for k in need if getattr(self, k) is None]
        if missing:
            raise ParamsError(f"{missing[0]}: required by format {self.format!r} (the column holding it)")


@schema
class Benchmark(Source):
    """One entry of `benchmarks` (its `name` is the key)."""
    kind: Kind | None = None
    tests: Tests | None = None
    samples: Count = 1               # k answers per problem (accuracy is avg@k; pass@k reported beside)
    temperature: Temperature = 0.6
    top_p: TopP = 0.95
    max_tokens: Count = 32768

    def __post_init__(self):
        if self.kind is None:
            raise ParamsError("kind: required (math | choice | code)")
        if self.domain is None and self.domain_field is None:
            self.domain = DOMAIN_OF[self.kind]
        super().__post_init__()
        if self.kind == "code" and self.tests is None:
            raise ParamsError("tests: required for kind code (the columns holding its tests)")
        if self.kind != "code" and self.fields.answer is None:
            raise ParamsError(f"fields.answer: required for kind {self.kind} (the column holding the reference)")


class Benchmarks(dict):
    """Top-level `benchmarks:` — name -> Benchmark, in params order; may be left out (no benchmarks)."""

    def __init__(self, **sets):
        super().__init__()
        for name, spec in sets.items():
            if not isinstance(spec, dict):
                raise ParamsError(f"benchmarks.{name}: expected a mapping (path or hf, kind, fields, ...)")
            if "name" in spec:
                raise ParamsError(f"benchmarks.{name}.name: unknown key (the benchmark's name is its key)")
            try:
                self[name] = Benchmark(name=name, **spec)
            except ParamsError as e:
                v = getattr(e, "validation", None)
                raise ParamsError("benchmarks." + (describe(v, name, cls=Benchmark) if v else f"{name}: {e}")) from None


    def chosen(self, names: list[str] | None, key: str) -> list[str]:
        """The sets a stage's `key` (e.g. `evaluate.benchmarks`) names, in its order; None: every set."""
        if names is None:
            return list(self)
        unknown = [n for n in names if n not in self]
        if unknown:
            raise StageError(f"{key}: {unknown[0]!r} is not in params `benchmarks` (there: {', '.join(self) or 'none'})")
        return names


@dataclass(frozen=True)
class Item:
    """One benchmark problem: its id, its question (as the student sees it) and what checks an answer
    (the reference answer or letter; for code, the tests as JSON for `answers.correct`)."""
    benchmark: str
    item_id: str
    question: str
    reference: str


def _column(row: dict, name: str, label: str, line: int):
    if name not in row or row[name] is None:
        raise InputError(label, line, name, "missing")
    return row[name]


def _listed(value, label: str, line: int, name: str) -> list:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise InputError(label, line, name, f"expected a list or its JSON: {e.msg}") from None
    if not isinstance(value, list):
        raise InputError(label, line, name, f"expected a list, got {type(value).__name__}")
    return value


def _tests(b: Benchmark, row: dict, question: str, label: str, line: int) -> str:
    t = b.tests
    if t.format == "check":
        spec = {"format": "check", "prompt": question, "test": _column(row, t.test, label, line),
                "entry_point": _column(row, t.entry_point, label, line)}
    elif t.format == "asserts":
        spec = {"format": "asserts", "asserts": _listed(_column(row, t.asserts, label, line), label, line, t.asserts),
                "setup": row.get(t.setup) or "" if t.setup else ""}
    else:
        cases = _listed(_column(row, t.cases, label, line), label, line, t.cases)
        if not all(isinstance(c, dict) and "input" in c and "output" in c for c in cases):
            raise InputError(label, line, t.cases, "each case needs 'input' and 'output'")
        spec = {"format": "stdio", "cases": [{"input": c["input"], "output": c["output"],
                                              **({"testtype": "functional"} if c.get("testtype") == "functional" else {})}
                                             for c in cases]}
        if any("testtype" in c for c in spec["cases"]):
            spec["function"] = _function(b, row, label, line)
    return json.dumps(spec, ensure_ascii=False)


def _function(b: Benchmark, row: dict, label: str, line: int) -> str:
    """The name a call-based case calls: the `function` column's value, or its `func_name` when it holds
    LiveCodeBench's metadata (a JSON object, or its text)."""
    name = b.tests.function
    if name is None:
        raise InputError(label, line, b.tests.cases, "a functional case needs tests.function (the column naming "
                                                     "the function, e.g. LiveCodeBench's metadata)")
    value = _column(row, name, label, line)
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise InputError(label, line, name, f"expected a function name or a JSON object: {e.msg}") from None
    if isinstance(value, dict):
        value = value.get("func_name")
    if not isinstance(value, str) or not value.isidentifier():
        raise InputError(label, line, name, f"no function name in {value!r}")
    return value


def load(b: Benchmark, root: Path) -> list[Item]:
    """Every problem of benchmark `b`; a bad row is an error naming file, line and field (benchmark files
    are curated: a row that cannot be read means the mapping is wrong, and is never skipped)."""
    label = b.path or f"hf:{b.hf}"
    items = []
    for line, row in read_source(b, root):
        if isinstance(row, InputError):
            raise row
        if b.template:
            try:
                question = question_text(b.template.format_map(row), label, line, "template")
            except KeyError as e:
                raise InputError(label, line, e.args[0], "missing (used by template)") from None
        else:
            question = question_text(_column(row, b.fields.question, label, line), label, line, b.fields.question)
        if b.kind == "code":
            reference = _tests(b, row, question, label, line)
        else:
            reference = answer_text(_column(row, b.fields.answer, label, line), label, line, b.fields.answer)
        item_id = str(row[b.fields.id]) if b.fields.id and row.get(b.fields.id) is not None else f"{label}:{line}"
        items.append(Item(b.name, item_id, question, reference))
    if not items:
        raise InputError(label, None, None, f"benchmark {b.name!r} has no rows")
    return items
