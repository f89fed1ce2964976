"""The Ray executor on a real local Ray instance (2 CPUs), replicas of the tiny transformers and vLLM-CPU
models: the same rows as the local loop at 1 and 2 replicas (generate, score, evaluate), a replica killed mid-stage, a shard that keeps
failing, resume after the driver stops (kill -9 of a `dasd` driver; a shard missing)."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import yaml
from conftest import START_ENV, assert_same_rows
from test_generate import make_project

from engine import evaluate, executor, generate, score, tables
from engine.backends import ModelParams
from engine.executor import ExecutorParams
from engine.generate import GenerateParams
from engine.params import StageError
from engine.score import ScoreParams

ray = pytest.importorskip("ray")


@pytest.mark.slow
def test_the_cli_on_ray_resumes_after_kill_9_of_the_driver(tmp_path, mini):
    """`dasd generate` with executor.kind: ray (no cluster running: it starts a local Ray instance and stops
    it); the driver killed with kill -9 mid-stage leaves its finished shards, and the rerun resumes at the
    first missing one and writes the local run's rows. (First in the module: no instance of ours is up.)"""
    from test_generate import dasd, load

    whole = make_project(tmp_path / "whole", mini, 16)
    dasd(whole, "generate", "--no-progress")
    expected = load(whole)
    cut = make_project(tmp_path / "cut", mini, 16)
    params = yaml.safe_load((cut / "params.yaml").read_text())
    params["executor"] = {"kind": "ray", "replicas": 2}
    (cut / "params.yaml").write_text(yaml.safe_dump(params))
    out = cut / "data" / "generations" / "T=1.0"
    proc = dasd(cut, "generate", "--no-progress", wait=False)
    deadline = time.time() + 180
    while not list(out.glob("part-*.parquet")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(out.glob("part-*.parquet")))
    assert 0 < done < 8, "the kill must land mid-run"
    r = dasd(cut, "generate")
    assert "resumed" in r.stderr
    assert_same_rows(load(cut), expected)


@pytest.fixture(scope="module")
def cluster():
    """One local Ray instance for the module (the executor joins it and leaves it running). Its workers
    start with this session's own environment: an earlier in-process vLLM engine preloads a different
    OpenMP runtime for every process started after it, which would make the replicas' numerics differ
    from this process's (a `dasd` run never has an engine in the driver)."""
    added = {k: os.environ.pop(k) for k in ("LD_PRELOAD", "LD_LIBRARY_PATH")
             if k in os.environ and os.environ[k] != START_ENV.get(k)}
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    finally:
        os.environ.update(added)
    yield
    ray.shutdown()


def rows(folder, key=("question_id", "sample_index")):
    return sorted(tables.read_table(folder).to_pylist(), key=lambda r: tuple(r[k] for k in key))


def on_ray(replicas: int, role="teacher", **kw) -> executor.Ray:
    return executor.make_executor(ExecutorParams(kind="ray", replicas=replicas, **kw), role)


GP = GenerateParams(temperatures=[1.0], n=2, max_tokens=20, seed=3, shard_questions=2)


def run_generate(root, teacher, name, ex=None, gp=GP):
    out = root / "data" / name
    generate.run(gp, teacher, 1.0, root / "data" / "questions", out, root / f"{name}.json", progress=False,
                 executor=ex)
    return out


def test_generate_and_score_rows_equal_local_at_1_and_2_replicas(tmp_path, mini, cluster):
    root = make_project(tmp_path, mini, 7)
    teacher = ModelParams(model=str(mini["teacher"]), backend="transformers", options={"dtype": "float32"})
    local = run_generate(root, teacher, "local")
    for n in (1, 2):
        assert_same_rows(rows(run_generate(root, teacher, f"ray{n}", on_ray(n))), rows(local))
    # same manifest: the executor and the replica count change no output, so a rerun elsewhere resumes
    assert (root / "data" / "ray2" / "manifest.json").read_text() == (local / "manifest.json").read_text()
    (root / "data" / "ray2" / "part-00001.parquet").unlink()  # what a driver stopped before its end leaves
    assert_same_rows(rows(run_generate(root, teacher, "ray2", on_ray(2))), rows(local))

    student = ModelParams(model=str(mini["student"]), backend="transformers", options={"dtype": "float32"})
    scored = {}
    for name, ex in (("local", None), ("ray2", on_ray(2, "student"))):
        out = root / "data" / f"scores-{name}"
        score.run(ScoreParams(shard_responses=3), student, 1.0, local, root / "data" / "questions", out,
                  root / "s.json", progress=False, executor=ex)
        scored[name] = rows(out, ("response_id",))
    assert_same_rows(scored["ray2"], scored["local"])
    assert len(scored["local"]) == 14

    # evaluate on the student's replicas: the same answers, checks and figures as here
    from conftest import SYSTEM
    from test_evaluate import slices

    ep = evaluate.EvaluateParams(models={"base": str(mini["student"])}, benchmarks=["humaneval"], shard_problems=1)
    reports = {}
    for name, ex in (("local", None), ("ray2", on_ray(2, "student"))):
        out = root / "data" / f"evaluate-{name}"
        reports[name] = evaluate.run(ep, slices(), student, root, SYSTEM, out, root / f"e-{name}.json",
                                     root / f"e-{name}.csv", progress=False, executor=ex)
        scored[f"eval-{name}"] = rows(out / "base" / "humaneval", ("item_id", "sample_index"))
    assert reports["ray2"] == reports["local"]
    assert scored["eval-ray2"] == scored["eval-local"] and len(scored["eval-local"]) == 6


