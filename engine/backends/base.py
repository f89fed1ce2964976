"""The one interface every inference backend implements, and what flows through it.

A backend turns chat requests into sampled token sequences with the model's logprob of every sampled
token. It knows nothing about tables, shards or formats: `engine.generate` owns those, so adding a
backend means writing one thin adapter.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

LOGPROBS_MODES = ("raw_logprobs", "processed_logprobs")


@dataclass(frozen=True)
class Sampling:
    n: int
    temperature: float
    top_p: float
    max_tokens: int
    # raw_logprobs: log_softmax(logits), the teacher's own distribution whatever the temperature
    # (what DAS wants); processed_logprobs: after temperature scaling and logit processors.
    logprobs_mode: str = "raw_logprobs"


@dataclass(frozen=True)
class Request:
    key: str                      # the question_id (or any caller key)
    messages: list[dict]          # chat messages; the prompt is the chat template + assistant header
    seed: int                     # per-request seed: same seed, same samples, whatever the batch
    max_tokens: int | None = None  # per-request cap (overrides Sampling.max_tokens)
    # continuation: what the assistant turn already holds, as the model itself would have written it
    # (raw format: harmony channels for gpt-oss); the model goes on from its last character
    prefill: str | None = None


@dataclass
class Sample:
    """One sampled completion. Exactly one of token_ids / token_bytes identifies the tokens."""
    logprobs: list[float]
    finish_reason: str                      # stop | length
    token_ids: list[int] | None = None      # when the backend returns ids (vLLM, transformers)
    token_bytes: list[bytes] | None = None  # when it returns only each token's bytes (OpenAI chat API)
    text: str | None = None                 # the backend's own decoded text, kept for audit


@dataclass(frozen=True)
class ScoreRequest:
    """Teacher forcing: the model's logprob of each of `completion_ids` after the chat prompt."""
    key: str
    messages: list[dict]
    completion_ids: list[int]


@dataclass
class Scored:
    logprobs: list[float]
    ranks: list[int] | None = None  # 1 = the model's top choice; None when the backend cannot tell


class Backend(ABC):
    name: str = ""
    # which logprobs the backend returns, recorded with every response
    logprobs_mode: str = "raw_logprobs"

    def __init__(self, model: str, revision: str | None = None, **options):
        self.model, self.revision, self.options = model, revision, options

    @property
    def tokenizer(self):
        """The model's Hugging Face tokenizer (chat template, decoding); loaded once."""
        if getattr(self, "_tokenizer", None) is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(
                self.options.get("tokenizer") or self.model, revision=self.revision)
        return self._tokenizer

    def prompt_ids(self, messages: list[dict], prefill: str | None = None) -> list[int]:
        """The chat prompt up to the assistant header, then the prefill's tokens (a continuation).

        Why not `continue_final_message`: templates rewrite a final assistant message (gpt-oss's puts it
        in the final channel, R1-style ones drop the reasoning, transformers strips its trailing
        whitespace), while the generation prompt followed by the prefill is exactly what the model
        sees when it wrote the prefill itself."""
        out = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        ids = list(out["input_ids"] if hasattr(out, "keys") else out)  # transformers 5: a BatchEncoding
        return ids + self.prefill_ids(prefill) if prefill else ids

    def prefill_ids(self, prefill: str | None) -> list[int]:
        return self.tokenizer.encode(prefill, add_special_tokens=False) if prefill else []

    def context_length(self) -> int | None:
        """The most tokens one sequence (prompt + completion) may hold, None when unknown. A prompt of this
        many tokens or more cannot be answered: `generate` turns it into a rejection row (prompt_too_long)
        instead of letting it fail the whole batch."""
        return None

    @abstractmethod
    def generate(self, requests: list[Request], sampling: Sampling) -> list[list[Sample]]:
        """n samples per request, in request order."""

    def score(self, requests: list[ScoreRequest]) -> list[Scored]:
        """Teacher-forced logprobs (and ranks) of given completions; raw distribution."""
        raise NotImplementedError(f"backend {self.name!r} cannot score; use vllm or transformers")

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
