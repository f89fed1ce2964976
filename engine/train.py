"""Stage `train@<phase>`: one SFT phase on its exported set, with the trainer of params `train.trainer`.

The hyperparameters live once, in params `train.hyper`; this module renders them for every trainer
so a GPU user can run the same phase elsewhere, and runs the configured one here:
- `axolotl.yaml` — Axolotl (`type: chat_template` on the `messages` column, assistant turns trained,
  cosine to `min_lr`, sample packing, DeepSpeed / Liger / flash attention when set);
- `llamafactory.yaml` + `dataset_info.json` — LLaMA-Factory (what the paper's authors used; sharegpt
  format over the same Parquet);
- `trl.json` — the TRL `SFTConfig` arguments of the built-in runner (`trainer: trl`), which trains on CPU
  in the default profile (assistant-only loss needs `{% generation %}` markers in the chat template).
Phases chain: a phase's `init` is `base` (params `train.base_model`) or the phase it continues from,
whose `model/` it starts from. A phase may override hyperparameters (`hyper: {epochs: 1}` for the
mixed-policy phase) and, on a set with mixed-policy samples, set `mask_student_prefix: true` to train on
the teacher's continuation only (the paper's default trains on the whole response; masking scored worse):
Axolotl reads the export's per-message `train_detail` then; LLaMA-Factory cannot mask part of a turn. Output data/train/<phase>/{model/, configs/} and metrics/train/<phase>.json.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from . import tables
from .params import Count, ParamsError, PositiveNumber, StageError, describe, schema
from .stages import Stage

Trainer = Literal["trl", "axolotl", "llamafactory"]
TRAINERS = get_args(Trainer)


@schema
class Hyper:
    """The paper's SFT settings by default (METHOD.md §5): lr 5e-5 cosine to 1e-5, warmup 0.1, wd 0.1,
    Adam (0.9, 0.95, 1e-8), clip 1.0, 6 epochs, global batch 64, 64K context with packing, bf16."""
    learning_rate: float = 5e-5
    min_lr: float = 1e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    epochs: PositiveNumber = 6
    global_batch: Count = 64
    micro_batch: Count = 1
    devices: Count = 8                 # GPUs of the run the configs are for: gradient accumulation follows
    sequence_len: Count = 65536
    packing: bool = True
    bf16: bool = True
    seed: int = 0
    deepspeed: str | None = None     # Axolotl's deepspeed_configs/zero<N>*.json (LLaMA-Factory gets the same
                                     # ZeRO stage as configs/deepspeed.json), or a JSON file of your own
    liger: bool = False
    flash_attention: bool = False
    max_steps: Count | None = None     # a cap for smoke runs; null: the epochs decide

    def accumulation(self) -> int:
        steps = self.global_batch / (self.micro_batch * self.devices)
        if steps < 1 or steps != int(steps):
            raise ParamsError(f"train.hyper: global_batch {self.global_batch} is not a multiple of micro_batch "
                              f"{self.micro_batch} x devices {self.devices}")
        return int(steps)


@schema
class TrainParams:
    base_model: str
    trainer: Trainer = "trl"
    # phase -> {dataset: export stage, init: base | phase, after: path DVC waits on,
    #           hyper: overrides (optional), mask_student_prefix: bool (optional)}
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    hyper: dict[str, Any] = field(default_factory=dict)

    PHASE_KEYS = {"dataset", "init", "after", "hyper", "mask_student_prefix"}

    def __post_init__(self):
        self.hyper_of(None)
        for name, phase in self.phases.items():
            missing, unknown = {"dataset", "init"} - set(phase), set(phase) - self.PHASE_KEYS
            if missing or unknown:
                raise ParamsError(f"train.phases.{name}: " + (f"missing {sorted(missing)}" if missing else
                                  f"unknown key(s) {sorted(unknown)}; known: {sorted(self.PHASE_KEYS)}"))
            if phase["init"] != "base" and phase["init"] not in self.phases:
                raise ParamsError(f"train.phases.{name}: init must be 'base' or another phase, not {phase['init']!r}")
            self.hyper_of(name).accumulation()
        if self.trainer != "axolotl" and any(self.masks(n) for n in self.phases):
            raise ParamsError(f"train: mask_student_prefix needs trainer axolotl (per-message train_detail); "
                              f"{self.trainer} trains on the whole response")

    def phase(self, name: str) -> dict:
        if name not in self.phases:
            raise ParamsError(f"train.phases has no phase {name!r} (has: {sorted(self.phases)})")
        return self.phases[name]

    def hyper_of(self, name: str | None) -> Hyper:
        """`train.hyper` with phase `name`'s own overrides (None: without)."""
        overrides = (self.phase(name).get("hyper") or {}) if name is not None else {}
        try:
            return Hyper(**{**self.hyper, **overrides})
        except ParamsError as e:  # named where the value is: the phase's override, else train.hyper
            wrong = {str(err["loc"][0]) for err in e.validation.errors() if err["loc"]} if hasattr(e, "validation") else set()
            where = f"phases.{name}.hyper" if wrong & set(overrides) else "hyper"
            raise ParamsError(describe(e.validation, where) if hasattr(e, "validation") else str(e)) from None

    def masks(self, name: str) -> bool:
        return bool(self.phase(name).get("mask_student_prefix", False))

    def init_model(self, name: str) -> str:
        init = self.phase(name)["init"]
        return self.base_model if init == "base" else f"data/train/{init}/model"


