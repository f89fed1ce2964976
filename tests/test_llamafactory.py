"""The rendered LLaMA-Factory configs (engine/train.py) through LLaMA-Factory's own code: `get_train_args` parses
and validates a phase config, its dataset loader reads the exported Parquet through the rendered
dataset_info.json, and its SFT preprocessing tokenises it with the student's tokenizer — the same ids as the
student's chat template, labels on the assistant turn only. The paper profile's configs pass its argument
classes.

LLaMA-Factory lives in its own venv (`make llamafactory`; `make test` builds it and points
DASD_LLAMAFACTORY_PYTHON at it). There is no torchaudio build for the CPU torch 2.13.0 here and
LLaMA-Factory imports it at module level for audio inputs, which text SFT never uses: the check script
registers an empty `torchaudio` module first (any call into it would fail loudly).
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from conftest import trainer_python
from engine import tables, train
from engine.params import load, section

ENV = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
           DISABLE_VERSION_CHECK="1")

PRELUDE = r"""
import importlib.machinery, json, sys, types
audio = types.ModuleType("torchaudio")
audio.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)
sys.modules["torchaudio"] = audio
"""

# argv: config, output_dir, result file -> every prepared example's input_ids and labels
PREPARE = PRELUDE + r"""
import yaml
from llamafactory.hparams import get_train_args
from llamafactory.model import load_tokenizer
from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
cfg = yaml.safe_load(open(sys.argv[1]))
cfg["output_dir"] = sys.argv[2]
model_args, data_args, training_args, finetuning_args, _ = get_train_args(cfg)
module = load_tokenizer(model_args)
template = get_template_and_fix_tokenizer(module["tokenizer"], data_args)
ds = get_dataset(template, model_args, data_args, training_args, stage="sft", **module)["train_dataset"]
json.dump([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in ds], open(sys.argv[3], "w"))
"""

# argv: configs -> each parsed by LLaMA-Factory's argument classes (no unknown key, every value accepted)
SCHEMA = PRELUDE + r"""
import yaml
from transformers import HfArgumentParser
from llamafactory.hparams.parser import _TRAIN_ARGS
from llamafactory.data.parser import get_dataset_list
parser = HfArgumentParser(_TRAIN_ARGS)
for path in sys.argv[1:]:
    cfg = yaml.safe_load(open(path))
    ds = json.load(open(cfg["deepspeed"]))  # paths are relative to the project root, the working directory
    known = {f for dc in _TRAIN_ARGS for f in dc.__dataclass_fields__}
    unknown = sorted(set(cfg) - known)
    assert not unknown, f"{path}: keys LLaMA-Factory does not know: {unknown}"
    # the hardware-bound values (ZeRO-3 needs deepspeed and GPUs, bf16 a GPU) are checked as written above;
    # the rest goes through the argument classes themselves
    cpu = {k: v for k, v in cfg.items() if k not in ("deepspeed",)}
    cpu.update(bf16=False, output_dir="/tmp/dasd-lf-out")
    margs, dargs, targs, fargs, _ = parser.parse_dict(cpu, allow_extra_keys=False)
    [attr] = get_dataset_list([dargs.dataset[0]], dargs.dataset_dir)
    print(path, targs.gradient_accumulation_steps, targs.per_device_train_batch_size, targs.learning_rate,
          dargs.packing, dargs.cutoff_len, ds["zero_optimization"]["stage"], attr.formatting, attr.messages)
