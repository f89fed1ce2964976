"""The stage registry: each stage module declares its stage once (`STAGE = Stage(...)` beside the code that
runs it), and everything else is derived from that declaration — the `dasd` subcommand and its help (the
module docstring), the params schema of the whole file (`check`, `dasd params check`), the paths the
stage may read and write, and the test that holds dvc.yaml to the code (tests/test_stages.py: every
stage's deps cover the modules it imports, the SQL files they run and the data it reads).

Paths are written as dvc.yaml writes them (`data/generations/T=${item.temperature}`,
`data/export/${rollout.source}`), so the declaration and dvc.yaml compare as strings; `Run.path`
resolves them the way DVC does. A stage reads only what it declared: `Run.section`, `Run.value` and
`Run.path` refuse anything else, so an undeclared input fails in the stage's own tests.

Adding a stage: a module with a docstring, a `main(ctx)` (ctx: a `Run`) and a `STAGE`; its name in
`MODULES`; its entry in dvc.yaml (the test says what is missing).
"""
from __future__ import annotations

import argparse
import importlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import params as P

# stage modules, in pipeline order (the order of `dasd --help` and of dvc.yaml)
MODULES = ("engine.miniature.stage", "engine.questions", "engine.decontaminate", "engine.generate", "engine.score", "engine.sentences",
           "engine.filter", "engine.naturalness", "engine.dedup", "engine.select", "engine.export",
           "engine.train", "engine.rollout", "engine.truncate", "engine.continuation", "engine.mixed_filter",
           "engine.evaluate", "engine.publish", "engine.importer")

# a per-temperature path's folder, as dvc.yaml's matrix spells it: f"data/filter/{T}"
T = "T=${item.temperature}"

# Modes of a stage's command outside the pipeline: the module's `arguments(parser)` join the subcommand,
# and when its `wanted(args)` is true its `main(ctx)` runs instead of the stage's, also outside any
# project (params: --params, else the defaults). Named here, not in the stage's module, so the stage's
# DVC deps do not hold code its pipeline run never imports. `dasd filter --input SRC --out DIR`:
MODES = {"filter": "engine.filter_dataset"}

# top-level keys of params.yaml that are values, not sections
VALUES = ("system_prompt",)


@dataclass(frozen=True)
class Stage:
    """One pipeline stage, declared once in its module."""
    name: str                            # DVC stage = `dasd` subcommand = data/ folder
    main: Callable[["Run"], None]        # runs the stage; prints one summary line per output
    sections: dict = field(default_factory=dict)  # params sections it builds: dotted name -> schema class
    params: tuple[str, ...] = ()         # what it reads of params.yaml, as dvc.yaml's `params:` lists it
    inputs: dict = field(default_factory=dict)   # name -> project path it reads (dvc.yaml deps)
    outputs: dict = field(default_factory=dict)  # name -> project path it writes (dvc.yaml outs, metrics)
    per_temperature: bool = False        # one run per generate.temperatures (a DVC matrix)
    progress: bool = False               # long (model calls): a progress bar, --no-progress
    arguments: Callable[[argparse.ArgumentParser], None] | None = None  # its own command-line options
    dvc: bool = True                     # a DVC stage (`import` is a command, not a stage)
    help: str = ""                       # the one-line summary, if not the docstring's (two stages, one module)
    module: str = ""                     # filled by `registry`: the module that declared it

    @property
    def doc(self) -> str:
        return sys.modules[self.module].__doc__ or ""

    @property
    def summary(self) -> str:
        """The docstring's first sentence, without its "Stage `name`: " lead."""
        if self.help:
            return self.help
        paragraph = " ".join(self.doc.strip().split("\n\n")[0].split())
        paragraph = re.sub(r"^(Stage `[^`]+`(?: \([^)]*\))?|`dasd [^`]+`(?: \([^)]*\))?): ", "", paragraph)
        return re.split(r"(?<=[.;])\s", paragraph)[0].rstrip(".;")


_REGISTRY: dict[str, Stage] = {}


def registry() -> dict[str, Stage]:
    """name -> Stage, in pipeline order."""
    if not _REGISTRY:
        for name in MODULES:
            module = importlib.import_module(name)
            for stage in getattr(module, "STAGES", None) or (module.STAGE,):  # export declares two
                object.__setattr__(stage, "module", name)
                _REGISTRY[stage.name] = stage
    return _REGISTRY


