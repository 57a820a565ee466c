"""The executor: RQ workers that run exec jobs in a sandbox and return what the mind sees.

Workers are SimpleWorkers (no fork per job): the code never runs in the worker process — the
sandbox isolates it — so RQ's per-job fork would buy no safety, cost latency on every job, and
lose the warm E2B sandbox, which lives in the worker process between jobs.

Only `execute` may run here. RQ would otherwise import and call any dotted path (and any
callback) a job names, so anyone able to write to the exec Redis could run code unjailed, and
it would send any webhook a job names. Every job is checked (admission.py) as RQ loads it,
before RQ acts on any of it; one that carries more than `execute` and its arguments is dropped.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.utils import now as rq_now
from rq.worker import SimpleWorker
from rq.worker_pool import WorkerPool

from swarm.protocol import ExecOutput
from swarm.sandbox import make_sandbox
from swarm.sandbox.admission import fields_of, refusal
from swarm.sandbox.base import Sandbox, SandboxUnavailable
from swarm.sandbox.client import EXECUTE, check_plain_redis
from swarm.sandbox.limits import ExecLimits

log = logging.getLogger("swarm.executor")


@dataclasses.dataclass
class _Process:
    """This process's sandbox, made on first use (after any fork: E2B clients do not survive it)."""

    kind: str = "auto"
    limits: ExecLimits = dataclasses.field(default_factory=ExecLimits)
    env: Mapping[str, str] = dataclasses.field(default_factory=lambda: os.environ)
    sandbox: Sandbox | None = None


_process = _Process()


def configure(
    kind: str,
    limits: ExecLimits,
    env: Mapping[str, str] = os.environ,
    sandbox: Sandbox | None = None,
) -> None:
    """Set what `execute` runs code in; `sandbox` installs one already made."""
    close_sandbox()
    _process.kind, _process.limits, _process.env, _process.sandbox = kind, limits, env, sandbox


def close_sandbox() -> None:
    sandbox, _process.sandbox = _process.sandbox, None
    if sandbox is not None:
        sandbox.close()


def _sandbox() -> Sandbox:
    if _process.sandbox is None:
        _process.sandbox = make_sandbox(_process.kind, _process.limits, _process.env)
    return _process.sandbox


def execute(code: str, timeout_s: float) -> dict[str, Any]:
    """The RQ job: run `code` in this process's sandbox; the ExecOutput as a JSON-ready dict."""
    if not isinstance(code, str) or not isinstance(timeout_s, int | float):
        output = ExecOutput(error="malformed exec job: expected (code: str, timeout_s: number)")
    else:
        try:
            output = _sandbox().run(code, float(timeout_s))
        except SandboxUnavailable as exc:
            output = ExecOutput(error=f"sandbox unavailable: {exc}")
    return dataclasses.asdict(output)


class RefusedJob(NoSuchJobError):
    """A job that carries more than `execute` and its arguments. A NoSuchJobError, so every RQ
    path that loads it (dequeue, registry and intermediate-queue clean-up) skips it as gone."""


class ExecJob(Job):
    """A Job that can only call `execute`, and never a callback, a webhook or a dependent."""

    def restore(self, raw_data: Any) -> Any:
        """Admit the raw hash before RQ reads any of it; drop it from Redis if refused."""
        reason = refusal(raw_data)
        if not reason:
            try:
                return super().restore(raw_data)
            except Exception as exc:  # a field RQ cannot parse: refused, not a worker crash
                reason = f"RQ cannot read it ({type(exc).__name__})"
        self._drop(raw_data)
        log.warning("refused job %r: %s; dropped unrun", self.id[:80], reason)
        raise RefusedJob(f"job {self.id[:80]!r} refused: {reason}")

    @classmethod
    def fetch_many(
        cls, job_ids: Iterable[str], connection: Any, serializer: Any = None
    ) -> list[Job | None]:
        """One by one, so that a refused job reads as None (as a vanished one does) instead of
        an error that would stop RQ's registry clean-up, and with it the executor."""
        jobs: list[Job | None] = []
        for job_id in job_ids:
            try:
                jobs.append(cls.fetch(job_id, connection=connection, serializer=serializer))
            except (NoSuchJobError, ValueError):  # ValueError: an id RQ cannot parse
                jobs.append(None)
        return jobs

    def _drop(self, raw_data: Any) -> None:
        origin = fields_of(raw_data).get("origin", b"").decode("utf-8", "replace")[:200]
        queue_key = Queue.redis_queue_namespace_prefix + origin
        with self.connection.pipeline() as pipe:
            pipe.delete(self.key, self.dependents_key)
            pipe.lrem(queue_key, 0, self.id)
            pipe.lrem(f"{queue_key}:intermediate", 0, self.id)
            pipe.execute()

    @property
    def func(self) -> Any:
        if self.func_name != EXECUTE or self.instance is not None:
            raise PermissionError(f"this executor only runs {EXECUTE}, not {self.func_name!r}")
        return execute

    @property
    def success_callback(self) -> None:
        return None

    @property
    def failure_callback(self) -> None:
        return None

    @property
    def stopped_callback(self) -> None:
        return None

    def send_webhooks(self, status: Any, *, exc_string: str | None = None) -> None:
        """Never: admission refuses jobs with webhooks; this holds if RQ finds another way in."""


