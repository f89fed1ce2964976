"""Inference backends behind one interface (`Backend.generate`); nothing outside this package knows
which one runs. `make_backend` picks the adapter named in params."""
from __future__ import annotations

import inspect
from pathlib import Path

from .base import LOGPROBS_MODES, Backend, Request, Sample, Sampling, Scored, ScoreRequest

__all__ = ["Backend", "Request", "Sample", "Sampling", "ScoreRequest", "Scored", "LOGPROBS_MODES", "make_backend", "BACKENDS"]

BACKENDS = ("vllm", "openai", "transformers")


def adapter(name: str) -> type[Backend]:
    """The adapter class of backend `name` (its module imports no engine: cheap to look up)."""
    from ..params import ParamsError

    if name == "vllm":
        from .vllm import VllmBackend as cls
    elif name == "openai":
        from .openai import OpenAIBackend as cls
    elif name == "transformers":
        from .transformers import TransformersBackend as cls
    else:
        raise ParamsError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return cls


def option_names(name: str) -> set[str]:
    """The options backend `name` takes: its adapter's keyword arguments, and `tokenizer` (every backend
    reads it: the tokenizer folder when the model is served elsewhere)."""
    sig = inspect.signature(adapter(name).__init__)
    return {p.name for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY} | {"tokenizer"}


def check_options(name: str, options: dict) -> None:
    """Unknown options are a mistake (a misspelt key would otherwise be ignored, or change a manifest and
    force a full regeneration): name them and the known ones."""
    from ..params import ParamsError

    unknown = sorted(set(options) - option_names(name))
    if unknown:
        raise ParamsError(f"backend {name!r}: unknown option(s) {unknown}; known: {sorted(option_names(name))}")


def _looks_local(model: str) -> bool:
    # a Hub id is `name` or `owner/name`; anything with more parts, or starting like a path, is a folder
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or Path(model).exists()


def make_backend(name: str, model: str, revision: str | None = None, **options) -> Backend:
    from ..params import ParamsError, StageError

    cls = adapter(name)
    check_options(name, options)
    if options.get("logprobs_mode", "raw_logprobs") not in LOGPROBS_MODES:
        raise ParamsError(f"logprobs_mode must be one of {LOGPROBS_MODES}, not {options['logprobs_mode']!r}")
    if name != "openai":  # a served model's name is the server's business
        for what, path in (("model", model), ("tokenizer", options.get("tokenizer"))):
            if path and _looks_local(path) and not Path(path).expanduser().exists():
                raise ParamsError(f"{what} folder {path} not found (build it first, e.g. `dvc repro miniature`, "
                                  "or give a Hub id owner/name)")
    try:
        return cls(model, revision, **options)
    except OSError as e:  # transformers' "not a local folder and not on the Hub (offline?)"
        raise StageError(f"backend {name}: cannot load {model}: {str(e).splitlines()[0][:300]}") from None
