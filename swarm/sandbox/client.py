"""ExecClient: the worker's side of code execution — enqueue an RQ job, wait, return what ran.

Jobs use RQ's JSON serializer (never pickle: anyone who can write to the exec Redis could
otherwise run code in the executor) and name their function by dotted path. The exec queue
may live on its own Redis (SWARM_EXEC_REDIS_URL), because RQ does not support Redis Cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis
from rq import Queue
from rq import Worker as RQWorker
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.results import Result
from rq.serializers import JSONSerializer

from swarm import keys
from swarm.protocol import ExecOutput
from swarm.sandbox.capture import clip
from swarm.sandbox.limits import ExecLimits

log = logging.getLogger("swarm.exec")

EXECUTE = "swarm.sandbox.executor.execute"
DEFAULT_QUEUE = keys.EXEC_QUEUE
QUEUE_ENV = "SWARM_EXEC_QUEUE"
_RESULT_TTL_S = 300  # the client reads a result within milliseconds; this is only slack
_FAILURE_TTL_S = 3600  # long enough for a person to look at a failed job with `rq info`
_JOB_SLACK_S = 30  # RQ's own job timeout, behind the sandbox's, only catches a stuck executor
# How long "does an executor serve this queue?" is trusted: the claim path asks on every step,
# and an executor that starts or stops is noticed this much later at most.
SERVED_TTL_S = 5.0
# What RQ raises about a job that vanished or expired under us (RQ's own TTLs remove jobs).
_JOB_GONE = (redis.RedisError, InvalidJobOperation, NoSuchJobError)


class UnsupportedRedis(RuntimeError):
    """The exec queue was pointed at a Redis that RQ cannot use."""


def exec_queue_name(swarm_id: str | None = None, env: Mapping[str, str] = os.environ) -> str:
    """$SWARM_EXEC_QUEUE, else `swarm-exec`, or `swarm-exec:<id>` for a swarm's own queue."""
    base = env.get(QUEUE_ENV) or DEFAULT_QUEUE
    return keys.exec_queue(swarm_id, base)


def check_plain_redis(conn: Any) -> None:
    """Refuse a Redis Cluster up front: RQ's multi-key commands would fail there job by job."""
    if isinstance(conn, redis.cluster.RedisCluster):
        clustered = True
    else:
        try:
            clustered = str(conn.info("cluster").get("cluster_enabled", "0")) == "1"
        except redis.ResponseError:  # an ACL user without INFO: assume a plain server
            clustered = False
    if clustered:
        raise UnsupportedRedis(
            "the exec queue's Redis is a Redis Cluster, which RQ does not support; "
            "set SWARM_EXEC_REDIS_URL to a plain (non-cluster) Redis"
        )


def exec_connection(settings: Any) -> redis.Redis:
    """A bytes-mode client for RQ, from swarm.config's settings (URL, TLS, ACL already resolved)."""
    from swarm.config import connect

    client = connect(settings, cluster=None)
    check_plain_redis(client)
    assert isinstance(client, redis.Redis)
    pool = client.connection_pool
    # RQ stores zlib-compressed bytes; swarm.config decodes responses to str for the board.
    kwargs = {**pool.connection_kwargs, "decode_responses": False}
    client.close()
    return redis.Redis(
        connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
    )


def _output_from(value: Any, cap: int) -> ExecOutput:
    """The executor's dict, checked field by field: whatever sits in Redis is not trusted."""
    if not isinstance(value, dict):
        return ExecOutput(error="executor returned something that is not an execution result")
    duration = value.get("duration_s", 0.0)
    return ExecOutput(
        stdout=clip(str(value.get("stdout", "")), cap),
        stderr=clip(str(value.get("stderr", "")), cap),
        error=clip(str(value.get("error", "")), 1000),
        duration_s=float(duration) if isinstance(duration, int | float) else 0.0,
    )


