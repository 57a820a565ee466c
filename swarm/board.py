"""The blackboard: typed wrappers around the Lua scripts, and the reads the CLI and watch need.

Every write is one script (atomic, one slot). Time and random draws are passed in from
`clock` and `rng`, so tests expire leases by handing in a later clock instead of sleeping.
"""

from __future__ import annotations

import random
import re
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

import redis
import redis.cluster

from swarm import keys, trails
from swarm.check import MAX_OUTPUT as MAX_CHECK_OUTPUT
from swarm.check import CheckResult
from swarm.keys import SwarmKeys
from swarm.pheromone import MAX_LEVEL, level
from swarm.protocol import Confidence, Limits, Subtask
from swarm.purpose import DEFAULT_LEASE_S, DEFAULT_SETTINGS, check_ranges, settings
from swarm.reads import Reads
from swarm.requirements import Requirements, check_strength
from swarm.scripts import scripts_for, scripts_without_flags, shebang_unsupported
from swarm.stored import integer, number
from swarm.task import State, SwarmState, Task

if TYPE_CHECKING:
    from swarm.purpose import Purpose

Clock = Callable[[], float]

CANCEL_WALK_LIMIT = 100_000
HEARTBEAT_MAX_S = 5.0  # workers beat every lease/4, but at least this often


def heartbeat_s(lease_s: float) -> float:
    """How often a worker renews its leases and publishes its record."""
    return max(0.05, min(lease_s / 4, HEARTBEAT_MAX_S))


def stale_s(lease_s: float) -> float:
    """A worker that missed two and a half beats is shown stale (killed, stuck, cut off)."""
    return 2.5 * heartbeat_s(lease_s)


def stored_lease_s(lease_ms: Any) -> float:
    """A swarm's lease from its meta's `lease_ms` (read from Redis, so untrusted): the
    default lease when it is missing or not a positive number."""
    ms = number(lease_ms, 0.0)
    return ms / 1000 if ms > 0 else DEFAULT_LEASE_S


def stale_ms(lease_ms: Any) -> int:
    """How long after its last beat a worker of a swarm with this `lease_ms` is stale (ms)."""
    return int(stale_s(stored_lease_s(lease_ms)) * 1000)


class BoardError(RuntimeError):
    """Something on the blackboard is not as the caller expected."""


class NoSuchSwarm(BoardError):
    pass


class LeaseLost(BoardError):
    """The task was reaped or taken over; this worker's result must be dropped."""


class InvalidRequest(ValueError):
    """A person's request refused before it reaches Redis (a boost or an injected task out of
    bounds): the command shows why, nothing is written."""


class SplitRefused(BoardError):
    """A split is over a budget or the depth limit; the step must answer instead."""


class ClaimStatus(str, Enum):
    OK = "ok"
    EMPTY = "empty"  # nothing open right now (others may still hold tasks)
    PAUSED = "paused"
    CLOSED = "closed"  # the swarm is done or cancelled
    DECLINED = "declined"  # this worker's class left the task it drew to another (section 6a)


@dataclass(frozen=True)
class TaskContext:
    ancestry: tuple[Task, ...]  # root first, parent last
    siblings: tuple[Task, ...]  # finished siblings, in order
    children: tuple[Task, ...]  # all children, in order


@dataclass(frozen=True)
class Claim:
    """A leased task and what the worker needs to decide what it may do with it."""

    task: Task
    fence: int
    swarm_state: SwarmState
    tasks: int
    max_tasks: int
    max_depth: int
    max_children: int
    context: TaskContext = TaskContext((), (), ())

    @property
    def can_split(self) -> bool:
        return (
            self.swarm_state is SwarmState.RUNNING
            and self.task.kind.value == "work"
            and self.task.depth < self.max_depth
            and self.tasks < self.max_tasks
        )


@dataclass(frozen=True)
class ClaimOutcome:
    status: ClaimStatus
    claim: Claim | None = None
    held_elsewhere: int = 0  # tasks other workers still hold (for --burst)
    swarm_state: str = ""


