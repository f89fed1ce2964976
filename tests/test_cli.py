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
    assert r.returncode == 2 and "generate.top_p: Input should be less than or equal to 1 (got 2)" in r.stderr

    params["generate"] = {"temperatures": [1.0], "nn": 2}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    r = dasd(tmp_path, "generate")
    assert r.returncode == 2 and "generate.nn: unknown key (known: temperatures, n, top_p" in r.stderr


def test_sql_reads_and_never_writes(tmp_path):
    """`dasd sql` queries the stage outputs; COPY, ATTACH, SET and reads outside data/ are refused with one
    line, and the tables are as they were."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "params.yaml").write_text("{}\n")
    table = tmp_path / "data" / "questions" / "questions.parquet"
    table.parent.mkdir(parents=True)
    pq.write_table(pa.table({"question_id": ["a", "b"], "domain": ["math", "code"]}), table)
    before = table.read_bytes()
    r = dasd(tmp_path, "sql", "SELECT domain, count(*) AS n FROM questions GROUP BY 1 ORDER BY 1", "--format", "csv")
    assert r.returncode == 0 and r.stdout.splitlines() == ['"domain","n"', '"code",1', '"math",1']
    for query, says in ((f"COPY (SELECT 1 AS x) TO '{table}'", "COPY statements are not run"),
                        ("COPY (SELECT 1 AS x) TO 'data/questions/questions.parquet'", "COPY statements are not run"),
                        (f"ATTACH '{tmp_path / 'x.db'}'", "ATTACH statements are not run"),
                        ("SET enable_external_access = true", "SET statements are not run"),
                        ("SELECT 1; COPY questions TO 'out.csv'", "COPY statements are not run"),
                        ("SELECT * FROM read_text('/etc/hostname')", "Permission Error"),
                        ("SELECT * FROM nope", "Catalog Error")):
        r = dasd(tmp_path, "sql", query)
        assert r.returncode == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, (query, r.stderr)
    assert table.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["data", "dvc.yaml", "params.yaml"]


def test_make_repro_is_offline_for_the_default_profile_only():
    """The miniature needs no Hub, so `make repro` runs it offline; PROFILE=paper must reach the Hub."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}

    def offline(*args) -> bool:
        r = subprocess.run(["make", "-pn", "repro", *args], cwd=REPO, env=env, capture_output=True, text=True)
        return any(line.replace(" ", "") == "HF_HUB_OFFLINE=1" for line in r.stdout.splitlines())

    assert offline() and not offline("PROFILE=paper")
