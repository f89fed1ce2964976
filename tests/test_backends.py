"""Every backend on a real tiny model: the stored logprobs are the model's own, token by token."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest

from conftest import forward_logprobs
from engine import responses
from engine.backends import Request, Sampling, make_backend
from engine.backends.openai import BackendError

SAMPLING = Sampling(n=2, temperature=1.0, top_p=1.0, max_tokens=24)


def check_against_forward(model_dir, tokenizer, messages, sample, atol=2e-4):
    """Stored text re-tokenises into the sampled tokens' spans; logprobs equal a forward pass."""
    r = responses.build(sample, tokenizer, "chat")
    assert len(r.token_ids) == len(r.logprobs) == len(r.starts) == len(r.ends)
    assert r.token_count == len(sample.logprobs)
    # spans tile the text exactly
    assert r.starts[0] == 0 and r.ends[-1] == len(r.text)
    assert all(e == s for e, s in zip(r.ends[:-1], r.starts[1:]))
    # the stored tokens are the sampled ones minus trailing stop tokens: a prefix
    assert -1 not in r.token_ids and r.token_count == len(sample.logprobs)
    if sample.token_ids is not None:
        assert r.token_ids == sample.token_ids[:len(r.token_ids)]
    np.testing.assert_allclose(r.logprobs, forward_logprobs(model_dir, messages, r.token_ids), atol=atol)
    if sample.token_ids is not None:  # stop tokens included
        np.testing.assert_allclose(sample.logprobs, forward_logprobs(model_dir, messages, sample.token_ids),
                                   atol=atol)
    return r


def test_transformers_logprobs_match_forward_pass(mini, prompts):
    b = make_backend("transformers", str(mini["teacher"]))
    out = b.generate([Request("a", prompts[0], seed=3), Request("b", prompts[1], seed=4)], SAMPLING)
    assert [len(x) for x in out] == [2, 2]
    for msgs, per_q in zip(prompts, out):
        for s in per_q:
            check_against_forward(mini["teacher"], b.tokenizer, msgs, s)
    # same seed, same samples
    again = b.generate([Request("a", prompts[0], seed=3)], SAMPLING)
    assert again[0][0].token_ids == out[0][0].token_ids


def test_transformers_processed_logprobs_are_temperature_scaled(mini, prompts):
    raw = make_backend("transformers", str(mini["teacher"]))
    proc = make_backend("transformers", str(mini["teacher"]), logprobs_mode="processed_logprobs")
    s = Sampling(n=1, temperature=0.5, top_p=1.0, max_tokens=8)
    a = raw.generate([Request("a", prompts[0], seed=9)], s)[0][0]
    b = proc.generate([Request("a", prompts[0], seed=9)], s)[0][0]
    assert a.token_ids == b.token_ids
    np.testing.assert_allclose(a.logprobs, forward_logprobs(mini["teacher"], prompts[0], a.token_ids), atol=2e-4)
    np.testing.assert_allclose(b.logprobs, forward_logprobs(mini["teacher"], prompts[0], b.token_ids, 0.5),
                               atol=2e-4)
    assert not np.allclose(a.logprobs, b.logprobs, atol=1e-3)


@pytest.mark.slow
def test_vllm_offline_logprobs_match_forward_pass(mini, prompts, vllm_teacher):
    assert vllm_teacher.logprobs_mode == "raw_logprobs"
    reqs = [Request(str(i), m, seed=100 + i) for i, m in enumerate(prompts[:4])]
    out = vllm_teacher.generate(reqs, SAMPLING)
    assert [len(x) for x in out] == [2] * 4
    for msgs, per_q in zip(prompts, out):
        for s in per_q:
            check_against_forward(mini["teacher"], vllm_teacher.tokenizer, msgs, s)
    # a request's samples depend on its seed only, not on what else is in the batch
    alone = vllm_teacher.generate([reqs[2]], SAMPLING)
    assert [s.token_ids for s in alone[0]] == [s.token_ids for s in out[2]]


