"""The worker's heartbeat and shutdown: renewals survive Redis read errors and new swarms,
a stopping worker interrupts its mind, and the lease-vs-thinking warnings."""

from __future__ import annotations

import itertools
import logging
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis

from swarm.board import Board
from swarm.minds.base import Interrupted, MindError
from swarm.minds.sim import SimConfig, SimMind
from swarm.protocol import Answer, Confidence, ThinkRequest, Thought
from swarm.trace import delete_swarm
from swarm.worker import Worker, WorkerConfig, _Advice, _Shared
from tests.conftest import make_purpose


class FlakyReads:
    """A real client whose hash reads fail with a connection error while `failing` is set."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self.failing = threading.Event()
        self.failed = 0

    def hmget(self, *args: Any, **kwargs: Any) -> Any:
        if self.failing.is_set():
            self.failed += 1
            raise redis.ConnectionError("injected read failure")
        return self._client.hmget(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class HoldingMind:
    """Thinks about the first swarm's root until released or interrupted; answers the rest."""

    name = "holding"

    def __init__(self, held_swarm: str) -> None:
        self.held_swarm = held_swarm
        self.started = threading.Event()
        self.release = threading.Event()
        self.interrupted = threading.Event()
        self.interrupted_steps = 0

    def think(self, request: ThinkRequest) -> Thought:
        if request.purpose_title == self.held_swarm:
            self.started.set()
            while not self.release.wait(0.01):
                if self.interrupted.is_set():
                    self.interrupted_steps += 1
                    raise Interrupted("holding mind interrupted")
        if self.interrupted.is_set():
            raise Interrupted("holding mind interrupted")
        return Thought(Answer("done", Confidence.LOW), tokens=1)

    def interrupt(self) -> None:
        self.interrupted.set()

    def close(self) -> None:
        self.release.set()


def renewal_gaps(board: Board, task_id: str, worker: str) -> list[float]:
    """Seconds between the claim and each renewal of a task by one worker, in order."""
    at = [
        int(f["at"]) / 1000
        for _, f in board.events(count=10_000)
        if f.get("task") == task_id
        and f.get("worker") == worker
        and f["type"] in ("claimed", "renewed")
    ]
    return [b - a for a, b in itertools.pairwise(at)]


def start(worker: Worker) -> threading.Thread:
    t = threading.Thread(target=worker.run, kwargs={"install_signals": False})
    t.start()
    return t


def _short_lease(board: Board, lease_s: float) -> Board:
    """A lease shorter than a purpose may ask for (5 s): what is on Redis is not checked by
    the purpose's rules, and the heartbeat must hold at any lease; short keeps tests fast."""
    board.client.hset(board.keys.meta, "lease_ms", int(lease_s * 1000))
    return board


def test_renewals_survive_read_errors_while_a_new_swarm_is_joined(real_redis: redis.Redis) -> None:
    lease_s = 2.0
    held = replace(make_purpose(), title="Held purpose")
    first = _short_lease(Board.seed(real_redis, held, swarm_id=f"hb-first-{time.time_ns()}"), 2.0)
    mind = HoldingMind("Held purpose")
    flaky = FlakyReads(real_redis)
    worker = Worker(flaky, mind, WorkerConfig(slots=2, grace_s=0.0))
    t = start(worker)
    boards = [first]
    try:
        assert mind.started.wait(10)
        # The second slot moves to a new swarm while the first holds a task, and every read
        # of the new swarm's facts fails for a while (the heartbeat used to make that read).
        flaky.failing.set()
        second = Board.seed(real_redis, make_purpose(), swarm_id=f"hb-second-{time.time_ns()}")
        boards.append(second)
        first.cancel(None, "test")
        deadline = time.monotonic() + 10
        while flaky.failed < 3:
            assert time.monotonic() < deadline, "the worker never tried the new swarm"
            time.sleep(0.05)
        time.sleep(1.5 * lease_s)
        flaky.failing.clear()
        time.sleep(lease_s)
        gaps = renewal_gaps(first, "0", worker.id)
        assert len(gaps) >= 4, gaps
        assert max(gaps) < lease_s, gaps  # the lease never ran out
        assert "reaped" not in [f["type"] for _, f in first.events(count=10_000)]
        # The slot that moved on served the new swarm once reads came back.
        deadline = time.monotonic() + 10
        while second.state().value == "running":
            assert time.monotonic() < deadline, "the new swarm was never served"
            time.sleep(0.05)
    finally:
        mind.release.set()
        worker.stop()
        t.join(15)
        for board in boards:
            delete_swarm(real_redis, board.id)
    assert not t.is_alive()


