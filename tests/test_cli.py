"""The `dasd` command: help that explains, clear one-line errors for bad params and bad input."""
from __future__ import annotations

import os
import subprocess
import sys

import yaml

from conftest import REPO


def dasd(root, *args):
    env = dict(os.environ, DASD_ROOT=str(root))
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], env=env, cwd=REPO, capture_output=True,
                          text=True)


def test_help_lists_every_stage():
    r = subprocess.run([sys.executable, "-m", "engine.cli", "--help"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in dvc.items():  # every DVC stage calls a documented subcommand of the same name
        cmd = (stage.get("do") or stage)["cmd"]
        assert cmd.split()[:2] == ["dasd", name] and f"\n  {name} " in r.stdout


def test_bad_input_is_one_clear_line(tmp_path):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "q.jsonl").write_text('{"question": "ok"}\n{"question": ""}\n')
    params = {"questions": {"sources": [{"name": "q", "path": "q.jsonl", "domain": "math",
                                         "fields": {"question": "question"}}]}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    r = dasd(tmp_path, "questions")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == "dasd questions: error: q.jsonl:2: field 'question': empty text"

    params["generate"] = {"temperatures": [1.0], "top_p": 2}
    params["teacher"] = {"model": "m"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    r = dasd(tmp_path, "generate")
    assert r.returncode == 2 and "top_p must be in (0, 1]" in r.stderr

    params["generate"] = {"temperatures": [1.0], "nn": 2}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    r = dasd(tmp_path, "generate")
    assert r.returncode == 2 and "unknown key(s) ['nn']" in r.stderr