@pytest.mark.slow
@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_openai_server_logprobs_match_forward_pass(mini, prompts, vllm_server, endpoint):
    b = make_backend("openai", str(mini["teacher"]), base_url=vllm_server, endpoint=endpoint,
                     served_model_name="tiny", concurrency=4)
    out = b.generate([Request(str(i), m, seed=7 + i) for i, m in enumerate(prompts[:3])], SAMPLING)
    assert [len(x) for x in out] == [2, 2, 2]
    for msgs, per_q in zip(prompts, out):
        for s in per_q:
            assert s.token_ids is not None
            check_against_forward(mini["teacher"], b.tokenizer, msgs, s)
    b.close()


@pytest.mark.slow
def test_openai_chat_bytes_mode_agrees_with_token_ids(mini, prompts, vllm_server):
    """Without the token-id extension, each token's bytes identify it: same seed, same tokens."""
    from engine.spans import _byte_level_table

    kw = dict(base_url=vllm_server, served_model_name="tiny")
    with_ids = make_backend("openai", str(mini["teacher"]), **kw)
    with_bytes = make_backend("openai", str(mini["teacher"]), return_token_ids=False, **kw)
    req = [Request("a", prompts[0], seed=11)]
    a, b = with_ids.generate(req, SAMPLING)[0], with_bytes.generate(req, SAMPLING)[0]
    table = _byte_level_table(with_ids.tokenizer)
    checked = 0
    for x, y in zip(a, b):
        assert y.token_ids is None and len(y.token_bytes) == len(x.token_ids)
        np.testing.assert_allclose(x.logprobs, y.logprobs, atol=1e-5)
        for tid, piece in zip(x.token_ids, y.token_bytes):
            try:
                table[tid].decode("utf-8")
            except UnicodeDecodeError:
                continue  # a token holding part of a character: vLLM sends empty or partial bytes
            assert table[tid] == piece
            checked += 1
        r = responses.build(y, with_bytes.tokenizer, "chat")
        assert r.starts[0] == 0 and r.ends[-1] == len(r.text)
    assert checked > len(a[0].token_ids)


class FlakyProxy:
    """A local HTTP proxy in front of the real server that fails the first `failures` requests, and
    records the Authorization headers it saw. `fault`: an HTTP status, or a broken HTTP 200 ("not_json",
    "no_choices", "null_logprob": the real reply with one logprob nulled), or "hang" (no answer)."""

    def __init__(self, target: str, failures: int, status: int = 503, fault=None):
        proxy = self
        self.target, self.failures, self.status, self.seen_auth, self.calls = target, failures, status, [], 0
        self.fault = fault

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def reply(self, status: int, content: bytes):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(content)

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                proxy.calls += 1
                proxy.seen_auth.append(self.headers.get("Authorization"))
                failing = proxy.calls <= proxy.failures
                if failing and proxy.fault == "hang":
                    time.sleep(30)
                    return
                if failing and proxy.fault in ("not_json", "no_choices"):
                    return self.reply(200, b"<html>proxy error</html>" if proxy.fault == "not_json" else b'{"id": "x"}')
                if failing and proxy.fault is None:
                    return self.reply(proxy.status, b'{"error": "try later"}')
                r = httpx.post(proxy.target + self.path.removeprefix("/v1"), content=body,
                               headers={"Content-Type": "application/json"}, timeout=120)
                content = r.content
                if failing and proxy.fault == "null_logprob":
                    data = r.json()
                    data["choices"][0]["logprobs"]["content"][0]["logprob"] = None
                    content = json.dumps(data).encode()
                self.reply(r.status_code, content)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self):
        self.server.shutdown()