def test_stop_interrupts_a_step_and_posts_nothing(real_redis: redis.Redis) -> None:
    board = Board.seed(real_redis, make_purpose())
    mind = HoldingMind("Test purpose")
    worker = Worker(real_redis, mind, WorkerConfig(swarm_id=board.id, grace_s=0.3))
    t = start(worker)
    slots = []
    assert mind.started.wait(10)
    slots = [th for th in threading.enumerate() if th.name.startswith("slot-")]
    stopped = time.monotonic()
    worker.stop()
    t.join(10)
    for th in slots:
        th.join(5)
    took = time.monotonic() - stopped
    assert not t.is_alive() and not any(th.is_alive() for th in slots)
    assert took < 3.0, took  # grace (0.3 s) and about one native call, not the whole step
    assert mind.interrupted_steps == 1
    types = [f["type"] for _, f in board.events()]
    assert "released" in types and "failed" not in types and "completed" not in types
    root = board.task("0")
    assert root is not None and root.state.value == "open" and root.attempts == 0


def test_steps_longer_than_the_lease_warn_once(
    real_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    board = _short_lease(Board.seed(real_redis, make_purpose()), 1.0)
    mind = SimMind(SimConfig(branch=2, depth=1, think=1.2))
    worker = Worker(real_redis, mind, WorkerConfig(swarm_id=board.id, burst=True))
    with caplog.at_level(logging.WARNING, logger="swarm.worker"):
        t = start(worker)
        t.join(60)
    assert not t.is_alive()
    assert board.answer() is not None  # renewed throughout, so every step was accepted
    said = [r.getMessage() for r in caplog.records]
    warned = [m for m in said if "longer than the 1 s lease" in m]
    assert len(warned) == 1, warned
    assert "lease_s of 10 or more" in warned[0] and "fewer slots" in warned[0]


def test_late_renewals_warn_once_with_figures(caplog: pytest.LogCaptureFixture) -> None:
    advice = _Advice(slots=2, once=_Shared().first_time)
    with caplog.at_level(logging.WARNING, logger="swarm.worker"):
        advice.late("0.1", 4.0, 20.0)  # on time: a fifth of the lease
        advice.late("0.1", 12.5, 20.0)
        advice.late("0.2", 15.0, 20.0)
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1
    assert "12.5 s after its previous renewal" in said[0] and "20 s lease" in said[0]


def test_interrupted_minds_refuse_later_steps() -> None:
    from swarm.minds.base import ScriptedMind
    from swarm.minds.openai import OpenAIMind

    sim = SimMind(SimConfig(think=30))
    timer = threading.Timer(0.2, sim.interrupt)
    timer.start()
    began = time.monotonic()
    with pytest.raises(Interrupted):
        sim.think(_request())
    assert time.monotonic() - began < 5
    scripted = ScriptedMind([Answer("a", Confidence.LOW)])
    scripted.interrupt()
    openai = OpenAIMind("http://127.0.0.1:9/v1", "none")
    openai.interrupt()
    for mind in (sim, scripted, openai):
        with pytest.raises(Interrupted):
            mind.think(_request())
    assert issubclass(Interrupted, MindError)


def _request() -> ThinkRequest:
    from swarm.protocol import ActionKind, Limits
    from swarm.task import Kind, Task

    task = Task(id="0", parent="", depth=0, kind=Kind.WORK, title="t")
    return ThinkRequest(
        purpose="p", task=task, allowed=frozenset({ActionKind.ANSWER}), limits=Limits()
    )


class SlowMind(SimMind):
    """A sim mind that, like the onnx one, needs a lease of at least `min_lease_s`."""

    min_lease_s = 3.0


def test_a_lease_too_short_for_the_mind_is_raised_with_a_warning(
    real_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    board = _short_lease(Board.seed(real_redis, make_purpose()), 1.0)
    mind = SlowMind(SimConfig(depth=0, think=30))
    worker = Worker(real_redis, mind, WorkerConfig(swarm_id=board.id, grace_s=0.0))
    with caplog.at_level(logging.WARNING, logger="swarm.worker"):
        t = start(worker)
        deadline = time.monotonic() + 10
        while not real_redis.zrange(board.keys.leases, 0, -1):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        ((_, until_ms),) = real_redis.zrange(board.keys.leases, 0, -1, withscores=True)
        worker.stop()
        t.join(10)
    assert 1.5 < until_ms / 1000 - time.time() <= 3.1  # claimed for 3 s, not the swarm's 1 s
    said = [
        r.getMessage() for r in caplog.records if "too short for the sim mind" in r.getMessage()
    ]
    assert len(said) == 1 and "claims for 3 s" in said[0], said


def test_ctrl_c_releases_and_exits_within_the_grace(tmp_path: Path, redis_url: str) -> None:
    from tests.test_process import seed_cli, start_worker

    swarm_id = seed_cli(tmp_path, redis_url)
    worker = start_worker(redis_url, swarm_id, "sim:branch=2,depth=1,think=60")
    board = Board(redis.Redis.from_url(redis_url, decode_responses=True), swarm_id)
    try:
        deadline = time.monotonic() + 30
        while board.status()["by_state"]["claimed"] == 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        began = time.monotonic()
        worker.send_signal(signal.SIGINT)
        assert worker.wait(30) == 0
        took = time.monotonic() - began
    finally:
        if worker.poll() is None:
            worker.kill()
    assert took < 5.0 + 3.0, took  # the default grace, then release and an interrupted step
    types = [f["type"] for _, f in board.events()]
    assert "released" in types and "failed" not in types
    delete_swarm(board.client, swarm_id)
