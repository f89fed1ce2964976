"""`dasd publish`: the Hub dataset repository built offline byte for byte (configs, shards, card), and the upload
against a local server speaking the Hub's HTTP API.

The project here runs the real stages end to end on real reasoning traces: R1 traces imported in the
release layout (`dasd import`, tokens in the tiny teacher's tokenizer), scored by the tiny student, then
sentences, filter, dedup, select and export, as `dvc repro` would run them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from conftest import REPO, shared, write_release
from engine import cli, publish, tables

SECRET = "hf_TESTtokenThatMustNeverLeak0123"


def trace_rows(per_question: int = 2, questions: int = 6) -> list[dict]:
    by_q = defaultdict(list)
    for line in open(shared("traces", "traces_math500_r1_and_distill.jsonl")):
        d = json.loads(line)
        if "</think>" in d["response"]:
            by_q[d["question"]].append(d)
    groups = sorted((g for g in by_q.values() if len(g) >= per_question),
                    key=lambda g: sum(len(d["response"]) for d in g[:per_question]))[:questions]
    return [d for g in groups for d in g[:per_question]]


@pytest.fixture(scope="module")
def project(tmp_path_factory, mini):
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("project")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    # a served teacher whose request body carries a key: shown redacted, never published
    params["teacher"] = {"model": str(mini["teacher"]), "backend": "openai", "format": "chat",
                         "options": {"tokenizer": str(mini["teacher"]),
                                     "extra_body": {"api_key": "sk-a-params-secret-value"}}}
    params["student"] = {"model": str(mini["student"]), "backend": "transformers"}
    params["filter"]["rules"]["length"] = 65536  # real traces are long in the tiny student's tokens
    params["publish"].update(max_shard_rows=5, pretty_name="Test set")
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    mp = pytest.MonkeyPatch()
    mp.setenv("DASD_ROOT", str(root))
    tok = AutoTokenizer.from_pretrained(mini["teacher"])
    for t in ("0.6", "1.0"):
        rows = [{"uuid": f"{d['id']}-{t}", "input": d["question"], "output": d["response"],
                 "raw": d["response"] + tok.eos_token} for d in trace_rows()]
        sft, lp = write_release(root / "release" / t, rows, tok, seed=int(float(t) * 10))
        assert cli.main(["import", str(sft), "--logprobs", str(lp), "--temperature", t, "--license", "MIT",
                         "--no-progress"]) == 0
    for stage in ("score", "sentences", "filter", "naturalness", "dedup", "select", "export"):
        assert cli.main([stage, *(["--no-progress"] if stage in ("score", "naturalness") else [])]) == 0, stage
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def built(project):
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_TOKEN", SECRET)
    folder = project / "hub"
    assert cli.main(["publish", "owner/dasd-test", "--dry-run", str(folder)]) == 0
    mp.undo()
    return folder


def card_of(folder: Path):
    from huggingface_hub import DatasetCard

    return DatasetCard.load(folder / "README.md")


def test_every_config_loads_with_datasets(project, built, tmp_path):
    import datasets

    names = [c["config_name"] for c in card_of(built).data.configs]
    assert names == ["stage1_low_temperature", "stage2_high_temperature", "candidates"]  # no stage 3 run here
    for stage, name in (("stage1", names[0]), ("stage2", names[1])):
        ds = datasets.load_dataset(str(built), name, split="train", cache_dir=str(tmp_path / "cache"))
        export = pq.read_table(project / "data" / "export" / stage / "train.parquet")
        assert 0 < len(ds) == export.num_rows and ds.column_names == tables.EXPORT.names
        assert ds["response_id"] == export.column("response_id").to_pylist()
        assert ds[0]["messages"][-1]["role"] == "assistant" and "</think>" in ds[0]["messages"][-1]["content"]
    cand = datasets.load_dataset(str(built), "candidates", split="train", cache_dir=str(tmp_path / "cache"))
    generations = sum(json.loads((project / "metrics" / "generate" / f"T={t}.json").read_text())["responses"]
                      for t in ("0.6", "1.0"))
    assert len(cand) == generations == 2 * len(trace_rows())
    for row in cand:
        assert len(row["teacher_token_ids"]) == len(row["teacher_logprobs"]) > 0
        assert len(row["student_token_ids"]) == len(row["student_logprobs"]) == row["student_token_count"]
    selected = {r for s in ("stage1", "stage2") for r in
                pq.read_table(project / "data" / "export" / s / "train.parquet").column("response_id").to_pylist()}
    assert {r["response_id"] for r in cand if r["selected"]} == selected
    assert all(not r["rejected_by"] for r in cand if r["selected"])
    # shards in the Hub layout: max_shard_rows 5 splits the candidates into several files
    shards = sorted(p.name for p in (built / "candidates").glob("*.parquet"))
    n = -(-len(cand) // 5)
    assert shards == [f"train-{i:05d}-of-{n:05d}.parquet" for i in range(n)]


def test_card_states_the_records(project, built):
    card = card_of(built)
    meta = card.data
    assert meta.license == "apache-2.0" and meta.size_categories == ["n<1K"] and meta.pretty_name == "Test set"
    for c in meta.configs:  # every config's data_files glob names exactly its shards
        assert c["data_files"][0]["path"] == f"{c['config_name']}/train-*.parquet"
        assert list((built / c["config_name"]).glob("train-*.parquet"))
    text = card.text
    # every filter rule with its threshold, the selection rule and beta, both models
    from engine.filter import DEFAULT_RULES

    for rule, threshold in DEFAULT_RULES.items():
        if threshold is not None:
            assert f"| {rule} | " in text
    assert "| length | 65536 |" in text and "β = 0.1" in text and "Selector `das`" in text
    assert "sk-a-params-secret-value" not in text and "<redacted>" in text
    # the funnel per temperature and domain is the stages' own accounting
    for t in ("0.6", "1.0"):
        f = json.loads((project / "metrics" / "filter" / f"T={t}.json").read_text())
        d = json.loads((project / "metrics" / "dedup" / f"T={t}.json").read_text())
        s = json.loads((project / "metrics" / "select" / f"T={t}.json").read_text())
        row = f"| {float(t):g} | math | {f['input']} | {f['rejected']} | {f['kept']} | {d['rejected']} | {d['kept']} | {s['selected']} |"
        assert row in text, row
    assert "| import | raw_logprobs | 6 | 12 | 2 |" in text  # sampling, read from the imported samples
    assert "| import | math | MIT |" in text  # the question source and its license
    assert "images/probability_distribution.png" in text and (built / "images" / "probability_distribution.png").exists()
    assert "No `dvc.lock`" in text  # stages run by hand here; the e2e test checks the dvc.lock hashes


def test_nothing_secret_in_the_folder_and_a_leak_refuses(project, built, monkeypatch):
    for path in built.rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            assert SECRET.encode() not in blob and b"sk-a-params-secret-value" not in blob, path
    # a credential whose value does occur in the data (here: a word of a question) stops the build
    question = pq.read_table(project / "data" / "questions").column("messages").to_pylist()[0][-1]["content"]
    word = max(question.split(), key=len)
    assert len(word) >= 8
    monkeypatch.setenv("SOME_API_KEY", word)
    assert cli.main(["publish", "owner/x", "--dry-run", str(project / "leak")]) == 2
    assert not (project / "leak").exists()


def test_a_secret_inside_compressed_shards_is_found(project, built, monkeypatch):
    """The value is looked for in the decoded cells: here one that only a candidates shard holds, and whose
    bytes do not occur in any file as written (zstd pages), so a scan of raw bytes would upload it."""
    cand = pq.read_table(project / "hub" / "candidates").column("response_id").to_pylist()
    exported = {r for s in ("stage1", "stage2")
                for r in pq.read_table(project / "data" / "export" / s / "train.parquet").column("response_id").to_pylist()}
    raw = [p.read_bytes() for p in built.rglob("*") if p.is_file()]
    hidden = next(r for r in cand if r not in exported and not any(r.encode() in b for b in raw))
    monkeypatch.setenv("HF_TOKEN", hidden)
    assert cli.main(["publish", "owner/x", "--dry-run", str(project / "leak2")]) == 2
    assert not (project / "leak2").exists()


def test_dry_run_never_empties_a_folder_it_did_not_build(project, capsys, monkeypatch):
    """Only an empty folder, a new one, or an earlier build (its marker file) is replaced; the project, data/
    and any other folder are refused at once, untouched."""
    mine = project / "notes"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    monkeypatch.chdir(project)
    before = sorted(p.name for p in project.iterdir())
    for target in (str(mine), "data", ".", str(project / "params.yaml")):
        assert cli.main(["publish", "owner/x", "--dry-run", target]) == 2, target
        assert "dasd publish: error:" in capsys.readouterr().err
    assert (mine / "keep.txt").read_text() == "mine" and sorted(p.name for p in project.iterdir()) == before
    assert (project / "data" / "questions" / "questions.parquet").exists()
    # an empty folder is built into, and that build is replaced by the next one
    (project / "empty").mkdir()
    for _ in range(2):
        assert cli.main(["publish", "owner/x", "--dry-run", "empty"]) == 0
        assert (project / "empty" / "README.md").exists() and (project / "empty" / publish.MARKER).exists()
    assert not [p for p in project.iterdir() if p.name.startswith(".empty.")]  # no temp or old folder left
    # a build made before the marker existed is recognised by its layout; one extra file of the user's is not
    (project / "empty" / publish.MARKER).unlink()
    assert cli.main(["publish", "owner/x", "--dry-run", "empty"]) == 0
    (project / "empty" / publish.MARKER).unlink()
    (project / "empty" / "notes.txt").write_text("mine")
    assert cli.main(["publish", "owner/x", "--dry-run", "empty"]) == 2
    assert (project / "empty" / "notes.txt").read_text() == "mine"


def test_same_inputs_same_bytes(project, built):
    again = project / "hub-again"
    assert cli.main(["publish", "owner/dasd-test", "--dry-run", str(again)]) == 0
    files = sorted(p.relative_to(built) for p in built.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for f in files:
        assert (built / f).read_bytes() == (again / f).read_bytes(), f


def test_upload_needs_a_repo_id_and_the_network(project, monkeypatch, capsys):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["publish"]["dry_run"] = False
    path = project / "upload.yaml"
    path.write_text(yaml.safe_dump(params))
    assert cli.main(["--params", str(path), "publish"]) == 2
    assert "give REPO_ID" in capsys.readouterr().err
    # offline (the test session sets HF_HUB_OFFLINE=1): one clear line, nothing sent
    assert cli.main(["--params", str(path), "publish", "owner/name"]) == 2
    assert "HF_HUB_OFFLINE is set" in capsys.readouterr().err


def publish_subprocess(project: Path, hub, params: dict, *args) -> subprocess.CompletedProcess:
    path = project / "upload.yaml"
    path.write_text(yaml.safe_dump(params))
    env = dict(os.environ, HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", HF_TOKEN=SECRET, HF_HOME=str(project / "hf-home"),
               HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1", DASD_ROOT=str(project))
    return subprocess.run([sys.executable, "-m", "engine.cli", "--params", str(path), "publish", *args],
                          env=env, capture_output=True, text=True, timeout=300)


def test_upload_to_a_local_hub_replaces_stale_shards(project):
    from hub_server import Hub

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["publish"].update(dry_run=False)
    with Hub() as hub:
        r = publish_subprocess(project, hub, params, "owner/dasd-test")
        assert r.returncode == 0, r.stderr[-3000:]
        folder = project / "data" / "publish"
        repo = hub.repos["dataset:owner/dasd-test"]
        local = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
                 if p.is_file() and p.name != publish.MARKER}  # the build marker stays local
        assert repo["private"] and {k: v for k, v in repo["files"].items() if k != ".gitattributes"} == local
        assert "candidates/train-00004-of-00005.parquet" in local
        # the token went to the Hub in every request's header, and nowhere else
        assert set(hub.auth) == {f"Bearer {SECRET}"} and hub.validated == [local["README.md"].decode()]
        assert SECRET not in r.stdout + r.stderr and "uploaded: " in r.stdout

        # a second publish with bigger shards: the old shards go, the new ones come, in one commit
        params["publish"].update(max_shard_rows=1000)
        r = publish_subprocess(project, hub, params, "owner/dasd-test")
        assert r.returncode == 0, r.stderr[-3000:]
        local = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
                 if p.is_file() and p.name != publish.MARKER}  # the build marker stays local
        assert {k: v for k, v in repo["files"].items() if k != ".gitattributes"} == local
        assert sorted(p for p in repo["files"] if p.startswith("candidates/")) == ["candidates/train-00000-of-00001.parquet"]
        assert "deletedFile" in repo["commits"][-1] and ("POST", "/api/repos/create") in hub.requests


@pytest.mark.skipif(not (os.environ.get("HF_TEST_REPO") and os.environ.get("HF_TOKEN")),
                    reason="a real upload needs HF_TEST_REPO (owner/name, a scratch dataset repo) and HF_TOKEN")
def test_real_upload_to_the_hub(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["publish"].update(dry_run=False)
    path = project / "real.yaml"
    path.write_text(yaml.safe_dump(params))
    env = dict(os.environ, HF_HUB_OFFLINE="0", DASD_ROOT=str(project))
    env.pop("HF_ENDPOINT", None)
    r = subprocess.run([sys.executable, "-m", "engine.cli", "--params", str(path), "publish", os.environ["HF_TEST_REPO"]],
                       env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert os.environ["HF_TOKEN"] not in r.stdout + r.stderr
    listed = subprocess.run([sys.executable, "-c", "import sys; from huggingface_hub import HfApi; "
                             "print('\\n'.join(HfApi().list_repo_files(sys.argv[1], repo_type='dataset')))",
                             os.environ["HF_TEST_REPO"]], env=env, capture_output=True, text=True, timeout=300)
    local = {str(p.relative_to(project / "data" / "publish")) for p in (project / "data" / "publish").rglob("*") if p.is_file()}
    assert local <= set(listed.stdout.split())
