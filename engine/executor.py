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
from contextlib import contextmanager
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
# Shards sent to one Ray replica at a time: it runs them in order, so with two the next one is already
# there when a shard finishes, and the replica does not wait while the driver receives and writes the last.
QUEUED = 2


class Holding:
    """`hold()`: keep what runs a model (the local backend, the Ray replicas with their engines loaded) across
    the block's shard loops of that model (several temperatures, one model's benchmarks); another model's
    opener replaces it, and the block's end closes it. Outside a block each shard loop opens and closes."""
    _holding = False

    @contextmanager
    def hold(self):
        self._holding = True
        try:
            yield self
        finally:
            self._holding = False
            self.close()

    def close(self) -> None:
        raise NotImplementedError


class Local(Holding):
    """Today's loop: one backend in this process, opened when there is work (or the one given, used for
    every map and never closed here)."""
    replicas = 1

    def __init__(self, backend=None):
        self.backend = backend
        self._open: tuple | None = None  # (opener, backend) this executor opened

    def close(self) -> None:
        if self._open is not None:
            self._open[1].close()
            self._open = None

    def map(self, todo: list[tuple[int, range]], work: Work, open_backend: Callable[[], object]) -> Iterator:
        if not todo:
            return
        if self.backend is None and (self._open is None or self._open[0] != open_backend):
            self.close()
            self._open = (open_backend, open_backend())
        backend = self.backend if self.backend is not None else self._open[1]
        try:
            for k, rows in todo:
                yield k, rows, work(backend, rows)
        finally:
            if not self._holding:
                self.close()

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


class Ray(Holding):
    """Shards spread over `replicas` actors on a Ray cluster; the driver (this process) writes."""

    def __init__(self, ep: ExecutorParams, role: Role):
        self.ep, self.role = ep, role
        self.replicas = ep.replicas
        self.actors: list = []
        self.pids: dict = {}  # actor -> its process id, once it has finished a shard (its backend is up)
        self._pid_refs: dict = {}  # actor -> its process id, asked first thing (a later ask would queue behind shards)
        self._opener = None  # what the actors hold
        self._spawned = 0  # replicas started (the next one's cores)
        self._connected: bool | None = None  # None: not yet; True: this process connected, and disconnects

    def close(self) -> None:
        self._release()
        if self._connected:
            import ray

            ray.shutdown()
        self._connected = None

    def _release(self) -> None:
        if self.actors:
            import ray

            for actor in self.actors:
                ray.kill(actor)
        self.actors, self.pids, self._pid_refs, self._opener, self._spawned = [], {}, {}, None, 0

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

    def _spawn(self, open_backend):
        import ray

        cls = ray.remote(num_cpus=self.ep.num_cpus, num_gpus=self.ep.num_gpus, max_restarts=0)(_Replica)
        actor = cls.remote(open_backend, self._env(self._spawned))
        self._pid_refs[actor] = actor.pid.remote()
        self._spawned += 1
        self.actors.append(actor)
        return actor

    def alive(self) -> int:
        return len(self.actors)

    def map(self, todo: list[tuple[int, range]], work: Work, open_backend: Callable[[], object]) -> Iterator:
        if not todo:
            return
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        if self._connected is None:
            self._connected = self._connect()
        try:
            self._check_fits()
            work_ref = ray.put(work)
            if self._opener != open_backend:  # another model: its own replicas
                self._release()
                self._opener = open_backend
            while len(self.actors) < min(self.replicas, len(todo)):
                self._spawn(open_backend)
            # a replica's free slots: QUEUED per replica, interleaved so the first shards go one per replica
            queue, free, inflight, attempts = deque(todo), [a for _ in range(QUEUED) for a in self.actors], {}, {}

            def dispatch():
                while queue and free:
                    actor = free.pop(0)
                    k, rows = queue.popleft()
                    inflight[actor.run.remote([work_ref], rows)] = (actor, k, rows)

            while queue or inflight:
                dispatch()
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
                    if not lost:
                        free.append(actor)
                    elif actor in self.actors:  # replace the replica (its other queued shard fails the same way)
                        self.actors.remove(actor)
                        self.pids.pop(actor, None)
                        self._pid_refs.pop(actor, None)
                        free.extend([self._spawn(open_backend)] * QUEUED)
                    print(f"executor: shard {k} {'lost with its replica' if lost else 'failed'}; running it "
                          f"again ({_first_line(e)})", file=sys.stderr)
                    continue
                if actor not in self.pids:  # answered before its first shard, so ready now
                    self.pids[actor] = ray.get(self._pid_refs.pop(actor))
                free.append(actor)
                dispatch()  # the replica starts its next shard before the driver writes this one
                yield k, rows, result
        finally:
            if not self._holding:
                self.close()


def _first_line(e: BaseException) -> str:
    cause = getattr(e, "cause", None) or e
    text = str(cause).strip().splitlines()
    return (text[-1] if text else type(cause).__name__)[:300]


def make_executor(ep: ExecutorParams | None, role: Role, backend=None):
    """The executor for a model stage of role `role`; a given `backend` (tests, notebooks) runs here."""
    if backend is not None or ep is None or ep.kind == "local":
        return Local(backend)
    return Ray(ep.of(role), role)