class ExecQueue(Queue):
    """A Queue whose jobs never enqueue dependents (exec jobs have none; a planted set is
    ignored rather than followed)."""

    def enqueue_dependents(self, *args: Any, **kwargs: Any) -> dict[str, list[str]]:
        return {}


class ExecWorker(SimpleWorker):
    """A SimpleWorker that closes (kills) its process's sandbox when it stops."""

    queue_class = ExecQueue

    def run_maintenance_tasks(self) -> None:
        """RQ's clean-up reads whatever ids sit in its registries, which anyone with access to
        Redis can plant: one it cannot handle is logged, never the end of the executor."""
        try:
            super().run_maintenance_tasks()  # type: ignore[no-untyped-call]
        except Exception as exc:
            self.last_cleaned_at = rq_now()  # type: ignore[assignment]  # next interval, not every loop
            log.warning("registry clean-up failed: %s", " ".join(str(exc).split())[:300])

    def work(self, *args: Any, **kwargs: Any) -> bool:
        try:
            return bool(super().work(*args, **kwargs))
        finally:
            close_sandbox()


def _test_run(sandbox: Sandbox, limits: ExecLimits) -> None:
    """One trivial run before serving, so a missing bwrap, a rejected E2B key or an unreachable
    E2B fails the executor at start rather than every job; for E2B it also warms the sandbox."""
    output = sandbox.run("pass", limits.wall_s(None))
    if not output.ok:
        sandbox.close()
        raise SandboxUnavailable(f"the {sandbox.name} sandbox failed a test run: {output.error}")
    log.info("sandbox %s ready (test run %.3f s)", sandbox.name, output.duration_s)


def run_executor(
    conn: Any,
    queues: Sequence[str],
    *,
    burst: bool = False,
    sandbox_kind: str = "auto",
    workers: int = 1,
    limits: ExecLimits | None = None,
    env: Mapping[str, str] = os.environ,
    logging_level: str = "INFO",
) -> None:
    """Serve `queues` until stopped (SIGTERM/SIGINT finish the current job), or until empty with
    `burst`. Raises SandboxUnavailable before serving anything if the sandbox cannot run here."""
    check_plain_redis(conn)
    limits = limits or ExecLimits()
    sandbox = make_sandbox(sandbox_kind, limits, env)
    _test_run(sandbox, limits)
    if workers <= 1:
        configure(sandbox_kind, limits, env, sandbox)
        worker = ExecWorker(
            [
                ExecQueue(q, connection=conn, serializer=JSONSerializer, job_class=ExecJob)
                for q in queues
            ],
            connection=conn,
            serializer=JSONSerializer,
            job_class=ExecJob,
        )
        worker.work(burst=burst, logging_level=logging_level)
        return
    sandbox.close()  # each pool process makes its own after the fork
    configure(sandbox_kind, limits, env)
    pool = WorkerPool(
        list(queues),
        connection=conn,
        num_workers=workers,
        worker_class=ExecWorker,
        serializer=JSONSerializer,
        job_class=ExecJob,
        queue_class=ExecQueue,
    )
    pool.start(burst=burst, logging_level=logging_level)
