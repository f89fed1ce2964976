"""Where a model stage's shards run: here, one backend in this process (`local`, the default), or on a Ray
cluster (`ray`), one backend per replica, each a Ray actor. The one place that decides; the stages and
their rows do not change.

Why Ray core actors (not Ray Data's `map_batches` or `ray.data.llm`): a shard is the engine's unit of
resume and of atomic writes, and its rows come from the engine's own backends and code paths (`work`,
the same function the local loop runs), so the local and the Ray executor cannot drift apart. The
driver stays the only writer: each finished shard comes back to it and lands in the stage's persisted
output with its manifest, as it does locally, so workers need no shared filesystem, and DVC, resume
and `dasd sql` see no difference. Actors give the control a fault policy needs: a replica that dies
mid-shard (actor killed, node lost, OOM) is replaced and its shard runs again elsewhere; a shard that
fails `max_attempts` times stops the stage with one line, after every finished shard is on disk.

Same rows: a shard's rows depend only on its items and the params (per-question seeds), not on which
replica or batch ran it, so local and Ray runs at any replica count write the same rows; the executor
and the replica count are not part of any output's manifest (a rerun with more replicas resumes).
"""
from __future__ import annotations

import os
import sys
from collections import deque
from typing import Annotated, Callable, Iterator, Literal

from pydantic import Field

from .params import Count, ParamsError, Positive, StageError, schema

Role = Literal["teacher", "student", "rollout"]  # generate/continue | score/naturalness | rollout


@schema
class Replica:
    """One role's replicas and the resources of each (unset: the executor's)."""
    replicas: Count | None = None
    num_cpus: Positive | None = None
    num_gpus: Annotated[float, Field(ge=0)] | None = None


@schema
class ExecutorParams:
    kind: Literal["local", "ray"] = "local"
    address: str | None = None    # ray: a cluster ("ray://host:10001"); null: join a running one, else start one
    replicas: Count = 1           # model replicas a model stage runs (ray)
    num_cpus: Positive = 1        # per replica
    num_gpus: Annotated[float, Field(ge=0)] = 0  # per replica (tensor/pipeline parallel: the model's options)
    max_attempts: Count = 3       # a shard failing this many times (its replica lost, or an error) stops the stage
    roles: dict[Role, Replica] = Field(default_factory=dict)  # per role: teacher, student, rollout

    def of(self, role: Role) -> "ExecutorParams":
        """These params with role `role`'s overrides applied."""
        own = self.roles.get(role)
        if own is None:
            return self
        return ExecutorParams(kind=self.kind, address=self.address, max_attempts=self.max_attempts,
                              replicas=own.replicas or self.replicas,
                              num_cpus=own.num_cpus if own.num_cpus is not None else self.num_cpus,
                              num_gpus=own.num_gpus if own.num_gpus is not None else self.num_gpus)


Work = Callable[[object, range], tuple]  # (backend, rows) -> (table, tokens[, side tables])


class Lazy:
    """A backend opened on first use and kept open across stages' shard loops until `close`: one engine for
    several runs (evaluate: one model, many benchmarks), none when every run resumes with nothing to do."""

    def __init__(self, open_backend: Callable[[], object]):
        self._open, self._backend = open_backend, None

    def __getattr__(self, name):
        if self._backend is None:
            self._backend = self._open()
        return getattr(self._backend, name)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


class Local:
    """Today's loop: one backend in this process, opened when there is work (or the one given)."""
    replicas = 1

    def __init__(self, backend=None):
        self.backend = backend

    def map(self, todo: list[tuple[int, range]], work: Work, open_backend: Callable[[], object]) -> Iterator:
        if not todo:
            return
        backend, own = self.backend, self.backend is None
        if own:
            backend = open_backend()
        try:
            for k, rows in todo:
                yield k, rows, work(backend, rows)
        finally:
            if own:
                backend.close()

    def alive(self) -> int:
        return 1


class _Replica:
    """A Ray actor holding one backend; runs `work` on one shard's rows at a time."""

    def __init__(self, open_backend, env: dict):
        os.environ.update(env)  # before the engine starts: its threads' cores, its cache
        self.backend = open_backend()
        self.key, self.work = None, None

    def run(self, work_ref: list, rows: range):
        import ray

        if work_ref[0] != self.key:  # the stage's work (its prompts, params) arrives once per replica
            self.key, self.work = work_ref[0], ray.get(work_ref[0])
        return self.work(self.backend, rows)

    def pid(self) -> int:
        return os.getpid()


