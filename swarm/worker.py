"""The worker: sense (claim) -> think (mind) -> act (code in a sandbox) -> post, on N slots.

Workers are identical and keep no state that matters: a task's truth is on the blackboard,
guarded by its lease and fence. A worker that dies loses nothing (its leases expire and any
other worker reaps them); a worker that loses Redis waits with backoff and carries on.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import Enum
from functools import partial
from typing import Any, Protocol, TypeVar

import redis

from swarm import logs, system, trails
from swarm.board import (
    Board,
    Claim,
    ClaimStatus,
    LeaseLost,
    NoSuchSwarm,
    SplitRefused,
    heartbeat_s,
    newest_running,
    stored_lease_s,
)
from swarm.check import Check, CheckError, CheckResult, Verdict, run_check
from swarm.logs import task_outcome
from swarm.metrics import NoMetrics, WorkerMetrics
from swarm.minds.base import TURNS, Interrupted, Mind, MindError
from swarm.outage import OutageNotice, describe, is_outage
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
from swarm.purpose import DEFAULT_LEASE_S
from swarm.requirements import check_strength, default_strength
from swarm.task import Kind, Task

log = logging.getLogger("swarm.worker")


def _run_code(runner: CodeRunner, code: str, timeout_s: float) -> ExecOutput:
    try:
        return runner.run(code, timeout_s)
    except Exception as exc:  # a runner's failure is the check's error, not a worker crash
        return ExecOutput(error=f"code execution failed: {type(exc).__name__}: {exc}"[:300])


T = TypeVar("T")

# Errors that mean "Redis is away or refusing for now", not "the request was wrong" (a full
# Redis, a read-only replica, a cluster moving slots...). `swarm.outage.is_outage` also knows
# the refusals redis-py has no class for (BUSY, MISCONF, NOREPLICAS); the worker uses it.
TRANSIENT = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
)

BEAT_RETRY_S = 0.5  # after an unexpected heartbeat error, the next try
INTERRUPT_WAIT_S = 10.0  # after an interrupt, how long slots get to leave the mind


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
    # The kind of worker this is, for the division of labour (section 6a): workers of one
    # class share trails. '' takes the mind's name (the CLI adds the model's).
    worker_class: str = ""
    # What it offers against tasks' requirements (swarm/requirements.py): None takes the
    # mind's default strength; `model` names the model in its published profile.
    strength: int | None = None
    model: str = ""


class Step(str, Enum):
    """What one turn of a slot came to."""

    WORKED = "worked"  # a task was claimed and handled: claim again at once
    IDLE = "idle"  # nothing to do now (or Redis is away): wait a little, then try again
    FINISHED = "finished"  # nothing more for this slot (burst done, swarm gone): it ends


@dataclass
class _Held:
    """One task from its claim to its post: everything the worker keeps about it.

    The slot that claimed it alone reads and writes `allowed`, `executions`, `tokens` and
    `charged`. `renewed` and `lost` are shared with the heartbeat (which renews the lease or
    finds it lost) and the shutdown (which releases it): they are read and written only
    through `_Shared`, under its lock.
    """

    board: Board
    claim: Claim
    lease_s: float
    renewed: float  # monotonic seconds of the claim or the latest renewal
    lost: bool = False  # the lease is gone (reaped, taken over, released): post nothing
    started: float = field(default_factory=time.monotonic)
    allowed: frozenset[ActionKind] = frozenset()  # what the next step may do
    executions: list[Execution] = field(default_factory=list)  # code runs so far, in order
    tokens: int = 0  # spent since the board last charged them (a refused split is charged)
    charged: int = 0  # tokens posted with the task's split or answer (the worker's count)

    @property
    def task(self) -> Task:
        return self.claim.task


@dataclass(frozen=True)
class _SwarmInfo:
    purpose: str
    title: str
    lease_s: float
    sandbox: str
    check: str = ""  # the root's check as stored in meta (JSON), '' for none


@dataclass
class _Stats:
    tokens: int = 0
    tasks: int = 0
    think_s: float = 0.0
    started: float = field(default_factory=time.time)


class _Shared:
    """Everything the slot threads, the heartbeat thread and the shutdown share, behind one
    lock: the tasks held (and each one's renewal time and lost flag), the boards met, each
    swarm's facts, the swarm being served and those finished, the heartbeat's schedule, the
    warnings already given, and the worker's counters. Callers get copies, never the
    containers, so no thread iterates what another one changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, _Held] = {}
        self._boards: dict[str, Board] = {}
        self._infos: dict[str, _SwarmInfo] = {}
        self._finished: set[str] = set()
        self._current: str | None = None
        self._stats = _Stats()
        self._due = 0.0  # monotonic time of the next heartbeat
        self._beating = True  # false once the shutdown released what was held
        self._said: set[str] = set()  # the topics of the warnings given (_Advice)

    def hold(self, held: _Held) -> None:
        with self._lock:
            self._held[held.claim.task.id] = held

    def drop(self, held: _Held) -> None:
        with self._lock:
            if self._held.get(held.claim.task.id) is held:
                del self._held[held.claim.task.id]

    def held(self) -> list[_Held]:
        with self._lock:
            return list(self._held.values())

    def renewed(self, held: _Held, at: float) -> None:
        with self._lock:
            held.renewed = at

    def last_renewed(self, held: _Held) -> float:
        with self._lock:
            return held.renewed

    def lose(self, held: _Held, *, if_held: bool = False) -> bool:
        """Mark the task's lease lost (with `if_held`, only while its slot still holds it, not
        once it posted); True when it was marked."""
        with self._lock:
            if if_held and self._held.get(held.task.id) is not held:
                return False
            held.lost = True
            return True

    def lost(self, held: _Held) -> bool:
        with self._lock:
            return held.lost

    def board(self, sid: str, make: Callable[[], Board]) -> Board:
        with self._lock:
            found = self._boards.get(sid)
            if found is None:
                found = self._boards[sid] = make()
            return found

    def boards(self) -> list[Board]:
        with self._lock:
            return list(self._boards.values())

    def live_boards(self) -> list[Board]:
        with self._lock:
            return [b for sid, b in self._boards.items() if sid not in self._finished]

    def info(self, sid: str) -> _SwarmInfo | None:
        with self._lock:
            return self._infos.get(sid)

    def keep_info(self, sid: str, info: _SwarmInfo) -> _SwarmInfo:
        with self._lock:
            return self._infos.setdefault(sid, info)

    def leases(self) -> list[float]:
        """The leases of the tasks held, else those of the swarms met: no Redis read."""
        with self._lock:
            held = [h.lease_s for h in self._held.values()]
            return held or [i.lease_s for i in self._infos.values()]

    def finish(self, sid: str) -> None:
        with self._lock:
            self._finished.add(sid)

    def finished(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._finished)

    def current(self) -> str | None:
        with self._lock:
            return self._current

    def serve(self, sid: str | None) -> None:
        with self._lock:
            self._current = sid

    # the heartbeat's schedule

    def due(self) -> float:
        with self._lock:
            return self._due

    def plan_beat(self, at: float) -> None:
        with self._lock:
            self._due = at

    def beating(self) -> bool:
        with self._lock:
            return self._beating

    def stop_beating(self) -> None:
        with self._lock:
            self._beating = False

    def first_time(self, topic: str) -> bool:
        """True the first time a topic is asked about: a warning is given once per worker."""
        with self._lock:
            first = topic not in self._said
            self._said.add(topic)
            return first

    # the worker's counters, for its record

    def count_thought(self, think_s: float) -> None:
        with self._lock:
            self._stats.think_s += think_s

    def count_task(self, tokens: int) -> None:
        with self._lock:
            self._stats.tasks += 1
            self._stats.tokens += tokens

    def stats(self) -> _Stats:
        with self._lock:
            return replace(self._stats)


