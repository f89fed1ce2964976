"""Procedural multi-step arithmetic word problems with exact answers and step-by-step solutions.

Each problem is a short story about a quantity that changes `level` times (add, take away, multiply,
share equally). The solution trace is written in the `<think>` format the student is trained on, so the
same generator feeds the teacher's training corpus, the question set and the held-out evaluation.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivo", "Jun", "Kemal", "Lea"]
ITEMS = ["apples", "marbles", "stickers", "coins", "books", "shells", "pencils", "cards", "stamps", "beads"]


@dataclass(frozen=True)
class Problem:
    id: str
    level: int
    question: str
    answer: int
    solution: str  # "<think>\n...steps...\n</think>\n\nThe answer is N."


def _step(rng: random.Random, value: int, name: str, item: str) -> tuple[str, str, int]:
    """One change of the quantity: (story sentence, reasoning line, new value). Operands stay small
    (one digit, doubling below 20, halving even numbers) so a small model can learn the arithmetic."""
    kinds = ["add", "add"]
    if value > 1:
        kinds.append("sub")
    if value <= 20:
        kinds.append("mul")
    if value % 2 == 0:
        kinds.append("div")
    kind = rng.choice(kinds)
    if kind == "add":
        k = rng.randint(1, 9)
        return (f"Then {name} gets {k} more {item}.", f"Getting {k} more gives {value} + {k} = {value + k}.", value + k)
    if kind == "sub":
        k = rng.randint(1, min(9, value - 1))
        return (f"Then {name} gives away {k} {item}.", f"Giving away {k} leaves {value} - {k} = {value - k}.", value - k)
    if kind == "mul":
        return (f"Then the number of {item} doubles.", f"Doubling gives {value} * 2 = {value * 2}.", value * 2)
    return (f"Then {name} gives half of the {item} to a friend.", f"Giving half away leaves {value} / 2 = {value // 2}.",
            value // 2)


def make_problem(seed: int, level: int) -> Problem:
    rng = random.Random(f"miniature:{seed}:{level}")
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    value = rng.randint(2, 20)
    story = [f"{name} has {value} {item}."]
    lines = [f"{name} starts with {value} {item}."]
    for _ in range(level):
        sentence, line, value = _step(rng, value, name, item)
        story.append(sentence)
        lines.append(line)
    story.append(f"How many {item} does {name} have now?")
    solution = "<think>\n" + "\n".join(lines) + "\n</think>\n\nThe answer is " + f"{value}."
    return Problem(id=f"mini-{level}-{seed}", level=level, question=" ".join(story), answer=value,
                   solution=solution)


def make_problems(count: int, seed: int, levels: tuple[int, ...] = (1, 2, 3, 4)) -> list[Problem]:
    """`count` problems cycling through the difficulty levels; disjoint seeds give disjoint splits."""
    return [make_problem(seed * 1_000_003 + i, levels[i % len(levels)]) for i in range(count)]


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
