"""params.yaml -> typed sections. Each stage receives only its own section (plus the shared bits it
declares), mirroring the `params:` lists in dvc.yaml."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

ROOT_MARKERS = ("dvc.yaml", "params.yaml")


class ParamsError(ValueError):
    pass


class StageError(RuntimeError):
    """A stage cannot go on for a reason the user can fix (the CLI prints one line, no traceback)."""


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
    """Build dataclass `cls` from params[name], naming unknown or missing keys clearly."""
    raw = params.get(name)
    if raw is None:
        raise ParamsError(f"{params.get('_path', 'params')}: missing section '{name}'")
    known = {f.name for f in fields(cls)}
    unknown = set(raw) - known
    if unknown:
        raise ParamsError(f"{params.get('_path', 'params')}: {name}: unknown key(s) {sorted(unknown)}; "
                          f"known: {sorted(known)}")
    try:
        return cls(**raw)
    except TypeError as e:
        raise ParamsError(f"{params.get('_path', 'params')}: {name}: {e}") from None


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


@dataclass
class ModelParams:
    """A model and how to run it: `backend` is vllm | openai | transformers; `options` go to the adapter."""
    model: str
    backend: str = "vllm"
    revision: str | None = None
    format: str = "chat"  # chat: plain chat template; harmony: gpt-oss channels
    options: dict = field(default_factory=dict)

    # options that never change what a model outputs (transport, endpoints, secrets' names)
    TRANSPORT_OPTIONS = frozenset({"concurrency", "max_retries", "timeout_s", "deadline_s", "backoff_s", "api_key_env",
                                   "base_url"})

    def identity(self) -> dict:
        """What identifies this model's outputs, for output manifests: a local folder's content too, since
        a retrained model (the miniature's, a trained phase's) keeps its path."""
        return {"model": self.model, "revision": self.revision, "backend": self.backend, "format": self.format,
                "options": {k: v for k, v in self.options.items() if k not in self.TRANSPORT_OPTIONS},
                **({"content": folder_fingerprint(Path(self.model))} if Path(self.model).is_dir() else {})}

    def tokenizer(self):
        """The model's Hugging Face tokenizer (options.tokenizer when the model is served elsewhere)."""
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.options.get("tokenizer") or self.model, revision=self.revision)

    def __post_init__(self):
        from .backends import check_options

        if self.format not in ("chat", "harmony"):
            raise ParamsError(f"model {self.model}: format must be 'chat' or 'harmony', not {self.format!r}")
        if not isinstance(self.options, dict):
            raise ParamsError(f"model {self.model}: options must be a mapping, not {self.options!r}")
        # checked when params are read, before any stage looks at its existing output
        check_options(self.backend, self.options)


@dataclass
class GenerateParams:
    temperatures: list[float]
    n: int = 4
    top_p: float = 1.0
    max_tokens: int = 1024
    seed: int = 1234
    logprobs_mode: str = "raw_logprobs"
    shard_questions: int = 64  # questions per shard: the unit of atomic writes and of resume

    def __post_init__(self):
        if self.n < 1 or self.max_tokens < 1 or self.shard_questions < 1:
            raise ParamsError("generate: n, max_tokens and shard_questions must be >= 1")
        if not 0 < self.top_p <= 1:
            raise ParamsError(f"generate: top_p must be in (0, 1], not {self.top_p}")


@dataclass
class QuestionsParams:
    sources: list[dict]
    on_error: str = "raise"  # raise | quarantine
    max_quarantined: float = 1.0  # quarantining a larger share of rows stops the stage (all rows always does)

    def __post_init__(self):
        if not 0 <= self.max_quarantined <= 1:
            raise ParamsError(f"questions: max_quarantined must be a share in [0, 1], not {self.max_quarantined!r}")
        if self.on_error not in ("raise", "quarantine"):
            raise ParamsError(f"questions: on_error must be 'raise' or 'quarantine', not {self.on_error!r}")
        if not self.sources:
            raise ParamsError("questions: no sources")


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


@dataclass
class ScoreParams:
    shard_responses: int = 256  # responses per shard: the unit of atomic writes and of resume

    def __post_init__(self):
        if self.shard_responses < 1:
            raise ParamsError("score: shard_responses must be >= 1")
