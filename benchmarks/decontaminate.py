"""Decontamination throughput (printed, never asserted): the `decontaminate` stage, end to end (read the
questions table, check every question, write kept + rejections), on `--questions` synthetic questions
against every benchmark file in ../shared/data (AIME24, MATH-500, GSM8K, HumanEval, MBPP, MMLU science,
IFEval: seven sets, ~5,000 items), plus `--extra-sets` copies of them re-worded (so the index has as many
n-grams as ten or more benchmarks would).

Questions are sentences of real math answers (Qwen2.5-Math CoT traces) recombined, so their length and
vocabulary are those of math text, with one in a thousand a verbatim AIME24 problem, which must all be
caught; the rest match a benchmark only where a real answer quotes it.

Usage: python benchmarks/decontaminate.py [--questions 1000000] [--extra-sets 3] [--ngram 8]
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import decontaminate, tables  # noqa: E402
from engine.benchmarks import Benchmarks, load  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {"aime24": "math/aime24.jsonl", "math500": "math/math500.jsonl", "gsm8k": "math/gsm8k_test.jsonl",
        "mmlu": "science/mmlu_science_test.jsonl"}
CODE = {"humaneval": "code/humaneval.jsonl", "mbpp": "code/mbpp.jsonl"}


def benchmark_sets(folder: Path, extra: int) -> Benchmarks:
    fields = {"id": "id", "question": "question", "answer": "answer"}
    spec = {n: {"path": str(SHARED / p), "kind": "math", "fields": fields} for n, p in SETS.items()}
    spec["ifeval"] = {"path": str(SHARED / "instruction/ifeval.jsonl"), "kind": "math",
                      "fields": {"id": "id", "question": "question", "answer": "key"}}
    spec["humaneval"] = {"path": str(SHARED / CODE["humaneval"]), "kind": "code", "fields": {"id": "id", "question": "question"},
                         "tests": {"format": "check", "test": "test", "entry_point": "entry_point"}}
    spec["mbpp"] = {"path": str(SHARED / CODE["mbpp"]), "kind": "code", "fields": {"id": "id", "question": "question"},
                    "tests": {"format": "asserts", "asserts": "test_list"}}
    rng = random.Random(0)
    for k in range(extra):  # re-worded copies: every word shuffled within its item, so new n-grams
        rows = [json.loads(line) for p in SETS.values() for line in open(SHARED / p)]
        path = folder / f"extra{k}.jsonl"
        with open(path, "w") as f:
            for r in rows:
                words = r["question"].split()
                rng.shuffle(words)
                f.write(json.dumps({"id": f"x{k}-{r['id']}", "question": " ".join(words), "answer": r["answer"]}) + "\n")
        spec[f"extra{k}"] = {"path": str(path), "kind": "math", "fields": fields}
    return Benchmarks(**spec)


def synthetic_questions(count: int, seed: int = 0) -> tuple[pa.Table, int]:
    rng = random.Random(seed)
    sentences = []
    for line in open(SHARED / "traces/traces_qwen25math_cot_rm_example.jsonl"):  # model answers: no benchmark text
        sentences += [s for s in re.split(r"(?<=[.?!])\s+", json.loads(line)["response"]) if 20 < len(s) < 300]
    planted = [json.loads(line)["question"] for line in open(SHARED / "math/aime24.jsonl")]
    texts, n_planted = [], 0
    for i in range(count):
        if i % 1000 == 999:
            texts.append(planted[n_planted % len(planted)])
            n_planted += 1
        else:
            texts.append(" ".join(rng.sample(sentences, rng.randint(2, 5))))
    ids = [f"q{i:08d}" for i in range(count)]
    table = pa.table({"question_id": ids, "domain": ["math"] * count, "source": ["synthetic"] * count,
                      "messages": [[{"role": "user", "content": t}] for t in texts],
                      "reference_answer": pa.nulls(count, pa.string()), "source_id": ids,
                      "license": pa.nulls(count, pa.string()), "metadata": ["{}"] * count,
                      "duplicates": pa.array([1] * count, pa.int32())}, schema=tables.QUESTIONS)
    return table, n_planted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=float, default=1e6)
    ap.add_argument("--extra-sets", type=int, default=3)
    ap.add_argument("--ngram", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        questions, planted = synthetic_questions(int(args.questions))
        tables.write_parquet(questions, tmp / "questions" / "questions.parquet")
        words = sum(len(m[0]["content"].split()) for m in questions.column("messages").to_pylist()[:10000]) / 10000
        print(f"{questions.num_rows:,} questions (mean {words:.0f} words), written in {time.perf_counter() - t0:.0f} s")
        bench = benchmark_sets(tmp, args.extra_sets)
        t0 = time.perf_counter()
        report = decontaminate.run(decontaminate.DecontaminateParams(ngram=args.ngram), bench, tmp,
                                   tmp / "questions", tmp / "out", tmp / "metrics.json")
        wall = time.perf_counter() - t0
        index = decontaminate.Index([it for b in bench.values() for it in load(b, tmp)], args.ngram)
        print(f"{len(bench)} benchmark sets, {len(index.items):,} items, {len(index.grams):,} distinct "
              f"{args.ngram}-grams")
        print(f"decontaminate: {report['questions']:,} questions in {wall:.1f} s "
              f"({report['questions'] / wall:,.0f} questions/s, one core), {report['rejected']:,} rejected "
              f"({planted} planted verbatim: all caught = {report['by_rule'].get('exact', 0) >= planted})")


if __name__ == "__main__":
    main()
