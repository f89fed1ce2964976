"""The filter's rules, one entry each: name, default threshold, how the value is measured. Everything
else is derived from this list: the known keys of params `filter.rules`, the defaults, the rule list in
`dasd filter --help`, the rules `mixed_filter` applies, the card's thresholds. A response fails a rule
when its value > the threshold; a threshold of null turns the rule off.

Defaults, derived by one rule from every complete, correct real trace in ../shared/data (DeepSeek-R1,
R1-Distill-Qwen-7B and -Llama-8B, gpt-oss-20b, Qwen2.5-Math CoT; benchmarks/filter_families.py prints
them by family): Gopher's web-text value (or the paragraph / sentence rule's own), raised where those
traces exceed it to 1.1 x their largest value, rounded up to 0.05. Reasoning repeats lines ("Wait,",
`\\[`), enumerations ("which are not allowed") and 5-10-grams far more than web pages: Gopher's 0.15
for 5-grams rejects over half of those traces, and its top-n-gram values rejected clean enumerations.
Loops stay far beyond every limit (their values near 1; `runaway_repeats` counts the copies).

How a rule is measured (`by`):
- "response": from the response's record (its finish reason, its length in student tokens);
- "kernel": a column of the compiled pass over the texts (engine/kernels/measures.py `COLUMNS`, held to
  the plain definition `engine.filter.measure` by tests/test_kernels.py);
- "python": `measure(text, question)` per response, run only when the rule is on; `question` holds the
  question's `domain` and `reference_answer`. A new rule of this kind is one entry here, e.g.

      Rule("too_short", None, "fewer than 50 characters after </think>", "python",
           lambda text, q: float(len(text.rsplit("</think>", 1)[-1].strip()) < 50)),
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal


@dataclass(frozen=True)
class Rule:
    name: str
    default: float | None  # the threshold; None: off unless params set one
    doc: str               # what the value is
    by: Literal["response", "kernel", "python"] = "kernel"
    measure: Callable[[str, dict], float] | None = None  # by "python": (response text, its question) -> value


def _wrong_answer(text: str, question: dict) -> float:
    from .answers import math_correct

    if question.get("domain") != "math" or not question.get("reference_answer"):
        return 0.0
    return float(not math_correct(text, question["reference_answer"]))


def _ngram_rules() -> list[Rule]:
    # each measured on the reasoning and on the answer apart, the larger counting (engine/filter.py)
    top = [Rule(f"top_{n}gram_char_frac", d, f"share of characters covered by the most frequent word {n}-gram")
           for n, d in ((2, 0.25), (3, 0.3), (4, 0.25))]
    dup = [Rule(f"dup_{n}gram_char_frac", d, f"share of characters covered by word {n}-grams that occur more than once")
           for n, d in ((5, 0.6), (6, 0.6), (7, 0.6), (8, 0.6), (9, 0.5), (10, 0.5))]
    return top + dup


RULES: tuple[Rule, ...] = (
    Rule("length", 65536, "the response in student tokens (the training context: 65,536 in the paper)", "response"),
    Rule("truncated", 0, "1 if the teacher hit max_tokens (finish_reason = length)", "response"),
    Rule("tool_call", 0, "1 if the response is a tool/function call", "response"),
    Rule("missing_reasoning", 0, "1 unless the response opens with <think> and reasons inside it"),
    Rule("unclosed_reasoning", 0, "1 if <think> is never closed"),
    Rule("empty_answer", 0, "1 if nothing follows </think>"),
    Rule("dup_line_frac", 0.6, "share of lines that repeat an earlier line (Gopher)"),
    Rule("dup_para_frac", 0.3, "share of paragraphs that repeat an earlier one (Gopher)"),
    Rule("dup_sentence_frac", 0.3, "share of sentences (the sentences stage's) that repeat an earlier one"),
    Rule("dup_line_char_frac", 0.45, "share of characters in repeated lines (Gopher)"),
    Rule("dup_para_char_frac", 0.2, "share of characters in repeated paragraphs (Gopher)"),
    *_ngram_rules(),
    Rule("runaway_repeats", 8, "the most consecutive repeats of one piece of p = 10-4,096 characters in the "
                               "last max(4,000, 9p), or of one sentence (loops)"),
    Rule("wrong_answer", None, "math questions with a reference answer: 1 unless the final answer (the last "
                               "\\boxed{} after </think>) equals it by math-verify (engine/answers.py); others 0. "
                               "Off by default, as in the paper", "python", _wrong_answer),
)

BY_NAME = {r.name: r for r in RULES}
DEFAULTS = {r.name: r.default for r in RULES}


def describe() -> str:
    """The rule list for help texts: `- name (default): what the value is`."""
    return "\n".join(f"- {r.name} ({'off' if r.default is None else f'{r.default:g}'}): {r.doc}" for r in RULES)
