"""Stage `continue`: the teacher goes on from each truncated student prefix, inside the assistant turn.

The prefix (student format, `<think>\\n…`) becomes the teacher's own raw output (`responses.prefill`:
itself for a chat template, the analysis/final channels for gpt-oss harmony); the backend renders the
conversation up to the assistant header and appends the prefill's tokens (`Backend.prompt_ids`; a
chat server gets the open assistant message with `continue_final_message`), so the teacher neither
re-opens the turn nor repeats the prompt. Prefill + continuation are decoded together and rewritten
to the student format like any response (`responses.build`): `text` is the joined response, and
`boundary` says whether it starts with the student's prefix exactly (`ok`), or not (`mismatch`: the
tokenizer does not round-trip the prefix), or the prefix has no form in the teacher's format
(`no_teacher_form`, e.g. a cut inside `</think>` for harmony). `mixed_filter` rejects all but `ok`.

The continuation's teacher tokens keep their logprobs and their spans in the joined text. Output
`data/continue/` (schema `tables.CONTINUATIONS`), persisted and resumable like generation.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa

from . import responses, tables
from .backends import ModelParams, Request, Sampling
from .executor import ExecutorParams, make_executor
from .generate import question_seed
from .jobs import run_shards
from .params import Count, ParamsError, Seed, StageError, Temperature, TopP, schema
from .stages import Stage


@schema
class ContinueParams:
    max_tokens: Count = 32768     # the continuation's cap, in teacher tokens
    temperature: Temperature = 1.0
    top_p: TopP = 1.0
    seed: Seed = 1234
    shard_samples: Count = 64       # truncated rollouts per shard: the unit of atomic writes and resume

    def __post_init__(self):
        if self.max_tokens < 1 or self.shard_samples < 1:
            raise ParamsError("continue: max_tokens and shard_samples must be >= 1")


def manifest(cp: ContinueParams, teacher: ModelParams, truncated: pa.Table, prompts: list) -> dict:
    return {"teacher": teacher.identity(), "max_tokens": cp.max_tokens, "temperature": cp.temperature,
            "top_p": cp.top_p, "seed": cp.seed, "shard_samples": cp.shard_samples,
            "prefixes": tables.content_hash(*truncated.column("rollout_id").to_pylist(),
                                            *truncated.column("prefix").to_pylist(), *map(str, prompts), length=32)}


def continuation_row(base: dict, prefix: str, prefill: str | None, sample, backend, fmt: str) -> dict:
    """One CONTINUATIONS row: the joined response, or the prefix alone when it has no teacher form."""
    if sample is None:
        return dict(base, prefix_chars=len(prefix), boundary="no_teacher_form", text=prefix, finish_reason="none",
                    teacher_token_count=0, token_ids=[], token_logprobs=[], token_starts=[], token_ends=[],
                    raw_output=None)
    r = responses.build(sample, backend.tokenizer, fmt, prefill_ids=backend.prefill_ids(prefill), prefill_text=prefill)
    return dict(base, prefix_chars=len(prefix), boundary="ok" if r.text.startswith(prefix) else "mismatch",
                text=r.text, finish_reason=r.finish_reason, teacher_token_count=r.token_count, token_ids=r.token_ids,
                token_logprobs=r.logprobs, token_starts=r.starts, token_ends=r.ends, raw_output=r.raw_output)


def run(cp: ContinueParams, teacher: ModelParams, truncate_dir: Path, questions_dir: Path, out_dir: Path,
        metrics_path: Path, backend=None, progress: bool = True, executor=None) -> dict:
    path = Path(truncate_dir) / "truncated.parquet"
    if not path.exists():
        raise StageError(f"{path}: no truncated rollouts; run `dasd truncate` first")
    import pyarrow.parquet as pq

    truncated = pq.read_table(path)
    qs = tables.read_table(questions_dir, columns=["question_id", "messages"])
    by_id = dict(zip(qs.column("question_id").to_pylist(), qs.column("messages").to_pylist()))
    rows = truncated.to_pylist()
    missing = sorted({r["question_id"] for r in rows} - set(by_id))
    if missing:  # a truncated rollout whose question left the question set would have no prompt
        raise StageError(f"{path}: question(s) not in {questions_dir}, e.g. {missing[:3]}; rerun the mixed-policy stages")
    prompts = [by_id[r["question_id"]] for r in rows]
    prefills = []
    for r in rows:
        try:
            prefills.append(responses.prefill(r["prefix"], teacher.format))
        except ValueError:
            prefills.append(None)
    out = tables.ShardedOutput(out_dir, manifest(cp, teacher, truncated, prompts)).open()
    sampling = Sampling(n=1, temperature=cp.temperature, top_p=cp.top_p, max_tokens=cp.max_tokens)

    def work(backend, idx):
        todo = [i for i in idx if prefills[i] is not None]
        seeds = {i: question_seed(cp.seed, rows[i]["rollout_id"], cp.temperature) for i in idx}
        samples = backend.generate([Request(rows[i]["rollout_id"], prompts[i], seeds[i], prefill=prefills[i])
                                    for i in todo], sampling) if todo else []
        got = {i: s[0] for i, s in zip(todo, samples)}
        out_rows = []
        for i in idx:
            r = rows[i]
            base = dict(sample_id=tables.content_hash(r["rollout_id"], "continue", seeds[i]), rollout_id=r["rollout_id"],
                        question_id=r["question_id"], cut_token=r["cut_token"], cut_fraction=r["cut_fraction"],
                        seed=seeds[i], teacher_model=teacher.model, backend=backend.name)
            out_rows.append(continuation_row(base, r["prefix"], prefills[i], got.get(i), backend, teacher.format))
        return pa.Table.from_pylist(out_rows, schema=tables.CONTINUATIONS), sum(len(s.logprobs) for s in got.values())

    run_shards(out, len(rows), cp.shard_samples, work, backend=backend, unit="sample",
               open_backend=teacher.opener(),
               desc="continue", progress=progress, executor=executor)
    done = tables.read_table(out_dir, columns=["boundary", "finish_reason", "teacher_token_count"])
    done = done.to_pylist() if done is not None else []
    report = {"input": len(rows), "continued": len(done), "teacher_tokens": sum(r["teacher_token_count"] for r in done),
              "boundary": _counts(r["boundary"] for r in done), "finish_reason": _counts(r["finish_reason"] for r in done)}
    tables.write_json(report, metrics_path)
    return report


def _counts(values) -> dict:
    return dict(sorted(Counter(values).items()))


def main(ctx) -> None:
    r = run(ctx.section("continue"), ctx.section("teacher"), ctx.path("truncate"), ctx.path("questions"),
            ctx.path("out"), ctx.path("metrics"), progress=ctx.progress,
            executor=make_executor(ctx.section("executor"), "teacher"))
    print(f"continue: {r['continued']} of {r['input']} prefixes continued by the teacher (boundary: {r['boundary']})")


STAGE = Stage("continue", main,
              sections={"continue": ContinueParams, "teacher": ModelParams, "executor": ExecutorParams},
              params=("continue", "teacher"),
              inputs={"truncate": "data/truncate", "questions": "data/questions", "miniature": "data/miniature"},
              outputs={"out": "data/continue", "metrics": "metrics/continue.json"}, progress=True)
