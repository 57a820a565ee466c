"""Is the worker or executor on this host doing its job? (`swarm health worker|executor`)

Container healthchecks run it beside the process they judge, so "this host" is the container:
a worker is healthy when its heartbeat on a running swarm is fresh (or no swarm wants work, and
its model is there to think with); an executor is healthy when an RQ worker of this host is
registered on the exec queue and its process is alive. Exit 0 healthy, 1 not, with one line
saying why: `docker inspect` shows it as the health log.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from swarm.board import Board, list_swarms, stale_ms
from swarm.task import SwarmState

# The states in which a worker serves a swarm and keeps its heartbeat on it.
_SERVED = (SwarmState.RUNNING.value, SwarmState.WRAPPING.value, SwarmState.PAUSED.value)
_SCAN = 50  # swarms looked at, newest first (what a worker's own search looks at)
_MAX_WORKERS = 10_000  # live workers read per swarm: bounded, whatever sits in Redis


@dataclass(frozen=True)
class Health:
    ok: bool
    why: str


def worker_health(
    client: Any, host: str, *, now: float | None = None, model_check: Callable[[], str] = str
) -> Health:
    """A worker of `host` with a fresh heartbeat on a swarm that wants work, or no such swarm.

    `model_check` returns "" when the worker can think, else why not (a missing model)."""
    missing = model_check()
    if missing:
        return Health(False, missing)
    served = [
        sid
        for sid in list_swarms(client, _SCAN)
        if client.hget(Board(client, sid).keys.meta, "state") in _SERVED
    ]
    if not served:
        return Health(True, "idle: no swarm wants work")
    now_ms = int((time.time() if now is None else now) * 1000)
    for sid in served:
        board = Board(client, sid)
        since = now_ms - stale_ms(client.hget(board.keys.meta, "lease_ms"))
        fresh = client.zrangebyscore(board.keys.workers, since, "+inf", start=0, num=_MAX_WORKERS)
        pipe = client.pipeline(transaction=False)
        for wid in fresh:
            pipe.hget(board.keys.worker(wid), "host")
        for wid, worker_host in zip(fresh, pipe.execute(), strict=True):
            if worker_host == host:
                return Health(True, f"worker {wid} beats on swarm {sid}")
    return Health(False, f"no fresh heartbeat from host {host} on {', '.join(served[:5])}")


def executor_health(
    conn: Any, queue: str, host: str, alive: Callable[[int], bool] | None = None
) -> Health:
    """An RQ worker of `host` registered on `queue` whose process is alive."""
    from rq import Queue, Worker

    alive = alive or _pid_alive
    workers = Worker.all(queue=Queue(queue, connection=conn))
    mine = [w for w in workers if w.hostname == host]
    if not mine:
        return Health(False, f"no executor of host {host} registered on queue {queue}")
    running = [w for w in mine if w.pid is not None and alive(int(w.pid))]
    if not running:
        return Health(False, f"the executors of host {host} on queue {queue} are gone")
    return Health(True, f"{len(running)} executor process(es) on queue {queue}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def model_check(mind: str | None, model: str | None, env: Mapping[str, str]) -> str:
    """Why an onnx worker could not think here, or "" (other minds need no local model)."""
    kind, _, rest = (mind or "onnx").partition(":")
    if kind != "onnx":
        return ""
    from swarm.models import ModelError, find_model

    try:
        find_model(rest.partition("?")[0] or model, env)
    except ModelError as exc:
        return str(exc)
    return ""
