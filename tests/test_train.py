"""Stage `train`: hyperparameters rendered once for every trainer, and the TRL runner training the real tiny
student through chained phases (stage 2 starts from stage 1's model)."""
from __future__ import annotations

import json

import pyarrow as pa
import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM

from engine import tables, train
from engine.params import ParamsError

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}


def write_export(root, stage, n=8):
    rows = [{"messages": [SYSTEM, {"role": "user", "content": f"What is {k} + {k + 1}?"},
                          {"role": "assistant", "content": f"<think>\n{k} + {k + 1} = {2 * k + 1}.\n</think>\n\n"
                                                           f"The answer is {2 * k + 1}."}],
             "response_id": f"{stage}-{k}", "question_id": f"q{k}"} for k in range(n)]
    tables.write_parquet(pa.Table.from_pylist(rows), root / "data" / "export" / stage / "train.parquet")


def params(base, **hyper):
    return train.TrainParams(base_model=str(base), trainer="trl",
                             phases={"stage1": {"dataset": "stage1", "init": "base"},
                                     "stage2": {"dataset": "stage2", "init": "stage1"}},
                             hyper=dict({"learning_rate": 1e-3, "min_lr": 1e-4, "global_batch": 4, "micro_batch": 2,
                                         "devices": 1, "sequence_len": 256, "packing": False, "bf16": False,
                                         "epochs": 1}, **hyper))


def test_one_set_of_hyperparameters_rendered_for_every_trainer(tmp_path):
    tp = params("base/model", global_batch=64, micro_batch=2, devices=4)
    train.render(tp, "stage2", tmp_path)
    ax = yaml.safe_load((tmp_path / "axolotl.yaml").read_text())
    lf = yaml.safe_load((tmp_path / "llamafactory.yaml").read_text())
    trl = json.loads((tmp_path / "trl.json").read_text())
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert ax["base_model"] == lf["model_name_or_path"] == "data/train/stage1/model"  # stage 2 continues stage 1
    assert ax["datasets"][0]["path"] == "data/export/stage2/train.parquet"
    assert ax["gradient_accumulation_steps"] == lf["gradient_accumulation_steps"] == 8  # 64 = 2 x 4 devices x 8
    assert trl["gradient_accumulation_steps"] == 32  # the runner trains on one device
    assert ax["learning_rate"] == lf["learning_rate"] == trl["learning_rate"] == 1e-3
    assert ax["cosine_min_lr_ratio"] == pytest.approx(0.1) and lf["lr_scheduler_kwargs"] == trl["lr_scheduler_kwargs"] \
        == {"min_lr": 1e-4}
    assert (ax["adam_beta2"], lf["adam_beta2"], trl["adam_beta2"]) == (0.95, 0.95, 0.95)
    assert ax["datasets"][0]["roles_to_train"] == ["assistant"] and trl["assistant_only_loss"] is True
    entry = info["dasd_stage2"]
    assert entry["formatting"] == "sharegpt" and entry["columns"] == {"messages": "messages"}
    assert entry["file_name"] == "../../../export/stage2/train.parquet"
    train.render(params("b"), "stage1", tmp_path / "s1")
    assert yaml.safe_load((tmp_path / "s1" / "axolotl.yaml").read_text())["base_model"] == "b"


def test_bad_train_params_are_named():
    with pytest.raises(ParamsError, match="not a multiple"):
        params("b", global_batch=10, micro_batch=4)
    with pytest.raises(ParamsError, match="init must be"):
        train.TrainParams(base_model="b", phases={"s": {"dataset": "x", "init": "nowhere"}})
    with pytest.raises(ParamsError, match="trainer"):
        train.TrainParams(base_model="b", trainer="keras")
    with pytest.raises(ParamsError, match=r"hyper\.learning_rat: unknown key"):
        params("b", learning_rat=1.0)
    with pytest.raises(ParamsError, match=r"hyper\.learning_rate: Input should be a valid number"):
        params("b", learning_rate="fast")


def test_trl_runner_trains_the_phases_in_a_chain(tmp_path, mini):
    for stage in ("stage1", "stage2"):
        write_export(tmp_path, stage)
    tp = params(mini["student"])
    r1 = train.run(tp, "stage1", tmp_path, tmp_path / "metrics" / "stage1.json")
    assert r1["steps"] == 2 and r1["examples"] == 8 and r1["first_loss"] > 0
    m1 = tmp_path / "data" / "train" / "stage1" / "model"
    base = AutoModelForCausalLM.from_pretrained(mini["student"]).state_dict()
    after1 = AutoModelForCausalLM.from_pretrained(m1).state_dict()
    assert any(not torch.equal(base[k], after1[k]) for k in base)  # stage 1 trained the base student
    # stage 2 in one optimizer step (the whole set in one batch): warmup 0.1 would make that step's learning
    # rate 0; the warmup is kept below the step count, so the one step trains
    tp.phases["stage2"]["hyper"] = {"global_batch": 8}
    r2 = train.run(tp, "stage2", tmp_path, tmp_path / "metrics" / "stage2.json")
    assert r2["init"] == "data/train/stage1/model" and r2["steps"] == 1
    after2 = AutoModelForCausalLM.from_pretrained(tmp_path / "data" / "train" / "stage2" / "model").state_dict()
    assert any(not torch.equal(after1[k], after2[k]) for k in after1)
    assert json.loads((tmp_path / "metrics" / "stage2.json").read_text())["trainer"] == "trl"
    assert (tmp_path / "data" / "train" / "stage2" / "configs" / "axolotl.yaml").exists()


def test_phase_overrides_and_the_student_prefix_mask(tmp_path):
    phases = {"stage2": {"dataset": "stage2", "init": "base"},
              "stage3": {"dataset": "stage3", "init": "stage2", "hyper": {"epochs": 1}, "mask_student_prefix": True}}
    tp = train.TrainParams(base_model="m", trainer="axolotl", phases=phases, hyper={"epochs": 6, "devices": 1, "global_batch": 4})
    assert (tp.hyper_of("stage2").epochs, tp.hyper_of("stage3").epochs) == (6, 1)
    assert tp.hyper_of("stage3").global_batch == 4  # what the phase does not override stays
    cfg = train.axolotl_config(tp, "stage3")
    assert cfg["num_epochs"] == 1 and cfg["datasets"][0]["message_field_training_detail"] == "train_detail"
    assert "message_field_training_detail" not in train.axolotl_config(tp, "stage2")["datasets"][0]
    train.render(tp, "stage3", tmp_path / "cfg")
    # LLaMA-Factory cannot mask part of a turn: no config that would silently train on the prefix
    assert sorted(p.name for p in (tmp_path / "cfg").iterdir()) == ["axolotl.yaml", "trl.json"]
    with pytest.raises(ParamsError, match="mask_student_prefix needs trainer axolotl"):
        train.TrainParams(base_model="m", trainer="trl", phases=phases, hyper={"devices": 1, "global_batch": 4})
    with pytest.raises(ParamsError, match="unknown key"):
        train.TrainParams(base_model="m", phases={"s": {"dataset": "s", "init": "base", "epochs": 1}})
