"""Procedural multi-step arithmetic word problems with exact answers and step-by-step solutions.

Each problem is a short story about a quantity that changes `level` times (add, take away, multiply,
share equally). The solution trace is written in the `<think>` format the student is trained on, so the
same generator feeds the teacher's training corpus, the question set and the held-out evaluation.

Each reasoning step can be written in two phrasings, which is what gives the default profile's teacher
and student the relation the method needs (METHOD.md: the student already writes part of the teacher's
reasoning, not all of it):
- `story`, three sentences: "Ana has 5 apples. Ana gets 3 more. So 5 + 3 = 8.";
- `terse`, one sentence: "Getting 3 more gives 5 + 3 = 8."
The teacher learns both (one drawn per step), the student only some kinds of step, so the teacher's
samples hold shared sentences (what the student writes too) and teacher sentences (what it lacks).

The teacher also restates the running count after a quarter of its steps, a sentence of its own ("Now
there are 8."), as reasoning models keep track of where they are; the student is not shown the habit.
Each step thus holds two independent choices: its phrasing, which sets how long the step is in shared
sentences, and its tally, which adds a teacher sentence. DAS counts teacher sentences, and what a sample
holds of them must not simply follow its length, or DAS picks the longest candidate: with a two-sentence
`story` and tallies after half the steps, the choice was among the longest in 80% of the questions; the
two phrasings three sentences apart make length mostly a matter of phrasing (the choice not the longest
in about half). The tally still gives the candidates of a 3-step question more than 3 sentences to
differ in, so fewer tie at the top of the count (benchmarks/ties.py measures it). It ends on the new
value, as the step does, so the number the next step starts from is still the last one written (a check
by the inverse operation, "Check: 8 - 3 = 5.", would end on the old one). Two other ways to the same end
were measured and dropped: a third phrasing of the teacher's own, the arithmetic alone ("5 + 3 = 8.") or
the story's sentences joined ("Ana gets 3 more, so 5 + 3 = 8."), each made the student worse after SFT
than before it (0.39 → 0.07 and 0.58 → 0.49 after stage 2, avg@4), as a phrasing the student was never
shown did before (README).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivo", "Jun", "Kemal", "Lea"]
ITEMS = ["apples", "marbles", "stickers", "coins", "books", "shells", "pencils", "cards", "stamps", "beads"]
KINDS = ("add", "sub", "mul", "div")
PHRASINGS = ("story", "terse")
TALLY_SHARE = 0.25  # the teacher's steps followed by a tally


@dataclass(frozen=True)
class Step:
    kind: str    # one of KINDS
    k: int       # the operand (2 for doubling and halving)
    before: int
    after: int


@dataclass(frozen=True)
class Problem:
    id: str
    level: int
    question: str
    answer: int
    name: str
    item: str
    start: int
    steps: tuple[Step, ...]

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(s.kind for s in self.steps)

    @property
    def solution(self) -> str:
        """The trace with every phrasing and the tallies (drawn per step, seeded by the problem): what the
        teacher learns."""
        return self.render(PHRASINGS, tallies=True)

    def render(self, phrasings: tuple[str, ...], tallies: bool = False) -> str:
        """"<think>\\n...steps...\\n</think>\\n\\nThe answer is N.", each step in a phrasing drawn from
        `phrasings` and, with `tallies`, followed by a tally in TALLY_SHARE of the steps (the same draws
        for the same problem, phrasings and tallies)."""
        rng = random.Random(f"phrasing:{self.id}:{','.join(phrasings)}" + (":tallies" if tallies else ""))
        lines = [f"{self.name} starts with {self.start} {self.item}."]
        for s in self.steps:
            line = _line(s, self.name, self.item, rng.choice(phrasings))
            lines.append(f"{line} Now there are {s.after}." if tallies and rng.random() < TALLY_SHARE else line)
        return "<think>\n" + "\n".join(lines) + "\n</think>\n\nThe answer is " + f"{self.answer}."


def _line(s: Step, name: str, item: str, phrasing: str) -> str:
    """One reasoning step in a phrasing."""
    op = {"add": "+", "sub": "-", "mul": "*", "div": "/"}[s.kind]
    math = f"{s.before} {op} {s.k} = {s.after}."
    if phrasing == "story":
        event = {"add": f"{name} gets {s.k} more.", "sub": f"{name} gives away {s.k}.",
                 "mul": "The number doubles.", "div": f"{name} gives half away."}[s.kind]
        return f"{name} has {s.before} {item}. {event} So {math}"
    verb = {"add": f"Getting {s.k} more gives", "sub": f"Giving away {s.k} leaves", "mul": "Doubling gives",
            "div": "Giving half away leaves"}[s.kind]
    return f"{verb} {math}"


def _step(rng: random.Random, value: int, kinds: tuple[str, ...]) -> Step:
    """One change of the quantity among the allowed `kinds`. Operands stay small (one digit, doubling
    below 20, halving even numbers) so a small model can learn the arithmetic."""
    can = {"add": True, "sub": value > 1, "mul": value <= 20, "div": value % 2 == 0}
    options = [k for k in ("add", "add", "sub", "mul", "div") if k in kinds and can[k]]
    kind = rng.choice(options)
    if kind == "add":
        k = rng.randint(1, 9)
        return Step(kind, k, value, value + k)
    if kind == "sub":
        k = rng.randint(1, min(9, value - 1))
        return Step(kind, k, value, value - k)
    return Step(kind, 2, value, value * 2 if kind == "mul" else value // 2)


def _sentence(s: Step, name: str, item: str) -> str:
    return {"add": f"Then {name} gets {s.k} more {item}.", "sub": f"Then {name} gives away {s.k} {item}.",
            "mul": f"Then the number of {item} doubles.",
            "div": f"Then {name} gives half of the {item} to a friend."}[s.kind]


def make_problem(seed: int, level: int, kinds: tuple[str, ...] = KINDS) -> Problem:
    """A problem of `level` steps; with `kinds` a subset of KINDS, only those steps (`add` is always
    possible, so any subset holding it works)."""
    rng = random.Random(f"miniature:{seed}:{level}" + ("" if kinds == KINDS else f":{','.join(kinds)}"))
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    value = start = rng.randint(2, 20)
    steps = []
    for _ in range(level):
        steps.append(_step(rng, value, kinds))
        value = steps[-1].after
    story = [f"{name} has {start} {item}."] + [_sentence(s, name, item) for s in steps] + \
        [f"How many {item} does {name} have now?"]
    return Problem(id=f"mini-{level}-{seed}", level=level, question=" ".join(story), answer=value, name=name,
                   item=item, start=start, steps=tuple(steps))


def make_problems(count: int, seed: int, levels: tuple[int, ...] = (1, 2, 3, 4),
                  kinds: tuple[str, ...] = KINDS) -> list[Problem]:
    """`count` problems cycling through the difficulty levels; disjoint seeds give disjoint splits."""
    return [make_problem(seed * 1_000_003 + i, levels[i % len(levels)], kinds) for i in range(count)]


def extract_answer(text: str) -> int | None:
    """The integer after the last 'The answer is' outside the reasoning, or None."""
    tail = text.rsplit("</think>", 1)[-1]
    marker = "The answer is"
    if marker not in tail:
        return None
    digits = tail.rsplit(marker, 1)[1].strip().rstrip(".").strip()
    try:
        return int(digits)
    except ValueError:
        return None