def test_local_hold_opens_one_engine_per_model(mini):
    """`hold()` keeps the backend open across shard loops of one model (the temperatures of `dasd generate`,
    one model's benchmarks in `evaluate`); another model's opener closes it and opens its own."""
    opened = []

    class Counting:  # an opener that counts how often it opens, and compares by its model as Opener does
        def __init__(self, model):
            self.model = model

        def __eq__(self, other):
            return isinstance(other, Counting) and other.model == self.model

        def __call__(self):
            opened.append(self.model.model)
            return self.model.opener()()

    teacher, student = (ModelParams(model=str(mini[m]), backend="transformers", options={"dtype": "float32"})
                        for m in ("teacher", "student"))
    def loop(ex, model):
        return [r for _, _, r in ex.map([(0, range(1)), (1, range(1, 2))], lambda b, rows: b.name, Counting(model))]

    ex = executor.Local()
    assert loop(ex, teacher) == ["transformers"] * 2 and loop(ex, teacher) and len(opened) == 2  # unheld: each loop
    with ex.hold():
        loop(ex, teacher), loop(ex, teacher)
        assert len(opened) == 3
        loop(ex, student)
        assert opened[-1] == str(mini["student"]) and len(opened) == 4
    assert ex._open is None  # closed with the block
    assert teacher.opener() == teacher.opener() and teacher.opener() != student.opener()


def test_held_replicas_serve_every_loop_of_one_model(tmp_path, mini, cluster):
    """The Ray executor's `hold()`: one model's replicas stay up (their engines loaded) across shard loops,
    another model's opener replaces them, the block's end kills them; the rows are the local loop's."""
    root = make_project(tmp_path, mini, 4)
    teacher, student = (ModelParams(model=str(mini[m]), backend="transformers", options={"dtype": "float32"})
                        for m in ("teacher", "student"))
    ex = on_ray(1)  # one replica: each start is a process importing torch (seconds on 2 cores)
    with ex.hold():
        first = run_generate(root, teacher, "first", ex)
        pids = set(ex.pids.values())
        again = run_generate(root, teacher, "again", ex, gp=GenerateParams(temperatures=[1.0], n=2, max_tokens=20,
                                                                           seed=4, shard_questions=2))
        assert set(ex.pids.values()) == pids and len(pids) == 1  # the same process
        run_generate(root, student, "student", ex)
        assert len(ex.pids) == 1 and not set(ex.pids.values()) & pids
    assert not ex.actors and not ex.pids
    assert_same_rows(rows(first), rows(run_generate(root, teacher, "local")))
    assert rows(again) != rows(first)  # another seed: the second loop did run


@pytest.mark.slow
def test_vllm_replicas_sample_the_same_rows(tmp_path, mini, cluster, vllm_teacher):
    """vLLM-CPU replicas, each bound to its own cores (VLLM_CPU_OMP_THREADS_BIND). A replica with the local
    run's cores writes the very same bits; two one-core replicas sample the same tokens, and their logprobs
    differ from a two-thread engine's at most in the last bits (a CPU engine's thread count orders its sums)."""
    root = make_project(tmp_path, mini, 4)
    teacher = ModelParams(model=str(mini["teacher"]), backend="vllm",
                          options={"dtype": "float32", "max_model_len": 512})
    # the local run on the session's in-process engine (the same model and options): a second in-process
    # engine would tear down the first one's parallel state when it closes
    local = rows(run_generate(root, teacher, "local", executor.Local(vllm_teacher)))
    assert rows(run_generate(root, teacher, "ray1", on_ray(1, num_cpus=2))) == local and len(local) == 8
    two = rows(run_generate(root, teacher, "ray2", on_ray(2, num_cpus=1)))
    assert [r["token_ids"] for r in two] == [r["token_ids"] for r in local]
    assert all(abs(a - b) < 1e-4 for r, s in zip(two, local) for a, b in zip(r["token_logprobs"], s["token_logprobs"]))


