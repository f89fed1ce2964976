"""gpt-oss harmony output on the real completions in ../shared/data/harmony."""
from __future__ import annotations

import json
import re

import pytest

from conftest import shared
from engine import responses
from engine.backends import Sample, harmony

SPECIAL = re.compile(r"(<\|[a-z_]+\|>)")


def notebook_outputs():
    return [json.loads(line) for line in open(shared("harmony", "gptoss_rft_notebook_outputs.jsonl"))]


def fixtures():
    return {json.loads(line)["id"]: json.loads(line) for line in open(shared("harmony", "harmony_test_fixtures.jsonl"))}


def as_tokens(raw: str, width: int = 3) -> Sample:
    """The completion as a token stream: special tokens whole, text in small byte chunks (multi-byte
    characters split across tokens, as a real BPE does)."""
    pieces = []
    for part in SPECIAL.split(raw):
        if SPECIAL.fullmatch(part):
            pieces.append(part.encode())
        else:
            b = part.encode()
            pieces += [b[i:i + width] for i in range(0, len(b), width)]
    return Sample(logprobs=[-0.1 * (i % 7) for i in range(len(pieces))], finish_reason="stop", token_bytes=pieces)


@pytest.mark.parametrize("row", notebook_outputs(), ids=lambda r: r["id"])
def test_real_gpt_oss_completions_become_think_then_answer(row):
    raw = row["response"]
    analysis = re.search(r"<\|channel\|>analysis<\|message\|>(.*?)<\|end\|>", raw, re.S).group(1)
    final = re.search(r"<\|channel\|>final<\|message\|>(.*?)<\|return\|>", raw, re.S).group(1)
    view = harmony.to_student(raw)
    assert view.text == f"<think>\n{analysis}\n</think>\n\n{final}"
    assert view.has_final and not view.tool_call
    # the same completion as vLLM returns it after a prompt ending in <|start|>assistant
    assert harmony.to_student(raw.removeprefix("<|start|>assistant")).text == view.text
    # the rendered conversation parses into system, user, analysis, final
    msgs = harmony.parse(row["raw_text"])
    assert [(m.role, m.channel) for m in msgs] == [("system", None), ("user", None), ("assistant", "analysis"),
                                                   ("assistant", "final")]


@pytest.mark.parametrize("row", notebook_outputs(), ids=lambda r: r["id"])
def test_token_spans_survive_the_rewrite(row):
    raw = row["response"]
    sample = as_tokens(raw)
    r = responses.build(sample, None, "harmony")
    assert r.token_count == len(sample.token_bytes)
    # kept tokens are the content tokens, in order, each spanning its own characters in the rewrite
    analysis = re.search(r"<\|channel\|>analysis<\|message\|>(.*?)<\|end\|>", raw, re.S).group(1)
    final = re.search(r"<\|channel\|>final<\|message\|>(.*?)<\|return\|>", raw, re.S).group(1)
    assert "".join(r.text[s:e] for s, e in zip(r.starts, r.ends)) == analysis + final
    assert len(r.logprobs) == len(r.starts) < r.token_count
    assert r.text.startswith("<think>\n") and "</think>\n\n" in r.text
    # no kept token falls inside the inserted markup
    close = r.text.index("\n</think>\n\n")
    assert not any(s < close + 11 and e > close for s, e in zip(r.starts, r.ends))
    # the content between the markup is covered by the kept tokens, in order, with no gaps
    think_spans = [(s, e) for s, e in zip(r.starts, r.ends) if e <= close]
    assert think_spans[0][0] == len("<think>\n") and think_spans[-1][1] == close
    assert all(a[1] == b[0] for a, b in zip(think_spans, think_spans[1:]))
    final_spans = [(s, e) for s, e in zip(r.starts, r.ends) if s >= close + 11]
    assert final_spans[0][0] == close + 11 and final_spans[-1][1] == len(r.text)


def test_tool_call_marks_the_response():
    raw = ("<|channel|>analysis<|message|>Need the weather, call the tool.<|end|>"
           "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"
           '{"location": "San Francisco"}<|call|>')
    view = harmony.to_student(raw)
    assert view.tool_call and not view.has_final
    assert view.text == "<think>\nNeed the weather, call the tool."  # unclosed: the filter rejects it
    r = responses.build(as_tokens(raw), None, "harmony")
    assert r.finish_reason == "tool_call"


def test_fixture_with_a_function_call_and_truncation():
    fx = fixtures()
    # openai/harmony's own test data: a rendered conversation whose assistant calls a tool
    text = fx["harmony_fixture_test_does_not_drop_if_ongoing_analysis"]["text"]
    msgs = harmony.parse(text)
    assert any(m.is_tool_call for m in msgs)
    assert any(m.channel == "analysis" for m in msgs)
    # a completion cut mid-analysis (max_tokens): unclosed think, nothing lost
    cut = "<|channel|>analysis<|message|>Let me think about 2 + 2"
    view = harmony.to_student(cut)
    assert view.text == "<think>\nLet me think about 2 + 2" and not view.has_final


def test_streamable_parser_fixture_channels():
    text = fixtures()["harmony_fixture_test_streamable_parser"]["text"]
    msgs = harmony.parse(text)
    assert msgs[0].channel == "analysis" and msgs[0].content.startswith("User asks")
    call, result = msgs[1], msgs[2]
    assert call.is_tool_call and call.recipient == "browser.search" and call.terminator == "<|call|>"
    assert result.role == "browser.search" and not result.is_tool_call
    assert harmony.to_student(text).tool_call