def dataset_path(tp: TrainParams, name: str) -> str:
    return f"data/export/{tp.phase(name)['dataset']}/train.parquet"


def axolotl_config(tp: TrainParams, name: str) -> dict:
    h = tp.hyper_of(name)
    cfg = {
        "base_model": tp.init_model(name),
        "chat_template": "tokenizer_default",
        "datasets": [{"path": dataset_path(tp, name), "ds_type": "parquet", "type": "chat_template",
                      "field_messages": "messages", "roles_to_train": ["assistant"], "train_on_eos": "turn"}],
        "dataset_prepared_path": f"data/train/{name}/axolotl-prepared",
        "output_dir": f"data/train/{name}/model",
        "sequence_len": h.sequence_len, "sample_packing": h.packing, "pad_to_sequence_len": h.packing,
        "micro_batch_size": h.micro_batch, "gradient_accumulation_steps": h.accumulation(),
        "num_epochs": h.epochs, "learning_rate": h.learning_rate,
        "lr_scheduler": "cosine", "cosine_min_lr_ratio": h.min_lr / h.learning_rate, "warmup_ratio": h.warmup_ratio,
        "optimizer": "adamw_torch", "weight_decay": h.weight_decay, "adam_beta1": h.adam_beta1,
        "adam_beta2": h.adam_beta2, "adam_epsilon": h.adam_epsilon, "max_grad_norm": h.max_grad_norm,
        "bf16": h.bf16, "fp16": False, "seed": h.seed, "val_set_size": 0, "save_strategy": "no",
    }
    if tp.masks(name):  # the student prefix of mixed-policy samples gets label -100
        cfg["datasets"][0]["message_field_training_detail"] = "train_detail"
    if h.max_steps:
        cfg["max_steps"] = h.max_steps
    if h.deepspeed:
        cfg["deepspeed"] = h.deepspeed
    if h.flash_attention:
        cfg["attn_implementation"] = "flash_attention_2"
    if h.liger:
        cfg["plugins"] = ["axolotl.integrations.liger.LigerPlugin"]
        cfg.update(liger_rope=True, liger_rms_norm=True, liger_glu_activation=True, liger_fused_linear_cross_entropy=True)
    return cfg


