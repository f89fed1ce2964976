"""The stage registry against dvc.yaml and the params schema against the user's mistakes.

dvc.yaml is written by hand (it holds comments, the plots, a frozen stage) and checked here against the
registry (engine/stages.py) and the code: a stage's deps must cover every engine module it imports
(transitively, lazy imports too), every SQL file those modules run and every path the stage declares it
reads; its params, outs and metrics must be what it declares. So `dvc repro` reruns what a change touches.
"""
from __future__ import annotations

import ast
import copy
import re
from pathlib import Path

import pytest
import yaml

from engine import cli, stages
from engine.params import ParamsError

REPO = Path(__file__).resolve().parent.parent
# not a stage's code: the registry itself (a change to a declaration shows in dvc.yaml), the CLI, and the
# executor, which decides where shards run, never what they hold (tests/test_executor.py holds the rows
# of the local loop and of Ray replicas equal): editing it must not resample tens of billions of tokens
NOT_DEPS = {"engine/stages.py", "engine/cli.py", "engine/__init__.py", "engine/executor.py"}


def module_file(name: str) -> Path | None:
    base = REPO / Path(*name.split("."))
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.exists():
            return f
    return None


def imports_of(name: str) -> set[str]:
    """engine modules `name` imports anywhere in its file (module level or inside functions)."""
    f = module_file(name)
    package = name if f.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(f.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # `from . import sql`: a module
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("engine."):
            found.add(node.value)  # importlib.import_module("engine.backends.vllm"), a registry's entry
    return {m for m in found if m.split(".")[0] == "engine" and module_file(m)}


def closure(name: str) -> set[str]:
    seen, todo = set(), [name]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            if str(module_file(m).relative_to(REPO)) not in NOT_DEPS:  # the registry names every stage
                todo += imports_of(m)
    return seen


def files_of(modules: set[str]) -> set[str]:
    return {str(module_file(m).relative_to(REPO)) for m in modules} - NOT_DEPS


def sql_run_by(files: set[str]) -> set[str]:
    """sql/<name>.sql files run by these modules (`run_file(con, "name"…)`, `SQL_DIR / "name.sql"`)."""
    names = set()
    for f in files:
        text = (REPO / f).read_text()
        names |= set(re.findall(r"run_file\(\s*\w+,\s*\"(\w+)\"", text))
        names |= set(re.findall(r"SQL_DIR\s*/\s*\"(\w+)\.sql\"", text))
    return names


def covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def dvc_stages() -> dict:
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return {name: s.get("do", s) for name, s in spec.items()}


DVC_STAGES = [s for s in stages.registry().values() if s.dvc]


def test_every_stage_is_in_dvc_yaml_and_nothing_else_is():
    assert sorted(dvc_stages()) == sorted(s.name for s in DVC_STAGES)


@pytest.mark.parametrize("stage", DVC_STAGES, ids=lambda s: s.name)
def test_dvc_deps_cover_the_code_the_sql_and_the_data(stage):
    spec = dvc_stages()[stage.name]
    deps = [d if isinstance(d, str) else next(iter(d)) for d in spec["deps"]]
    code = files_of(closure(stage.module))
    missing = sorted(f for f in code if not covered(f, deps))
    assert not missing, f"dvc.yaml {stage.name}: deps miss modules it imports: {missing}"
    missing = sorted(f"sql/{q}.sql" for q in sql_run_by(code) if f"sql/{q}.sql" not in deps)
    assert not missing, f"dvc.yaml {stage.name}: deps miss SQL it runs: {missing}"
    missing = sorted(p for p in stage.inputs.values() if p not in deps)
    assert not missing, f"dvc.yaml {stage.name}: deps miss data it reads: {missing}"
    stale = sorted(d for d in deps if d.startswith(("engine/", "sql/")) and not any(covered(f, [d]) for f in code)
                   and d[4:-4] not in sql_run_by(code))
    assert not stale, f"dvc.yaml {stage.name}: deps on code it does not run: {stale}"


@pytest.mark.parametrize("stage", DVC_STAGES, ids=lambda s: s.name)
def test_dvc_params_outs_and_metrics_are_the_declared_ones(stage):
    spec = dvc_stages()[stage.name]
    assert sorted(spec.get("params", [])) == sorted(stage.params)
    outs = {next(iter(o)) if isinstance(o, dict) else o for key in ("outs", "metrics") for o in spec.get(key, [])}
    assert outs == set(stage.outputs.values())


def test_the_closure_sees_lazy_imports_and_the_sql_they_run():
    """The check itself: a lazy import (filter -> answers inside a function) and a SQL file run in a
    module reached only through an import (dedup -> candidates -> select_candidates) are found."""
    assert "engine.answers" in closure("engine.filter")
    assert "engine.kernels.measures" in closure("engine.filter")
    assert "select_candidates" in sql_run_by(files_of(closure("engine.dedup")))
    assert "engine.backends.vllm" in closure("engine.generate")  # through the backend registry's entry
    assert not covered("engine/kernels/split.py", ["engine/filter.py", "engine/kernels/splits.py"])
    assert covered("engine/backends/vllm.py", ["engine/backends"])


def test_a_stage_reads_only_what_it_declared(tmp_path):
    stage = stages.registry()["filter"]
    run = stages.Run(stage, None, tmp_path, {"generate": {"temperatures": [0.6]}, "sentences": {"min_chars": 5}})
    assert run.path("generations", temperature=0.6) == tmp_path / "data/generations/T=0.6"
    assert run.value("sentences.min_chars") == 5
    for read in (lambda: run.path("dedup", temperature=0.6), lambda: run.section("select"),
                 lambda: run.value("sentences.beta")):
        with pytest.raises(KeyError, match="did not declare"):
            read()


# --- params: the whole file against the schema, before any stage works ---------------------------------

BASE = yaml.safe_load((REPO / "params.yaml").read_text())


def set_key(path: str, value):
    def mod(p):
        *head, last = path.split(".")
        for k in head:
            p = p[int(k)] if k.isdigit() else p[k]
        if value is KeyError:
            del p[last]
        else:
            p[last] = value
    return mod


# (what the user wrote, the key the one-line error must name): each was a traceback, a late failure or a
# silent degenerate run before the schema
MISTAKES = [
    (set_key("generate.n", 2.5), "generate.n: Input should be a valid integer"),
    (set_key("generate.temperatures", ["hot"]), "generate.temperatures[0]:"),
    (set_key("sentences.memory_limit", "lots"), "sentences.memory_limit:"),
    (set_key("train.hyper.learning_rate", "fast"), "train.hyper.learning_rate:"),
    (set_key("dedup.rows", 0), "dedup.rows: Input should be greater than or equal to 1"),
    (set_key("evaluate.samples", -1), "evaluate.samples:"),
    (set_key("sentences.beta", 5), "sentences.beta: Input should be less than 1"),
    (set_key("sentences.beta", -1), "sentences.beta: Input should be greater than 0"),
    (set_key("dedup.bands", -14), "dedup.bands:"),
    (set_key("filter.rules.length", -5), "filter.rules.length:"),
    (set_key("questions.sources.0.feilds", {"question": "question"}), "questions.sources[0].feilds: unknown key"),
    (set_key("questions.sources.0.fields.answr", "answer"), "questions.sources[0].fields.answr: unknown key"),
    (set_key("export", KeyError), "export: missing section"),
    (set_key("filtr", {}), "filtr: unknown section"),
    (set_key("select.selector", "shortest"), "select.selector: Input should be 'das'"),
    (set_key("teacher.backend", "vlm"), "teacher: unknown backend 'vlm'"),
    (set_key("teacher.options", {"dtyp": "float32"}), "unknown option(s) ['dtyp']"),
    (set_key("train.phases.stage1.hyper", {"epochs": -1}), "train.phases.stage1.hyper.epochs:"),
    (set_key("truncate.cut", [0.9, 0.1]), "truncate: cut must be [low, high] with low < high"),
    (set_key("export.stages.stage1.temperature", "warm"), "export.stages.stage1.temperature:"),
    (set_key("rollout.student.format", "xml"), "rollout.student.format:"),
    (set_key("benchmarks.miniature.kind", KeyError), "benchmarks.miniature.kind: required"),
    (set_key("benchmarks.miniature.kind", "essay"), "benchmarks.miniature.kind: Input should be 'math'"),
    (set_key("benchmarks.miniature.fields.answer", KeyError), "benchmarks.miniature.fields.answer: required"),
    (set_key("benchmarks.humaneval", {"path": "h.jsonl", "kind": "code", "fields": {"question": "q"}}),
     "benchmarks.humaneval.tests: required"),
    (set_key("benchmarks.humaneval", {"path": "h.jsonl", "kind": "code", "fields": {"question": "q"},
                                      "tests": {"format": "check", "test": "test"}}),
     "benchmarks.humaneval.tests.entry_point: required"),
    (set_key("decontaminate.ngram", 0), "decontaminate.ngram: Input should be greater than or equal to 1"),
]


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.setenv("DASD_ROOT", str(tmp_path))

    def write(mod):
        p = copy.deepcopy(BASE)
        mod(p)
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
        return tmp_path
    return write


@pytest.mark.parametrize("mistake,says", MISTAKES, ids=[m[1].split(":")[0] for m in MISTAKES])
@pytest.mark.parametrize("command", [["params", "check"], ["export"]], ids=["check", "stage"])
def test_a_params_mistake_is_one_line_exit_2_before_any_work(project, capsys, mistake, says, command):
    root = project(mistake)
    assert cli.main(command) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"{root / 'params.yaml'}: " in err and says in err, err
    assert not (root / "data").exists()  # the stage did nothing


def test_both_profiles_pass_the_schema(capsys):
    for profile in ("params.yaml", "profiles/paper.yaml"):
        assert cli.main(["--params", str(REPO / profile), "params", "check"]) == 0
        assert "ok" in capsys.readouterr().out


def test_direct_construction_names_the_key():
    from engine.dedup import DedupParams

    with pytest.raises(ParamsError, match=r"DedupParams\.threshold"):
        DedupParams(threshold=0)
    with pytest.raises(ParamsError, match="bands x rows = 135 exceeds num_perm = 128"):
        DedupParams(bands=15)
