"""The answer checker: is a response's final answer the reference? One definition per benchmark kind
(`math`, `choice`, `code`), used by the filter's `wrong_answer` rule and by `evaluate` on benchmarks.

In every kind the final answer is what follows the last `</think>`: a response that never closed its
reasoning has no answer (a truncated trace that mentions the right number is not right).

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

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

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
    from math_verify import verify

    if final_section(text) is None:
        return False
    gold = _parse_latex(str(reference).strip().strip("$").strip())
    if not gold:
        return False
    pred = math_answer(text)
    return bool(pred) and verify(gold, pred)


# -- choice: the final letter --------------------------------------------------------------------

# "the answer is (B)", "Answer: B", "**Answer:** B." — the last one stated wins
_STATED_LETTER = re.compile(r"answer(?:\s+is)?\s*[:：]?\s*\**\s*[\(\[]?([A-J])\b[\)\]]?", re.I)
_BARE_LETTER = re.compile(r"^\W*([A-J])\W*$")


def final_letter(text: str) -> str | None:
    """The option letter the final answer gives: a boxed letter, else the last "answer is X" /
    "Answer: X", else a final section that is only a letter ("(B)", "B."); None otherwise."""
    section = final_section(text)
    if section is None:
        return None
    boxed = last_boxed(section)
    if boxed is not None:
        m = _BARE_LETTER.match(re.sub(r"\\text\{([^}]*)\}", r"\1", boxed))
        return m.group(1).upper() if m else None
    stated = _STATED_LETTER.findall(section)
    if stated:
        return stated[-1].upper()
    m = _BARE_LETTER.match(section.strip())
    return m.group(1).upper() if m else None


def choice_correct(text: str, reference: str) -> bool:
    letter = final_letter(text)
    return letter is not None and letter == str(reference).strip().strip("()").upper()


# -- code: the final program, run against the benchmark's tests ---------------------------------

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.S | re.I)


def final_program(text: str) -> str | None:
    """The last fenced code block of the final answer (```python … ```), else the final answer itself
    when it is Python; None when there is neither."""
    section = final_section(text)
    if section is None:
        return None
    blocks = _FENCE.findall(section)
    if blocks:
        return blocks[-1]
    try:
        compile(section, "<answer>", "exec")
    except (SyntaxError, ValueError):
        return None
    return section if section.strip() else None


# Run before the program, in the child: limits, and the functions a test program has no business calling
# (HumanEval's `reliability_guard`, plus sockets). It keeps honest mistakes from harming the machine; it
# is not a security boundary: run untrusted models' code in a container or VM, as HumanEval warns.
_GUARD = """
import builtins, os, resource, shutil, socket, subprocess, sys
resource.setrlimit(resource.RLIMIT_AS, ({mem}, {mem}))
resource.setrlimit(resource.RLIMIT_DATA, ({mem}, {mem}))
resource.setrlimit(resource.RLIMIT_CPU, ({cpu}, {cpu} + 1))
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 24, 1 << 24))
def _no(*a, **k):
    raise PermissionError("not allowed in a benchmark test")
socket.socket = socket.create_connection = socket.getaddrinfo = _no
for _m, _names in ((os, ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid",
                         "fork", "forkpty", "killpg", "rename", "renames", "truncate", "replace", "unlink",
                         "fchmod", "fchown", "chmod", "chown", "chroot", "lchown", "execv", "execve", "spawnv")),
                   (shutil, ("rmtree", "move", "chown")), (subprocess, ("Popen", "run", "call", "check_output"))):
    for _n in _names:
        if hasattr(_m, _n):
            setattr(_m, _n, _no)
