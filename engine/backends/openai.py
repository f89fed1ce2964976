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
"""
from __future__ import annotations

import os
import random
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


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, model, revision=None, *, base_url="http://127.0.0.1:8000/v1", endpoint="chat",
                 api_key_env="OPENAI_API_KEY", concurrency=8, max_retries=6, timeout_s=600.0,
                 deadline_s=900.0, backoff_s=1.0, logprobs_mode="raw_logprobs", served_model_name=None, extra_body=None,
                 return_token_ids=True, max_model_len=None, **options):
        super().__init__(model, revision, **options)
        if endpoint not in ("chat", "completions"):
            raise ParamsError(f"openai backend: endpoint must be 'chat' or 'completions', not {endpoint!r}")
        self.endpoint, self.concurrency = endpoint, max(1, int(concurrency))
        self.max_retries, self.backoff_s = int(max_retries), float(backoff_s)
        # one attempt may wait timeout_s for the reply (a long generation sends nothing until it ends);
        # all attempts of one request together at most deadline_s
        self.timeout_s, self.deadline_s = float(timeout_s), float(deadline_s)
        self.base_url = base_url.rstrip("/")
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
        self.client = httpx.Client(base_url=self.base_url, headers=headers,
                                   timeout=httpx.Timeout(self.timeout_s, connect=min(10.0, self.timeout_s)))

    # -- one HTTP call with retries ---------------------------------------------------------------
    def _post(self, path: str, body: dict, parse):
        """POST `body`, return `parse(reply JSON)`; retried on transient failures and malformed replies
        until max_retries or the request's deadline, then one BackendError naming the endpoint."""
        start, err = time.monotonic(), "no attempt"
        for attempt in range(self.max_retries + 1):
            left = self.deadline_s - (time.monotonic() - start)
            if left <= 0:
                break
            wait = None
            try:
                r = self.client.post(path, json=body, timeout=httpx.Timeout(min(self.timeout_s, left),
                                                                          connect=min(10.0, left)))
            except (httpx.TimeoutException, httpx.TransportError) as e:
                err = f"{type(e).__name__}"
            else:
                if r.status_code == 200:
                    try:
                        return parse(r.json())
                    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
                        err = f"malformed reply ({type(e).__name__}: {str(e)[:200]})"
                elif r.status_code not in RETRY_STATUS:
                    raise BackendError(f"{self.base_url}{path}: HTTP {r.status_code}: {r.text[:300]}")
                else:
                    err, wait = f"HTTP {r.status_code}", _retry_after(r)
            if attempt == self.max_retries:
                break
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
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(lambda r: self._one(r, sampling), requests))

    def close(self) -> None:
        self.client.close()


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