def schema() -> dict[str, type]:
    """The whole params file's schema: section -> class, from every stage's declaration (one class per
    section, whichever stages read it)."""
    out: dict[str, type] = {}
    for stage in registry().values():
        for name, cls in stage.sections.items():
            if out.setdefault(name, cls) is not cls:
                raise TypeError(f"section {name} declared with two schemas: {out[name]} and {cls}")
    return out


def check(params: dict, need: set[str] | None = None) -> dict[str, object]:
    """The loaded params file against the schema, before any stage does work: every section it holds is
    checked whole, unknown top-level keys are errors, and a section is required when the stage about to
    run reads it (`need`) or, for the whole pipeline (`need` None: `dasd params check`), when it has keys
    without a default. Returns section -> built object."""
    where = params.get("_path", "params.yaml")
    sections = schema()
    tops = {n.split(".")[0] for n in sections} | set(VALUES)
    unknown = sorted(k for k in params if k not in tops and not k.startswith("_"))
    if unknown:
        raise P.ParamsError(f"{where}: {unknown[0]}: unknown section (known: {', '.join(sorted(tops))})")
    if not isinstance(params.get("system_prompt", ""), (str, type(None))):
        raise P.ParamsError(f"{where}: system_prompt: expected text")
    built = {}
    for name, cls in sections.items():
        present = P.lookup(params, name) is not None
        if present or (name in need if need is not None else P.has_required(cls)):
            built[name] = P.section(params, name, cls)
    return built


class Run:
    """What a stage's `main` gets: its params (only the sections and values it declared), its paths
    (only the ones it declared, resolved as DVC resolves them) and the command line."""

    def __init__(self, stage: Stage, args: argparse.Namespace, root: Path, params: dict):
        self.stage, self.args, self.root, self.params = stage, args, root, params
        self.progress = not getattr(args, "no_progress", False)

    def section(self, name: str):
        if name not in self.stage.sections:
            raise KeyError(f"stage {self.stage.name} did not declare params section {name!r}")
        return P.section(self.params, name, self.stage.sections[name])

    def value(self, dotted: str, default=None):
        """A plain params value (`system_prompt`, `sentences.min_chars`) the stage declared in `params`."""
        if not any(dotted == p or dotted.startswith(p + ".") for p in self.stage.params):
            raise KeyError(f"stage {self.stage.name} did not declare params {dotted!r}")
        value = P.lookup(self.params, dotted)
        return default if value is None else value

    def path(self, name: str, **item) -> Path:
        """Declared input or output `name` under the project root; `item`: the matrix/foreach values
        (temperature=, key=, dataset=…) its `${item.…}` / `${key}` placeholders take."""
        template = self.stage.inputs.get(name) or self.stage.outputs.get(name)
        if template is None:
            raise KeyError(f"stage {self.stage.name} did not declare path {name!r}")
        return self.root / resolve(template, self.params, item)

    def temperatures(self) -> list[tuple[float, dict, str]]:
        """For --temperature, else each of generate.temperatures: (the temperature, the item its paths take
        — the value as params spells it, as DVC's matrix does — and its folder name `T=<t>`)."""
        configured = self.params["generate"]["temperatures"]
        given = getattr(self.args, "temperature", None)
        temps = [P.temperature_value(given, configured)] if given is not None else configured
        return [(float(t), {"temperature": t}, P.temperature_dir(t)) for t in temps]


def resolve(template: str, params: dict, item: dict) -> str:
    """`${item.x}` / `${key}` from `item`, `${a.b}` from params: DVC's interpolation, for one item."""
    def value(m):
        expr = m.group(1)
        if expr == "key" or expr.startswith("item."):
            v = item[expr.removeprefix("item.")]
        else:
            v = params
            for part in expr.split("."):
                v = v[part]
        return str(v)

    return re.sub(r"\$\{([^}]+)\}", value, template)


def add_commands(sub) -> None:
    """One subcommand per stage, its help from the module docstring."""
    for stage in registry().values():
        s = sub.add_parser(stage.name, help=stage.summary, description=stage.doc,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if stage.per_temperature:
            s.add_argument("--temperature", help="one temperature (default: all of generate.temperatures)")
        if stage.progress:
            s.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")
        if stage.arguments:
            stage.arguments(s)
        if stage.name in MODES:
            mode(stage).arguments(s)
        s.set_defaults(dasd_stage=stage)  # not `stage`: export has a --stage option


def mode(stage: Stage):
    """The module of `stage`'s command mode outside the pipeline (MODES), or None."""
    return importlib.import_module(MODES[stage.name]) if stage.name in MODES else None
