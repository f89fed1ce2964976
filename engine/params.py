"""params.yaml -> typed sections, checked as a schema.

Each section is a `@schema` class: a pydantic dataclass whose annotations are the schema (types, ranges
through the aliases below, enums as `Literal`, nested sections as their own classes), unknown keys
forbidden. `section` builds one and turns pydantic's errors into `params.yaml: path.to.key: reason`;
`engine.stages.check` runs every section of the file before any stage does work (`dasd params check`).
Each stage receives only the sections it declares (engine/stages.py), mirroring dvc.yaml's `params:`.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import re
from dataclasses import MISSING
from pathlib import Path
from typing import Annotated, Literal, get_args, get_origin

import yaml
from pydantic import ConfigDict, Field, ValidationError
from pydantic.dataclasses import dataclass as _pydantic_dataclass

from .errors import ParamsError, StageError, UserError  # noqa: F401  (re-exported: the names stages import)

ROOT_MARKERS = ("dvc.yaml", "params.yaml")

# Value domains, named once. A count is >= 1; a share lies in [0, 1]; a probability margin in (0, 1).
Count = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]
Share = Annotated[float, Field(ge=0, le=1)]
Margin = Annotated[float, Field(gt=0, lt=1)]
Positive = Annotated[float, Field(gt=0)]
PositiveNumber = Annotated[int | float, Field(gt=0)]  # kept as written: 6 stays 6 in rendered configs
TopP = Annotated[float, Field(gt=0, le=1)]
Temperature = Annotated[float, Field(ge=0)]
MemorySize = Annotated[str, Field(pattern=r"^\s*\d+(\.\d+)?\s*([KMGT]i?B|B)\s*$")]  # DuckDB's "2GB", "512MiB"
Seed = int
ModelFormat = Literal["chat", "harmony"]


def schema(cls=None, /):
    """A params section: a pydantic dataclass (types and ranges from the annotations, unknown keys
    refused). Built directly (tests, code), a wrong value raises ParamsError naming the key."""
    def wrap(c):
        c = _pydantic_dataclass(c, config=ConfigDict(extra="forbid"))
        init = c.__init__

        @functools.wraps(init)
        def checked_init(self, *args, **kwargs):
            try:
                init(self, *args, **kwargs)
            except ValidationError as e:
                err = ParamsError(describe(e, c.__name__, cls=c))
                err.validation = e  # `section` words it again under the section's own name
                raise err from None

        c.__init__ = checked_init
        return c

    return wrap if cls is None else wrap(cls)


def _where(prefix: str, loc: tuple) -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _keys_at(cls, loc: tuple) -> list[str] | None:
    """The keys of the schema class found at `loc` below `cls` (through lists and dicts), if any."""
    for part in loc:
        fields_ = getattr(cls, "__pydantic_fields__", None)
        if isinstance(part, str) and fields_ and part in fields_:
            cls = fields_[part].annotation
        # through list[X] / dict[str, X] / X | None to X
        while get_origin(cls) is not None and not hasattr(cls, "__pydantic_fields__"):
            args = [a for a in get_args(cls) if a is not type(None)]
            cls = args[-1] if args else None
    fields_ = getattr(cls, "__pydantic_fields__", None)
    return list(fields_) if fields_ else None


def describe(e: ValidationError, prefix: str, limit: int = 3, cls=None) -> str:
    """pydantic's errors as `path.to.key: reason (got value)`, the first `limit` of them on one line;
    `cls`: the schema class, to list the known keys next to an unknown one."""
    parts = []
    for err in e.errors()[:limit]:
        where = _where(prefix, err["loc"])
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, ParamsError):  # a check of the section's own (__post_init__): already worded
            # a message starting with a key path continues the path: `train` + `hyper.lr: …` -> `train.hyper.lr: …`
            joiner = "." if re.match(r"^[A-Za-z_][\w.\[\]]*: ", str(cause)) else ": "
            parts.append(f"{where}{joiner}{cause}" if where else str(cause))
            continue
        if err["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
            known = _keys_at(cls, err["loc"][:-1]) if cls is not None else None
            reason = "unknown key" + (f" (known: {', '.join(known)})" if known else "")
        elif err["type"] == "missing":
            reason = "required"
        else:
            reason = err["msg"].removeprefix("Value error, ") + (
                f" (got {err['input']!r})" if not isinstance(err.get("input"), (dict, list)) else "")
        parts.append(f"{where}: {reason}")
    more = len(e.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def project_root(start: Path | None = None) -> Path:
    """The project folder: $DASD_ROOT, else the nearest parent of `start` (cwd) holding dvc.yaml."""
    if os.environ.get("DASD_ROOT"):
        return Path(os.environ["DASD_ROOT"]).resolve()
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if all((d / m).exists() for m in ROOT_MARKERS):
            return d
    raise ParamsError(f"no dvc.yaml + params.yaml in {here} or its parents; run inside the project or set DASD_ROOT")


def load(path: Path | None = None) -> dict:
    path = Path(path) if path else project_root() / "params.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    data["_path"] = str(path)
    return data


def section(params: dict, name: str, cls):
    """Section `name` (a dotted path: `export.mixed`) of the loaded params as schema class `cls` (its
    defaults when the file leaves out a section that has one for every key); every mistake in it is a
    ParamsError `params.yaml: name.key: reason`."""
    where = params.get("_path", "params.yaml")
    raw = lookup(params, name)
    if raw is None and not has_required(cls):
        raw = {}  # a section whose every key has a default may be left out
    if raw is None:
        raise ParamsError(f"{where}: {name}: missing section (see params.yaml of the default profile)")
    if not isinstance(raw, dict):
        raise ParamsError(f"{where}: {name}: expected a mapping of keys, not {raw!r}")
    try:
        return cls(**raw)
    except ParamsError as e:
        if getattr(e, "validation", None) is None:
            # a section that words its own errors from its name on (`benchmarks.aime24.kind: …`)
            raise ParamsError(f"{where}: {e}" if str(e).startswith(name + ".") else f"{where}: {name}: {e}") from None
        raise ParamsError(f"{where}: {describe(e.validation, name, cls=cls)}") from None


def lookup(params: dict, dotted: str):
    """params[a][b] for "a.b"; None when any part is missing."""
    value = params
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def has_required(cls) -> bool:
    """Whether schema class `cls` has a key without a default (so its section cannot be left out); a
    mapping section (`benchmarks`: name -> set) may always be left out."""
    if not dataclasses.is_dataclass(cls):
        return False
    return any(f.default is MISSING and f.default_factory is MISSING for f in dataclasses.fields(cls))


def folder_fingerprint(folder: Path, whole_below: int = 64 << 20, edge: int = 1 << 20) -> str:
    """A hash of a model folder's files (or of one file): whole files below `whole_below` bytes; bigger ones
    (multi-GB weights) by size, head and tail, which any retraining changes, so the hash stays cheap."""
    import hashlib

    h = hashlib.sha256()
    folder = Path(folder)
    files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
    for f in files:
        size = f.stat().st_size
        h.update(f"{f.relative_to(folder) if f != folder else f.name}\0{size}\0".encode())
        with open(f, "rb") as fh:
            if size < whole_below:
                h.update(fh.read())
            else:
                h.update(fh.read(edge))
                fh.seek(size - edge)
                h.update(fh.read(edge))
    return h.hexdigest()[:32]


def temperature_value(given, configured: list) -> float | int:
    """A temperature from the command line (`--temperature 0.60`) as params.yaml spells it (0.6), so one
    temperature has one folder whatever way it was typed; one not in params is a plain float."""
    try:
        t = float(given)
    except (TypeError, ValueError):
        raise ParamsError(f"--temperature {given!r} is not a number") from None
    return next((c for c in configured if float(c) == t), t)


def temperature_dir(t) -> str:
    """`T=0.6`: a per-temperature folder, spelled as params.yaml spells the value, which is also how
    dvc.yaml's matrix spells `${item.temperature}`, so DVC and the CLI name the same folder. Text
    (`"0.60"`) is read as the number it spells."""
    if isinstance(t, str):
        try:
            t = float(t)
        except ValueError:
            raise ParamsError(f"temperature {t!r} is not a number") from None
    float(t)  # a temperature must be a number
    return f"T={t}"
