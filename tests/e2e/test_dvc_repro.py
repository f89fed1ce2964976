"""`dvc repro` of the default profile in a temporary clone; a param change reruns only its dependents."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from engine import tables

TEACHER_FLOOR = 0.25  # held-out exact-match accuracy of the default profile's miniature teacher


def sh(cmd, cwd, env):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, f"{cmd} failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r.stdout + r.stderr


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.mark.slow
def test_default_profile_repro_and_selective_rerun(tmp_path):
    clone = tmp_path / "clone"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    for f in files:
        if f == "dvc.lock" or f.startswith(("metrics/", "plots/")):
            continue  # a fresh clone of a project that has not run yet
        (clone / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, clone / f)
    params = yaml.safe_load((clone / "params.yaml").read_text())
    # the default profile's teacher and student, on a smaller question set; the student's pretraining cut
    # to 60 steps (the same code path; CI's time is not)
    params["miniature"].update(questions=8)
    params["miniature"]["student_train"]["steps"] = 60
    params["generate"].update(n=2, shard_questions=4)
    # that 60-step student writes short formless answers, most ending before 1.5x the teacher's length: a cap
    # at a quarter of it still cuts some, so the mixed-policy phase has prefixes to continue
    params["rollout"]["length_factor"] = 0.25
    params["benchmarks"]["miniature"].update(samples=1, temperature=0, max_tokens=64, limit=16)
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               DVC_SITE_CACHE_DIR=str(tmp_path / "dvc-site"), DVC_NO_ANALYTICS="1")
    env.pop("DASD_ROOT", None)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "clone"]):
        sh(cmd, clone, env)

    out = sh(["dvc", "repro"], clone, env)
    per_t = {f"{stage}@{t}" for stage in ("generate", "score", "sentences", "filter", "naturalness", "dedup", "select") for t in ("0.6", "1.0")}
    downstream = {"rollout", "truncate", "continue", "mixed_filter", "export_mixed", "train@stage3", "evaluate"}
    assert ran(out) == {"miniature", "questions", "decontaminate", "export@stage1", "export@stage2", "train@stage1",
                        "train@stage2"} | per_t | downstream
    mini = json.loads((clone / "metrics" / "miniature.json").read_text())
    assert mini["teacher"]["train"]["steps"] == params["miniature"]["teacher_train"]["steps"]
    assert mini["teacher"]["problems"] == 64
    # The floor: a teacher that cannot solve the task teaches nothing. The teacher's accuracy moves with its
    # training pool (this one: 8 questions, so a slightly other pool than the default's) and the draws of
    # its phrasings far more than a test can pin (one phrasing draw measured 0.84, another 0.52), and with
    # the numerics pinned it is the same on every machine. Below TEACHER_FLOOR something in the miniature broke.
    assert mini["teacher"]["accuracy"] >= TEACHER_FLOOR and mini["teacher"]["well_formed"] >= 0.9
    assert mini["student"]["accuracy"] < mini["teacher"]["accuracy"]  # and the student starts weaker
    assert (clone / "data" / "miniature" / "teacher" / "model.safetensors").exists()
    q = json.loads((clone / "metrics" / "questions.json").read_text())
    assert q["questions"] == 8 and q["rows"] == q["staged"] + q["quarantined"]
    for t in ("0.6", "1.0"):
        m = json.loads((clone / "metrics" / "generate" / f"T={t}.json").read_text())
        assert m["responses"] == 16 and m["questions"] == 8 and m["temperature"] == float(t)
        assert sum(m["finish_reason"].values()) == 16
        s = json.loads((clone / "metrics" / "score" / f"T={t}.json").read_text())
        assert s["responses"] == 16 and s["student_tokens"] > 0
        st = json.loads((clone / "metrics" / "sentences" / f"T={t}.json").read_text())
        assert st["responses"] == 16 and sum(st["by_type"].values()) == st["sentences"] > 0
        f = json.loads((clone / "metrics" / "filter" / f"T={t}.json").read_text())
        assert f["input"] == 16 == f["kept"] + f["rejected"]
        dd = json.loads((clone / "metrics" / "dedup" / f"T={t}.json").read_text())
        assert dd["input"] == f["kept"] == dd["kept"] + dd["rejected"] and dd["candidate_pairs"] >= dd["verified_pairs"]
        sel = json.loads((clone / "metrics" / "select" / f"T={t}.json").read_text())
        assert sel["candidates"] == dd["kept"]  # select draws from what dedup kept
        # the report says what the candidates hold and how DAS decided (its shares: tests/test_select.py)
        assert sum(sel["sentence_types"].values()) == pytest.approx(1, abs=1e-3) and sel["sentence_types"]["teacher"] > 0
        assert sel["decisions"]["questions_with_choice"] <= sel["questions"] and sel["ranking"].startswith("das score")
        plot = (clone / "plots" / "select" / f"T={t}.csv").read_text().splitlines()
        assert len(plot) == 21 and "selected_teacher" in plot[0]
    # the two SFT sets: at most one response per question, loadable by `datasets`
    import datasets

    top1 = {}
    for stage in ("stage1", "stage2"):
        ds = datasets.load_dataset("parquet", data_files=str(clone / "data" / "export" / stage / "train.parquet"),
                                   split="train")
        e = json.loads((clone / "metrics" / "export" / f"{stage}.json").read_text())
        assert 0 < e["examples"] == len(ds) == len(set(ds["question_id"])) <= 8
        assert all(m[-1]["role"] == "assistant" for m in ds["messages"])
        top1[stage] = len(ds)
    # the student trained through both phases, stage 2 from stage 1's model
    t1, t2 = (json.loads((clone / "metrics" / "train" / f"{s}.json").read_text()) for s in ("stage1", "stage2"))
    assert t1["steps"] > 0 and t2["init"] == "data/train/stage1/model" and t1["examples"] == top1["stage1"]
    assert (clone / "data" / "train" / "stage2" / "model" / "model.safetensors").exists()
    # the mixed-policy phase: the stage-2 student's rollouts, cut past half, continued by the teacher,
    # filtered, exported with off-policy rows as the stage-3 set, trained one more epoch from stage 2
    ro, tr, co, mf, e3, t3 = (json.loads((clone / "metrics" / f"{name}.json").read_text()) for name in
                              ("rollout", "truncate", "continue", "mixed_filter", "export/stage3", "train/stage3"))
    assert ro["rollouts"] == top1["stage2"] and tr["input"] == ro["rollouts"] == tr["truncated"] + tr["rejected"]
    assert tr["truncated"] == ro["hit_cap"] - tr["rejections_by_rule"].get("too_short", 0) > 0
    assert co["continued"] == tr["truncated"] == mf["input"] == mf["kept"] + mf["rejected"]
    # (on 8 questions few continuations may pass the filter; the default profile keeps 38 of 38, README): the set
    # is never empty, mixed rows when kept
    assert e3["mixed"] == mf["kept"] and e3["examples"] == e3["mixed"] + e3["off_policy"] > 0
    assert e3["funnel"] == {"rollouts": ro["rollouts"], "truncated": tr["truncated"], "continued": co["continued"],
                            "kept": mf["kept"], "exported": e3["mixed"]}
    assert t3["init"] == "data/train/stage2/model" and t3["examples"] == e3["examples"] and t3["epochs"] == 1
    s3 = datasets.load_dataset("parquet", data_files=str(clone / "data" / "export" / "stage3" / "train.parquet"), split="train")
    for row in s3:
        if row["policy"] == "mixed":
            detail = row["messages"][-1]["train_detail"]
            assert detail[0]["end_offset"] + 1 == detail[1]["begin_offset"] == row["prefix_chars"] > 0
            assert 0.5 < row["cut_fraction"] < 1
    # the student before training and after each phase, on the held-out problems
    ev = json.loads((clone / "metrics" / "evaluate.json").read_text())
    assert list(ev["models"]) == ["base", "stage1", "stage2", "stage3"]
    assert all(m["miniature"]["problems"] == m["miniature"]["answers"] == 16 for m in ev["models"].values())
    assert json.loads((clone / "metrics" / "decontaminate.json").read_text())["kept"] == 8
    plot = list(csv.DictReader(open(clone / "plots" / "evaluate.csv")))
    assert [r["model"] for r in plot] == list(ev["models"]) and "well_formed" in plot[0]
    # the Hub repository (the frozen publish stage did not run above): every set as a config, the card's
    # provenance is dvc.lock's
    hub = tmp_path / "hub"
    sh(["dasd", "publish", "owner/miniature", "--dry-run", str(hub)], clone, env)
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(hub / "README.md")
    assert [c["config_name"] for c in card.data.configs] == ["stage1_low_temperature", "stage2_high_temperature",
                                                            "stage3_mixed_policy", "candidates"]
    s3_hub = datasets.load_dataset(str(hub), "stage3_mixed_policy", split="train", cache_dir=str(tmp_path / "hf-cache"))
    assert len(s3_hub) == e3["examples"]
    lock = yaml.safe_load((clone / "dvc.lock").read_text())
    md5 = next(o["md5"] for o in lock["stages"]["export@stage1"]["outs"] if o["path"] == "data/export/stage1")
    assert f"| export@stage1 | data/export/stage1 | {md5} |" in card.text and "| miniature | data/miniature |" in card.text
    # `dasd sql` from a subfolder sees every stage's output
    res = sh(["dasd", "sql", "SELECT g.temperature, count(DISTINCT response_id) AS n FROM generations g "
              "JOIN student_scores USING (response_id) JOIN sentences USING (response_id) GROUP BY 1 ORDER BY 1",
              "--format", "csv"], clone / "engine", env)
    assert res.strip().splitlines()[-2:] == ["0.6,16", "1,16"]

    assert ran(sh(["dvc", "repro"], clone, env)) == set()  # up to date: nothing runs

    # a parameter reruns its dependents and nothing else: the off-policy draw of the mixed set reruns that
    # export, the stage-3 training on it and the evaluation, not the stage-1/2 exports (params `export.stages`)
    params["export"]["mixed"]["off_policy_samples"] = 4
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran(sh(["dvc", "repro"], clone, env)) == {"export_mixed", "train@stage3", "evaluate"}
    e3_after = json.loads((clone / "metrics" / "export" / "stage3.json").read_text())
    assert e3_after["off_policy"] == min(4, e3["off_policy"]) and e3_after["mixed"] == e3["mixed"]
    ev_after = json.loads((clone / "metrics" / "evaluate.json").read_text())
    assert ev_after["models"]["base"] == ev["models"]["base"]  # resumed: only the retrained model answered again

    # questions reruns; its output is byte-identical, so nothing downstream does
    params["questions"]["on_error"] = "quarantine"
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran(sh(["dvc", "repro"], clone, env)) == {"questions"}
    assert "nothing to reproduce" in sh(["dvc", "status"], clone, env).lower() or \
        "up to date" in sh(["dvc", "status"], clone, env).lower()

    # the expensive data shared through a DVC remote (here a local folder; S3, GCS, SSH the same way): a
    # colleague's clone pulls it, is up to date, and `dvc repro` samples nothing
    remote = tmp_path / "remote"
    sh(["dvc", "remote", "add", "-d", "store", str(remote)], clone, env)
    sh(["dvc", "push"], clone, env)
    for cmd in (["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run"]):
        sh(cmd, clone, env)
    colleague = tmp_path / "colleague"
    sh(["git", "clone", "-q", str(clone), str(colleague)], tmp_path, env)
    sh(["dvc", "pull"], colleague, env)
    assert ran(sh(["dvc", "repro"], colleague, env)) == set()
    assert tables.read_table(colleague / "data" / "generations" / "T=0.6").equals(
        tables.read_table(clone / "data" / "generations" / "T=0.6"))

    # a change to a module a stage imports (not its own file) makes that stage stale, and only its own
    # dependents: the deps in dvc.yaml follow the code (tests/test_stages.py holds them to it)
    kernel = clone / "engine" / "kernels" / "repetition.py"
    kernel.write_text(kernel.read_text() + "\n# touched\n")
    stale = set(re.findall(r"^(\S+):", sh(["dvc", "status"], clone, env), re.M))
    assert {"filter@0.6", "filter@1.0", "mixed_filter"} <= stale, stale
    assert not stale & {"generate@0.6", "score@0.6", "sentences@0.6", "dedup@0.6", "truncate", "questions"}, stale