class Ray:
    """Shards spread over `replicas` actors on a Ray cluster; the driver (this process) writes."""

    def __init__(self, ep: ExecutorParams, role: Role):
        self.ep, self.role = ep, role
        self.replicas = ep.replicas
        self.actors: list = []
        self.pids: dict = {}  # actor -> its process id, once its backend is up

    def _connect(self) -> bool:
        """Join the cluster (params address, else one running on this host), else start a local instance.
        True when this process connected, so it disconnects at the end (a local instance stops with it)."""
        try:
            import ray
        except ImportError:
            raise ParamsError("executor.kind: ray needs Ray: pip install ray (the Makefile's venv has it)") from None
        if ray.is_initialized():  # a caller's session (a notebook, the tests): used, left running
            return False
        address = self.ep.address or os.environ.get("RAY_ADDRESS")
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
                return True
            try:  # a cluster running on this host (`ray start --head`), if there is one
                ray.init(address="auto", log_to_driver=False)
                return True
            except (ConnectionError, RuntimeError):
                pass
            # a local instance big enough for one replica (its actors then share this machine's cores)
            ray.init(log_to_driver=False, include_dashboard=False,
                     num_cpus=max(os.cpu_count() or 1, int(self.ep.num_cpus)))
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise StageError(f"executor: cannot reach the Ray cluster {address or '(local)'}: "
                             f"{str(e).splitlines()[0]}") from None
        return True

    def _check_fits(self) -> None:
        """One replica must fit the cluster, or its actors would wait for resources forever."""
        import ray

        have = ray.cluster_resources()
        need = {"CPU": self.ep.num_cpus, "GPU": self.ep.num_gpus}
        short = {k: v for k, v in need.items() if v and have.get(k, 0) < v}
        if short:
            wants = ", ".join(f"{v:g} {k}" for k, v in need.items())
            raise StageError(f"executor: a {self.role} replica needs {wants}; the cluster has "
                             f"{have.get('CPU', 0):g} CPU, {have.get('GPU', 0):g} GPU "
                             "(lower executor.num_cpus / num_gpus, or add nodes)")

    def _env(self, i: int) -> dict:
        """A CPU replica's own cores (vLLM-CPU binds its OpenMP threads: two engines on one core fight), a
        GPU replica nothing."""
        if self.ep.num_gpus:
            return {}
        per, cores = max(1, int(self.ep.num_cpus)), os.cpu_count() or 1
        first = (i * per) % cores
        last = min(first + per, cores) - 1
        return {"VLLM_CPU_OMP_THREADS_BIND": f"{first}-{last}" if last > first else str(first)}

    def _spawn(self, i: int, open_backend):
        import ray

        cls = ray.remote(num_cpus=self.ep.num_cpus, num_gpus=self.ep.num_gpus, max_restarts=0)(_Replica)
        actor = cls.remote(open_backend, self._env(i))
        self.actors.append(actor)
        return actor

    def alive(self) -> int:
        return len(self.actors)

    def map(self, todo: list[tuple[int, range]], work: Work, open_backend: Callable[[], object]) -> Iterator:
        if not todo:
            return
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        started = self._connect()
        spawned = 0
        try:
            self._check_fits()
            work_ref = ray.put(work)
            for _ in range(min(self.replicas, len(todo))):
                self._spawn(spawned, open_backend)
                spawned += 1
            queue, idle, inflight, attempts = deque(todo), list(self.actors), {}, {}
            while queue or inflight:
                while queue and idle:
                    actor = idle.pop(0)
                    k, rows = queue.popleft()
                    inflight[actor.run.remote([work_ref], rows)] = (actor, k, rows)
                ready, _ = ray.wait(list(inflight), num_returns=1)
                actor, k, rows = inflight.pop(ready[0])
                try:
                    result = ray.get(ready[0])
                except (RayActorError, RayTaskError) as e:
                    attempts[k] = attempts.get(k, 0) + 1
                    lost = isinstance(e, RayActorError)
                    if attempts[k] >= self.ep.max_attempts:
                        raise StageError(f"shard {k} failed {attempts[k]} times "
                                         f"({'its replica was lost' if lost else 'an error'}): {_first_line(e)}") \
                            from None
                    queue.appendleft((k, rows))  # runs again, on a live replica
                    if lost:  # replace the replica
                        self.actors.remove(actor)
                        self.pids.pop(actor, None)
                        actor = self._spawn(spawned, open_backend)
                        spawned += 1
                    idle.append(actor)
                    print(f"executor: shard {k} {'lost with its replica' if lost else 'failed'}; running it "
                          f"again ({_first_line(e)})", file=sys.stderr)
                    continue
                if actor not in self.pids:
                    self.pids[actor] = ray.get(actor.pid.remote())
                idle.append(actor)
                yield k, rows, result
        finally:
            for actor in self.actors:
                ray.kill(actor)
            self.actors, self.pids = [], {}
            if started:
                ray.shutdown()


def _first_line(e: BaseException) -> str:
    cause = getattr(e, "cause", None) or e
    text = str(cause).strip().splitlines()
    return (text[-1] if text else type(cause).__name__)[:300]


def make_executor(ep: ExecutorParams | None, role: Role, backend=None):
    """The executor for a model stage of role `role`; a given `backend` (tests, notebooks) runs here."""
    if backend is not None or ep is None or ep.kind == "local":
        return Local(backend)
    return Ray(ep.of(role), role)
