"""The answer checker on real benchmark answers: every MATH-500 and AIME24 reference, written as a boxed
final answer, is right; paired with another problem's reference it is wrong (unless the two are equal)."""
from __future__ import annotations

import json

import pytest

from conftest import shared
from engine.answers import final_section, last_boxed, math_correct


def references() -> list[tuple[str, str]]:
    rows = []
    for name in ("math500.jsonl", "aime24.jsonl"):
        rows += [(json.loads(line)["id"], str(json.loads(line)["answer"])) for line in open(shared("math", name))]
    return rows


def response(answer: str) -> str:
    return f"<think>\nLet me work it out.\n</think>\n\nSo the final answer is $\\boxed{{{answer}}}$."


def test_every_reference_is_right_against_itself_and_wrong_against_another():
    refs = references()
    assert len(refs) == 530
    wrong_self = [(i, a) for i, a in refs if not math_correct(response(a), a)]
    assert wrong_self == []  # 500/500 and 30/30 (76 of MATH-500's failed before: `\sqrt{51}`, `\frac43`, ...)
    # each paired with the next problem's reference: wrong, except where the two answers are the same value
    # ("5" and "x=5" are the one such pair in these sets)
    right_other = [(a, b) for (_, a), (_, b) in zip(refs, refs[1:] + refs[:1])
                   if a.strip() != b.strip() and math_correct(response(b), a)]
    assert right_other == [("5", "x=5")] or right_other == [("x=5", "5")]


@pytest.mark.parametrize("text,reference,right", [
    (response("3"), r"\left( 3, \frac{\pi}{2} \right)", False),       # a part of a tuple is not the tuple
    (response(r"\left( 3, \frac{\pi}{2} \right)"), r"\left( 3, \frac{\pi}{2} \right)", True),
    ("<think>\nthe answer is 14, surely\n", "14", False),                 # never closed: no answer
    ("<think>\nx\n</think>\n\n$\\boxed{13}$ no wait, $\\boxed{14}$", "14", True),  # the last box
    ("<think>\nx\n</think>\n\nThe final answer is 14.", "14", True),      # no box: the stated answer
    ("<think>\nx\n</think>\n\n$\\boxed{\\frac{1}{2}}$", "0.5", True),
    ("<think>\nx\n</think>\n\n$\\boxed{Evelyn}$", r"\text{Evelyn}", True),
    ("<think>\nx\n</think>\n\n$\\boxed{\\sqrt{51}}$", r"\sqrt{51}", True),
    ("<think>\nx\n</think>\n\n$\\boxed{\\sqrt{52}}$", r"\sqrt{51}", False),
])
def test_final_answers(text, reference, right):
    assert math_correct(text, reference) is right


def test_sections_and_boxes():
    assert final_section("a</think>b</think>c") == "c" and final_section("no close") is None
    assert last_boxed(r"\boxed{1} and \boxed{\frac{a}{b}}") == r"\frac{a}{b}"
    assert last_boxed(r"\boxed{unclosed") is None and last_boxed("none") is None


# -- choice and code -------------------------------------------------------------------------------

def test_mmlu_letters():
    from engine.answers import choice_correct, final_letter

    rows = [json.loads(line) for line in open(shared("science", "mmlu_science_test.jsonl"))]
    assert len(rows) == 1397 and {r["answer"] for r in rows} == {"A", "B", "C", "D"}
    forms = ["The answer is ({})", "Answer: {}", "**Answer:** {}.", "$\\boxed{{{}}}$", "{}", "(\\text{{{}}})"]
    for i, r in enumerate(rows):
        right, wrong = r["answer"], "ABCD"[("ABCD".index(r["answer"]) + 1) % 4]
        form = forms[i % len(forms)]
        if form.startswith("(\\text"):
            form = "$\\boxed{{\\text{{{}}}}}$"
        assert choice_correct(f"<think>\nA or B? {wrong}.\n</think>\n\n" + form.format(right), right), (i, form)
        assert not choice_correct("<think>\nx\n</think>\n\n" + form.format(wrong), right)
    assert final_letter("<think>\nthe answer is B\n") is None      # never closed: no answer
    assert final_letter("<think>\nx\n</think>\n\nAnswer: A, no wait, the answer is C") == "C"
    assert final_letter("<think>\nx\n</think>\n\nI think so.") is None


def humaneval_tests(r):
    return {"format": "check", "prompt": r["question"], "test": r["test"], "entry_point": r["entry_point"]}


def mbpp_tests(r):
    return {"format": "asserts", "asserts": r["test_list"], "setup": r["test_setup_code"]}


def fenced(code: str) -> str:
    return f"<think>\nLet me write it.\n</think>\n\n```python\n{code}\n```\n"