def test_a_replica_killed_mid_stage_loses_nothing(tmp_path, mini, cluster, capfd):
    root = make_project(tmp_path, mini, 8)
    teacher = ModelParams(model=str(mini["teacher"]), backend="transformers", options={"dtype": "float32"})
    gp = GenerateParams(temperatures=[1.0], n=2, max_tokens=40, seed=3, shard_questions=1)
    local = rows(run_generate(root, teacher, "local", gp=gp))
    ex = on_ray(2)
    done = threading.Event()
    errors = []

    def stage():
        try:
            run_generate(root, teacher, "ray", ex, gp=gp)
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)
        finally:
            done.set()

    threading.Thread(target=stage).start()
    deadline = time.time() + 120
    while not ex.pids and time.time() < deadline and not done.is_set():
        time.sleep(0.05)  # a replica has finished a shard: its backend is up, its pid known
    victim = next(iter(ex.pids.values()))
    os.kill(victim, signal.SIGKILL)  # mid-stage: 8 shards, 2 replicas
    assert done.wait(180) and not errors, errors
    got = rows(root / "data" / "ray")
    assert_same_rows(got, local)
    assert len({r["response_id"] for r in got}) == len(got) == 16  # nothing lost, nothing duplicated
    assert "lost with its replica" in capfd.readouterr().err


def test_a_shard_that_keeps_failing_stops_the_stage_after_the_rest_is_on_disk(tmp_path, mini, cluster):
    root = make_project(tmp_path, mini, 4)
    # a model folder that does not hold a model: every replica fails to start, every attempt
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    teacher = ModelParams(model=str(broken), backend="transformers")
    with pytest.raises(StageError, match=r"shard \d+ failed 2 times \(its replica was lost\)"):
        run_generate(root, teacher, "ray", on_ray(2, max_attempts=2))


def test_a_replica_runs_its_next_shard_while_the_driver_writes_the_last(cluster):
    """executor.QUEUED: a replica has its next shard queued, so it does not wait on the driver's receiving and
    writing (the steady-state overhead over the local loop). The driver takes a second over each shard here;
    the next shard must have started within it."""
    def open_nothing():  # defined here, so Ray ships them by value
        return None

    def stamp(backend, rows):
        return time.time()

    started, received = {}, {}
    for k, _, at in on_ray(1).map([(k, range(k, k + 1)) for k in range(3)], stamp, open_nothing):
        started[k], received[k] = at, time.time()  # (the two queued shards may come back in either order)
        time.sleep(1.0)  # the driver's write
    assert sorted(started) == [0, 1, 2]
    for k in (0, 1):  # with one shard at a time, k + 1 would start after received[k] + 1.0
        assert started[k + 1] < received[k] + 0.5


def test_a_replica_the_cluster_cannot_hold_is_an_error_not_a_wait(tmp_path, mini, cluster):
    root = make_project(tmp_path, mini, 2)
    teacher = ModelParams(model=str(mini["teacher"]), backend="transformers")
    with pytest.raises(StageError, match="a teacher replica needs 1 CPU, 1 GPU; the cluster has 2 CPU, 0 GPU"):
        run_generate(root, teacher, "ray", on_ray(1, num_gpus=1))


def test_executor_params(tmp_path):
    ep = ExecutorParams(kind="ray", replicas=2, roles={"teacher": {"replicas": 8, "num_gpus": 1}})
    assert (ep.of("teacher").replicas, ep.of("teacher").num_gpus, ep.of("student").replicas) == (8, 1, 2)
    assert isinstance(executor.make_executor(ep, "teacher", backend=object()), executor.Local)
    with pytest.raises(ValueError, match="roles.reward"):
        ExecutorParams(roles={"reward": {"replicas": 1}})
    assert on_ray(2, num_cpus=1)._env(1) == {"VLLM_CPU_OMP_THREADS_BIND": str(1 % (os.cpu_count() or 1))}