builtins.exit = builtins.quit = _no
del _m, _names, _n
"""


def run_program(program: str, stdin: str = "", timeout: float = 10.0, memory_mb: int = 1024) -> tuple[bool, str]:
    """Run `program` in a fresh isolated interpreter (`python -I`) in an empty temp directory with an
    empty environment, CPU / memory / file-size limits and no sockets; (exit 0 within `timeout`, stdout)."""
    guard = _GUARD.format(mem=memory_mb << 20, cpu=max(1, int(timeout)))
    with tempfile.TemporaryDirectory(prefix="dasd-code-") as tmp:
        path = Path(tmp) / "program.py"
        path.write_text(guard + "\n" + program)
        try:
            r = subprocess.run([sys.executable, "-I", str(path)], input=stdin, capture_output=True, text=True,
                               timeout=timeout, cwd=tmp, env={"PATH": os.defpath, "PYTHONHASHSEED": "0"})
        except subprocess.TimeoutExpired:
            return False, ""
    return r.returncode == 0, r.stdout


def code_correct(text: str, tests: dict, timeout: float = 10.0) -> bool:
    """True when the final program passes every test. `tests` is one of
    - {"format": "check", "prompt": …, "test": …, "entry_point": …} (HumanEval: `check(candidate)`);
      the program may be the whole function or only its body (HumanEval's completion form);
    - {"format": "asserts", "asserts": [...], "setup": …} (MBPP: assert lines);
    - {"format": "stdio", "cases": [{"input": …, "output": …[, "testtype": "functional"]}, …],
      "function": …} (LiveCodeBench / Codeforces style: stdout compared line by line, trailing whitespace
      ignored; a `functional` case, LiveCodeBench's LeetCode items, is a call instead: see call_case)."""
    program = final_program(text)
    if program is None:
        return False
    fmt = tests.get("format")
    if fmt == "check":
        prompt = tests.get("prompt") or ""
        body_only = program[:1] in (" ", "\t")  # a completion to append to the prompt's signature
        full = (prompt + program) if body_only else (prompt + "\n\n" + program)
        return run_program(f"{full}\n\n{tests['test']}\n\ncheck({tests['entry_point']})\n", timeout=timeout)[0]
    if fmt == "asserts":
        # MBPP's setup code builds the tests' inputs, sometimes from the solution's own classes: after it
        return run_program(f"{program}\n\n{tests.get('setup') or ''}\n" + "\n".join(tests["asserts"]) + "\n",
                           timeout=timeout)[0]
    if fmt == "stdio":
        for case in tests["cases"]:
            if case.get("testtype") == "functional":
                if not call_case(program, tests.get("function"), case, timeout):
                    return False
                continue
            ok, out = run_program(program, stdin=case["input"], timeout=timeout)
            if not ok or [x.rstrip() for x in out.rstrip().splitlines()] != \
                    [x.rstrip() for x in str(case["output"]).rstrip().splitlines()]:
                return False
        return True
    raise ValueError(f"unknown code tests format {fmt!r} (check | asserts | stdio)")


# LiveCodeBench's call-based cases (its LeetCode items): the input is one JSON value per line, the
# arguments in order; the output is the JSON of the return value. The function is a method of the
# starter code's `class Solution`, or a plain function of that name. LeetCode's starter code uses
# `List[int]` and friends unimported, so, as LiveCodeBench's harness does, the program runs after
# wildcard imports of the standard modules LeetCode solutions assume.
_CALL_PRELUDE = ("from typing import *\nfrom collections import *\nfrom itertools import *\n"
                 "from functools import *\nfrom heapq import *\nfrom bisect import *\nimport math\n")
_CALL = """
import json as _json
_args = [_json.loads(_line) for _line in {input!r}.split("\\n") if _line.strip()]
_fn = getattr(Solution(), {name!r}) if "Solution" in globals() else globals()[{name!r}]
print(_json.dumps(_fn(*_args)))
"""


def call_case(program: str, function: str | None, case: dict, timeout: float = 10.0) -> bool:
    """One call-based case: the program's `function` called on the case's arguments returns the expected
    value (compared as JSON values, as tuples and lists print alike there)."""
    if not function:
        raise ValueError("a functional test case needs the function's name (tests: function)")
    ok, out = run_program(_CALL_PRELUDE + program + "\n" + _CALL.format(input=case["input"], name=function),
                          timeout=timeout)
    if not ok:
        return False
    try:
        return json.loads(out.strip().splitlines()[-1]) == json.loads(case["output"])
    except (json.JSONDecodeError, IndexError):
        return False


def math_answer(text: str):
    """The final answer math-verify reads (the last box, else the stated answer), None when there is none."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    section = final_section(text)
    if section is None:
        return None
    boxed = last_boxed(section)
    pred = _parse_latex(boxed) if boxed is not None else \
        parse(section, extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()])
    return pred or None


def extract(kind: str, text: str):
    """The final answer of `kind` the response states (None: no closed reasoning, or no answer): what
    "well-formed" means in evaluation."""
    return {"math": math_answer, "choice": final_letter, "code": final_program}[kind](text)


def correct(kind: str, text: str, reference) -> bool:
    """The one entry point: `kind` math (reference: the answer), choice (the letter) or code (the tests,
    as a dict or its JSON)."""
    if kind == "math":
        return math_correct(text, reference)
    if kind == "choice":
        return choice_correct(text, reference)
    if kind == "code":
        return code_correct(text, json.loads(reference) if isinstance(reference, str) else reference)
    raise ValueError(f"unknown answer kind {kind!r} (math | choice | code)")
