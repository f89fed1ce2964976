"""benchmarks/ablations.py: the seeds it sets and the tables it prints from the experiments' metrics (the
experiments themselves are minutes each: what is tested here is the arithmetic of their tables)."""
from __future__ import annotations

import importlib.util

import pytest
import yaml

from conftest import REPO

spec = importlib.util.spec_from_file_location("ablations", REPO / "benchmarks" / "ablations.py")
ablations = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ablations)


def evaluation(accuracy_by_phase: dict[str, float]) -> dict:
    return {"models": {phase: {"miniature": {"accuracy": a, "answers": 256, "answered": 64, "problems": 64}}
                       for phase, a in accuracy_by_phase.items()}}


def test_a_seed_offsets_every_draw_after_the_models():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert ablations.seeded(params, 0) == []  # seed 0: the workspace's own params
    sets = dict(s.split("=") for s in ablations.seeded(params, 2))
    assert set(sets) == set(ablations.SEEDED)
    assert sets["generate.seed"] == str(params["generate"]["seed"] + 2)
    assert sets["train.hyper.seed"] == str(params["train"]["hyper"]["seed"] + 2)
    line = ablations.one_liner("random-selection", 1, params)
    assert line.startswith("dvc exp run --temp -n random-selection-s1 -S select.selector=random -S generate.seed=")


def test_intervals_over_seeds_and_paired_differences():
    mean, low, high = ablations.interval([0.1, 0.2, 0.3])
    # mean 0.2, sd 0.1, t(0.975, 2 df) = 4.3027: half-width 0.2484
    assert mean == pytest.approx(0.2) and high - mean == pytest.approx(4.302653 * 0.1 / 3 ** 0.5, rel=1e-5)
    assert low == pytest.approx(2 * mean - high)
    assert ablations.interval([0.5]) is None

    results = {}
    for s, (b2, b3) in enumerate([(0.10, 0.12), (0.20, 0.22), (0.30, 0.32)]):
        results[f"baseline-s{s}"] = evaluation({"base": 0.05, "stage1": 0.1, "stage2": b2, "stage3": b3})
        # random: always 0.05 below after stage 2 (a paired difference with no spread: it differs), and
        # after stage 3 above and below by turns (not told apart)
        results[f"random-selection-s{s}"] = evaluation({"base": 0.05, "stage1": 0.1, "stage2": b2 - 0.05,
                                                        "stage3": b3 + (0.02, -0.03, 0.01)[s]})
    results["low-only-s0"] = evaluation({"base": 0.05, "stage1": 0.1, "stage2": 0.15, "stage3": 0.2})
    text = ablations.table(results)
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| `")}
    assert "| 3 | 0.050 [0.050, 0.050] |" in rows["`baseline`"]  # three seeds; the base student is the same
    assert "0.200 [-0.048, 0.448]" in rows["`baseline`"]  # stage 2: the three seeds 0.1, 0.2, 0.3
    assert "not run" in rows["`high-only`"] and "(1 seed)" in rows["`low-only`"]
    paired = [line for line in text.splitlines() if line.startswith("| `random-selection` | -")]
    assert paired and "-0.050 [-0.050, -0.050] (differs)" in paired[0] and "(not told apart)" in paired[0]
    assert "avg@4 over 64 held-out problems" in text
