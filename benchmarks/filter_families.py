"""The filter's default thresholds on every real trace in ../shared/data, by model family (printed; the
targets are asserted in tests/test_filter.py): the share of complete traces rejected (target <= 2%), the
share of truncated ones rejected by the structure rules alone (target 100%), and per rule the largest
value among complete traces against its limit (the margin).

Truncated traces: the dataset's own (one R1-distill trace that hit 32,768 tokens) and every complete
trace cut at a seeded uniform point inside its reasoning, with no finish reason (a dataset rarely keeps
one), so only the structure rules can tell. Families:
- DeepSeek-R1 (API, `<think>` kept), R1-Distill-Qwen-7B, R1-Distill-Llama-8B (no opening `<think>`:
  their template writes it), read with `--reasoning-format auto` (engine/reasoning.py);
- gpt-oss-20b: harmony channels (the two real completions of openai/gpt-oss's notebook);
- Qwen2.5-Math CoT: short chains of thought with no reasoning markers at all; the structure rules do
  not apply (every one would miss its reasoning), so only the repetition rules are counted.

Usage: python benchmarks/filter_families.py
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import filter as F  # noqa: E402
from engine.reasoning import THINK_CLOSE, to_think  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
STRUCTURE = ("missing_reasoning", "unclosed_reasoning", "empty_answer")
R1 = "traces/traces_math500_r1_and_distill.jsonl"
FAMILIES = {  # name -> (file, model or None for all rows, text field)
    "DeepSeek-R1 (API)": (R1, "deepseek-reasoner", "response"),
    "R1-Distill-Qwen-7B": (R1, "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "response"),
    "R1-Distill-Llama-8B": (R1, "deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "response"),
    "gpt-oss-20b (harmony)": ("harmony/gptoss_rft_notebook_outputs.jsonl", None, "response"),
    "Qwen2.5-Math CoT (no markers)": ("traces/traces_qwen25math_cot_rm_example.jsonl", None, "response"),
}


def family_texts(name: str) -> list[str]:
    path, model, field = FAMILIES[name]
    rows = [json.loads(line) for line in open(SHARED / path, encoding="utf-8")]
    return [to_think(r[field])[0] for r in rows if model is None or r["model"] == model]


def cut_in_reasoning(text: str, rng: random.Random) -> str:
    reasoning = text.split(THINK_CLOSE, 1)[0]
    return reasoning[:int(len(reasoning) * rng.uniform(0.1, 0.9))]


def measured(texts: list[str]) -> tuple[pa.Table, dict[str, float]]:
    """The filter's measures of `texts` (no length, no finish reason) and the default thresholds they
    are held to."""
    gens = pa.table({"response_id": [str(i) for i in range(len(texts))], "question_id": ["q"] * len(texts),
                     "text": texts, "finish_reason": ["stop"] * len(texts)})
    scores = pa.table({"response_id": gens.column("response_id"), "student_token_count": pa.array([0] * len(texts), pa.int64())})
    fp = F.FilterParams()
    return F.measures(gens, scores, fp), {k: v for k, v in fp.thresholds().items() if k != "length"}


def rejected(table: pa.Table, thresholds: dict[str, float], rules) -> np.ndarray:
    out = np.zeros(table.num_rows, dtype=bool)
    for rule in rules:
        out |= np.asarray(table.column(rule).to_numpy(zero_copy_only=False), dtype=float) > thresholds[rule]
    return out


def figures(seed: int = 0) -> dict[str, dict]:
    rng = random.Random(seed)
    out = {}
    for name in FAMILIES:
        texts = family_texts(name)
        markers = "no markers" not in name
        complete = [t for t in texts if THINK_CLOSE in t] if markers else texts
        truncated = [t for t in texts if THINK_CLOSE not in t] if markers else []
        truncated += [cut_in_reasoning(t, rng) for t in complete] if markers else []
        table, th = measured(complete)
        rules = [r for r in th if markers or r not in STRUCTURE]
        bad = rejected(table, th, rules)
        margins = {r: (float(np.max(table.column(r).to_numpy(zero_copy_only=False))), th[r]) for r in rules
                   if r not in STRUCTURE + ("truncated", "tool_call")}
        fig = {"traces": len(texts), "complete": len(complete), "complete_rejected": int(bad.sum()),
               "rejected_by_rule": {r: int(rejected(table, th, [r]).sum()) for r in rules
                                    if rejected(table, th, [r]).any()},
               "margins": margins, "truncated": len(truncated)}
        if truncated:
            ttable, _ = measured(truncated)
            fig["truncated_rejected_by_structure"] = int(rejected(ttable, th, STRUCTURE).sum())
        out[name] = fig
    return out


def main() -> None:
    figs = figures()
    print("| family | complete traces | rejected | truncated (cut in the reasoning) | rejected by structure | "
          "closest limits (largest value / limit) |")
    print("|---|---:|---:|---:|---:|---|")
    for name, f in figs.items():
        close = sorted(f["margins"].items(), key=lambda kv: -kv[1][0] / kv[1][1])[:3]
        closest = ", ".join(f"{r} {v:.3g} / {lim:g}" for r, (v, lim) in close)
        trunc = f"{f['truncated_rejected_by_structure']} ({f['truncated_rejected_by_structure'] / f['truncated']:.0%})" \
            if f["truncated"] else "n/a (no markers)"
        print(f"| {name} | {f['complete']} | {f['complete_rejected']} ({f['complete_rejected'] / f['complete']:.1%}) | "
              f"{f['truncated'] or '—'} | {trunc} | {closest} |")
    for name, f in figs.items():
        if f["rejected_by_rule"]:
            print(f"{name}: complete traces rejected, by rule: {f['rejected_by_rule']}")


if __name__ == "__main__":
    main()