@pytest.mark.slow
def test_openai_retries_and_key_handling(mini, prompts, vllm_server, monkeypatch, capsys):
    secret = "sk-test-" + "x" * 20
    monkeypatch.setenv("DASD_TEST_KEY", secret)
    proxy = FlakyProxy(vllm_server, failures=2, status=429)
    try:
        b = make_backend("openai", str(mini["teacher"]), base_url=proxy.url, served_model_name="tiny",
                         api_key_env="DASD_TEST_KEY", backoff_s=0.01, max_retries=3)
        out = b.generate([Request("a", prompts[0], seed=1)], SAMPLING)
        assert len(out[0]) == 2 and proxy.calls == 3
        assert proxy.seen_auth == [f"Bearer {secret}"] * 3
        # a server that keeps failing: a clear error after the retries, without the key
        proxy.failures, proxy.calls = 10, 0
        with pytest.raises(BackendError) as err:
            b.generate([Request("a", prompts[0], seed=1)], SAMPLING)
        assert "no answer after 4 attempt(s)" in str(err.value) and secret not in str(err.value)
        assert proxy.url in str(err.value) and "HTTP 429" in str(err.value)  # the endpoint and the last error
        assert proxy.calls == 4
        # a client error is not retried
        proxy.failures, proxy.calls, proxy.status = 10, 0, 400
        with pytest.raises(BackendError, match="HTTP 400"):
            b.generate([Request("a", prompts[0], seed=1)], SAMPLING)
        assert proxy.calls == 1
    finally:
        proxy.close()
    captured = capsys.readouterr()
    assert secret not in captured.out + captured.err


@pytest.mark.slow
def test_openai_malformed_replies_are_retried_and_a_hung_server_is_bounded(mini, prompts, vllm_server):
    req = [Request("a", prompts[0], seed=3)]
    direct = make_backend("openai", str(mini["teacher"]), base_url=vllm_server, served_model_name="tiny")
    expected = direct.generate(req, SAMPLING)[0]
    for fault in ("not_json", "no_choices", "null_logprob"):
        proxy = FlakyProxy(vllm_server, failures=2, fault=fault)
        try:
            b = make_backend("openai", str(mini["teacher"]), base_url=proxy.url, served_model_name="tiny",
                             backoff_s=0.01, max_retries=3)
            got = b.generate(req, SAMPLING)[0]
            assert proxy.calls == 3, fault
            assert [s.token_ids for s in got] == [s.token_ids for s in expected], fault
        finally:
            proxy.close()
    # a server that accepts and never answers: one request costs deadline_s, not attempts x timeout_s
    proxy = FlakyProxy(vllm_server, failures=100, fault="hang")
    try:
        b = make_backend("openai", str(mini["teacher"]), base_url=proxy.url, served_model_name="tiny",
                         timeout_s=1, deadline_s=2.5, backoff_s=0.01, max_retries=6)
        start = time.monotonic()
        with pytest.raises(BackendError) as err:
            b.generate(req, SAMPLING)
        assert time.monotonic() - start < 5
        assert f"{proxy.url}/chat/completions: no answer" in str(err.value) and "ReadTimeout" in str(err.value)
    finally:
        proxy.close()


@pytest.mark.slow
def test_a_fleet_answers_every_request_when_an_endpoint_fails(mini, prompts, vllm_server):
    """Two endpoints, one failing (503 on every call), then one refusing connections: every request is
    answered by the other with the one-server tokens, and the failing endpoint is taken out after its
    first failure instead of being retried for each request."""
    reqs = [Request(f"q{i}", p, seed=10 + i) for i, p in enumerate(prompts[:6])]
    one = make_backend("openai", str(mini["teacher"]), base_url=vllm_server, served_model_name="tiny")
    expected = one.generate(reqs, SAMPLING)
    failing = FlakyProxy(vllm_server, failures=10**6, status=503)
    try:
        for bad in (failing.url, "http://127.0.0.1:9/v1"):  # port 9: nothing listens
            fleet = make_backend("openai", str(mini["teacher"]), base_url=[bad, vllm_server], served_model_name="tiny",
                                 concurrency=1, backoff_s=0.01, cooldown_s=60)
            got = fleet.generate(reqs, SAMPLING)
            assert [[s.token_ids for s in r] for r in got] == [[s.token_ids for s in r] for r in expected]
            # a server's logprobs move in the last bits with how it batches concurrent requests, not the fleet
            assert np.allclose(np.concatenate([s.logprobs for r in got for s in r]),
                               np.concatenate([s.logprobs for r in expected for s in r]), atol=1e-4)
        assert failing.calls <= 2  # out after failing (two requests may reach it before the first reply)
    finally:
        failing.close()
