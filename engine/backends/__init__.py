"""Inference backends behind one interface (`Backend.generate`); nothing outside this package knows
which one runs. `make_backend` picks the adapter named in params."""
from __future__ import annotations

from .base import LOGPROBS_MODES, Backend, Request, Sample, Sampling, Scored, ScoreRequest

__all__ = ["Backend", "Request", "Sample", "Sampling", "ScoreRequest", "Scored", "LOGPROBS_MODES", "make_backend", "BACKENDS"]

BACKENDS = ("vllm", "openai", "transformers")


def make_backend(name: str, model: str, revision: str | None = None, **options) -> Backend:
    if name == "vllm":
        from .vllm import VllmBackend as cls
    elif name == "openai":
        from .openai import OpenAIBackend as cls
    elif name == "transformers":
        from .transformers import TransformersBackend as cls
    else:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if options.get("logprobs_mode", "raw_logprobs") not in LOGPROBS_MODES:
        raise ValueError(f"logprobs_mode must be one of {LOGPROBS_MODES}, not {options['logprobs_mode']!r}")
    return cls(model, revision, **options)
