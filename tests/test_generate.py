"""Stage `generate`: rows as documented, resumable after kill -9, clean restart on a param change."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, SYSTEM, assert_same_rows
from engine import decontaminate, generate, questions, tables
from engine.benchmarks import Benchmarks
from engine.backends import ModelParams
from engine.generate import GenerateParams
from engine.questions import QuestionsParams


def make_project(root: Path, mini, n_questions: int, **generate_overrides) -> Path:
    """A project folder with its own params and question table, using the session's tiny teacher."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dvc.yaml").write_text("stages: {}\n")
    from engine.miniature import tasks

    qfile = root / "q.jsonl"
    qfile.write_text("".join(json.dumps({"id": p.id, "question": p.question, "answer": str(p.answer)}) + "\n"
                             for p in tasks.make_problems(n_questions, seed=99)))
    params = {
        "system_prompt": SYSTEM,
        "questions": {"sources": [{"name": "mini", "path": "q.jsonl", "domain": "math",
                                   "fields": {"question": "question", "answer": "answer", "id": "id"}}]},
        "teacher": {"model": str(mini["teacher"]), "backend": "transformers", "options": {"dtype": "float32"}},
        "generate": dict({"temperatures": [1.0], "n": 2, "max_tokens": 24, "seed": 5, "shard_questions": 2},
                         **generate_overrides),
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    stage_questions(root, params)
    return root


def stage_questions(root: Path, params: dict) -> None:
    """The questions stage, then what `dasd generate` reads: the questions decontaminate kept (no
    benchmarks here: all of them)."""
    questions.run(QuestionsParams(**params["questions"]), SYSTEM, root, root / "data" / "questions",
                  root / "data" / "quarantine" / "questions.parquet", root / "metrics" / "questions.json")
    decontaminate.run(decontaminate.DecontaminateParams(), Benchmarks(), root, root / "data" / "questions",
                      root / "data" / "decontaminate", root / "metrics" / "decontaminate.json")


def dasd(root: Path, *args, wait=True):
    env = dict(os.environ, DASD_ROOT=str(root))
    cmd = [sys.executable, "-m", "engine.cli", *args]
    if wait:
        return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, check=True)
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def load(root: Path):
    t = tables.read_table(root / "data" / "generations" / "T=1.0")
    return sorted(t.to_pylist(), key=lambda r: (r["question_id"], r["sample_index"]))


@pytest.mark.slow
def test_generation_rows_with_vllm(tmp_path, mini, vllm_teacher):
    root = make_project(tmp_path, mini, 6)
    gp = GenerateParams(temperatures=[0.6], n=3, max_tokens=20, shard_questions=4)
    teacher = ModelParams(model=str(mini["teacher"]), backend="vllm", options={"dtype": "float32"})
    report = generate.run(gp, teacher, 0.6, root / "data" / "questions", root / "gen", root / "m.json",
                          backend=vllm_teacher, progress=False)
    t = tables.read_table(root / "gen")
    assert t.schema.equals(tables.GENERATIONS)
    rows = t.to_pylist()
    assert len(rows) == 18 and report["responses"] == 18 and report["questions"] == 6
    assert len({r["response_id"] for r in rows}) == 18
    assert sorted({(r["question_id"], r["sample_index"]) for r in rows}) == sorted(
        (q, k) for q in {r["question_id"] for r in rows} for k in range(3))
    for r in rows:
        assert r["backend"] == "vllm" and r["logprobs_mode"] == "raw_logprobs" and r["temperature"] == 0.6
        assert r["finish_reason"] in ("stop", "length") and r["teacher_token_count"] <= 20
        n = len(r["token_ids"])
        assert n == len(r["token_logprobs"]) == len(r["token_starts"]) == len(r["token_ends"])
        assert n == r["teacher_token_count"] - (r["finish_reason"] == "stop")  # the stop token has no text
        assert r["token_starts"][0] == 0 and r["token_ends"][-1] == len(r["text"])
        assert r["raw_output"].startswith(r["text"])
    assert json.loads((root / "m.json").read_text())["responses"] == 18
    # nothing left to do: a second run generates nothing and changes nothing
    before = {p.name: p.stat().st_mtime_ns for p in (root / "gen").glob("part-*")}
    generate.run(gp, teacher, 0.6, root / "data" / "questions", root / "gen", root / "m.json", progress=False)
    assert before == {p.name: p.stat().st_mtime_ns for p in (root / "gen").glob("part-*")}


@pytest.mark.slow
def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path, mini):
    n_questions, shards = 24, 12
    whole = make_project(tmp_path / "whole", mini, n_questions)
    dasd(whole, "generate", "--no-progress")
    expected = load(whole)
    assert len(expected) == n_questions * 2

    cut = make_project(tmp_path / "cut", mini, n_questions)
    out = cut / "data" / "generations" / "T=1.0"
    proc = dasd(cut, "generate", "--no-progress", wait=False)
    deadline = time.time() + 120
    while not list(out.glob("part-*.parquet")) and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p.name: p.read_bytes() for p in out.glob("part-*.parquet")}
    assert 0 < len(before) < shards, "the kill must land mid-run"
    (out / ".part-00011.parquet.tmp-1").write_bytes(b"half a shard")  # what a kill mid-write leaves

    r = dasd(cut, "generate")
    assert "resumed" in r.stderr
    assert not list(out.glob(".*tmp*"))
    assert {name: (out / name).read_bytes() for name in before} == before  # finished shards are not redone
    got = load(cut)
    assert_same_rows(got, expected)  # same rows, same tokens, same logprobs: nothing lost, nothing duplicated

    # an output-changing parameter starts clean: no sample of the old seed survives
    params = yaml.safe_load((cut / "params.yaml").read_text())
    params["generate"]["seed"] = 6
    (cut / "params.yaml").write_text(yaml.safe_dump(params))
    dasd(cut, "generate", "--no-progress")
    fresh = load(cut)
    assert len(fresh) == len(expected)
    assert not {r["response_id"] for r in fresh} & {r["response_id"] for r in expected}
    assert json.loads((out / "manifest.json").read_text())["seed"] == 6


