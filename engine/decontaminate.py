"""Stage `decontaminate`: questions that share text with a benchmark item leave the question set before
any teacher token is spent on them; `generate` reads what this stage kept.

A question is contaminated by a benchmark item (every item of every set in params `benchmarks`) when,
after lowercasing and collapsing whitespace (open-r1's normalisation):
- `exact`: the two texts are equal (this also catches questions shorter than n words);
- `ngram`: they share a word n-gram (`ngram`, default 8 as open-r1; s1 uses 8, Light-R1 32);
- `fuzzy` (optional, `fuzzy: 0.95` as OpenThoughts): their Indel similarity ratio (rapidfuzz
  `fuzz.ratio` / 100) reaches the threshold. It compares every question with every item, so it costs
  questions × items comparisons; the n-gram check alone is one dict lookup per question word.
All benchmark n-grams sit in one in-memory dict, so a question costs one lookup per word.

Output `data/decontaminate/kept.parquet` (the questions table, less the contaminated) and
`rejections.parquet`: one row per contaminated question, naming the rule, the benchmark, the item, the
evidence (the first shared n-gram, in question order) and the value (n-grams shared with that item, the
most of any item; the ratio for `fuzzy`). kept + rejected = questions. metrics/decontaminate.json counts
per benchmark, per source and per rule.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import pyarrow as pa
from pydantic import Field

from . import tables
from .benchmarks import Benchmarks, Item, load
from .errors import StageError
from .params import Count, schema
from .stages import Stage


@schema
class DecontaminateParams:
    ngram: Count = 8                 # word n-grams shared with a benchmark item (open-r1: 8)
    fuzzy: Annotated[float, Field(gt=0, le=1)] | None = None  # Indel ratio that also counts (OpenThoughts: 0.95)
    benchmarks: list[str] | None = None  # the sets to check against (default: every set in `benchmarks`)


def normalize(text: str) -> str:
    return " ".join(text.lower().split())


def ngrams(words: list[str], n: int):
    return (" ".join(words[i:i + n]) for i in range(len(words) - n + 1))


class Index:
    """Every benchmark item's word n-grams and whole normalised text, in memory: n-gram -> the items
    holding it (their positions in `items`)."""

    def __init__(self, items: list[Item], n: int):
        self.items, self.n = items, n
        self.grams: dict[str, list[int]] = {}
        self.exact: dict[str, int] = {}
        self.texts = [normalize(it.question) for it in items]
        for k, text in enumerate(self.texts):
            self.exact.setdefault(text, k)
            for g in set(ngrams(text.split(), n)):
                self.grams.setdefault(g, []).append(k)

    def match(self, question: str, fuzzy: float | None) -> dict | None:
        """The strongest evidence that `question` is a benchmark item, or None."""
        text = normalize(question)
        if text in self.exact:
            return dict(rule="exact", item=self.exact[text], value=1.0, threshold=0.0, evidence=text[:200])
        shared: Counter = Counter()
        first: dict[int, str] = {}
        for g in ngrams(text.split(), self.n):
            for k in self.grams.get(g, ()):
                if k not in first:
                    first[k] = g
                shared[k] += 1
        if shared:
            # the item sharing the most n-grams; ties go to the earlier item (params order, file order)
            k = min(shared, key=lambda i: (-shared[i], i))
            return dict(rule="ngram", item=k, value=float(shared[k]), threshold=0.0, evidence=first[k])
        if fuzzy is not None:
            from rapidfuzz import fuzz, process

            best = process.extractOne(text, self.texts, scorer=fuzz.ratio, score_cutoff=fuzzy * 100)
            if best is not None:
                return dict(rule="fuzzy", item=best[2], value=round(best[1] / 100, 4), threshold=fuzzy,
                            evidence=self.texts[best[2]][:200])
        return None


def user_text(messages: list[dict]) -> str:
    """The question as the source wrote it: the last user message (the system prompt is ours)."""
    return next(m["content"] for m in reversed(messages) if m["role"] == "user")


def run(dp: DecontaminateParams, benchmarks: Benchmarks, root: Path, questions_dir: Path, out_dir: Path,
        metrics_path: Path) -> dict:
    questions = tables.read_table(questions_dir)
    if questions is None:
        raise StageError(f"{questions_dir}: no questions; run `dasd questions` first")
    names = benchmarks.chosen(dp.benchmarks, "decontaminate.benchmarks")
    items = [it for n in names for it in load(benchmarks[n], root)]
    index = Index(items, dp.ngram)

    keep, rejected = [], []
    for i, (qid, source, source_id, messages) in enumerate(zip(*(questions.column(c).to_pylist() for c in
                                                               ("question_id", "source", "source_id", "messages")))):
        hit = index.match(user_text(messages), dp.fuzzy)
        if hit is None:
            keep.append(i)
            continue
        item = items[hit.pop("item")]
        rejected.append(dict(question_id=qid, source=source, source_id=source_id, benchmark=item.benchmark,
                             item_id=item.item_id, **hit))
    kept = questions.take(keep)
    rejections = pa.Table.from_pylist(rejected, schema=tables.CONTAMINATION)
    with tables.replacing(out_dir) as tmp:
        tables.write_parquet(kept, tmp / "kept.parquet")
        tables.write_parquet(rejections, tmp / "rejections.parquet")

    sources = Counter(questions.column("source").to_pylist())
    report = {
        "questions": questions.num_rows, "kept": kept.num_rows, "rejected": len(rejected),
        "ngram": dp.ngram, "fuzzy": dp.fuzzy,
        "benchmarks": {n: sum(it.benchmark == n for it in items) for n in names},
        "by_benchmark": {n: sum(r["benchmark"] == n for r in rejected) for n in names},
        "by_rule": dict(Counter(r["rule"] for r in rejected)),
        "by_source": {s: {"questions": c, "rejected": sum(r["source"] == s for r in rejected)}
                      for s, c in sorted(sources.items())},
    }
    assert report["kept"] + report["rejected"] == report["questions"]
    tables.write_json(report, metrics_path)
    return report


def main(ctx) -> None:
    r = run(ctx.section("decontaminate"), ctx.section("benchmarks"), ctx.root, ctx.path("questions"),
            ctx.path("out"), ctx.path("metrics"))
    per = ", ".join(f"{n} {c}" for n, c in r["by_benchmark"].items()) or "no benchmarks"
    print(f"decontaminate: {r['questions']} questions -> {r['kept']} kept, {r['rejected']} sharing text with a "
          f"benchmark ({per}; word {r['ngram']}-grams)")


# the benchmark files are params (benchmarks.<name>.path), as the question sources are; the miniature's
# held-out set (the default profile's benchmark) is in data/miniature
STAGE = Stage("decontaminate", main, sections={"decontaminate": DecontaminateParams, "benchmarks": Benchmarks},
              params=("decontaminate", "benchmarks"),
              inputs={"questions": "data/questions", "miniature": "data/miniature"},
              outputs={"out": "data/decontaminate", "metrics": "metrics/decontaminate.json"})