def named(flat: Sequence[Any]) -> dict[str, Any]:
    """A script's flat name/value reply as a dict: replies are decoded by name (_lib.lua).
    The client decodes responses, so names and values arrive as str (or nested lists)."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def records(rows: Sequence[Any]) -> list[dict[str, str]]:
    """A reply's records: its first row names the fields, each other row holds one record's
    values in that order (_lib.lua `task_rows`); absent values are left out."""
    if not rows:
        return []
    names = rows[0]
    return [{n: v for n, v in zip(names, row, strict=True) if v is not None} for row in rows[1:]]


def _context_tasks(rows: Sequence[Any], parent: str, depth: int | None) -> tuple[Task, ...]:
    """Context tasks, each with the parent and depth it has by where it sits (not read)."""
    return tuple(
        Task.from_hash(rec.pop("id", ""), rec, parent=parent, depth=n if depth is None else depth)
        for n, rec in enumerate(records(rows))
    )


def _context(task: Task, reply: Sequence[Any]) -> TaskContext:
    """read_context's reply: each task holds only the fields a prompt uses (_lib.lua)."""
    parts = named(reply)
    return TaskContext(
        ancestry=_context_tasks(parts["ancestry"], "", None),  # root first: depth = position
        siblings=_context_tasks(parts["siblings"], task.parent, task.depth),
        children=_context_tasks(parts["children"], task.id, task.depth + 1),
    )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:24] or "swarm"


def new_request_id() -> str:
    """Names one control write, so a resent copy of it is recognised (swarm/lua/_lib.lua)."""
    return secrets.token_hex(8)


def _is_cluster(client: Any) -> bool:
    return isinstance(client, redis.cluster.RedisCluster)


def new_swarm_id(name: str = "") -> str:
    """A readable, unique id; never contains braces, so the hash tag stays intact."""
    return f"{_slug(name)}-{secrets.token_hex(3)}"


def _meta_fields(swarm_id: str, purpose: Purpose, now_ms: int) -> dict[str, str | int | float]:
    return {
        "id": swarm_id,
        "name": purpose.name,
        "title": purpose.title,
        "purpose": purpose.text,
        "sandbox": purpose.sandbox,
        **settings(purpose.budgets, purpose.tuning),
        "deadline": now_ms + int(purpose.budgets.deadline_s * 1000),
        "trail_half_life_s": trails.HALF_LIFE_S,
        # the root's requirements, which every task of the swarm inherits (section 6a)
        "min_strength": purpose.requires.min_strength,
        "needs_code": int(purpose.requires.needs_code),
        # How the root's answer is checked (swarm/check.py), and how often it may go back.
        "check": purpose.check.to_json() if purpose.check is not None else "",
        "check_retries": purpose.check.retries if purpose.check is not None else 0,
    }


