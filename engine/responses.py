"""From a backend's sampled tokens to the stored response: the student's text and token spans in it.

Two response formats:
- `chat`: the text is what the model wrote, minus stop/special tokens (they have no text for the
  student; their logprobs stay counted in `teacher_token_count`).
- `harmony` (gpt-oss): channels rewritten to `<think>\n{analysis}\n</think>\n\n{final}`; each content
  token's span is moved to where its characters land in the rewrite, header tokens are dropped, and a
  tool call marks the response `tool_call`.
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


def build(sample: Sample, tokenizer, fmt: str) -> Response:
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
    idx = np.flatnonzero(keep)
    return Response(text=text, finish_reason=finish, token_count=len(sample.logprobs),
                    token_ids=[ids[i] for i in idx], logprobs=[sample.logprobs[i] for i in idx],
                    starts=new_s[idx].tolist(), ends=new_e[idx].tolist(), raw_output=raw)