def test_canonical_solutions_pass_their_tests_and_broken_ones_fail():
    from concurrent.futures import ThreadPoolExecutor

    from engine.answers import code_correct

    he = [json.loads(line) for line in open(shared("code", "humaneval.jsonl"))]
    mbpp = [json.loads(line) for line in open(shared("code", "mbpp.jsonl"))]
    mbpp = [r for r in mbpp if r["split"] == "test"][::5]  # 100 of the 500 test problems: a subprocess each
    assert len(he) == 164 and len(mbpp) == 100
    jobs = [(fenced(r["canonical_solution"]), humaneval_tests(r)) for r in he]
    # HumanEval's completion form: the body alone, appended to the prompt's signature
    jobs += [(f"<think>\nx\n</think>\n\n```python\n{r['canonical_solution']}```", humaneval_tests(r)) for r in he[:5]]
    jobs += [(fenced(r["answer"]), mbpp_tests(r)) for r in mbpp]
    with ThreadPoolExecutor(2) as pool:
        passed = list(pool.map(lambda j: code_correct(*j, timeout=10), jobs))
    assert [j[1].get("entry_point") or j[1]["asserts"][0] for j, ok in zip(jobs, passed) if not ok] == []
    # an empty body, another problem's solution, a program that never ends, one with no code, one unclosed
    he0 = humaneval_tests(he[0])
    assert not code_correct(fenced(he[0]["question"] + "    pass\n"), he0)
    assert not code_correct(fenced(he[1]["canonical_solution"]), he0)
    assert not code_correct(fenced("while True:\n    pass"), mbpp_tests(mbpp[0]), timeout=2)
    assert not code_correct("<think>\nx\n</think>\n\nI could not do it.", he0)
    assert not code_correct("<think>\n```python\n" + he[0]["canonical_solution"] + "```", he0)


def test_livecodebench_call_based_and_stdin_items(tmp_path):
    """LiveCodeBench's own columns (code_generation_lite): public_test_cases as JSON text with a testtype
    per case, metadata JSON naming the function of its LeetCode items."""
    from engine.answers import correct
    from engine.benchmarks import Benchmarks, load
    from engine.errors import InputError

    two_sum = [{"input": "[2,7,11,15]\n9", "output": "[0, 1]", "testtype": "functional"},
               {"input": "[3,2,4]\n6", "output": "[1, 2]", "testtype": "functional"}]
    rows = [{"question_id": "lc1", "question_content": "Return the indices of the two numbers adding up to target.",
             "public_test_cases": json.dumps(two_sum), "metadata": json.dumps({"func_name": "twoSum"})},
            {"question_id": "cf1", "question_content": "Read two integers and print their sum.",
             "public_test_cases": json.dumps([{"input": "2 3\n", "output": "5\n", "testtype": "stdin"}]),
             "metadata": "{}"}]
    path = tmp_path / "lcb.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {"path": str(path), "kind": "code", "fields": {"id": "question_id", "question": "question_content"},
            "tests": {"format": "stdio", "cases": "public_test_cases", "function": "metadata"}}
    lc, cf = load(Benchmarks(lcb=spec)["lcb"], tmp_path)
    assert json.loads(lc.reference)["function"] == "twoSum" and "function" not in json.loads(cf.reference)

    solution = ("class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n"
                "        seen = {}\n        for i, x in enumerate(nums):\n            if target - x in seen:\n"
                "                return [seen[target - x], i]\n            seen[x] = i\n")
    assert correct("code", fenced(solution), lc.reference)  # List without an import, as LeetCode writes it
    assert correct("code", fenced(solution.replace("return [seen[target - x], i]", "return (seen[target - x], i)")),
                   lc.reference)  # a tuple is the same JSON value
    assert not correct("code", fenced(solution.replace("[seen[target - x], i]", "[i, seen[target - x]]")), lc.reference)
    assert correct("code", fenced("def twoSum(nums, target):\n    return next([i, j] for j in range(len(nums)) "
                                  "for i in range(j) if nums[i] + nums[j] == target)"), lc.reference)  # a plain function
    assert not correct("code", fenced("class Solution:\n    def other(self, nums, target):\n        return [0, 1]"),
                       lc.reference)  # the function is missing
    assert correct("code", fenced("a, b = map(int, input().split())\nprint(a + b)"), cf.reference)

    del spec["tests"]["function"]
    with pytest.raises(InputError, match=r"lcb.jsonl:1: field 'public_test_cases': a functional case needs tests.function"):
        load(Benchmarks(lcb=spec)["lcb"], tmp_path)


def test_stdio_tests_and_the_guard():
    from engine.answers import code_correct, run_program

    tests = {"format": "stdio", "cases": [{"input": "2 3\n", "output": "5\n"}, {"input": "10 -4\n", "output": "6"}]}
    assert code_correct(fenced("a, b = map(int, input().split())\nprint(a + b)"), tests)
    assert not code_correct(fenced("a, b = map(int, input().split())\nprint(a * b)"), tests)
    # no network, no shelling out, no deleting: the program fails instead
    assert not run_program("import socket\nsocket.create_connection(('127.0.0.1', 9))")[0]
    assert not run_program("import os\nos.system('true')")[0]
    assert not run_program("import shutil\nshutil.rmtree('/tmp')")[0]
    assert not run_program("x = bytearray(4 << 30)", memory_mb=256)[0]  # over the memory limit
    assert run_program("print(sum(range(10)))") == (True, "45\n")