class _Advice:
    """Warns once when the lease and the thinking time disagree, with figures and a fix (what
    was said is kept in `_Shared`, since slots and the heartbeat both warn)."""

    def __init__(self, slots: int, once: Callable[[str], bool]) -> None:
        self.slots = slots
        self._once = once

    def step(self, think_s: float, lease_s: float) -> None:
        if think_s > lease_s and self._once("step"):
            log.warning(
                "one step took %.0f s, longer than the %.0f s lease: the task now rests on "
                "renewals alone, and a worker that dies mid-step costs the swarm the whole "
                "step again after the lease. Give the purpose a lease_s of %d or more, or make "
                "steps shorter: fewer slots (this worker has %d) or a smaller context "
                "(onnx:...?context=N).",
                think_s,
                lease_s,
                _round_up(think_s),
                self.slots,
            )

    def raised(self, swarm: str, lease_s: float, floor_s: float, mind: str) -> None:
        if self._once(f"raised {swarm}"):
            log.warning(
                "swarm %s has a %.0f s lease, too short for the %s mind to be renewed on time "
                "(a renewal may wait out one model call): this worker claims for %.0f s. Set "
                "the purpose's lease_s to %.0f or more, or pass --lease to choose.",
                swarm,
                lease_s,
                mind,
                floor_s,
                floor_s,
            )

    def late(self, task: str, gap_s: float, lease_s: float) -> None:
        if gap_s > lease_s / 2 and self._once("late"):
            log.warning(
                "task %s was renewed %.1f s after its previous renewal, more than half its "
                "%.0f s lease: another worker may reap it. The process is starved (more "
                "slots or model threads than cores?) or Redis is slow; give the purpose a "
                "lease_s of %d or more, or run fewer slots or workers on this machine.",
                task,
                gap_s,
                lease_s,
                _round_up(4 * gap_s),
            )


