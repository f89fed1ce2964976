"""The miniature's task family: what the teacher and the student are shown (no model is trained here;
tests/e2e and tests/test_numerics build the models)."""
from __future__ import annotations

import re

import pytest

from engine.miniature import tasks
from engine.miniature.stage import MiniatureParams, _student_pool
from engine.params import ParamsError

TERSE = re.compile(r"^(Getting|Giving|Doubling)")
STEP = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)\.")
TALLY = re.compile(r" Now there are (\d+)\.$")


def steps_of(solution: str) -> list[str]:
    return solution.split("<think>\n", 1)[1].split("\n</think>", 1)[0].split("\n")[1:]


def test_the_teacher_sees_both_phrasings_tallies_half_its_steps_and_every_line_is_right():
    problems = tasks.make_problems(400, seed=5)
    lines = [line for p in problems for line in steps_of(p.solution)]
    assert len(lines) == sum(p.level for p in problems)
    terse = sum(bool(TERSE.match(line)) for line in lines) / len(lines)
    tallied = sum(bool(TALLY.search(line)) for line in lines) / len(lines)
    assert 0.4 < terse < 0.6 and 0.4 < tallied < 0.6
    both = sum(bool(TERSE.match(line) and TALLY.search(line)) for line in lines) / len(lines)
    assert 0.15 < both < 0.35  # the two choices are drawn independently
    for p in problems:
        value = p.start
        for line, step in zip(steps_of(p.solution), p.steps):
            a, op, k, b = STEP.search(line).groups()  # the step, in either phrasing
            assert (int(a), int(k), int(b)) == (value, step.k, step.after) and op == "+-*/"[tasks.KINDS.index(step.kind)]
            tally = TALLY.search(line)
            if tally:  # the running count, after the step
                assert int(tally.group(1)) == step.after
                line = line[:tally.start()]
            assert TERSE.match(line) or line.count(". ") == 1  # a story step: two sentences
            value = step.after
        assert value == p.answer == tasks.extract_answer(p.solution)


def test_the_student_sees_its_kinds_in_its_phrasing():
    mp = MiniatureParams(enabled=True, train_problems=300, student_kinds=["add", "sub"], student_phrasings=["story"])
    pool = _student_pool(mp, seed=6, seen=set())
    assert len(pool) == 300 and all(p.kinds <= {"add", "sub"} for p in pool)
    assert {p.level for p in pool} == {3, 4}  # every level, as often as in the teacher's pool
    for p in pool:
        text = p.render(("story",))
        assert not any(TERSE.match(line) or TALLY.search(line) for line in steps_of(text))  # nor the tallies
        assert tasks.extract_answer(text) == p.answer
    # the same problem renders the same way each time; the question never depends on the rendering
    p = tasks.make_problems(1, seed=5)[0]
    again = tasks.make_problem(5 * 1_000_003, 1)
    assert (p.solution, p.question) == (again.solution, again.question)


@pytest.mark.parametrize("change, says", [({"student_kinds": ["sub", "mul"]}, "must hold `add`"),
                                          ({"student_phrasings": []}, "student_phrasings is empty"),
                                          ({"student_kinds": ["add", "sum"]}, "student_kinds")])
def test_bad_student_params_are_named(change, says):
    with pytest.raises(ParamsError, match=says):
        MiniatureParams(enabled=True, **change)
