"""The default profile's results do not depend on the machine: the miniature's models come out the same
bytes under what differs between machines (the vector ISA a processor offers, its core count, and the
thread settings of its environment)."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import REPO

# a machine of another kind, as far as one process can be made to look like it: one core, and an
# environment asking for other code paths and thread counts (an AVX-512 host's defaults vs an AVX2 one's)
OTHER_MACHINE = {"ATEN_CPU_CAPABILITY": "avx512", "MKL_ENABLE_INSTRUCTIONS": "AVX512", "OMP_NUM_THREADS": "1",
                 "MKL_NUM_THREADS": "1"}


def miniature(root, extra_env: dict, one_core: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in OTHER_MACHINE}
    env.update(extra_env, DASD_ROOT=str(root))
    cmd = [sys.executable, "-m", "engine.cli", "miniature"]
    if one_core:
        cmd = ["taskset", "-c", "0", *cmd]
    r = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return {name: hashlib.sha256((root / "data" / "miniature" / name / "model.safetensors").read_bytes()).hexdigest()
            for name in ("teacher", "student")}


@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset (util-linux)")
def test_miniature_models_are_the_same_bytes_on_another_machine(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    mini = params["miniature"]
    mini.update(questions=4, eval_problems=4, train_problems=400, corpus_problems=200,
                teacher={"arch": "qwen2", "vocab_size": 320, "hidden_size": 64, "intermediate_size": 128,
                         "num_layers": 1, "num_heads": 2, "num_kv_heads": 1},
                student={"arch": "llama", "vocab_size": 300, "hidden_size": 64, "intermediate_size": 128,
                         "num_layers": 1, "num_heads": 2, "num_kv_heads": 1},
                teacher_train={"steps": 12, "batch_size": 16, "lr": 0.003},
                student_train={"steps": 6, "batch_size": 16, "lr": 0.003})
    runs = {}
    for label, env, one_core in (("here", {}, False), ("other", OTHER_MACHINE, True),
                                 ("here-native", {"DASD_NUMERICS": "native"}, False),
                                 ("other-native", {**OTHER_MACHINE, "DASD_NUMERICS": "native"}, True)):
        root = tmp_path / label
        root.mkdir()
        (root / "dvc.yaml").write_text("stages: {}\n")
        (root / "params.yaml").write_text(yaml.safe_dump({"system_prompt": params["system_prompt"], "miniature": mini}))
        runs[label] = miniature(root, env, one_core)
    assert runs["here"] == runs["other"]
    # the check can fail: left to the machine's own code paths and threads, the same run differs
    assert runs["here-native"]["teacher"] != runs["other-native"]["teacher"]