class ExecClient:
    """Runs code through the exec queue; one per worker process, safe to share between slots."""

    def __init__(
        self,
        conn: redis.Redis,
        queue_name: str = DEFAULT_QUEUE,
        limits: ExecLimits | None = None,
        *,
        queue_wait_s: float = 30.0,
        keepalive_every_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`queue_wait_s`: how long a job may sit unclaimed before the run is reported as failed."""
        self.limits = limits or ExecLimits()
        self.queue = Queue(queue_name, connection=conn, serializer=JSONSerializer)
        self.queue_wait_s = queue_wait_s
        self.keepalive_every_s = keepalive_every_s
        self._conn = conn
        self._clock = clock

    def run(
        self,
        code: str,
        timeout_s: float | None = None,
        keepalive: Callable[[], None] | None = None,
    ) -> ExecOutput:
        try:
            return self._run(code, self.limits.wall_s(timeout_s), keepalive)
        except redis.RedisError as exc:
            return ExecOutput(error=f"exec queue unavailable: {_one_line(exc)}")
        except Exception as exc:  # whatever RQ raises is the mind's error, never a worker crash
            return ExecOutput(error=f"code execution failed: {_one_line(exc)}")

    def _run(self, code: str, wall_s: float, keepalive: Callable[[], None] | None) -> ExecOutput:
        job = self.queue.enqueue_call(
            EXECUTE,
            args=(code, wall_s),
            timeout=int(wall_s) + _JOB_SLACK_S,
            ttl=max(1, int(self.queue_wait_s)),  # unclaimed jobs expire instead of piling up
            result_ttl=_RESULT_TTL_S,
            failure_ttl=_FAILURE_TTL_S,
            description="swarm exec",  # not the code: RQ would store it twice
        )
        # Waits for pickup, the run itself, and the jail's start-up and the result's trip back.
        deadline = self._clock() + self.queue_wait_s + wall_s + 5.0
        result = self._wait(job, deadline, keepalive)
        if result is None:
            self._abandon(job)
            waited = round(self.queue_wait_s + wall_s)
            return ExecOutput(
                error=f"no executor answered within {waited}s; start one with `swarm executor`"
                f" (queue {self.queue.name})"
            )
        return self._output(job, result)

    def _wait(
        self, job: Job, deadline: float, keepalive: Callable[[], None] | None
    ) -> Result | None:
        key = Result.get_key(job.id)  # type: ignore[no-untyped-call]
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                return None
            block_ms = max(1, int(min(remaining, self.keepalive_every_s) * 1000))
            # XREAD BLOCK wakes the moment the executor writes the result: no polling delay.
            if self._conn.xread({key: "0-0"}, count=1, block=block_ms):
                result = Result.fetch_latest(job, serializer=JSONSerializer)
                if result is not None and result.type != Result.Type.RETRIED:
                    return result
            if keepalive is not None:
                keepalive()

    def _output(self, job: Job, result: Result) -> ExecOutput:
        try:
            if result.type == Result.Type.SUCCESSFUL:
                return _output_from(result.return_value, self.limits.output_bytes)
            if result.type == Result.Type.STOPPED:
                return ExecOutput(error="the executor stopped this run")
            last = (result.exc_string or "").strip().splitlines()[-1:] or ["unknown error"]
            return ExecOutput(error=f"executor failed: {last[0][:300]}")
        finally:
            self._abandon(job)  # read once; nothing is left behind

    def _abandon(self, job: Job) -> None:
        # An unclaimed job may have expired already (its ttl); RQ then refuses to delete it.
        with contextlib.suppress(*_JOB_GONE):  # its TTLs clean it up anyway
            job.delete()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


class LazyRunner:
    """An ExecClient that connects on its first run, so asking whether code may run never
    touches Redis, and an unreachable exec Redis is an error the mind sees, not a crash."""

    def __init__(
        self, connect: Callable[[], redis.Redis], queue_name: str, limits: ExecLimits | None
    ) -> None:
        self.queue_name = queue_name
        self._connect = connect
        self._limits = limits
        self._client: ExecClient | None = None

    def run(
        self,
        code: str,
        timeout_s: float | None = None,
        keepalive: Callable[[], None] | None = None,
    ) -> ExecOutput:
        if self._client is None:
            try:
                conn = self._connect()
            except Exception as exc:  # ConnectionFailed, UnsupportedRedis, a bad URL
                return ExecOutput(error=f"exec queue unavailable: {_one_line(exc)}")
            self._client = ExecClient(conn, self.queue_name, self._limits)
        return self._client.run(code, timeout_s, keepalive)


def wait_for_executor(
    conn: redis.Redis,
    queue_name: str,
    timeout_s: float,
    alive: Callable[[], bool] = lambda: True,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Whether an executor serves `queue_name` within `timeout_s` (False early once `alive()`
    is false): for whoever starts an executor and workers together, as workers offer code
    only once one serves."""
    deadline = clock() + timeout_s
    while not executors_serving(conn, queue_name):
        if not alive() or clock() >= deadline:
            return False
        time.sleep(0.05)
    return True


def executors_serving(conn: redis.Redis, queue_name: str) -> int:
    """How many live RQ workers (executors) listen on `queue_name`, from RQ's worker registry.
    A worker killed without a goodbye stays in the registry's set, but its own key expires."""
    keys = RQWorker.all_keys(queue=Queue(queue_name, connection=conn))
    return int(conn.exists(*keys)) if keys else 0


class _Runners:
    """swarm_id -> LazyRunner, or None while no executor serves its queue; one exec connection,
    opened on first use, shared by all."""

    def __init__(
        self,
        settings: Any,
        limits: ExecLimits | None,
        per_swarm: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._limits = limits
        self._per_swarm = per_swarm
        self._clock = clock
        self._conn: redis.Redis | None = None
        self._runners: dict[str, LazyRunner] = {}
        self._served: dict[str, tuple[bool | None, float]] = {}  # queue -> (served?, until)
        self._lock = threading.Lock()

    def connection(self) -> redis.Redis:
        with self._lock:
            if self._conn is None:
                self._conn = exec_connection(self._settings)
            return self._conn

    def _is_served(self, queue: str) -> bool:
        """Cached for SERVED_TTL_S. An exec Redis that cannot be asked (down, a cluster) counts
        as served: the runner then answers each run with what is wrong, for the mind to see."""
        now = self._clock()
        before, until = self._served.get(queue, (None, -1.0))
        if before is not None and now < until:
            return before
        try:
            served = executors_serving(self.connection(), queue) > 0
        except Exception:  # ConnectionFailed, UnsupportedRedis, RedisError: the run says which
            served = True
        if served != before:  # said once per change, not on every claim
            if served:
                log.info("an executor serves %s: code is offered", queue)
            else:
                log.warning(
                    "no executor serves %s: code is not offered until one does (`swarm executor`)",
                    queue,
                )
        self._served[queue] = (served, now + SERVED_TTL_S)
        return served

    def __call__(self, swarm_id: str) -> LazyRunner | None:
        queue = exec_queue_name(swarm_id if self._per_swarm else None)
        if not self._is_served(queue):
            return None  # code is not offered: a job would wait for nobody, then fail
        with self._lock:
            runner = self._runners.get(queue)
            if runner is None:
                runner = self._runners[queue] = LazyRunner(self.connection, queue, self._limits)
            return runner


def runner_factory(
    settings: Any,
    *,
    limits: ExecLimits | None = None,
    per_swarm: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[str], LazyRunner | None]:
    """swarm_id -> ExecClient, as the worker wants it, or None while no executor serves the
    swarm's queue (RQ's worker registry, asked at most every SERVED_TTL_S). Connects on first
    use, not here.

    `settings` is swarm.config's RedisSettings, already `.for_exec()`. By default every swarm
    shares the `swarm-exec` queue, which a plain `swarm executor` serves; `per_swarm` uses
    `swarm-exec:<id>` (serve it with `swarm executor --queue swarm-exec:<id>`).
    """
    return _Runners(settings, limits, per_swarm, clock)
