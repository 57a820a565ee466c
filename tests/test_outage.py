"""A Redis that refuses for a while (full, read-only, busy) is an outage, not a failure.

Each test owns its server (scripts/_servers.py), so it can fill it up, make it a replica of
nobody or keep it busy without touching anyone else's data.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from swarm.board import Board
from swarm.minds.sim import SimConfig, SimMind
from swarm.outage import describe, is_outage, refusal_code
from swarm.protocol import Subtask, ThinkRequest
from swarm.purpose import Budgets
from swarm.task import State, SwarmState
from swarm.worker import Worker, WorkerConfig
from tests.conftest import make_purpose
from tests.test_worker import leaves

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from _servers import Server, start_server

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "purpose.md"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = start_server(extra={"maxmemory-policy": "noeviction"})
    yield srv
    srv.stop()


@pytest.fixture
def client(server: Server) -> Iterator[redis.Redis]:
    c = redis.Redis(port=server.port, decode_responses=True, socket_timeout=10)
    yield c
    c.config_set("maxmemory", 0)
    c.flushdb()  # the server is this module's own
    c.close()


def fill_up(client: redis.Redis) -> list[str]:
    """Reach maxmemory as a busy server would: a limit above use, then ballast up to it.

    The limit then drops a little below use, so that freed client buffers cannot let a small
    write through by chance: the server stays full until the ballast (the returned keys) goes.
    """
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used + 4 * 1024 * 1024)
    ballast: list[str] = []
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        for _ in range(10_000):
            ballast.append(f"ballast:{len(ballast)}")
            client.set(ballast[-1], "x" * 65536)
    client.config_set("maxmemory", int(client.info("memory")["used_memory"]) - 1024 * 1024)
    return ballast


def snapshot(client: redis.Redis) -> dict[str, Any]:
    raw = redis.Redis(connection_pool=client.connection_pool.__class__(
        **{**client.connection_pool.connection_kwargs, "decode_responses": False}
    ))  # fmt: skip
    try:
        return {k: raw.dump(k) for k in raw.scan_iter(count=1000)}
    finally:
        raw.close()


# -- every script: whole or not at all -------------------------------------------------------


def test_under_oom_every_write_script_is_refused_before_it_writes(client: redis.Redis) -> None:
    board = Board.seed(client, make_purpose(tasks=("a", "b", "c")))
    outcome = board.claim("w1")
    held = outcome.claim
    assert held is not None
    split_me = board.claim("w2").claim
    assert split_me is not None
    fill_up(client)
    before = snapshot(client)
    refused: dict[str, Callable[[], Any]] = {
        "seed": lambda: Board.seed(client, make_purpose(tasks=("x",))),
        "claim": lambda: board.claim("w3"),
        "complete": lambda: board.complete(held, "w1", "an answer"),
        "split": lambda: board.split(split_me, "w2", [Subtask("s1"), Subtask("s2")]),
        "fail": lambda: board.fail(held, "w1", "no"),
        "inject": lambda: board.inject("more", "person"),
        "boost": lambda: board.boost("3", 5.0, "person"),
        "cancel": lambda: board.cancel("3", "person"),
        "pause": lambda: board.pause("person"),
    }
    for name, op in refused.items():
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            op()
        assert snapshot(client) == before, f"{name} wrote part of its change under OOM"
    # Keeping a lease and giving a task back must work while full: they hold no new data.
    assert board.renew(held, "w1", lease_s=60)
    assert board.context(held.task).ancestry
    assert board.release(split_me, "w2")
    task = board.task(split_me.task.id)
    assert task is not None and task.state is State.OPEN and task.attempts == 0


# -- the worker ----------------------------------------------------------------------------


class GatedMind:
    """The sim mind, but every step waits at a gate the test opens (so tasks are held)."""

    name = "gated"

    def __init__(self, inner: SimMind) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.waiting = 0
        self._lock = threading.Lock()

    def think(self, request: ThinkRequest) -> Any:
        with self._lock:
            self.waiting += 1
        self.gate.wait(30)
        return self.inner.think(request)

    def interrupt(self) -> None:
        self.gate.set()
        self.inner.interrupt()

    def close(self) -> None:
        self.gate.set()


def _wait(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_full_redis_holds_the_work_and_the_swarm_ends_with_nothing_lost(
    client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # One attempt and a one-second lease: any attempt burned or lease lost kills a task.
    budgets = Budgets(max_attempts=1)
    board = Board.seed(client, make_purpose(tasks=("a", "b", "c"), budgets=budgets))
    client.hset(board.keys.meta, "lease_ms", 1000)  # shorter than a purpose may ask for
    mind = GatedMind(SimMind(SimConfig(branch=2, depth=2)))
    worker = Worker(client, mind, WorkerConfig(swarm_id=board.id, burst=True, slots=2))
    thread = threading.Thread(target=worker.run, kwargs={"install_signals": False})
    caplog.set_level(logging.WARNING, logger="swarm.worker")
    thread.start()
    try:
        _wait(lambda: mind.waiting == 2)  # both slots hold a task
        ballast = fill_up(client)
        mind.gate.set()  # the minds answer now; Redis refuses the posts
        time.sleep(3.5)  # three and a half leases: without renewals both would be reaped
        held = [t for t in board.children("0") if t.state is State.CLAIMED]
        assert len(held) == 2 and all(t.attempts == 0 for t in held)
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            Board(client, board.id).claim("a-peer")  # nothing is reaped behind the holder
        client.delete(*ballast)  # memory freed: the swarm carries on
        thread.join(30)
        assert not thread.is_alive(), "the worker did not finish after memory was freed"
    finally:
        worker.stop()
        mind.gate.set()
        thread.join(10)
    assert board.state() is SwarmState.DONE
    assert board.status()["outcome"] == "answered"
    answer = board.answer()
    assert answer is not None and answer.split(" | ") == leaves(["a", "b", "c"], 2, 1)
    tasks = board.tasks([str(n) for n in range(int(board.meta()["next_id"]) + 1)])
    assert all(t.state is State.DONE and t.attempts == 0 for t in tasks)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    full = [w for w in warnings if "maxmemory" in w]
    assert len(full) == 1, warnings  # said once, with the fix
    assert "CONFIG SET maxmemory" in full[0] and "free memory" in full[0]
    assert not [w for w in warnings if "crashed" in w or "lease lost" in w], warnings


# -- commands --------------------------------------------------------------------------------


def _swarm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swarm", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SWARM_REDIS_URL": ""},
    )


def _one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_seed_and_inject_into_a_full_redis_are_one_line_and_write_nothing(
    client: redis.Redis, server: Server
) -> None:
    board = Board.seed(client, make_purpose(tasks=("a",)))  # the root waits on task 1
    fill_up(client)
    before = snapshot(client)
    for args in (
        ("seed", str(EXAMPLE)),
        ("inject", "one more", "--parent", "0", "--swarm", board.id),
        ("boost", "1", "--swarm", board.id),
    ):
        line = _one_line(_swarm(*args, "--redis", server.url))
        assert "maxmemory" in line and "nothing was changed" in line, line
        assert snapshot(client) == before


@contextlib.contextmanager
def busy(client: redis.Redis, seconds: int = 15) -> Iterator[None]:
    """The server runs a long script (past busy-reply-threshold) until the block ends."""
    client.config_set("busy-reply-threshold", 100)
    port = client.connection_pool.connection_kwargs["port"]
    spin = f"local t = redis.call('TIME')[1] + {seconds} "
    spin += "while tonumber(redis.call('TIME')[1]) < t do end"

    def run() -> None:
        with contextlib.suppress(redis.ResponseError):  # SCRIPT KILL ends it
            redis.Redis(port=port).eval(spin, 0)

    slow = threading.Thread(target=run)
    slow.start()
    deadline = time.monotonic() + 5
    try:
        while True:
            try:
                client.ping()
            except redis.ResponseError as exc:
                if "BUSY" in str(exc):
                    break
            assert time.monotonic() < deadline, "the script never made the server busy"
            time.sleep(0.02)
        yield
    finally:
        with contextlib.suppress(redis.ResponseError):
            client.script_kill()
        slow.join(10)


def test_commands_on_a_busy_server_are_one_line(client: redis.Redis, server: Server) -> None:
    board = Board.seed(client, make_purpose())
    with busy(client):
        for args in (("status",), ("watch", "--once"), ("pause",)):
            line = _one_line(_swarm(*args, "--swarm", board.id, "--redis", server.url))
            assert "busy running a" in line, line  # (refused at connect, or mid-command)


# -- which refusals are outages --------------------------------------------------------------


def test_server_refusals_are_outages_and_request_errors_are_not(client: redis.Redis) -> None:
    errors: dict[str, Exception] = {}

    def capture(code: str, fn: Callable[[], Any]) -> None:
        with pytest.raises(redis.RedisError) as info:
            fn()
        errors[code] = info.value

    # BUSY: a script that runs past busy-reply-threshold blocks everyone else.
    with busy(client):
        capture("BUSY", lambda: client.get("k"))
    # READONLY and MASTERDOWN: a replica of a primary that is not there.
    client.config_set("replica-serve-stale-data", "yes")
    client.replicaof("127.0.0.1", "1")
    try:
        capture("READONLY", lambda: client.set("k", "v"))
        client.config_set("replica-serve-stale-data", "no")
        capture("MASTERDOWN", lambda: client.get("k"))
    finally:
        client.replicaof("NO", "ONE")
        client.config_set("replica-serve-stale-data", "yes")
    fill_up(client)
    capture("OOM", lambda: client.set("one-more", "x"))
    for code, exc in errors.items():
        assert refusal_code(exc) == code and is_outage(exc), (code, exc)
        assert "\n" not in describe(exc)
    client.config_set("maxmemory", 0)
    wrong = {
        "ERR": lambda: client.execute_command("HSET", "k"),
        "NOSWARM": lambda: client.eval("return redis.error_reply('NOSWARM no such swarm')", 0),
        "script bug": lambda: client.eval("return nil + 1", 0),
    }
    for code, fn in wrong.items():
        capture(code, fn)
        assert not is_outage(errors[code]), code
