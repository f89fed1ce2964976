"""The miniature's task family: what the teacher and the student are shown (no model is trained here;
tests/e2e and tests/test_numerics build the models)."""
from __future__ import annotations

import re

import pytest

from engine.miniature import tasks
from engine.miniature.stage import MiniatureParams, _student_pool
from engine.miniature.train import length_batches
from engine.params import ParamsError

TERSE = re.compile(r"^(Getting|Giving|Doubling)")
STEP = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)\.")
TALLY = re.compile(r" Now there are (\d+)\.$")


def steps_of(solution: str) -> list[str]:
    return solution.split("<think>\n", 1)[1].split("\n</think>", 1)[0].split("\n")[1:]


def test_the_teacher_sees_both_phrasings_tallies_a_quarter_of_its_steps_and_every_line_is_right():
    problems = tasks.make_problems(600, seed=5)
    lines = [line for p in problems for line in steps_of(p.solution)]
    assert len(lines) == sum(p.level for p in problems)
    terse = sum(bool(TERSE.match(line)) for line in lines) / len(lines)
    tallied = sum(bool(TALLY.search(line)) for line in lines) / len(lines)
    assert 0.43 < terse < 0.57 and 0.2 < tallied < 0.3
    both = sum(bool(TERSE.match(line) and TALLY.search(line)) for line in lines) / len(lines)
    assert 0.09 < both < 0.16  # the two choices are drawn independently
    for p in problems:
        value = p.start
        for line, step in zip(steps_of(p.solution), p.steps):
            a, op, k, b = STEP.search(line).groups()  # the step, in either phrasing
            assert (int(a), int(k), int(b)) == (value, step.k, step.after) and op == "+-*/"[tasks.KINDS.index(step.kind)]
            tally = TALLY.search(line)
            if tally:  # the running count, after the step
                assert int(tally.group(1)) == step.after
                line = line[:tally.start()]
            if not TERSE.match(line):  # a story step: three sentences, the first the count before it
                assert line.count(". ") == 2 and line.startswith(f"{p.name} has {value} {p.item}. ")
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


def test_length_batches_cut_padding_and_draw_fairly():
    import random
    from itertools import islice

    lengths = random.Random(1).choices(range(150, 280), k=2000)
    data = [([0] * n, 10) for n in lengths]
    grouped = list(islice(length_batches(data, 32, random.Random(0)), 400))
    assert all(len(b) == 32 for b in grouped)
    for start in range(0, 400, 8):  # within a group of 8 batches, no example twice
        ids = [id(x) for b in grouped[start:start + 8] for x in b]
        assert len(ids) == len(set(ids))

    def padding(batches):
        return 1 - sum(len(x[0]) for b in batches for x in b) / sum(len(b) * max(len(x[0]) for x in b) for b in batches)
    rng = random.Random(0)
    plain = [rng.sample(data, 32) for _ in range(400)]
    assert padding(grouped) < 0.05 < 0.15 < padding(plain)
    # what is drawn is not biased by length: the mean length of what was trained on stays the data's
    mean = sum(len(x[0]) for b in grouped for x in b) / (400 * 32)
    assert abs(mean - sum(lengths) / len(lengths)) < 2
    # the order of batches is shuffled, not long to short; the same seed gives the same batches
    widths = [max(len(x[0]) for x in b) for b in grouped[:8]]
    assert widths != sorted(widths) and widths != sorted(widths, reverse=True)
    assert [[id(x) for x in b] for b in islice(length_batches(data, 32, random.Random(0)), 8)] == \
        [[id(x) for x in b] for b in grouped[:8]]
    # fewer examples than a batch, or than a group: every batch is still drawn from all of them
    assert [len(b) for b in islice(length_batches(data[:20], 32, random.Random(0)), 3)] == [20, 20, 20]
    assert [len(b) for b in islice(length_batches(data[:100], 32, random.Random(0)), 6)] == [32] * 6
