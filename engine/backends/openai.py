"""Any OpenAI-compatible server (`vllm serve`, SGLang, hosted APIs) over HTTP.

- `endpoint: chat` sends messages to /v1/chat/completions. With `return_token_ids: true` (default; a
  vLLM extension) the sampled token ids come back, which is exact. With `false` (hosted APIs that
  reject unknown fields) each token's bytes are read from `logprobs.content[].bytes`; servers that
  send empty bytes for tokens holding part of a character (vLLM does) lose those bytes.
- `endpoint: completions` renders the chat template locally (needs the tokenizer) and sends the prompt
  as token ids to /v1/completions; with vLLM, `return_tokens_as_token_ids` brings the sampled ids back.
  Use it for reasoning models whose server splits the reasoning out of the chat message.

A continuation (`Request.prefill`) goes to the chat endpoint as an open final assistant message with
vLLM's `continue_final_message` (fine for templates that render that message as written), and to the
completions endpoint as the rendered prompt + the prefill's token ids (any template, harmony included).

Requests run with bounded concurrency and retry with exponential backoff (and Retry-After) on 429,
5xx, timeouts, dropped connections and malformed replies (an HTTP 200 that is not JSON, has no
`choices`, or a null logprob). Each request has a total time budget (`deadline_s`) across its attempts,
so a hung server costs at most that, not attempts x timeout; the final error is one line naming the
endpoint and the last failure. The API key is read from the environment variable named in
params and goes only into the Authorization header: never into logs, errors or outputs.

`base_url` may be a list (a fleet of `vllm serve` processes, or routers): each request goes to the live
endpoint with the fewest requests in flight (`concurrency` per endpoint). An endpoint that fails (a
dropped connection, a timeout, a 5xx or 429) is taken out for `cooldown_s` (doubling while it keeps
failing, at most 5 minutes) and the request is sent at once to another; it is tried again when its
cooldown ends. The samples do not depend on the endpoint (per-request seeds), so a fleet writes the
rows one server would.
"""
from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from ..params import ParamsError, StageError
from .base import Backend, Request, Sample, Sampling

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class BackendError(StageError):
    """The server could not answer a request (the CLI prints it as one line)."""


class MalformedReply(ValueError):
    pass


class _Endpoint:
    """One server of the fleet: its client, the requests in flight, and until when it is out."""

    def __init__(self, url: str, headers: dict, timeout_s: float):
        self.url = url.rstrip("/")
        self.client = httpx.Client(base_url=self.url, headers=headers,
                                   timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)))
        self.inflight, self.failures, self.down_until = 0, 0, 0.0


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, model, revision=None, *, base_url="http://127.0.0.1:8000/v1", endpoint="chat",
                 api_key_env="OPENAI_API_KEY", concurrency=8, max_retries=6, timeout_s=600.0,
                 deadline_s=900.0, backoff_s=1.0, logprobs_mode="raw_logprobs", served_model_name=None, extra_body=None,
                 return_token_ids=True, max_model_len=None, cooldown_s=10.0, **options):
        super().__init__(model, revision, **options)
        if endpoint not in ("chat", "completions"):
            raise ParamsError(f"openai backend: endpoint must be 'chat' or 'completions', not {endpoint!r}")
        self.endpoint, self.concurrency = endpoint, max(1, int(concurrency))
        self.max_retries, self.backoff_s = int(max_retries), float(backoff_s)
        # one attempt may wait timeout_s for the reply (a long generation sends nothing until it ends);
        # all attempts of one request together at most deadline_s
        self.timeout_s, self.deadline_s = float(timeout_s), float(deadline_s)
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls or not all(isinstance(u, str) and u for u in urls):
            raise ParamsError(f"openai backend: base_url must be a URL or a list of URLs, not {base_url!r}")
        self.base_url = ", ".join(u.rstrip("/") for u in urls)  # what errors name
        self.cooldown_s = float(cooldown_s)
        # what the server returns is the server's setting; params state it so it is recorded
        self.logprobs_mode = logprobs_mode
        self.served = served_model_name or model
        # the server's context length, when stated: prompts that do not fit become rejection rows (the
        # prompt is measured with the local tokenizer) instead of an HTTP 400 that stops the stage
        self.max_model_len = int(max_model_len) if max_model_len else None
        self.extra_body = dict(extra_body or {})
        if return_token_ids:
            self.extra_body["return_tokens_as_token_ids"] = True
        headers = {}
        key = os.environ.get(api_key_env) if api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.endpoints = [_Endpoint(u, headers, self.timeout_s) for u in urls]
        self._lock = threading.Lock()

    # -- the fleet: least loaded live endpoint; a failing one is out for a while ----------------------
    def _pick(self, avoid: _Endpoint | None) -> _Endpoint:
        with self._lock:
            now = time.monotonic()
            live = [e for e in self.endpoints if e.down_until <= now]
            choice = [e for e in live if e is not avoid] or live
            # all out: the one back soonest (a fleet of one is always "back": backoff paces it)
            e = min(choice, key=lambda e: e.inflight) if choice else min(self.endpoints, key=lambda e: e.down_until)
            e.inflight += 1
            return e

    def _done(self, e: _Endpoint, failed: bool) -> bool:
        """Release `e`; a failure takes it out for a while (the fleet has others). Returns whether another
        endpoint is live now (then the request is retried there at once, without backing off)."""
        with self._lock:
            e.inflight -= 1
            now = time.monotonic()
            if not failed:
                e.failures, e.down_until = 0, 0.0
                return False
            e.failures += 1
            if len(self.endpoints) > 1:
                e.down_until = now + min(self.cooldown_s * 2 ** (e.failures - 1), 300.0)
            return any(o is not e and o.down_until <= now for o in self.endpoints)

    # -- one HTTP call with retries ---------------------------------------------------------------
    def _post(self, path: str, body: dict, parse):
        """POST `body`, return `parse(reply JSON)`; retried on transient failures and malformed replies
        until max_retries or the request's deadline, then one BackendError naming the endpoint."""
        start, err, last = time.monotonic(), "no attempt", None
        for attempt in range(self.max_retries + 1):
            left = self.deadline_s - (time.monotonic() - start)
            if left <= 0:
                break
            e, wait = self._pick(avoid=last), None
            try:
                r = e.client.post(path, json=body, timeout=httpx.Timeout(min(self.timeout_s, left),
                                                                       connect=min(10.0, left)))
            except (httpx.TimeoutException, httpx.TransportError) as ex:
                err, failed = f"{e.url}: {type(ex).__name__}", True
            else:
                failed = r.status_code != 200
                if r.status_code == 200:
                    try:
                        result = parse(r.json())
                    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as ex:
                        err = f"{e.url}: malformed reply ({type(ex).__name__}: {str(ex)[:200]})"
                    else:
                        self._done(e, failed=False)
                        return result
                elif r.status_code not in RETRY_STATUS:
                    self._done(e, failed=False)  # the request's fault, not the server's
                    raise BackendError(f"{e.url}{path}: HTTP {r.status_code}: {r.text[:300]}")
                else:
                    err, wait = f"{e.url}: HTTP {r.status_code}", _retry_after(r)
            elsewhere = self._done(e, failed)
            last = e
            if attempt == self.max_retries:
                break
            if elsewhere:
                continue  # another endpoint is up: go there now
            pause = wait if wait is not None else self.backoff_s * 2 ** attempt * (0.5 + random.random())
            time.sleep(max(0.0, min(pause, self.deadline_s - (time.monotonic() - start))))
        raise BackendError(f"{self.base_url}{path}: no answer after {attempt + 1} attempt(s) in "
                           f"{time.monotonic() - start:.0f} s (last: {err}); check the server, or raise the "
                           "backend's timeout_s / deadline_s / max_retries")

    def _one(self, req: Request, sampling: Sampling) -> list[Sample]:
        common = dict(model=self.served, n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
                      max_tokens=req.max_tokens or sampling.max_tokens, seed=req.seed, **self.extra_body)
        if self.endpoint == "chat":
            messages = req.messages
            if req.prefill:  # vLLM's extension: render the final assistant message open, go on from it
                messages = [*messages, {"role": "assistant", "content": req.prefill}]
                common.update(continue_final_message=True, add_generation_prompt=False)
            return self._post("/chat/completions", dict(common, messages=messages, logprobs=True, top_logprobs=0),
                              lambda data: _choices(data, sampling.n, _chat_sample))
        body = dict(common, prompt=self.prompt_ids(req.messages, req.prefill), logprobs=0)
        return self._post("/completions", body, lambda data: _choices(data, sampling.n, _completion_sample))

    def context_length(self) -> int | None:
        return self.max_model_len

    def generate(self, requests: list[Request], sampling: Sampling) -> list[list[Sample]]:
        with ThreadPoolExecutor(self.concurrency * len(self.endpoints)) as pool:
            return list(pool.map(lambda r: self._one(r, sampling), requests))

    def close(self) -> None:
        for e in self.endpoints:
            e.client.close()


