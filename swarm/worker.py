"""The worker: sense (claim) -> think (mind) -> act (code in a sandbox) -> post, on N slots.

Workers are identical and keep no state that matters: a task's truth is on the blackboard,
guarded by its lease and fence. A worker that dies loses nothing (its leases expire and any
other worker reaps them); a worker that loses Redis waits with backoff and carries on.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, TypeVar

import redis

from swarm import logs
from swarm.board import (
    Board,
    Claim,
    ClaimStatus,
    LeaseLost,
    NoSuchSwarm,
    SplitRefused,
    heartbeat_s,
    newest_running,
)
from swarm.logs import task_outcome
from swarm.minds.base import Mind, MindError
from swarm.protocol import (
    ActionKind,
    Answer,
    Code,
    ExecOutput,
    Execution,
    InvalidAction,
    Limits,
    Split,
    ThinkRequest,
)
from swarm.task import Kind

log = logging.getLogger("swarm.worker")

T = TypeVar("T")

# Errors that mean "Redis is away for now", not "the request was wrong".
TRANSIENT = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


class CodeRunner(Protocol):
    """Runs a `code` action somewhere safe (swarm.sandbox provides the RQ-backed one)."""

    def run(
        self, code: str, timeout_s: float, keepalive: Callable[[], None] | None = None
    ) -> ExecOutput: ...


@dataclass(frozen=True)
class WorkerConfig:
    swarm_id: str | None = None  # None: serve the newest running swarm, then the next
    slots: int = 1
    burst: bool = False  # exit once there is nothing left to do
    skills: tuple[str, ...] = ()
    lease_s: float | None = None  # None: the swarm's own lease
    renew_s: float | None = None  # None: a quarter of the lease
    poll_s: float = 0.25  # longest idle wait between claims
    grace_s: float = 5.0  # after SIGTERM, how long held tasks may finish before release
    max_code_rounds: int = 3
    code_timeout_s: float = 30.0
    name: str = ""


@dataclass
class _Held:
    board: Board
    claim: Claim
    lost: bool = False
    started: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class _SwarmInfo:
    purpose: str
    title: str
    lease_s: float
    sandbox: str


@dataclass
class _Stats:
    tokens: int = 0
    tasks: int = 0
    think_s: float = 0.0
    started: float = field(default_factory=time.time)


def _worker_id(name: str) -> str:
    base = name or socket.gethostname()
    return f"{base}-{os.getpid()}-{uuid.uuid4().hex[:4]}"


class Worker:
    def __init__(
        self,
        client: Any,
        mind: Mind,
        config: WorkerConfig = WorkerConfig(),
        *,
        code_runner: Callable[[str], CodeRunner | None] | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.mind = mind
        self.config = config
        self.id = _worker_id(config.name)
        self._code_runner = code_runner
        self._clock = clock
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()
        self._boards: dict[str, Board] = {}
        self._infos: dict[str, _SwarmInfo] = {}
        self._finished: set[str] = set()
        self._current: str | None = None
        self._stats = _Stats()
        self._outage = logs.REDIS  # the process's: its clients' retries report there too

    # -- lifecycle -----------------------------------------------------------------------

    def run(self, *, install_signals: bool = True) -> int:
        """Serve until stopped (or, with --burst, until nothing is left). Returns an exit code."""
        if install_signals:
            signal.signal(signal.SIGTERM, lambda *_: self.stop())
            signal.signal(signal.SIGINT, lambda *_: self.stop())
        slots = [
            threading.Thread(target=self._slot, name=f"slot-{n}", daemon=True)
            for n in range(self.config.slots)
        ]
        beat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        beat.start()
        for t in slots:
            t.start()
        while any(t.is_alive() for t in slots) and not self._stop.is_set():
            self._stop.wait(0.2)
        self._shutdown(slots)
        return 0

    def stop(self) -> None:
        """Claim nothing more; held tasks get `grace_s` to finish, then are released."""
        if not self._stop.is_set():
            log.info("worker %s stopping", self.id)
        self._stop.set()

    def _shutdown(self, slots: list[threading.Thread]) -> None:
        deadline = time.monotonic() + self.config.grace_s
        for t in slots:
            t.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            held = list(self._held.values())
        # Bounded: with Redis gone for good, the leases expire and others reap the tasks.
        until = time.monotonic() + 10.0
        for h in held:
            self._retry(lambda h=h: h.board.release(h.claim, self.id), until=until)  # type: ignore[misc]
            self._outcome(h, "released", detail="worker stopping")
        for board in self._boards.values():
            self._retry(lambda b=board: b.forget_worker(self.id), until=until)  # type: ignore[misc]
        # A slot still inside think() may be using the model; the process exit frees it then.
        if not any(t.is_alive() for t in slots):
            self.mind.close()

    # -- redis away ---------------------------------------------------------------------

    def _retry(self, fn: Callable[[], T], *, until: float | None = None) -> T | None:
        """Call fn, waiting out Redis outages with capped exponential backoff and jitter."""
        delay = 0.1
        while True:
            try:
                value = fn()
            except TRANSIENT as exc:
                if until is not None and time.monotonic() > until:
                    log.warning("giving up after Redis stayed away: %s", exc)
                    return None
                self._outage.failed(exc)
                log.debug("Redis unavailable (%s); retrying in %.1fs", exc, delay)
                time.sleep(delay * (0.5 + self._rng.random()))
                delay = min(delay * 2, 5.0)
            else:
                self._outage.ok()
                return value

    # -- choosing a swarm ------------------------------------------------------------------

    def _board(self) -> Board | None:
        """The swarm this worker serves: sticky until it finishes, then the next running one."""
        sid = self.config.swarm_id or self._current
        if sid is None or sid in self._finished:
            if self.config.swarm_id is not None:
                return None
            sid = newest_running(self.client, skip=self._finished)
            self._current = sid
        if sid is None:
            return None
        board = self._boards.get(sid)
        if board is None:
            board = Board(self.client, sid, clock=self._clock, rng=self._rng)
            self._boards[sid] = board
        return board

    def _lease_s(self, board: Board) -> float:
        if self.config.lease_s is not None:
            return self.config.lease_s
        return self._info(board).lease_s

    def _info(self, board: Board) -> _SwarmInfo:
        """The swarm's fixed facts, read once per swarm."""
        found = self._infos.get(board.id)
        if found is None:
            m = board.client.hmget(board.keys.meta, "purpose", "title", "lease_ms", "sandbox")
            found = _SwarmInfo(m[0] or "", m[1] or "", int(m[2] or 60000) / 1000, m[3] or "auto")
            self._infos[board.id] = found
        return found

    # -- the slot loop ----------------------------------------------------------------------

    def _slot(self) -> None:
        idle = 0.01
        while not self._stop.is_set():
            try:
                progressed = self._step()
                self._outage.ok()
            except TRANSIENT as exc:
                self._outage.failed(exc)
                progressed = None
            except NoSuchSwarm:
                if self.config.swarm_id is not None:
                    log.error("swarm %s does not exist", self.config.swarm_id)
                    return
                progressed = None
            if progressed is False:
                return
            if progressed:
                idle = 0.01
                continue
            self._stop.wait(idle * (0.5 + self._rng.random()))
            idle = min(idle * 2, self.config.poll_s)

    def _step(self) -> bool | None:
        """One claim. True: did work; None: nothing now, wait; False: this slot is finished."""
        board = self._board()
        if board is None:
            return False if self.config.burst else None
        outcome = board.claim(self.id, lease_s=self._lease_s(board), skills=self.config.skills)
        if outcome.status is ClaimStatus.OK and outcome.claim is not None:
            self._work(board, outcome.claim)
            return True
        if outcome.status is ClaimStatus.CLOSED:
            log.info("swarm %s is %s", board.id, outcome.swarm_state)
            self._finished.add(board.id)
            if self.config.swarm_id is not None:
                return False
            return None
        if (
            outcome.status is ClaimStatus.EMPTY
            and self.config.burst
            and outcome.held_elsewhere == 0
        ):
            return False
        return None

    # -- one task ---------------------------------------------------------------------------

    @contextmanager
    def _holding(self, board: Board, claim: Claim) -> Iterator[_Held]:
        held = _Held(board, claim)
        with self._lock:
            self._held[claim.task.id] = held
        try:
            yield held
        finally:
            with self._lock:
                self._held.pop(claim.task.id, None)

    def _work(self, board: Board, claim: Claim) -> None:
        task = claim.task
        with self._holding(board, claim) as held:
            self._outcome(held, "claimed", detail=f"{task.kind.value}: {task.title}")
            tokens = 0
            try:
                tokens = self._think_and_post(board, held)
            except LeaseLost as exc:
                log.warning("%s", exc)
            except (MindError, InvalidAction) as exc:
                self._post_failure(board, held, f"{type(exc).__name__}: {exc}")
            except TRANSIENT:
                raise
            except Exception as exc:  # a mind's bug must fail the attempt, not the worker
                log.exception("task %s: mind crashed", task.id)
                self._post_failure(board, held, f"mind crashed: {type(exc).__name__}: {exc}")
            self._stats.tasks += 1
            self._stats.tokens += tokens

    def _post(self, board: Board, fn: Callable[[], T]) -> T | None:
        """Post through a Redis outage for as long as the lease could still be ours."""
        return self._retry(fn, until=time.monotonic() + self._lease_s(board))

    def _post_failure(self, board: Board, held: _Held, reason: str) -> None:
        try:
            if self._post(board, lambda: board.fail(held.claim, self.id, reason)) is not None:
                self._outcome(held, "failed", detail=reason)
        except LeaseLost as exc:
            log.warning("%s", exc)

    def _outcome(self, held: _Held, outcome: str, tokens: int = 0, detail: str = "") -> None:
        task_outcome(
            log,
            outcome,
            swarm=held.board.id,
            task=held.claim.task.id,
            worker=self.id,
            tokens=tokens,
            seconds=time.monotonic() - held.started,
            detail=detail,
        )

    def _allowed(self, board: Board, claim: Claim, rounds: int) -> frozenset[ActionKind]:
        allowed = {ActionKind.ANSWER}
        if claim.can_split:
            allowed.add(ActionKind.SPLIT)
        if (
            claim.task.kind is Kind.WORK
            and rounds < self.config.max_code_rounds
            and self._runner(board) is not None
        ):
            allowed.add(ActionKind.CODE)
        return frozenset(allowed)

    def _runner(self, board: Board) -> CodeRunner | None:
        if self._code_runner is None or self._info(board).sandbox == "none":
            return None
        return self._code_runner(board.id)

    def _think_and_post(self, board: Board, held: _Held) -> int:
        claim = held.claim
        info = self._info(board)
        ctx = claim.context
        allowed = self._allowed(board, claim, 0)
        executions: list[Execution] = []
        tokens = 0
        while True:
            request = ThinkRequest(
                purpose=info.purpose,
                purpose_title=info.title,
                task=claim.task,
                allowed=allowed,
                limits=Limits(max_children=claim.max_children),
                ancestry=ctx.ancestry,
                siblings=ctx.siblings,
                children=ctx.children,
                executions=tuple(executions),
            )
            started = time.monotonic()
            thought = self.mind.think(request)
            self._stats.think_s += time.monotonic() - started
            tokens += thought.tokens
            action = thought.action
            if action.kind not in allowed:
                raise InvalidAction(f"mind chose '{action.kind.value}', not allowed at this step")
            if held.lost:
                raise LeaseLost(f"task {claim.task.id}: lease lost while thinking, result dropped")
            if isinstance(action, Code):
                executions.append(Execution(action.code, self._execute(board, action)))
                allowed = self._allowed(board, claim, len(executions))
                continue
            if isinstance(action, Split):
                try:
                    post = partial(board.split, claim, self.id, action.subtasks)
                    if self._post(board, partial(post, reason=action.reason, tokens=tokens)):
                        n = len(action.subtasks)
                        self._outcome(held, "split", tokens, f"into {n} subtasks")
                    return tokens
                except SplitRefused as exc:
                    log.info(
                        "task %s: split refused (%s); asking for an answer", claim.task.id, exc
                    )
                    allowed = allowed - {ActionKind.SPLIT}
                    tokens = 0  # the refused split's tokens were charged already
                    continue
            assert isinstance(action, Answer)
            done = partial(board.complete, claim, self.id, action.answer, action.confidence)
            if self._post(board, partial(done, tokens=tokens)) is not None:
                self._outcome(held, "answered", tokens)
            return tokens

    def _execute(self, board: Board, action: Code) -> ExecOutput:
        runner = self._runner(board)
        if runner is None:
            return ExecOutput(error="code execution is not available in this swarm")
        return runner.run(action.code, self.config.code_timeout_s)

    # -- heartbeat --------------------------------------------------------------------------

    def _renew_s(self) -> float:
        if self.config.renew_s is not None:
            return self.config.renew_s
        leases = [self._lease_s(b) for b in self._boards.values()] or [60.0]
        return heartbeat_s(min(leases))

    def _heartbeat_loop(self) -> None:
        while not self._stop.is_set():
            if self._boards:
                try:
                    self._beat()
                except TRANSIENT as exc:
                    self._outage.failed(exc)
                except Exception:
                    log.exception("heartbeat failed")
            self._stop.wait(self._renew_s() if self._boards else 0.1)

    def _beat(self) -> None:
        with self._lock:
            held = list(self._held.values())
        for h in held:
            if h.lost or h.board.renew(h.claim, self.id, lease_s=self._lease_s(h.board)):
                continue
            with self._lock:
                still_held = self._held.get(h.claim.task.id) is h
            if still_held:  # not merely posted by its slot since the snapshot above
                h.lost = True
                log.warning("task %s: lease lost", h.claim.task.id)
        record = self.record(held)
        for sid, board in list(self._boards.items()):
            if sid not in self._finished:
                board.heartbeat(self.id, record, ttl_s=max(3 * self._renew_s(), 10.0))

    def record(self, held: list[_Held] | None = None) -> dict[str, str | int | float]:
        """What this worker publishes about itself for `swarm watch`."""
        if held is None:
            with self._lock:
                held = list(self._held.values())
        rate = getattr(self.mind, "tokens_per_s", None)
        if rate is None and self._stats.think_s > 0:
            rate = self._stats.tokens / self._stats.think_s
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "mind": self.mind.name,
            "slots": self.config.slots,
            "current": ",".join(h.claim.task.id for h in held),
            "tasks": self._stats.tasks,
            "tokens": self._stats.tokens,
            "tokens_per_s": round(float(rate or 0.0), 2),
            "started": int(self._stats.started * 1000),
        }