def _round_up(seconds: float, step: int = 10) -> int:
    return step * (int(seconds) // step + 1)


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
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.client = client
        self.metrics: WorkerMetrics = metrics or NoMetrics()
        self.mind = mind
        self.config = config
        self.id = _worker_id(config.name)
        self._code_runner = code_runner
        self._clock = clock
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._shared = _Shared()
        # The heartbeat sleeps on `_wake` until its planned time (`_shared.due()`): a task
        # with a shorter lease than the schedule allows, a mind about to block, or the
        # shutdown wakes it.
        self._wake = threading.Event()
        self._advice = _Advice(config.slots, self._shared.first_time)
        self._outage = OutageNotice(log)  # refusals: a full, read-only, busy Redis
        self.worker_class = trails.check_class(
            config.worker_class or trails.default_class(mind.name)
        )
        self._trails = trails.Trails(client)
        self.strength = check_strength(
            default_strength(mind.name) if config.strength is None else config.strength
        )

    # -- lifecycle -----------------------------------------------------------------------

    def run(self, *, install_signals: bool = True) -> int:
        """Serve until stopped (or, with --burst, until nothing is left). Returns an exit code."""
        if install_signals:  # SIGTERM, Ctrl+C, and Ctrl+Break on Windows
            system.on_stop(self.stop)
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
        self._shutdown(slots, beat)
        return 0

    def stop(self) -> None:
        """Claim nothing more; held tasks get `grace_s` to finish, then are released."""
        if not self._stop.is_set():
            log.info("worker %s stopping", self.id)
        self._stop.set()

    def _shutdown(self, slots: list[threading.Thread], beat: threading.Thread) -> None:
        """Held tasks get `grace_s` (renewed meanwhile); what is still held is released, and
        the mind is interrupted, so the slots leave it within about one native call."""
        deadline = time.monotonic() + self.config.grace_s
        for t in slots:
            t.join(max(0.0, deadline - time.monotonic()))
        # Every wait below hands the GIL over; without going first, each would wait out
        # one of the model's native calls.
        with TURNS.first():
            self._shared.stop_beating()  # no renewal may follow the release below
            self._wake.set()
            beat.join(INTERRUPT_WAIT_S)
            held = self._shared.held()
            # Bounded: with Redis gone for good, the leases expire and others reap the tasks.
            until = time.monotonic() + 10.0
            for h in held:
                self._shared.lose(h)  # whatever its slot thinks now is not posted
                self._retry(lambda h=h: h.board.release(h.claim, self.id), until=until)  # type: ignore[misc]
                self._outcome(h, "released", detail="worker stopping")
            self.mind.interrupt()
            leave = time.monotonic() + INTERRUPT_WAIT_S
            for t in slots:
                t.join(max(0.0, leave - time.monotonic()))
            for board in self._shared.boards():
                self._retry(lambda b=board: b.forget_worker(self.id), until=until)  # type: ignore[misc]
        # A slot still busy elsewhere (running code) may yet call the mind; exit frees it then.
        if not any(t.is_alive() for t in slots):
            self.mind.close()

    # -- redis away ---------------------------------------------------------------------

    def _retry(
        self, fn: Callable[[], T], *, until: float | Callable[[], float] | None = None
    ) -> T | None:
        """Call fn, waiting out Redis outages with capped exponential backoff and jitter.

        `until` (a monotonic time, or a function giving one as it moves) bounds the wait.
        """
        delay = 0.1
        while True:
            try:
                with TURNS.first():  # a post or a release need not wait out a model call
                    found = fn()
            except redis.RedisError as exc:
                if not is_outage(exc):
                    raise
                self.metrics.redis_error()
                deadline = until() if callable(until) else until
                if deadline is not None and time.monotonic() > deadline:
                    log.warning("giving up after Redis stayed away: %s", describe(exc))
                    return None
                self._saw_outage(exc)
                log.debug("Redis unavailable (%s); retrying in %.1fs", exc, delay)
                time.sleep(delay * (0.5 + self._rng.random()))
                delay = min(delay * 2, 5.0)
            else:
                self._outage_over()
                return found

    def _saw_outage(self, exc: BaseException) -> None:
        """One line when an outage begins: a lost connection through the process's tracker
        (which redis-py's own retries also report to), a refusal with what fixes it."""
        if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
            logs.REDIS.failed(exc)
        else:
            self._outage.saw(exc)

    def _outage_over(self) -> None:
        logs.REDIS.ok()
        self._outage.cleared()

    # -- choosing a swarm ------------------------------------------------------------------

    def _board(self) -> Board | None:
        """The swarm this worker serves: sticky until it finishes, then the next running one."""
        sid = self.config.swarm_id or self._shared.current()
        finished = self._shared.finished()
        if sid is None or sid in finished:
            if self.config.swarm_id is not None:
                return None
            sid = newest_running(self.client, skip=set(finished))
            self._shared.serve(sid)
        if sid is None:
            return None
        return self._shared.board(
            sid, partial(Board, self.client, sid, clock=self._clock, rng=self._rng)
        )

    def _lease_s(self, board: Board) -> float:
        """The lease this worker claims with: `--lease`, else the swarm's, raised to what the
        mind needs to be renewed on time (`min_lease_s`, e.g. the onnx mind's)."""
        if self.config.lease_s is not None:
            return self.config.lease_s
        swarm_s = self._info(board).lease_s
        floor = float(getattr(self.mind, "min_lease_s", 0.0))
        if swarm_s < floor:
            self._advice.raised(board.id, swarm_s, floor, self.mind.name)
        return max(swarm_s, floor)

    def _info(self, board: Board) -> _SwarmInfo:
        """The swarm's fixed facts, read once per swarm."""
        found = self._shared.info(board.id)
        if found is None:
            m = board.client.hmget(
                board.keys.meta, "purpose", "title", "lease_ms", "sandbox", "check"
            )
            lease_s = stored_lease_s(m[2])
            read = _SwarmInfo(m[0] or "", m[1] or "", lease_s, m[3] or "auto", m[4] or "")
            found = self._shared.keep_info(board.id, read)
        return found

    # -- the slot loop ----------------------------------------------------------------------

    def _slot(self) -> None:
        idle = 0.01
        while not self._stop.is_set():
            try:
                step = self._step()
                self._outage_over()
            except redis.RedisError as exc:
                if not is_outage(exc):
                    raise
                self.metrics.redis_error()
                self._saw_outage(exc)
                step = Step.IDLE
            except NoSuchSwarm:
                if self.config.swarm_id is not None:
                    log.error("swarm %s does not exist", self.config.swarm_id)
                    return
                step = Step.IDLE
            if step is Step.FINISHED:
                return
            if step is Step.WORKED:
                idle = 0.01
                continue
            self._stop.wait(idle * (0.5 + self._rng.random()))
            idle = min(idle * 2, self.config.poll_s)

    def _step(self) -> Step:
        """One claim, and the task it brings if any."""
        board = self._board()
        if board is None:
            return Step.FINISHED if self.config.burst else Step.IDLE
        lease_s = self._lease_s(board)
        with TURNS.first():  # while another slot's step is in the model
            outcome = board.claim(
                self.id,
                lease_s=lease_s,
                skills=self.config.skills,
                worker_class=self.worker_class,
                strength=self.strength,
                code=self._runner(board) is not None,
            )
        if outcome.status is ClaimStatus.OK and outcome.claim is not None:
            self.metrics.claimed()
            self._work(board, outcome.claim, lease_s)
            return Step.WORKED
        if outcome.status is ClaimStatus.CLOSED:
            log.info("swarm %s is %s", board.id, outcome.swarm_state)
            self._shared.finish(board.id)
            board.fold_trails(self._trails)  # what it learned outlives it
            return Step.FINISHED if self.config.swarm_id is not None else Step.IDLE
        if (
            outcome.status is ClaimStatus.EMPTY
            and self.config.burst
            and outcome.held_elsewhere == 0
        ):
            return Step.FINISHED
        return Step.IDLE

    # -- one task ---------------------------------------------------------------------------

    @contextmanager
    def _holding(self, board: Board, claim: Claim, lease_s: float) -> Iterator[_Held]:
        held = _Held(board, claim, lease_s, renewed=time.monotonic())
        self._shared.hold(held)
        if self._shared.due() - time.monotonic() > self._renew_s():
            self._wake.set()  # renewals are due sooner than the heartbeat planned
        try:
            yield held
        finally:
            self._shared.drop(held)

    def _work(self, board: Board, claim: Claim, lease_s: float) -> None:
        task = claim.task
        with self._holding(board, claim, lease_s) as held:
            self._outcome(held, "claimed", detail=f"{task.kind.value}: {task.title}")
            try:
                self._think_and_post(held)
            except Interrupted:
                # Only a stopping worker interrupts its mind, after releasing the task.
                log.info("task %s: interrupted while thinking, nothing posted", task.id)
            except LeaseLost as exc:
                log.warning("%s", exc)
            except (MindError, InvalidAction) as exc:
                self._post_failure(held, f"{type(exc).__name__}: {exc}")
            except Exception as exc:  # a mind's bug must fail the attempt, not the worker
                if is_outage(exc):
                    raise
                log.exception("task %s: mind crashed", task.id)
                self._post_failure(held, f"mind crashed: {type(exc).__name__}: {exc}")
            self._shared.count_task(held.charged)

    def _post(self, held: _Held, fn: Callable[[], T]) -> T | None:
        """Post through a Redis outage for as long as the lease could still be ours.

        The lease holds a lease length past its last renewal, so a Redis that refuses writes
        but still renews leases (a full one: renew.lua is allowed to run out of memory) keeps
        the post waiting, with the task and its attempt, until it takes writes again.
        """
        lease_s = self._lease_s(held.board)
        return self._retry(fn, until=lambda: self._shared.last_renewed(held) + lease_s)

    def _post_failure(self, held: _Held, reason: str) -> None:
        try:
            fail = partial(held.board.fail, held.claim, self.id, reason)
            if self._post(held, fail) is not None:
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

    def _allowed(self, held: _Held) -> frozenset[ActionKind]:
        """What the task's next step may do: answer; split, while the claim allows it; run
        code, on a work task, within the rounds allowed and where a sandbox serves."""
        allowed = {ActionKind.ANSWER}
        if held.claim.can_split:
            allowed.add(ActionKind.SPLIT)
        if (
            held.task.kind is Kind.WORK
            and len(held.executions) < self.config.max_code_rounds
            and self._runner(held.board) is not None
        ):
            allowed.add(ActionKind.CODE)
        return frozenset(allowed)

    def _runner(self, board: Board) -> CodeRunner | None:
        if self._code_runner is None or self._info(board).sandbox == "none":
            return None
        return self._code_runner(board.id)

    def _think_and_post(self, held: _Held) -> None:
        """Think until the mind answers or splits, running its code between steps; post that."""
        held.allowed = self._allowed(held)
        while True:
            action = self._think(held)
            if self._shared.lost(held):
                raise LeaseLost(f"task {held.task.id}: lease lost while thinking, result dropped")
            if isinstance(action, Code):
                held.executions.append(Execution(action.code, self._execute(held.board, action)))
                held.allowed = self._allowed(held)
            elif isinstance(action, Split):
                if self._post_split(held, action):
                    return
            else:
                self._post_answer(held, action)
                return

    def _think(self, held: _Held) -> Answer | Split | Code:
        """One step of the mind on the task, counted; the action it chose, if allowed."""
        info, claim = self._info(held.board), held.claim
        ctx = claim.context
        request = ThinkRequest(
            purpose=info.purpose,
            purpose_title=info.title,
            task=claim.task,
            allowed=held.allowed,
            limits=Limits(max_children=claim.max_children),
            ancestry=ctx.ancestry,
            siblings=ctx.siblings,
            children=ctx.children,
            executions=tuple(held.executions),
        )
        started = time.monotonic()
        thought = self.mind.think(request)
        think_s = time.monotonic() - started
        self._shared.count_thought(think_s)
        self.metrics.thought(think_s, thought.tokens)
        self._advice.step(think_s, held.lease_s)
        held.tokens += thought.tokens
        action = thought.action
        if action.kind not in held.allowed:
            raise InvalidAction(f"mind chose '{action.kind.value}', not allowed at this step")
        return action

    def _post_split(self, held: _Held, action: Split) -> bool:
        """Post the split; False when the board refused it and the task must be answered."""
        split = partial(held.board.split, held.claim, self.id, action.subtasks)
        try:
            posted = self._post(held, partial(split, reason=action.reason, tokens=held.tokens))
            held.charged = held.tokens
            if posted:
                self._outcome(held, "split", held.tokens, f"into {len(action.subtasks)} subtasks")
            return True
        except SplitRefused as exc:
            log.info("task %s: split refused (%s); asking for an answer", held.task.id, exc)
            held.allowed = held.allowed - {ActionKind.SPLIT}
            held.tokens = 0  # the refused split's tokens were charged already
            return False

    def _post_answer(self, held: _Held, action: Answer) -> None:
        checked = self._check_root(held, action.answer)
        if checked is not None:
            self._post_checked(held, action, checked)
            return
        done = partial(held.board.complete, held.claim, self.id, action.answer, action.confidence)
        posted = self._post(held, partial(done, tokens=held.tokens))
        held.charged = held.tokens
        if posted is not None:
            self._outcome(held, "answered", held.tokens)

    def _check_root(self, held: _Held, answer: str) -> CheckResult | None:
        """The verdict of the swarm's check on a root answer, before it is posted (None: not
        the root, or no check). A python check runs where model code runs (the sandbox,
        through the code runner), never in this process; the lease is renewed meanwhile."""
        board = held.board
        stored = self._info(board).check
        if held.task.parent or not stored:  # only the root answer is checked
            return None
        try:
            check = Check.from_json(stored)
        except CheckError as exc:
            return CheckResult(Verdict.ERROR, f"the swarm's check cannot be read: {exc}")
        runner = self._runner(board)
        run_code = None if runner is None else partial(_run_code, runner)
        started = time.monotonic()
        try:
            return run_check(check, answer, run_code)
        finally:
            self.metrics.executed(time.monotonic() - started)

    def _post_checked(self, held: _Held, action: Answer, checked: CheckResult) -> None:
        """Post the root's answer with its verdict: complete.lua posts it, or sends it back."""
        board, claim, tokens = held.board, held.claim, held.tokens
        post = partial(board.complete_checked, claim, self.id, action.answer, action.confidence)
        sent_back = self._post(held, partial(post, checked, tokens=tokens))
        held.charged = tokens
        if sent_back is not None:
            outcome = "sent_back" if sent_back else "answered"
            self._outcome(held, outcome, tokens, f"check {checked.verdict.value}: {checked.output}")

    def _execute(self, board: Board, action: Code) -> ExecOutput:
        runner = self._runner(board)
        if runner is None:
            return ExecOutput(error="code execution is not available in this swarm")
        started = time.monotonic()
        try:
            return runner.run(action.code, self.config.code_timeout_s)
        except Exception as exc:  # a runner's failure is what the mind sees, not a task crash
            return ExecOutput(error=f"code execution failed: {type(exc).__name__}: {exc}"[:300])
        finally:
            self.metrics.executed(time.monotonic() - started)

    # -- heartbeat --------------------------------------------------------------------------

    def _renew_s(self) -> float:
        """The heartbeat's interval, from what the slots recorded: no Redis read, no error."""
        if self.config.renew_s is not None:
            return self.config.renew_s
        # before any swarm's lease is known, the heartbeat beats as for the default one
        return heartbeat_s(min(self._shared.leases(), default=DEFAULT_LEASE_S))

    def _heartbeat_loop(self) -> None:
        """Renew every held lease and publish this worker's record, until the shutdown
        releases what is held. Nothing ends this loop early: each failure is logged and
        the next beat comes anyway, or every long task would lose its lease."""
        TURNS.listen(self._wake)  # a mind about to make a long native call wakes us first
        try:
            self._heartbeats()
        finally:
            TURNS.unlisten(self._wake)

    def _heartbeats(self) -> None:
        self._shared.plan_beat(time.monotonic())
        while True:
            self._wake.wait(max(0.0, self._shared.due() - time.monotonic()))
            self._wake.clear()
            if not self._shared.beating():
                return
            began = time.monotonic()
            try:
                with TURNS.first():  # the model waits for this beat between two native calls
                    self._beat()
                # a beat's length does not delay the next
                self._shared.plan_beat(began + self._renew_s())
            except Exception as exc:  # see the docstring
                if is_outage(exc):
                    self.metrics.redis_error()
                    self._saw_outage(exc)
                else:
                    log.warning("heartbeat failed (%s: %s); beating on", type(exc).__name__, exc)
                self._shared.plan_beat(time.monotonic() + BEAT_RETRY_S)
            finally:
                TURNS.beaten()

    def _beat(self) -> None:
        held = self._shared.held()
        for h in held:
            if self._shared.lost(h):
                continue
            now = time.monotonic()
            self._advice.late(h.task.id, now - self._shared.last_renewed(h), h.lease_s)
            if h.board.renew(h.claim, self.id, lease_s=h.lease_s):
                self._shared.renewed(h, now)
            # not merely posted by its slot since the snapshot
            elif self._shared.lose(h, if_held=True):
                log.warning("task %s: lease lost", h.task.id)
        boards = self._shared.live_boards()
        if boards:
            record = self.record(held)
            ttl_s = max(3 * self._renew_s(), 10.0)
            for board in boards:
                # code is what this swarm gets: a runner, a sandbox, an executor serving
                code = int(self._runner(board) is not None)
                board.heartbeat(self.id, {**record, "code": code}, ttl_s=ttl_s)
                board.fold_trails(self._trails)  # outcomes reach the long-lived trails

    def record(self, held: list[_Held] | None = None) -> dict[str, str | int | float]:
        """What this worker publishes about itself for `swarm watch`."""
        if held is None:
            held = self._shared.held()
        stats = self._shared.stats()
        rate = getattr(self.mind, "tokens_per_s", None)
        if rate is None and stats.think_s > 0:
            rate = stats.tokens / stats.think_s
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "mind": self.mind.name,
            "model": self.config.model,
            "class": self.worker_class,
            "strength": self.strength,
            "skills": ",".join(self.config.skills),
            "code": int(self._code_runner is not None),
            "slots": self.config.slots,
            "current": ",".join(h.claim.task.id for h in held),
            "tasks": stats.tasks,
            "tokens": stats.tokens,
            "tokens_per_s": round(float(rate or 0.0), 2),
            "started": int(stats.started * 1000),
        }