"""


@pytest.fixture(scope="module")
def lf_python():
    return trainer_python("DASD_LLAMAFACTORY_PYTHON", ".venv-llamafactory", "llamafactory")


MESSAGES = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Tom has 3 apples and buys 4 more. How many apples does he have?"}]
ANSWERS = {"t1": "<think>\nTom starts with 3 apples. He buys 4 more, so 3 + 4 = 7.\n</think>\n\nThe answer is 7.",
           "t2": "<think>\n3 + 4 = 7.\n</think>\n\nSeven apples."}
PREFIX = "<think>\nTom starts with 3 apples.\n"


def export_row(rid: str, content: str, policy: str = "off_policy", prefix_chars: int = 0) -> dict:
    detail = None if policy == "off_policy" else [
        {"begin_offset": 0, "end_offset": prefix_chars - 1, "train": False},
        {"begin_offset": prefix_chars, "end_offset": len(content) - 1, "train": True}]
    return dict(messages=[dict(m, train_detail=None) for m in MESSAGES] +
                [{"role": "assistant", "content": content, "train_detail": detail}],
                response_id=rid, question_id="q", domain="math", temperature=1.0, selector="das", score=1.0,
                teacher_sentences=1, sentences=1, policy=policy, prefix_chars=prefix_chars,
                cut_fraction=None if policy == "off_policy" else 0.6)


def test_phase_configs_load_and_tokenise_in_llamafactory(tmp_path, mini, lf_python):
    from transformers import AutoTokenizer

    mixed = PREFIX + "He buys 4 more, so 3 + 4 = 7.\n</think>\n\nThe answer is 7."
    sets = {"stage1": [export_row(r, a) for r, a in ANSWERS.items()],
            "stage3": [export_row("m1", mixed, "mixed", len(PREFIX)), export_row("t2", ANSWERS["t2"])]}
    for name, rows in sets.items():
        tables.write_parquet(pa.Table.from_pylist(rows, schema=tables.EXPORT),
                             tmp_path / "data" / "export" / name / "train.parquet")
    tp = train.TrainParams(base_model=str(mini["student"]), trainer="llamafactory",
                           phases={"stage1": {"dataset": "stage1", "init": "base"},
                                   "stage3": {"dataset": "stage3", "init": "base", "hyper": {"epochs": 1}}},
                           hyper={"global_batch": 2, "micro_batch": 1, "devices": 1, "sequence_len": 512,
                                  "packing": False, "bf16": False})
    tok = AutoTokenizer.from_pretrained(mini["student"])
    for name, rows in sets.items():
        train.render(tp, name, tmp_path / "data" / "train" / name / "configs")  # as `dasd train` does
        out = tmp_path / f"{name}.json"
        r = subprocess.run([lf_python, "-c", PREPARE, f"data/train/{name}/configs/llamafactory.yaml",
                            str(tmp_path / "lf-out" / name), str(out)], capture_output=True, text=True, env=ENV,
                           cwd=tmp_path, timeout=600)
        assert r.returncode == 0, r.stderr[-4000:]
        prepared = json.loads(out.read_text())
        assert len(prepared) == len(rows)
        for row, ex in zip(rows, prepared):
            messages = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
            ids = tok.apply_chat_template(messages, tokenize=True)
            ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
            assert ex["input_ids"] == ids  # LLaMA-Factory renders exactly the student's own chat template
            assert all(lab in (-100, i) for i, lab in zip(ex["input_ids"], ex["labels"]))
            trained = tok.decode([i for i, lab in zip(ex["input_ids"], ex["labels"]) if lab != -100])
            # the whole assistant turn and its end-of-turn token, nothing of the system prompt or question
            assert trained.startswith(messages[-1]["content"] + "<|im_end|>")
            assert "helpful assistant" not in trained and "apples and buys" not in trained


def test_paper_profile_configs_pass_llamafactorys_argument_classes(tmp_path, lf_python):
    from conftest import REPO

    tp = section(load(REPO / "profiles" / "paper.yaml"), "train", train.TrainParams)
    paths = []
    for phase in tp.phases:
        folder = tmp_path / "data" / "train" / phase / "configs"
        train.render(tp, phase, folder)
        paths.append(str(folder / "llamafactory.yaml"))
    r = subprocess.run([lf_python, "-c", SCHEMA, *paths], capture_output=True, text=True, env=ENV, cwd=tmp_path,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()[-len(paths):]
    assert len(paths) == 3
    # 64 = 1 per device x 8 devices x 8 accumulation; lr 5e-5; packing into 64K (LLaMA-Factory keeps one
    # position back when packing: 65535); ZeRO-3; the exports read as sharegpt messages
    assert all(line.split()[1:] == ["8", "1", "5e-05", "True", "65535", "3", "sharegpt", "messages"] for line in lines)
    stage2 = yaml.safe_load(open(paths[1]))
    assert stage2["model_name_or_path"] == "data/train/stage1/model" and "template" not in stage2
    info = json.loads((Path(paths[2]).parent / "dataset_info.json").read_text())
    assert info["dasd_stage3"]["file_name"] == "../../../export/stage3/train.parquet"
