"""From a backend's sampled tokens to the stored response: the student's text and token spans in it.

Two response formats:
- `chat`: the text is what the model wrote, minus stop/special tokens (they have no text for the
  student; their logprobs stay counted in `teacher_token_count`).
- `harmony` (gpt-oss): channels rewritten to `<think>\n{analysis}\n</think>\n\n{final}`; each content
  token's span is moved to where its characters land in the rewrite, header tokens are dropped, and a
  tool call marks the response `tool_call`.

A continuation (the teacher going on from a student's prefix) is built the same way from the prefill's
tokens followed by the sampled ones, so the text is the joined response as the student sees it; only
the sampled tokens are kept, with their spans in that joined text.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backends import Sample
from .backends import harmony
from .spans import decode_with_spans, ids_from_bytes, spans_from_bytes


@dataclass
class Response:
    text: str
    finish_reason: str       # stop | length | tool_call
    token_count: int         # every sampled token
    token_ids: list[int]     # the tokens that carry text of `text` (ids -1 when the backend gave bytes)
    logprobs: list[float]
    starts: list[int]
    ends: list[int]
    raw_output: str


def decode(sample: Sample, tokenizer) -> tuple[str, list[int], list[int], list[int]]:
    """Raw text (special tokens included) with each token's span; ids, or -1 where unknown."""
    if sample.token_ids is not None:
        text, starts, ends = decode_with_spans(tokenizer, sample.token_ids)
        return text, starts, ends, list(sample.token_ids)
    ids = ids_from_bytes(tokenizer, sample.token_bytes)
    if ids is not None:
        text, starts, ends = decode_with_spans(tokenizer, ids)
        return text, starts, ends, ids
    text, starts, ends = spans_from_bytes(sample.token_bytes)
    return text, starts, ends, [-1] * len(starts)


def remap(starts, ends, segments) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep tokens that lie inside a segment (raw_start, raw_end, new_start) and move their spans."""
    s, e = np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
    keep = np.zeros(len(s), dtype=bool)
    new_s, new_e = s.copy(), e.copy()
    for rs, re_, ns in segments:
        inside = (s >= rs) & (e <= re_) & ~keep
        keep |= inside
        new_s[inside] += ns - rs
        new_e[inside] += ns - rs
    return keep, new_s, new_e


def prefill(student_prefix: str, fmt: str) -> str:
    """A student-format prefix (`<think>\n…`) as the model's own raw output (its format's inverse)."""
    return harmony.from_student(student_prefix) if fmt == "harmony" else student_prefix


def _joined(sample: Sample, prefill_ids: list[int], prefill_text: str) -> tuple[Sample, int]:
    """The prefill followed by the sample, as one sample; and how many leading tokens are the prefill's."""
    if sample.token_ids is not None:
        return Sample(token_ids=list(prefill_ids) + list(sample.token_ids), finish_reason=sample.finish_reason,
                      logprobs=[float("nan")] * len(prefill_ids) + list(sample.logprobs)), len(prefill_ids)
    # a chat endpoint that returns bytes only: the prefill is one piece of known bytes
    return Sample(token_bytes=[prefill_text.encode("utf-8"), *sample.token_bytes], finish_reason=sample.finish_reason,
                  logprobs=[float("nan"), *sample.logprobs]), 1


def build(sample: Sample, tokenizer, fmt: str, prefill_ids: list[int] | None = None, prefill_text: str = "") -> Response:
    """The stored response of one sample; with `prefill_ids` (and its text), of the prefill + the sample."""
    first = 0
    if prefill_ids is not None:
        sample, first = _joined(sample, prefill_ids, prefill_text)
    raw, starts, ends, ids = decode(sample, tokenizer)
    finish = sample.finish_reason
    if fmt == "harmony":
        view = harmony.to_student(raw)
        text, segments = view.text, view.segments
        if view.tool_call:
            finish = "tool_call"
    else:
        # trailing stop/special tokens have no text for the student; special tokens inside the
        # text (rare) stay as the text the model wrote
        special = set(getattr(tokenizer, "all_special_ids", None) or [])
        n = len(ids)
        while n and ids[n - 1] in special:
            n -= 1
        cut = ends[n - 1] if n else 0
        text, segments = raw[:cut], [(0, cut, 0)]
    keep, new_s, new_e = remap(starts, ends, segments)
    keep[:first] = False  # a continuation keeps the tokens it sampled, not the prefill's
    idx = np.flatnonzero(keep)
    return Response(text=text, finish_reason=finish, token_count=len(sample.logprobs) - first,
                    token_ids=[ids[i] for i in idx], logprobs=[sample.logprobs[i] for i in idx],
                    starts=new_s[idx].tolist(), ends=new_e[idx].tolist(), raw_output=raw)