def _retry_after(r: httpx.Response) -> float | None:
    try:
        return min(float(r.headers["retry-after"]), 120.0)
    except (KeyError, ValueError):
        return None


def _choices(data: dict, n: int, sample) -> list[Sample]:
    """The n samples of a reply, in index order; MalformedReply when it is not a complete answer."""
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or len(choices) != n:
        raise MalformedReply(f"expected {n} choices, got {'none' if not isinstance(choices, list) else len(choices)}")
    samples = [sample(c) for c in sorted(choices, key=lambda c: c["index"])]
    for s in samples:
        if any(x is None or x != x for x in s.logprobs):
            raise MalformedReply("a token's logprob is null")
    return samples


def _finish(choice: dict) -> str:
    return "length" if choice.get("finish_reason") == "length" else "stop"


def _token_ids(tokens: list[str]) -> list[int] | None:
    if tokens and all(t.startswith("token_id:") for t in tokens):
        return [int(t.split(":", 1)[1]) for t in tokens]
    return None


def _chat_sample(choice: dict) -> Sample:
    content = (choice.get("logprobs") or {}).get("content") or []
    ids = _token_ids([t["token"] for t in content])
    if ids is not None:
        return Sample(token_ids=ids, logprobs=[float(t["logprob"]) for t in content],
                      finish_reason=_finish(choice), text=choice["message"].get("content") or "")
    pieces = [bytes(t["bytes"]) if t.get("bytes") is not None else t["token"].encode("utf-8") for t in content]
    return Sample(token_bytes=pieces, logprobs=[float(t["logprob"]) for t in content],
                  finish_reason=_finish(choice), text=choice["message"].get("content") or "")


def _completion_sample(choice: dict) -> Sample:
    lp = choice.get("logprobs") or {}
    tokens = lp.get("tokens") or []
    ids = _token_ids(tokens)
    if ids is not None:
        return Sample(token_ids=ids, logprobs=[float(x) for x in lp["token_logprobs"]],
                      finish_reason=_finish(choice), text=choice.get("text"))
    return Sample(token_bytes=[t.encode("utf-8") for t in tokens],
                  logprobs=[float(x) for x in lp.get("token_logprobs") or []],
                  finish_reason=_finish(choice), text=choice.get("text"))
