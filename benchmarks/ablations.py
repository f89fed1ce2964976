"""The method's ablations on the default profile, as `dvc exp run` one-liners, and their table from the metrics.

    python benchmarks/ablations.py --run     # runs each ablation below as a DVC experiment (minutes each)
    python benchmarks/ablations.py           # prints the README table from `dvc exp show --json`

Each experiment changes one thing against the workspace's params (the baseline: DAS selection, stage 1 on the
T=0.6 set then stage 2 on the T=1.0 set, then the mixed-policy stage 3); `evaluate` measures the student on
the held-out problems before training and after each phase, so every row also shows with vs without the
mixed phase (after stage 2 vs after stage 3). Figures are printed as measured; nothing is tuned for them.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# name -> (what it tests, the params it sets)
ABLATIONS = {
    "baseline": ("DAS, low then high temperature, then mixed policy", []),
    "random-selection": ("random instead of DAS (one response per question either way)", ["select.selector=random"]),
    "low-only": ("both SFT phases on the T=0.6 set", ["export.stages.stage2.temperature=0.6"]),
    "high-only": ("both SFT phases on the T=1.0 set", ["export.stages.stage1.temperature=1.0"]),
}
PHASES = ("base", "stage1", "stage2", "stage3")


def one_liner(name: str) -> str:
    # --temp: each experiment runs in its own copy of the committed project (outputs from the cache), so the
    # workspace, its params and one experiment's changes never leak into the next
    return " ".join(["dvc exp run --temp -n", name, *(f"-S {s}" for s in ABLATIONS[name][1])])


def run_all(names: list[str]) -> None:
    for name in names:
        print(f"$ {one_liner(name)}", flush=True)
        subprocess.run(one_liner(name).split(), cwd=ROOT, check=True)


def experiments() -> dict[str, dict]:
    """name -> the contents of metrics/evaluate.json in that experiment, from `dvc exp show --json`."""
    out = subprocess.run(["dvc", "exp", "show", "--json"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    found = {}

    def visit(node):
        if isinstance(node, dict):
            name = node.get("name")
            metrics = (node.get("data") or {}).get("metrics") or {}
            ev = (metrics.get("metrics/evaluate.json") or {}).get("data")
            if name in ABLATIONS and ev:
                found[name] = ev
            for v in node.values():
                visit(v)
        elif isinstance(node, list):
            for v in node:
                visit(v)

    visit(json.loads(out))
    return found


def table(results: dict[str, dict], benchmark: str = "miniature") -> str:
    """One row per experiment, one cell per phase: accuracy [95% interval] (well-formed share) on `benchmark`."""
    rows = ["| experiment | what changes | base | after stage 1 | after stage 2 (no mixed) | after stage 3 (mixed) |",
            "|---|---|---|---|---|---|"]
    for name, (what, _) in ABLATIONS.items():
        ev = results.get(name)
        if ev is None:
            rows.append(f"| `{name}` | {what} | not run | | | |")
            continue
        cells = []
        for phase in PHASES:
            m = (ev["models"].get(phase) or {}).get(benchmark)
            cells.append("—" if m is None else
                         f"{m['accuracy']:.3f} [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}] ({m['well_formed']:.2f})")
        rows.append(f"| `{name}` | {what} | " + " | ".join(cells) + " |")
    first = next((m for ev in results.values() for per in ev["models"].values() for b, m in per.items()
                  if b == benchmark), None)
    note = (f"\naccuracy avg@{first['answers'] // first['answered']} over {first['problems']} problems of "
            f"`{benchmark}`, its 95% bootstrap interval over problems, well-formed share in brackets") if first else ""
    return "\n".join(rows) + note


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", nargs="*", metavar="NAME", help="run these ablations (none given: all) first")
    args = p.parse_args(argv)
    if args.run is not None:
        run_all(args.run or list(ABLATIONS))
    for name in ABLATIONS:
        print(f"{name}: {one_liner(name)}")
    print()
    print(table(experiments()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
