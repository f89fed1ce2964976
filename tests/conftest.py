"""Shared fixtures: tiny seeded models built once per test session, real backends on them."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# the public data pack lives beside the checkout (../shared/data); CI lays it out the same way
SHARED_DATA = Path(os.environ.get("DASD_SHARED_DATA", REPO.parent / "shared" / "data"))

# the environment this session started with: an in-process vLLM engine later adds LD_PRELOAD (torch's
# libgomp) and LD_LIBRARY_PATH to os.environ, which processes started afterwards (Ray workers) inherit
START_ENV = dict(os.environ)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

SYSTEM = "You are a helpful assistant."


def assert_same_rows(got: list[dict], expected: list[dict], rel: float = 1e-6) -> None:
    """The same rows, every field equal except the float lists (logprobs), which may differ in their last
    bits: two processes running one model on CPU agree to the bit only while the thread runtime keeps its
    thread count and code path, and a CI machine once gave 1-ulp differences between two runs of the same
    shard. Tokens, texts, ids and seeds must be equal exactly."""
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.keys() == e.keys()
        for key in g:
            a, b = g[key], e[key]
            if isinstance(a, float) or (isinstance(a, list) and a and isinstance(a[0], float)):
                assert a == pytest.approx(b, rel=rel, abs=1e-7), (g["response_id"], key)
            else:
                assert a == b, (g.get("response_id"), key)


def shared(*parts) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"test data {path} is missing: the data pack must lie in ../shared/data "
                    "(or set DASD_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def mini(tmp_path_factory):
    """A tiny teacher (qwen2) and student (llama) with different byte-level BPE tokenizers."""
    from engine.miniature import models, tasks

    root = tmp_path_factory.mktemp("models")
    corpus = [p.question + "\n" + p.solution for p in tasks.make_problems(300, seed=7)]
    teacher = models.build(root / "teacher", models.ModelSpec(arch="qwen2", vocab_size=600, hidden_size=64),
                           corpus, seed=1, name="teacher")
    student = models.build(root / "student", models.ModelSpec(arch="llama", vocab_size=400, hidden_size=64),
                           corpus, seed=2, name="student")
    return {"teacher": teacher, "student": student, "problems": tasks.make_problems(12, seed=8)}


@pytest.fixture(scope="session")
def prompts(mini):
    return [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": p.question}]
            for p in mini["problems"]]


@pytest.fixture(scope="session")
def vllm_teacher(mini):
    from engine.backends import make_backend

    backend = make_backend("vllm", str(mini["teacher"]), dtype="float32", max_model_len=512)
    yield backend
    backend.close()


HARMONY_SPECIALS = ["<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|return|>", "<|call|>", "<|constrain|>"]
# gpt-oss's layout: every message `<|start|>{role}<|message|>{content}<|end|>`, the prompt ends at `<|start|>assistant`
HARMONY_TEMPLATE = ("{% for m in messages %}<|start|>{{ m['role'] }}<|message|>{{ m['content'] }}<|end|>{% endfor %}"
                    "{% if add_generation_prompt %}<|start|>assistant{% endif %}")

@pytest.fixture(scope="session")
def harmony_teacher(mini, tmp_path_factory):
    """A tiny model whose tokenizer has gpt-oss's special tokens and a harmony chat template."""
    from engine.miniature import models, tasks

    folder = tmp_path_factory.mktemp("harmony")
    corpus = [p.question + "\n" + p.solution for p in tasks.make_problems(300, seed=7)]
    tok = models.train_tokenizer(corpus, 600, folder)
    tok.add_special_tokens({"additional_special_tokens": HARMONY_SPECIALS})
    tok.chat_template = HARMONY_TEMPLATE
    tok.eos_token = "<|return|>"
    tok.save_pretrained(folder)
    models.build_model(models.ModelSpec(arch="qwen2", vocab_size=600, hidden_size=64), tok, seed=4, out_dir=folder)
    return folder


def trainer_python(variable: str, venv: str, target: str) -> str:
    """The python of a trainer's own venv: $variable (set by `make test`), else the project's `venv`; a test
    needing it skips when neither was built, and fails when $variable names a missing one."""
    python = os.environ.get(variable, str(REPO / venv / "bin" / "python"))
    if not Path(python).exists():
        if os.environ.get(variable):
            pytest.fail(f"{variable}={python} does not exist")
        pytest.skip(f"{venv} is not built: `make {target}` (make test builds it)")
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def vllm_server(mini):
    """`vllm serve` (its module entry point: vllm-cpu has no `vllm` distribution metadata) on 127.0.0.1."""
    import httpx

    port = free_port()
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", HF_HUB_OFFLINE="1")
    log = open(mini["teacher"].parent / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(mini["teacher"]),
         "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--max-model-len", "512",
         "--enforce-eager", "--no-enable-chunked-prefill", "--served-model-name", "tiny"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 240
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"vLLM server exited: {(mini['teacher'].parent / 'server.log').read_text()[-3000:]}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise RuntimeError("vLLM server did not become healthy in 240 s")
            time.sleep(1)
        yield url + "/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def forward_logprobs(model_dir, messages, token_ids, temperature: float = 1.0) -> list[float]:
    """Teacher-forced logprobs of `token_ids` after the chat prompt, from a transformers forward pass
    (of log_softmax(logits / temperature): temperature 1 is the raw distribution)."""
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = _model(str(model_dir))
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
    ids = torch.tensor([prompt + list(token_ids)])
    with torch.no_grad():
        logits = model(ids).logits[0].float()
    lp = torch.log_softmax(logits[len(prompt) - 1:-1] / temperature, dim=-1)
    return lp.gather(-1, torch.tensor(token_ids).unsqueeze(-1)).squeeze(-1).tolist()


_MODELS = {}


def _model(path):
    if path not in _MODELS:
        from transformers import AutoModelForCausalLM

        _MODELS[path] = AutoModelForCausalLM.from_pretrained(path, dtype="float32").eval()
    return _MODELS[path]


def write_release(folder: Path, rows: list[dict], tokenizer, seed: int = 0) -> tuple[Path, Path]:
    """A dataset in the layout of the DASD authors' release: an SFT table (uuid, input, output, domain, meta)
    and a logprob table (sample_uuid, token_ids, logprobs) whose token ids are `row["raw"]` (the teacher's
    own output, e.g. harmony channels) in `tokenizer`, with seeded logprobs. Returns (sft file, logprob folder)."""
    import json

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sft = folder / "sft.jsonl"
    with open(sft, "w") as f:
        for r in rows:
            f.write(json.dumps({"uuid": r["uuid"], "input": r["input"], "output": r["output"],
                                "domain": r.get("domain", "math"), "meta": json.dumps({"source": "test"})}) + "\n")
    ids = [tokenizer.encode(r["raw"], add_special_tokens=False) for r in rows]
    lp = folder / "logprobs"
    lp.mkdir(exist_ok=True)
    pq.write_table(pa.table({"sample_uuid": [r["uuid"] for r in rows], "token_ids": ids,
                             "logprobs": [(-rng.exponential(0.7, len(i))).tolist() for i in ids]}),
                   lp / "train-00000-of-00001.parquet")
    return sft, lp
