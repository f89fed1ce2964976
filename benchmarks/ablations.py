"""The method's ablations on the default profile, each over several seeds, as `dvc exp run` one-liners,
and their tables from the metrics.

    python benchmarks/ablations.py --run                # every ablation x every seed (minutes each)
    python benchmarks/ablations.py --run baseline --seeds 3
    python benchmarks/ablations.py                      # prints the README tables from `dvc exp show --json`

Each experiment changes one thing against the workspace's params (the baseline: DAS selection, stage 1 on
the T=0.6 set then stage 2 on the T=1.0 set, then the mixed-policy stage 3); `evaluate` measures the student
on the held-out problems before training and after each phase, so every row also reads as with vs without
the mixed phase (after stage 2 vs after stage 3).

A seed moves every draw downstream of the models: the teacher's samples, the random selector, the
mixed-policy rollouts, cuts and continuations, the off-policy draw and the SFT runs' shuffling (the
`SEEDED` params, each offset by the seed; seed 0 is the workspace's own params). The models themselves
stay: retraining them is the miniature stage's minutes, and what is asked is how the data choices
behave, given the models. The same seed gives every ablation the same teacher samples, so the differences
to the baseline are paired by seed.

The tables give, per phase, the mean accuracy over the seeds with its 95% t-interval over the seeds
(run-to-run spread; the held-out problems are the same in every run), and each ablation's paired
difference to the baseline with its interval: a difference whose interval holds 0 is not told apart from
none. Figures are printed as measured; nothing is tuned for them.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

# name -> (what it tests, the params it sets)
ABLATIONS = {
    "baseline": ("DAS, low then high temperature, then mixed policy", []),
    "random-selection": ("random instead of DAS (one response per question either way)", ["select.selector=random"]),
    "longest-selection": ("the most sentences instead of DAS's count of teacher sentences (is DAS only length?)",
                          ["select.selector=longest"]),
    "low-only": ("both SFT phases on the T=0.6 set", ["export.stages.stage2.temperature=0.6"]),
    "high-only": ("both SFT phases on the T=1.0 set", ["export.stages.stage1.temperature=1.0"]),
}
# the params a seed offsets: every draw after the models are built
SEEDED = ("generate.seed", "select.seed", "export.mixed.seed", "rollout.seed", "truncate.seed", "continue.seed",
          "train.hyper.seed")
PHASES = ("base", "stage1", "stage2", "stage3")
PHASE_TITLES = ("base", "after stage 1", "after stage 2 (no mixed)", "after stage 3 (mixed)")


def experiment_name(name: str, seed: int) -> str:
    return f"{name}-s{seed}"


def seeded(params: dict, seed: int) -> list[str]:
    """`-S` values for seed `seed`: each SEEDED param of `params` offset by it (none for seed 0)."""
    out = []
    for key in SEEDED if seed else ():
        node = params
        for part in key.split("."):
            node = node[part]
        out.append(f"{key}={int(node) + seed}")
    return out


def one_liner(name: str, seed: int, params: dict) -> str:
    # --temp: each experiment runs in its own copy of the committed project (outputs from the cache), so the
    # workspace, its params and one experiment's changes never leak into the next
    sets = [*ABLATIONS[name][1], *seeded(params, seed)]
    return " ".join(["dvc exp run --temp -n", experiment_name(name, seed), *(f"-S {s}" for s in sets)])


def run_all(names: list[str], seeds: int, params: dict) -> None:
    for seed in range(seeds):  # seed-major: one seed's teacher samples serve every ablation from the run cache
        for name in names:
            print(f"$ {one_liner(name, seed, params)}", flush=True)
            subprocess.run(one_liner(name, seed, params).split(), cwd=ROOT, check=True)


def experiments() -> dict[str, dict]:
    """experiment name -> the contents of metrics/evaluate.json in it, from `dvc exp show --json`."""
    out = subprocess.run(["dvc", "exp", "show", "--json"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    found = {}

    def visit(node):
        if isinstance(node, dict):
            name = node.get("name")
            metrics = (node.get("data") or {}).get("metrics") or {}
            ev = (metrics.get("metrics/evaluate.json") or {}).get("data")
            if isinstance(name, str) and ev:
                found[name] = ev
            for v in node.values():
                visit(v)
        elif isinstance(node, list):
            for v in node:
                visit(v)

    visit(json.loads(out))
    return found


def accuracies(results: dict[str, dict], name: str, phase: str, benchmark: str) -> dict[int, float]:
    """seed -> accuracy of ablation `name` after `phase`, for the seeds that were run."""
    out = {}
    for exp, ev in results.items():
        stem, _, seed = exp.rpartition("-s")
        m = (ev.get("models", {}).get(phase) or {}).get(benchmark)
        if stem == name and seed.isdigit() and m is not None:
            out[int(seed)] = m["accuracy"]
    return out


def interval(values: list[float]) -> tuple[float, float, float] | None:
    """(mean, low, high): the 95% t-interval of the mean over seeds; None for fewer than two values."""
    if len(values) < 2:
        return None
    from scipy.stats import t

    mean = statistics.fmean(values)
    half = t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def cell(values: list[float]) -> str:
    if not values:
        return "not run"
    ci = interval(values)
    if ci is None:
        return f"{values[0]:.3f} (1 seed)"
    return f"{ci[0]:.3f} [{ci[1]:.3f}, {ci[2]:.3f}]"


def table(results: dict[str, dict], benchmark: str = "miniature") -> str:
    """Accuracy per ablation and phase (mean over seeds [95% interval]), then each ablation's paired
    difference to the baseline after stages 2 and 3, marked where the interval excludes 0."""
    rows = ["| experiment | what changes | seeds | " + " | ".join(PHASE_TITLES) + " |", "|---|---|---|---|---|---|---|"]
    for name, (what, _) in ABLATIONS.items():
        per = [accuracies(results, name, phase, benchmark) for phase in PHASES]
        seeds = max((len(p) for p in per), default=0)
        rows.append(f"| `{name}` | {what} | {seeds} | " + " | ".join(cell(list(p.values())) for p in per) + " |")
    rows += ["", "| experiment | Δ vs baseline after stage 2 | Δ vs baseline after stage 3 |", "|---|---|---|"]
    for name in ABLATIONS:
        if name == "baseline":
            continue
        cells = []
        for phase in ("stage2", "stage3"):
            base, mine = accuracies(results, "baseline", phase, benchmark), accuracies(results, name, phase, benchmark)
            diffs = [mine[s] - base[s] for s in sorted(mine.keys() & base.keys())]
            ci = interval(diffs)
            cells.append(cell(diffs) + ("" if ci is None else " (differs)" if ci[1] > 0 or ci[2] < 0 else " (not told apart)"))
        rows.append(f"| `{name}` | " + " | ".join(cells) + " |")
    first = next((m for ev in results.values() for per in ev.get("models", {}).values() for b, m in per.items()
                  if b == benchmark), None)
    note = (f"\naccuracy avg@{first['answers'] // first['answered']} over {first['problems']} held-out problems of "
            f"`{benchmark}`; mean over seeds [95% t-interval over seeds]; Δ paired by seed") if first else ""
    return "\n".join(rows) + note


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", nargs="*", metavar="NAME", help="run these ablations (none given: all) first")
    p.add_argument("--seeds", type=int, default=3, help="seeds per ablation (default 3: 0, 1, 2)")
    args = p.parse_args(argv)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    unknown = set(args.run or ()) - set(ABLATIONS)
    if unknown:
        p.error(f"unknown ablation(s) {', '.join(sorted(unknown))}; known: {', '.join(ABLATIONS)}")
    if args.run is not None:
        run_all(args.run or list(ABLATIONS), args.seeds, params)
    for name in ABLATIONS:
        print(f"{name}: {one_liner(name, 1, params)}")
    print()
    print(table(experiments()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