class Board:
    """One swarm's blackboard on one Redis (or Redis Cluster) client with decoded responses."""

    def __init__(
        self,
        client: Any,
        swarm_id: str,
        *,
        clock: Clock = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.id = swarm_id
        self.keys = SwarmKeys(swarm_id)
        self.clock = clock
        self.rng = rng or random.Random()
        self._scripts = scripts_for(client)
        self._script_keys = [
            self.keys.meta,
            self.keys.open,
            self.keys.traits,
            self.keys.leases,
            self.keys.fence,
            self.keys.events,
            self.keys.task_prefix,
            self.keys.children_prefix,
        ]

    # -- plumbing --------------------------------------------------------------------

    def now_ms(self, now: float | None = None) -> int:
        return int((self.clock() if now is None else now) * 1000)

    def _run(self, name: str, *args: Any, more_keys: Sequence[str] = ()) -> Any:
        keys = [*self._script_keys, *more_keys]
        try:
            return self._scripts[name](keys=keys, args=list(args))
        except redis.ResponseError as exc:
            if "NOSWARM" in str(exc):
                raise NoSuchSwarm(f"no swarm {self.id!r} on this Redis") from None
            if shebang_unsupported(exc):  # nothing ran: the script did not compile
                self._scripts = scripts_without_flags(self.client)
                return self._run(name, *args, more_keys=more_keys)
            raise

    def _run_once(self, name: str, request: str | None, *args: Any) -> Any:
        """A control write that applies once, however often redis-py resends it.

        A stall past the socket timeout or a dropped connection makes redis-py send the same
        EVALSHA again; the request id (last in ARGV) lets the script answer a resend with
        the first reply instead of applying it twice.
        """
        rid = request or new_request_id()
        return self._run(name, *args, rid, more_keys=(self.keys.requests, self.keys.requests_until))

    # -- creating ----------------------------------------------------------------------

    @classmethod
    def seed(
        cls,
        client: Any,
        purpose: Purpose,
        *,
        swarm_id: str | None = None,
        clock: Clock = time.time,
        rng: random.Random | None = None,
        request: str | None = None,
    ) -> Board:
        """Put a purpose on the blackboard: meta, root task, the purpose's listed tasks.

        One script writes the swarm and its index entry, so `ls` shows every swarm there is;
        on a Redis Cluster the index lives in another slot and is written just after.
        """
        check_ranges(purpose)  # a number out of range would fail half-way through the write
        board = cls(client, swarm_id or new_swarm_id(purpose.name), clock=clock, rng=rng)
        now = board.now_ms()
        meta = _meta_fields(board.id, purpose, now)
        args: list[Any] = [now, request or new_request_id(), len(meta)]
        for field, value in meta.items():
            args += [field, value]
        args += [purpose.title, purpose.text, len(purpose.tasks)]
        for task in purpose.tasks:
            args += [task.title, task.detail, ",".join(task.tags)]
        cluster = _is_cluster(client)
        try:
            board._run("seed", *args, more_keys=() if cluster else (keys.INDEX,))
        except redis.ResponseError as exc:
            if "EXISTS" in str(exc):
                raise BoardError(f"swarm {board.id!r} already exists") from None
            raise
        if cluster:
            client.zadd(keys.INDEX, {board.id: now})
        if purpose.tuning.learning > 0:
            board.seed_trails(trails.Trails(client))
        return board

    # -- the worker's operations ---------------------------------------------------------

    def claim(
        self,
        worker: str,
        *,
        lease_s: float = DEFAULT_LEASE_S,
        skills: Iterable[str] = (),
        reap_limit: int = 8,
        worker_class: str = "",
        strength: int = 0,
        code: bool = False,
        now: float | None = None,
    ) -> ClaimOutcome:
        reply = self._run(
            "claim",
            worker,
            self.now_ms(now),
            int(lease_s * 1000),
            self.rng.random(),
            self.rng.random(),
            self.rng.random(),
            ",".join(skills),
            reap_limit,
            worker_class,
            strength,
            int(code),
        )
        status, fields = ClaimStatus(reply[0]), named(reply[1:])
        if status is ClaimStatus.DECLINED:
            return ClaimOutcome(status)
        if status is ClaimStatus.EMPTY:
            return ClaimOutcome(status, held_elsewhere=int(fields["held"]))
        if status is ClaimStatus.CLOSED:
            return ClaimOutcome(status, swarm_state=str(fields["state"]))
        if status is ClaimStatus.PAUSED:
            return ClaimOutcome(status, swarm_state=SwarmState.PAUSED.value)
        task = Task.from_hash(fields["id"], named(fields["task"]))
        # a budget missing from meta reads as the default, as it does in the scripts
        swarm = {**DEFAULT_SETTINGS, **named(fields["swarm"])}
        claim = Claim(
            task=task,
            fence=int(fields["fence"]),
            swarm_state=SwarmState(swarm["state"]),
            tasks=int(swarm["tasks"]),
            max_tasks=int(swarm["max_tasks"]),
            max_depth=int(swarm["max_depth"]),
            max_children=int(swarm["max_children"]),
            context=_context(task, fields["context"]),
        )
        return ClaimOutcome(status, claim=claim, swarm_state=str(swarm["state"]))

    def renew(self, claim: Claim, worker: str, *, lease_s: float, now: float | None = None) -> bool:
        return bool(
            self._run(
                "renew", claim.task.id, claim.fence, worker, self.now_ms(now), int(lease_s * 1000)
            )
        )

    def complete(
        self,
        claim: Claim,
        worker: str,
        answer: str,
        confidence: Confidence = Confidence.MEDIUM,
        *,
        tokens: int = 0,
        now: float | None = None,
    ) -> SwarmState:
        return self._complete(claim, worker, answer, confidence, None, tokens, now)[0]

    def complete_checked(
        self,
        claim: Claim,
        worker: str,
        answer: str,
        confidence: Confidence,
        check: CheckResult,
        *,
        tokens: int = 0,
        now: float | None = None,
    ) -> bool:
        """Post the root's answer with its check's verdict. True when the answer failed and
        went back to the swarm as a synthesize task with the checker's output as feedback;
        False when it was posted (passed, or out of re-checks or budget: complete.lua)."""
        return self._complete(claim, worker, answer, confidence, check, tokens, now)[1]

    def _complete(
        self,
        claim: Claim,
        worker: str,
        answer: str,
        confidence: Confidence,
        check: CheckResult | None,
        tokens: int,
        now: float | None,
    ) -> tuple[SwarmState, bool]:
        reply = self._run(
            "complete",
            claim.task.id,
            claim.fence,
            worker,
            self.now_ms(now),
            answer,
            confidence.value,
            confidence.weight,
            tokens,
            "" if check is None else check.verdict.value,
            "" if check is None else check.output[:MAX_CHECK_OUTPUT],
        )
        if reply[0] == "lost":
            raise LeaseLost(f"task {claim.task.id}: lease lost, result dropped")
        return SwarmState(reply[1]), reply[2] == "sent_back"

    def split(
        self,
        claim: Claim,
        worker: str,
        subtasks: Sequence[Subtask],
        *,
        reason: str = "",
        tokens: int = 0,
        now: float | None = None,
    ) -> list[str]:
        args: list[Any] = [
            claim.task.id,
            claim.fence,
            worker,
            self.now_ms(now),
            tokens,
            reason,
            len(subtasks),
        ]
        for sub in subtasks:
            args += [sub.title, sub.detail, ",".join(sub.tags)]
        reply = self._run("split", *args)
        if reply[0] == "lost":
            raise LeaseLost(f"task {claim.task.id}: lease lost, split dropped")
        if reply[0] == "refused":
            raise SplitRefused(str(reply[1]))
        return [str(c) for c in reply[1:]]

    def fail(
        self,
        claim: Claim,
        worker: str,
        reason: str,
        *,
        tokens: int = 0,
        now: float | None = None,
    ) -> State:
        reply = self._run(
            "fail", claim.task.id, claim.fence, worker, self.now_ms(now), reason[:500], tokens
        )
        if reply[0] == "lost":
            raise LeaseLost(f"task {claim.task.id}: lease lost")
        return State(reply[1])

    def release(self, claim: Claim, worker: str, *, now: float | None = None) -> bool:
        return bool(self._run("release", claim.task.id, claim.fence, worker, self.now_ms(now)))

    # -- a person's operations -------------------------------------------------------------

    def cancel(
        self,
        task_id: str | None,
        who: str,
        *,
        reason: str = "cancelled",
        now: float | None = None,
        request: str | None = None,
    ) -> int:
        """Cancel a task and its subtree, or the whole swarm (task_id None). Returns the count."""
        n = int(
            self._run_once(
                "cancel", request, task_id or "", who, self.now_ms(now), reason, CANCEL_WALK_LIMIT
            )
        )
        if n < 0:
            raise BoardError(f"no task {task_id!r} in swarm {self.id!r}")
        return n

    def boost(
        self,
        task_id: str,
        amount: float,
        who: str,
        *,
        now: float | None = None,
        request: str | None = None,
    ) -> bool:
        check_boost(amount)
        return bool(self._run_once("boost", request, task_id, repr(amount), who, self.now_ms(now)))

    def default_boost(self, *, now: float | None = None) -> float:
        """What a boost deposits when a person names no amount: enough to be taken next."""
        return min(BOOST_OVER_TOP * max(self.top_pheromone(now=now), 1.0), MAX_LEVEL)

    def pause(self, who: str, *, now: float | None = None, request: str | None = None) -> bool:
        return bool(self._run_once("pause", request, who, self.now_ms(now)))

    def resume(self, who: str, *, now: float | None = None, request: str | None = None) -> bool:
        return bool(self._run_once("resume", request, who, self.now_ms(now)))

    # -- reads --------------------------------------------------------------------------------

    def reads(self) -> Reads:
        """Reads of this swarm to send in one round trip, answered by name (swarm/reads.py)."""
        return Reads(self.client, self.keys)

    def meta(self) -> dict[str, str]:
        found: dict[str, str] = self.client.hgetall(self.keys.meta)
        if not found:
            raise NoSuchSwarm(f"no swarm {self.id!r} on this Redis")
        return found

    def state(self) -> SwarmState:
        value = self.client.hget(self.keys.meta, "state")
        if value is None:
            raise NoSuchSwarm(f"no swarm {self.id!r} on this Redis")
        return SwarmState(value)

    def task(self, tid: str) -> Task | None:
        h = self.client.hgetall(self.keys.task(tid))
        return Task.from_hash(tid, h) if h else None

    def child_ids(self, tid: str) -> list[str]:
        return list(self.client.lrange(self.keys.children(tid), 0, -1))

    def tasks(self, tids: Sequence[str]) -> list[Task]:
        """Several tasks in one round trip (all keys are in one slot)."""
        pipe = self.client.pipeline(transaction=False)
        for tid in tids:
            pipe.hgetall(self.keys.task(tid))
        return [Task.from_hash(tid, h) for tid, h in zip(tids, pipe.execute(), strict=True) if h]

    def children(self, tid: str) -> list[Task]:
        return self.tasks(self.child_ids(tid))

    def context(self, task: Task) -> TaskContext:
        """Ancestry, finished siblings and children, as a claim returns them (one round trip)."""
        return _context(task, self._run("context", task.id))

    def workers_alive(self, *, lease_ms: Any = None, now: float | None = None) -> int:
        """Workers whose last beat is fresh, by the swarm's lease (`lease_ms`: read if None)."""
        if lease_ms is None:
            lease_ms = self.client.hget(self.keys.meta, "lease_ms")
        since = self.now_ms(now) - stale_ms(lease_ms)
        return int(self.client.zcount(self.keys.workers, since, "+inf"))

    def status(self, *, now: float | None = None) -> dict[str, Any]:
        """What `swarm status --json` prints: counters only, O(1) in the number of tasks."""
        m = self.meta()
        by_state = {s.value: int(m.get(f"n_{s.value}", 0)) for s in State}
        return {
            "id": self.id,
            "title": m.get("title", ""),
            "state": m["state"],
            "outcome": m.get("outcome", ""),
            "tasks": int(m.get("tasks", 0)),
            "by_state": by_state,
            "tokens": int(m.get("tokens", 0)),
            "completions": int(m.get("completions", 0)),
            "workers_alive": self.workers_alive(lease_ms=m.get("lease_ms", ""), now=now),
            # open tasks no live worker meets (section 6a): they wait, then die after unmet_s
            "unmet": int(self.client.hlen(self.keys.unmet)),
            "budgets": {
                "max_tasks": int(m["max_tasks"]),
                "max_depth": int(m["max_depth"]),
                "max_tokens": int(m["max_tokens"]),
                "max_attempts": int(m["max_attempts"]),
                "deadline_s": float(m["deadline_s"]),
                "unmet_s": number(m.get("unmet_s"), DEFAULT_SETTINGS["unmet_s"]),
            },
            "created": int(m["created"]),
            "finished": int(m["finished"]) if m.get("finished") else None,
            # The root's check: '' when the purpose has none or no answer was checked yet.
            "check": {
                "verdict": m.get("check_verdict", ""),
                "checks": integer(m.get("checks")),
                "output": m.get("check_output", ""),
            },
        }

    def answer(self) -> str | None:
        """The root's answer once the swarm is done, else None."""
        m = self.client.hmget(self.keys.meta, "state", "answer")
        return m[1] if m[0] == SwarmState.DONE.value else None

    def events(self, after: str = "-", count: int = 100) -> list[tuple[str, dict[str, str]]]:
        start = after if after == "-" else f"({after}"
        return [
            (eid, dict(f)) for eid, f in self.client.xrange(self.keys.events, start, "+", count)
        ]

    # -- trails (swarm/trails.py) -------------------------------------------------------------

    def seed_trails(self, store: trails.Trails, *, now: float | None = None) -> int:
        """Start this swarm's trails from the long-lived ones; returns how many were seeded.

        A separate script from `seed`: on a cluster the long-lived trails live in another
        slot, so they are read here and handed over (a claim before this sees no trails)."""
        args = [self.now_ms(now), int(store.half_life_s * 1000), *store.seed_args()]
        return int(self._run("trails_seed", *args))

    def fold_trails(self, store: trails.Trails, *, now: float | None = None) -> int:
        """Move this swarm's new outcomes into the long-lived trails; returns how many.

        Two steps (take, then fold), since the two hashes may live in different slots;
        outcomes taken by a process that dies before folding are lost to the long-lived
        trails only (this swarm's own trails keep them)."""
        pairs = [str(x) for x in self._run("trails_take")]
        if pairs:  # most heartbeats find nothing new: no second round trip then
            store.fold(pairs, self.now_ms(now))
        return len(pairs) // 2

    def own_trails(self) -> list[trails.Trail]:
        """This swarm's own trails (seeded plus its outcomes)."""
        return trails.parse_all(self.client.hgetall(self.keys.trails))

    def failed_by(self, tid: str) -> list[str]:
        """The worker classes that have failed a task (escalation), in order."""
        return [c for c in (self.client.hget(self.keys.failed, tid) or "").split(",") if c]

    # -- workers -----------------------------------------------------------------------------

    def heartbeat(
        self,
        worker: str,
        record: dict[str, str | int | float],
        *,
        ttl_s: float,
        now: float | None = None,
    ) -> None:
        """Publish that a worker is alive and what it is doing (one round trip)."""
        now_ms = self.now_ms(now)
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(self.keys.workers, {worker: now_ms})
        pipe.hset(self.keys.worker(worker), mapping={**record, "seen": now_ms})
        pipe.pexpire(self.keys.worker(worker), int(ttl_s * 1000))
        # what the claim script reads of the live workers (section 6a): the classes escalation
        # may steer a task to, and the profiles that tell whether anyone meets a requirement
        strength, code = record.get("strength", 0), record.get("code", 0)
        if record.get("class"):
            pipe.hset(self.keys.classes, str(record["class"]), f"{now_ms}|{strength}|{code}")
        pipe.hset(self.keys.profiles, f"{strength}|{code}", now_ms)
        pipe.execute()

    def forget_worker(self, worker: str) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.zrem(self.keys.workers, worker)
        pipe.delete(self.keys.worker(worker))
        pipe.execute()

    # -- a person adds work ----------------------------------------------------------------

    def inject(
        self,
        title: str,
        who: str,
        *,
        parent: str = "0",
        detail: str = "",
        tags: Sequence[str] = (),
        requires: Requirements | None = None,
        now: float | None = None,
        request: str | None = None,
    ) -> str:
        """Add an open task under a waiting parent (swarm/lua/inject.lua); returns its id.

        `requires`: what its worker must meet, on top of what the parent requires (inherited).
        Raises BoardError with the reason when the swarm or the parent cannot take it.
        """
        title, clean_tags = _checked_injection(title, detail, tags)
        need = requires or Requirements()
        check_strength(need.min_strength, "minimum strength")
        reply = self._run_once(
            "inject",
            request,
            parent,
            title,
            detail,
            ",".join(clean_tags),
            who,
            self.now_ms(now),
            need.min_strength,
            int(need.needs_code),
        )
        if reply[0] != "ok":
            raise BoardError(f"cannot inject into swarm {self.id}: {reply[1]}")
        return str(reply[1])

    def top_pheromone(self, *, now: float | None = None) -> float:
        """The summed current pheromone of the claim rule's top candidates (0 when none)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(self.keys.meta, "lambda", "created", "candidates")
        pipe.zrevrange(self.keys.open, 0, 63, withscores=True)
        (lam, created, k), top = pipe.execute()
        # read from Redis, so untrusted: level() bounds each term, number() each field
        t_s = (self.now_ms(now) - number(created, 0)) / 1000
        scores = [s for _, s in top[: max(int(number(k, 16)), 1)]]
        return sum(level(s, t_s, number(lam, 0)) for s in scores)


# A default boost outweighs everything the claim rule now weighs, so the task is taken next
# (unless a worker explores at random, with probability epsilon).
BOOST_OVER_TOP = 100.0


def check_boost(amount: float) -> float:
    """A boost is a positive, finite amount of at most MAX_LEVEL (InvalidRequest otherwise)."""
    if not isinstance(amount, int | float) or not 0 < amount <= MAX_LEVEL:
        # NaN fails the comparison too; inf and 1e308 are over the cap
        raise InvalidRequest(f"a boost must be a number > 0 and <= {MAX_LEVEL:g}, got {amount!r}")
    return float(amount)


def list_swarms(client: Any, limit: int = 50) -> list[str]:
    """Swarm ids, newest first; an index entry that is not a valid swarm id is skipped
    (anything on Redis is untrusted, and such an id could not name a swarm's keys)."""
    return [sid for sid in client.zrevrange(keys.INDEX, 0, limit - 1) if keys.is_swarm_id(sid)]


def swarm_summaries(
    client: Any, fields: Sequence[str], limit: int = 50
) -> list[tuple[str, dict[str, str | None]]]:
    """The newest swarms (`list_swarms`) with their `state` and these fields of their meta,
    in one round trip after the index; one with no state (its meta gone) is left out. What
    `ls` and the dashboard's list show."""
    ids = list_swarms(client, limit)
    names = ["state", *(f for f in fields if f != "state")]
    pipe = client.pipeline(transaction=False)
    for sid in ids:
        pipe.hmget(SwarmKeys(sid).meta, names)
    found = []
    for sid, values in zip(ids, pipe.execute() if ids else [], strict=True):
        meta = dict(zip(names, values, strict=True))
        if meta["state"] is not None:
            found.append((sid, meta))
    return found


def newest_running(client: Any, *, skip: Iterable[str] = (), scan: int = 50) -> str | None:
    """The newest swarm that still wants work (running or wrapping up)."""
    skipped = set(skip)
    for sid in list_swarms(client, scan):
        if sid in skipped:
            continue
        state = client.hget(SwarmKeys(sid).meta, "state")
        if state in (SwarmState.RUNNING.value, SwarmState.WRAPPING.value, SwarmState.PAUSED.value):
            return sid
    return None


INJECT_MAX_TITLE = 300
INJECT_MAX_DETAIL = 4000


def _checked_injection(title: str, detail: str, tags: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    """A person's task text within the bounds a mind's subtasks obey (checked before Redis)."""
    limits = Limits()
    title = " ".join(title.split())
    if not title:
        raise InvalidRequest("an injected task needs a title")
    if len(title) > INJECT_MAX_TITLE:
        raise InvalidRequest(
            f"title longer than {INJECT_MAX_TITLE} characters: put the rest in --detail"
        )
    if len(detail) > INJECT_MAX_DETAIL:
        raise InvalidRequest(f"detail longer than {INJECT_MAX_DETAIL} characters")
    clean = tuple(dict.fromkeys(t.strip() for t in tags if t.strip()))
    if len(clean) > limits.max_tags:
        raise InvalidRequest(f"{len(clean)} tags, at most {limits.max_tags} allowed")
    for tag in clean:
        if len(tag) > limits.max_tag or any(c in tag for c in ",|"):
            raise InvalidRequest(
                f"bad tag {tag!r}: at most {limits.max_tag} characters, no ',' or '|'"
            )
    return title, clean
