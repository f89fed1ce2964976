"""The common ways of marking reasoning, mapped to the engine's form `<think>\\n{reasoning}\\n</think>\\n\\n{answer}`,
so the filter's structure rules read any dataset the same way.

- `think`: `<think>…</think>` (DeepSeek-R1, Qwen3, this engine). R1-distilled models' outputs often lack
  the opening tag (their chat template writes it into the prompt): a text with `</think>` and no `<think>`
  gets it back.
- `thought`: `<|begin_of_thought|>…<|end_of_thought|>` then `<|begin_of_solution|>…<|end_of_solution|>`
  (Sky-T1, OpenThoughts, Bespoke-Stratos).
- `harmony`: gpt-oss channels (`<|channel|>analysis<|message|>…<|end|>…<|channel|>final…`),
  through engine/backends/harmony.py.
- `auto`: per text, the first of harmony, thought, think whose markers it holds; none: left as it is
  (the structure rules then call it missing its reasoning).

A text with an opening marker and no closing one maps to an unclosed `<think>` (truncated or looping):
no answer follows, and `unclosed_reasoning` rejects it.
"""
from __future__ import annotations

from typing import Literal, get_args

Format = Literal["auto", "think", "thought", "harmony"]
FORMATS = get_args(Format)

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
THOUGHT = ("<|begin_of_thought|>", "<|end_of_thought|>")
SOLUTION = ("<|begin_of_solution|>", "<|end_of_solution|>")
HARMONY_MARK = "<|channel|>"


def detect(text: str) -> str | None:
    """The format whose markers `text` holds, or None."""
    if HARMONY_MARK in text:
        return "harmony"
    if THOUGHT[0] in text or THOUGHT[1] in text:
        return "thought"
    if THINK_OPEN in text or THINK_CLOSE in text:
        return "think"
    return None


def _think(text: str) -> str:
    if THINK_CLOSE in text and THINK_OPEN not in text.split(THINK_CLOSE, 1)[0]:
        return THINK_OPEN + "\n" + text.lstrip()  # the opening tag was in the prompt (R1-distill)
    return text


def _thought(text: str) -> str:
    body = text.split(THOUGHT[0], 1)[1] if THOUGHT[0] in text else text
    if THOUGHT[1] not in body:
        return f"{THINK_OPEN}\n{body.strip()}"
    reasoning, rest = body.split(THOUGHT[1], 1)
    answer = rest.split(SOLUTION[0], 1)[1] if SOLUTION[0] in rest else rest
    answer = answer.split(SOLUTION[1], 1)[0]
    return f"{THINK_OPEN}\n{reasoning.strip()}\n{THINK_CLOSE}\n\n{answer.strip()}"


def _harmony(text: str) -> str:
    from .backends.harmony import to_student

    return to_student(text).text


CONVERT = {"think": _think, "thought": _thought, "harmony": _harmony}


def to_think(text: str, fmt: str = "auto") -> tuple[str, str | None]:
    """(the text in the engine's form, the format read: `fmt`, or what `auto` detected, None for none)."""
    if fmt not in FORMATS:
        raise ValueError(f"reasoning format {fmt!r}: one of {', '.join(FORMATS)}")
    used = detect(text) if fmt == "auto" else fmt
    return (CONVERT[used](text) if used else text), used