def test_manifest_ignores_transport_options(mini):
    import pyarrow as pa

    questions_t = pa.table({"question_id": ["a"], "messages": [[{"role": "user", "content": "x"}]]})
    gp = GenerateParams(temperatures=[1.0])
    a = ModelParams(model="m", backend="openai", options={"base_url": "http://a", "concurrency": 4})
    b = ModelParams(model="m", backend="openai", options={"base_url": "http://b", "concurrency": 64})
    c = ModelParams(model="m", backend="openai", options={"base_url": "http://b", "endpoint": "completions"})
    assert generate.manifest(gp, a, 1.0, questions_t) == generate.manifest(gp, b, 1.0, questions_t)
    assert generate.manifest(gp, a, 1.0, questions_t) != generate.manifest(gp, c, 1.0, questions_t)
    assert generate.question_seed(1, "a", 1.0) == generate.question_seed(1, "a", 1.0)
    assert generate.question_seed(1, "a", 1.0) != generate.question_seed(1, "a", 0.6)


def dasd_rc(root: Path, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, DASD_ROOT=str(root))
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], env=env, cwd=REPO, capture_output=True,
                          text=True)


def test_existing_output_survives_typos_a_second_writer_and_damage(tmp_path, mini):
    root = make_project(tmp_path, mini, 4)
    out = root / "data" / "generations" / "T=1.0"
    dasd(root, "generate", "--no-progress", "--temperature", "1.00")  # one folder however it is typed
    assert sorted(p.name for p in (root / "data" / "generations").iterdir()) == ["T=1.0"]
    expected, shards = load(root), {p.name: p.read_bytes() for p in out.glob("part-*.parquet")}
    assert len(shards) == 2 and json.loads((out / "shards.json").read_text())["1"]["rows"] == 4
    params = yaml.safe_load((root / "params.yaml").read_text())

    # mistakes in params stop the stage with one line before the finished shards are touched
    for teacher, says in (({"backend": "opneai"}, "unknown backend 'opneai'"),
                          ({"options": {"dtype": "float32", "dtpye": "float32"}}, "unknown option(s) ['dtpye']"),
                          ({"model": str(root / "no" / "such" / "teacher")}, "not found")):
        bad = dict(params, teacher={**params["teacher"], **teacher})
        (root / "bad.yaml").write_text(yaml.safe_dump(bad))
        r = dasd_rc(root, "--params", str(root / "bad.yaml"), "generate", "--no-progress")
        assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert {p.name: p.read_bytes() for p in out.glob("part-*.parquet")} == shards

    # one writer per output: a second run names the holder and writes nothing
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from engine import tables; "
                               f"tables.OutputLock.acquire({str(out)!r}); print('held', flush=True); time.sleep(60)"],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        params["generate"]["n"] = 3  # would start clean, were it allowed to write
        (root / "params.yaml").write_text(yaml.safe_dump(params))
        r = dasd_rc(root, "generate", "--no-progress")
        assert r.returncode == 2 and f"pid {holder.pid} on host" in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert {p.name: p.read_bytes() for p in out.glob("part-*.parquet")} == shards
    finally:
        holder.kill()
        holder.wait()
    params["generate"]["n"] = 2
    (root / "params.yaml").write_text(yaml.safe_dump(params))

    # a damaged shard (a full disk cut it short) is not "done": it is written again, the same rows
    damaged = out / "part-00001.parquet"
    damaged.write_bytes(shards["part-00001.parquet"][:len(shards["part-00001.parquet"]) // 2])
    r = dasd_rc(root, "generate", "--no-progress")
    assert r.returncode == 0 and "part-00001.parquet: damaged shard" in r.stderr, r.stderr
    assert_same_rows(load(root), expected)
    assert not list((root / "data" / "generations").glob(".*.lock"))  # the lock goes with its run


def test_a_question_too_long_for_the_model_is_a_rejection_row_and_the_rest_goes_on(tmp_path, mini):
    root = make_project(tmp_path, mini, 3)
    with open(root / "q.jsonl", "a") as f:  # ~2,400 words: far past the tiny teacher's 1,024 positions
        f.write(json.dumps({"id": "long", "question": "Count the fruit: " + "apple banana pear " * 800, "answer": "0"}) + "\n")
    stage_questions(root, yaml.safe_load((root / "params.yaml").read_text()))
    r = dasd_rc(root, "generate", "--no-progress")
    assert r.returncode == 0, r.stderr
    m = json.loads((root / "metrics" / "generate" / "T=1.0.json").read_text())
    assert m["responses"] == 6 and m["questions"] == 3 and m["rejected"] == {"prompt_too_long": 2}  # 4 x n=2 in all
    rows = dasd_rc(root, "sql", "SELECT stage, rule, threshold, count(*) AS n FROM rejections GROUP BY ALL",
                   "--format", "csv").stdout.splitlines()
    assert rows[1:] == ['"generate","prompt_too_long",1024,2']
