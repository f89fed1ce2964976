"""gpt-oss "harmony" output: parse the channels of a completion and rewrite it for the student.

A completion is a run of messages `[<|start|>{role}]{header}<|message|>{content}<|end|>|<|call|>|<|return|>`
where the header carries `<|channel|>analysis|commentary|final`, an optional ` to={recipient}` and an
optional `<|constrain|>{format}`. The student sees `<think>\n{analysis}\n</think>\n\n{final}`.

The parser works on text so that it serves every backend (vLLM token ids decoded with their special
tokens, a completions server's text, a dataset's stored strings) and needs no vocabulary:
`openai-harmony`'s own parser needs the o200k vocabulary file, which it downloads on first use and
which offline machines (this project's CI among them) cannot fetch. The grammar above is the one of
openai/harmony's test data, on which the tests run this parser.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

START, MESSAGE, CHANNEL, CONSTRAIN = "<|start|>", "<|message|>", "<|channel|>", "<|constrain|>"
TERMINATORS = ("<|end|>", "<|call|>", "<|return|>")
_TERMINATOR_RE = re.compile("|".join(re.escape(t) for t in TERMINATORS))
_RECIPIENT_RE = re.compile(r"to=([^\s<]+)")


@dataclass
class HarmonyMessage:
    role: str | None
    channel: str | None
    recipient: str | None
    content: str
    content_start: int          # char offset of the content in the parsed text
    terminator: str | None      # None when the text ends inside the message (truncated)

    @property
    def is_tool_call(self) -> bool:
        # an assistant message addressed to a tool, or one ended by <|call|>
        return self.terminator == "<|call|>" or (
            self.recipient is not None and self.recipient != "assistant" and self.role in (None, "assistant"))


def parse(text: str) -> list[HarmonyMessage]:
    """All messages of a harmony string, in order, with their content offsets."""
    messages, pos = [], 0
    while True:
        m = text.find(MESSAGE, pos)
        if m < 0:
            break
        header = text[pos:m]
        role = None
        if START in header:
            header = header[header.rindex(START) + len(START):]
            role = re.split(r"<\||\s", header, maxsplit=1)[0] or None
        channel = None
        if CHANNEL in header:
            channel = re.split(r"<\||\s", header.split(CHANNEL, 1)[1], maxsplit=1)[0] or None
        rec = _RECIPIENT_RE.search(header)
        start = m + len(MESSAGE)
        end_m = _TERMINATOR_RE.search(text, start)
        end = end_m.start() if end_m else len(text)
        messages.append(HarmonyMessage(role, channel, rec.group(1) if rec else None, text[start:end], start,
                                       end_m.group(0) if end_m else None))
        pos = end_m.end() if end_m else len(text)
    return messages


@dataclass
class StudentView:
    """The student's text and how spans of the parsed text map into it."""
    text: str
    has_final: bool
    tool_call: bool
    # (raw_start, raw_end, new_start): raw text[raw_start:raw_end] appears at text[new_start:…]
    segments: list[tuple[int, int, int]] = field(default_factory=list)


def to_student(raw: str) -> StudentView:
    msgs = [m for m in parse(raw) if m.role in (None, "assistant")]
    reasoning = [m for m in msgs if m.channel in ("analysis", "commentary") and not m.is_tool_call]
    finals = [m for m in msgs if m.channel == "final"]
    out, segments = ["<think>\n"], []
    length = len(out[0])

    def emit(parts: list[HarmonyMessage]):
        nonlocal length
        for k, m in enumerate(parts):
            if k:
                out.append("\n\n")
                length += 2
            segments.append((m.content_start, m.content_start + len(m.content), length))
            out.append(m.content)
            length += len(m.content)

    emit(reasoning)
    if finals:
        out.append("\n</think>\n\n")
        length += len(out[-1])
        emit(finals)
    return StudentView("".join(out), bool(finals), any(m.is_tool_call for m in msgs), segments)


def from_student(text: str) -> str:
    """The inverse of `to_student` for a student-format text or prefix (`<think>\n{analysis}` and, once
    the reasoning is closed, `\n</think>\n\n{final}`): the assistant's raw harmony output after the
    generation prompt `<|start|>assistant`, ready to be continued. A prefix ending inside the closing
    `\n</think>\n\n` has no harmony form: ValueError."""
    open_ = "<think>\n"
    if not text.startswith(open_):
        raise ValueError("a harmony prefix must start with '<think>\\n' (the analysis channel)")
    body, close = text[len(open_):], "\n</think>\n\n"
    analysis = f"{CHANNEL}analysis{MESSAGE}"
    if close in body:
        reasoning, final = body.split(close, 1)
        return f"{analysis}{reasoning}<|end|>{START}assistant{CHANNEL}final{MESSAGE}{final}"
    for k in range(len(close) - 1, 1, -1):  # from "\n<" on; a lone trailing "\n" is reasoning text
        if body.endswith(close[:k]):
            raise ValueError(f"the prefix ends inside '\\n</think>\\n\\n' ({close[:k]!r}): no harmony form")
    return f"{analysis}{body}"