def llamafactory_config(tp: TrainParams, name: str) -> tuple[dict, dict]:
    """(training arguments, dataset_info.json entry) for LLaMA-Factory's `llamafactory-cli train`."""
    h = tp.hyper_of(name)
    dataset = f"dasd_{name}"
    dataset_dir = f"data/train/{name}/configs"
    info = {dataset: {"file_name": os.path.relpath(dataset_path(tp, name), dataset_dir), "formatting": "sharegpt",
                      "columns": {"messages": "messages"},
                      "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                               "assistant_tag": "assistant", "system_tag": "system"}}}
    cfg = {
        "model_name_or_path": tp.init_model(name), "stage": "sft", "do_train": True, "finetuning_type": "full",
        # no `template`: LLaMA-Factory then parses the student tokenizer's own chat template (as Axolotl's
        # tokenizer_default and TRL use it); a named one ("default", "qwen3") would render other text
        "dataset": dataset, "dataset_dir": dataset_dir,
        "cutoff_len": h.sequence_len, "packing": h.packing, "output_dir": f"data/train/{name}/model",
        "per_device_train_batch_size": h.micro_batch, "gradient_accumulation_steps": h.accumulation(),
        "learning_rate": h.learning_rate, "num_train_epochs": h.epochs, "lr_scheduler_type": "cosine_with_min_lr",
        "lr_scheduler_kwargs": {"min_lr": h.min_lr}, "warmup_ratio": h.warmup_ratio, "weight_decay": h.weight_decay,
        "adam_beta1": h.adam_beta1, "adam_beta2": h.adam_beta2, "adam_epsilon": h.adam_epsilon,
        "max_grad_norm": h.max_grad_norm, "bf16": h.bf16, "seed": h.seed, "save_strategy": "no", "report_to": "none",
    }
    if h.max_steps:
        cfg["max_steps"] = h.max_steps
    if h.deepspeed:
        cfg["deepspeed"] = f"{dataset_dir}/{LF_DEEPSPEED}" if deepspeed_stage(h.deepspeed) else h.deepspeed
    if h.liger:
        cfg["enable_liger_kernel"] = True
    if h.flash_attention:
        cfg["flash_attn"] = "fa2"
    return cfg, info


LF_DEEPSPEED = "deepspeed.json"


def deepspeed_stage(name: str) -> int | None:
    """The ZeRO stage of one of Axolotl's bundled DeepSpeed configs (`deepspeed_configs/zero3_bf16.json`), which
    only Axolotl ships; None for a config file of the user's own (passed to every trainer as it is)."""
    m = re.fullmatch(r"deepspeed_configs/zero(\d)\w*\.json", name)
    return int(m.group(1)) if m else None


def deepspeed_config(stage: int) -> dict:
    """The same ZeRO stage for LLaMA-Factory (and any HF Trainer): sizes and precision left to the trainer."""
    zero = {"stage": stage, "overlap_comm": False, "contiguous_gradients": True, "reduce_bucket_size": "auto"}
    if stage == 3:
        zero.update(stage3_prefetch_bucket_size="auto", stage3_param_persistence_threshold="auto",
                    stage3_gather_16bit_weights_on_model_save=True)
    return {"train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
            "gradient_clipping": "auto", "zero_allow_untested_optimizer": True, "bf16": {"enabled": "auto"},
            "fp16": {"enabled": "auto"}, "zero_optimization": zero}


def trl_arguments(tp: TrainParams, name: str) -> dict:
    """`trl.SFTConfig` keyword arguments (one device: the global batch comes from accumulation)."""
    h = tp.hyper_of(name)
    args = {
        "output_dir": f"data/train/{name}/trl-work", "num_train_epochs": h.epochs,
        "per_device_train_batch_size": h.micro_batch, "gradient_accumulation_steps": h.global_batch // h.micro_batch,
        "learning_rate": h.learning_rate, "lr_scheduler_type": "cosine_with_min_lr",
        "lr_scheduler_kwargs": {"min_lr": h.min_lr}, "warmup_steps": h.warmup_ratio,  # < 1: a ratio
        "weight_decay": h.weight_decay, "adam_beta1": h.adam_beta1, "adam_beta2": h.adam_beta2,
        "adam_epsilon": h.adam_epsilon, "max_grad_norm": h.max_grad_norm, "bf16": h.bf16, "seed": h.seed,
        "max_length": h.sequence_len, "packing": h.packing, "assistant_only_loss": True,
        "save_strategy": "no", "report_to": [], "logging_steps": 1, "use_cpu": not h.bf16,
    }
    if h.max_steps:
        args["max_steps"] = h.max_steps
    return args


def render(tp: TrainParams, name: str, folder: Path) -> None:
    """Every trainer's config for phase `name` into `folder` (paths relative to the project root)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "axolotl.yaml").write_text(yaml.safe_dump(axolotl_config(tp, name), sort_keys=False))
    if not tp.masks(name):  # LLaMA-Factory cannot mask part of a turn: no config that would silently not
        lf, info = llamafactory_config(tp, name)
        (folder / "llamafactory.yaml").write_text(yaml.safe_dump(lf, sort_keys=False))
        (folder / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n")
        stage = deepspeed_stage(tp.hyper_of(name).deepspeed or "")
        if stage:
            (folder / LF_DEEPSPEED).write_text(json.dumps(deepspeed_config(stage), indent=2) + "\n")
    (folder / "trl.json").write_text(json.dumps(trl_arguments(tp, name), indent=2, sort_keys=True) + "\n")


def _capped_warmup(trainer_class):
    """The trainer with its warmup kept below the run's step count. The linear warmup starts at learning
    rate 0, and ceil(ratio x steps) is 1 for any run under 10 steps: a one-step phase (a small mixed-policy
    set) would take its only step at lr 0 and leave the model as it was."""
    class Capped(trainer_class):
        def create_scheduler(self, num_training_steps: int, optimizer=None):
            # an int from here on: steps, not a ratio (0 stays 0)
            self.args.warmup_steps = min(self.args.get_warmup_steps(num_training_steps), max(num_training_steps - 1, 0))
            return super().create_scheduler(num_training_steps, optimizer)
    return Capped


def run_trl(tp: TrainParams, name: str, root: Path) -> dict:
    """Train phase `name` with TRL's SFTTrainer; the model lands in data/train/<name>/model."""
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    init = tp.init_model(name)
    init = root / init if (root / init).exists() else init  # a local folder, else a Hub id
    data = root / dataset_path(tp, name)
    if not data.exists():
        raise StageError(f"{data}: no exported set for phase {name}; run `dasd export` first")
    ds = datasets.load_dataset("parquet", data_files=str(data), split="train").select_columns(["messages"])
    args = trl_arguments(tp, name)
    args["output_dir"] = str(root / args["output_dir"])
    h = tp.hyper_of(name)
    torch.manual_seed(h.seed)
    tok = AutoTokenizer.from_pretrained(str(init))
    # saved into tokenizer_config.json otherwise: the model's bytes would depend on HF_HUB_OFFLINE
    tok.init_kwargs.pop("local_files_only", None)
    model = AutoModelForCausalLM.from_pretrained(str(init), dtype=torch.bfloat16 if h.bf16 else torch.float32)
    trainer = _capped_warmup(SFTTrainer)(model=model, args=SFTConfig(**args), train_dataset=ds, processing_class=tok)
    out = trainer.train()
    target = root / "data" / "train" / name / "model"
    trainer.save_model(str(target))
    tok.save_pretrained(str(target))
    # a pickle of the run's arguments, absolute paths included: the folder would hash differently per checkout
    (target / "training_args.bin").unlink(missing_ok=True)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {"examples": len(ds), "steps": out.global_step, "train_loss": out.training_loss,
            "first_loss": float(losses[0]) if losses else None, "last_loss": float(losses[-1]) if losses else None,
            "runtime_s": round(out.metrics.get("train_runtime", 0.0), 2)}  # printed, not in the metrics file


def run(tp: TrainParams, name: str, root: Path, metrics_path: Path) -> dict:
    folder = root / "data" / "train" / name
    render(tp, name, folder / "configs")
    report = {"phase": name, "trainer": tp.trainer, "init": tp.init_model(name), "dataset": dataset_path(tp, name),
              "global_batch": tp.hyper_of(name).global_batch, "epochs": tp.hyper_of(name).epochs,
              "mask_student_prefix": tp.masks(name)}
    if tp.trainer == "trl":
        report.update(run_trl(tp, name, root))
    else:  # a GPU trainer: the configs are the product; run them where the GPUs are
        report["run"] = (f"axolotl train data/train/{name}/configs/axolotl.yaml" if tp.trainer == "axolotl" else
                         f"llamafactory-cli train data/train/{name}/configs/llamafactory.yaml")
        print(f"train {name}: configs rendered; run `{report['run']}` on a GPU machine")
    # the metrics file holds only what the inputs decide (a rerun writes the same bytes): no wall time
    tables.write_json({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in report.items()
                       if k != "runtime_s"}, metrics_path)
    return report


def main(ctx) -> None:
    tp = ctx.section("train")
    for name in [ctx.args.phase] if ctx.args.phase else list(tp.phases):
        item = {"key": name, **tp.phase(name)}
        r = run(tp, name, ctx.root, ctx.path("metrics", **item))
        if tp.trainer == "trl":
            print(f"train {name}: {r['steps']} steps on {r['examples']} examples, loss {r['first_loss']:.3f} -> "
                  f"{r['last_loss']:.3f} ({r['runtime_s']} s)")


def _phase_argument(parser) -> None:
    parser.add_argument("--phase", help="one phase of train.phases (default: all, in order)")


# a phase reads its exported set (data/export/<dataset>/train.parquet) and starts from `after`
STAGE = Stage("train", main, sections={"train": TrainParams},
              params=("train.trainer", "train.base_model", "train.hyper", "train.phases"),
              inputs={"dataset": "data/export/${item.dataset}", "after": "${item.after}"},
              outputs={"out": "data/train/${key}", "metrics": "metrics/train/${key}.json"}, arguments=_phase_argument)
