"""The answer checker: is a response's final answer the reference? One definition, used by the filter's
`wrong_answer` rule (and, next, by evaluation on real benchmarks).

Math, as the common harnesses grade it:
- the final answer is what follows the last `</think>`: a response that never closed its reasoning has
  no answer (a truncated trace that mentions the right number is not right);
- within it, the last `\\boxed{…}`; without one, the whole final section (math-verify finds "the
  answer is …" and a last expression there);
- the reference is parsed as LaTeX whatever its spelling: `\\sqrt{51}`, `\\frac43`, `\\pi`,
  `\\text{Evelyn}` and a bare `3` are all read as the expressions they write (handing math-verify a
  reference without `$…$` unwrapped made it read `\\sqrt{51}` as nothing, so 76 of MATH-500's answers
  failed against themselves);
- the two are compared by `math_verify.verify` (symbolic equality, intervals, tuples, sets).
"""
from __future__ import annotations

THINK_CLOSE = "</think>"
BOXED = ("\\boxed{", "\\fbox{")


def final_section(text: str) -> str | None:
    """What follows the last `</think>`; None when the reasoning was never closed."""
    if THINK_CLOSE not in text:
        return None
    return text.rsplit(THINK_CLOSE, 1)[1]


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{…}` (braces balanced), None when there is none or it is unclosed."""
    start = max(text.rfind(b) for b in BOXED)
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth, j = 1, i
    while j < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        j += 1
    return text[i:j - 1] if depth == 0 else None


def _parse_latex(expr: str):
    from math_verify import LatexExtractionConfig, parse

    return parse(f"\\boxed{{{expr}}}", extraction_config=[LatexExtractionConfig()])


def math_correct(text: str, reference: str) -> bool:
    """True when the response's final answer equals the reference answer."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    section = final_section(text)
    if section is None:
        return False
    gold = _parse_latex(str(reference).strip().strip("$").strip())
    if not gold:
        return False
    boxed = last_boxed(section)
    if boxed is not None:
        pred = _parse_latex(boxed)
    else:
        pred = parse(section, extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()])
    return bool(pred) and verify(gold, pred)
