"""What one frame of `swarm watch` reads: a `Snapshot` of one swarm, from a fixed number of
pipelined round trips (the counters, the top of the open set, the workers, new events, then
one round trip per drawn tree level), bounded by what fits on the screen, never by the number
of tasks: no SCAN, no KEYS, no walk of the whole tree. The dashboard and `swarm up` read the
same snapshot; `render` (view.py) draws it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from swarm.board import Board, NoSuchSwarm, stale_ms
from swarm.pheromone import level
from swarm.reads import Reads

# Everything read from Redis is untrusted: a field that is not a finite number reads as the
# default, so no frame fails on 'inf', 'nan' or '1e999'.
from swarm.stored import integer as _int
from swarm.stored import number as _float

# -- what one frame reads ----------------------------------------------------------------------

META_FIELDS = (
    "title",
    "state",
    "outcome",
    "wrap_reason",
    "created",
    "finished",
    "deadline_s",
    "tasks",
    "max_tasks",
    "tokens",
    "max_tokens",
    "max_depth",
    "depth_reached",
    "lambda",
    "initial",
    "lease_ms",
    "completions",
    "n_open",
    "n_claimed",
    "n_waiting",
    "n_done",
    "n_dead",
    "n_cancelled",
    "check_verdict",
    "checks",
)
TASK_FIELDS = (
    "kind",
    "state",
    "title",
    "owner",
    "attempts",
    "result",
    "reason",
    "depth",
    "pending",
    "injected_by",
)
WORKER_FIELDS = (
    "host", "mind", "current", "slots", "tasks", "tokens_per_s", "class", "strength", "code",
)  # fmt: skip
STATES = ("open", "claimed", "waiting", "done", "dead", "cancelled")

HOT = 5  # top of the open set shown on the "next" line
BUCKET_S = 10  # throughput sparkline resolution
BUCKETS = 60  # ten minutes of history
EVENT_BATCH = 2000  # most events counted per frame; a backlog is caught up over frames
HEADER_LINES = 2
RULE_LINES = 3  # one title line above each of tree, workers and events


@dataclass(frozen=True)
class Budget:
    name: str
    spent: float
    limit: float


@dataclass(frozen=True)
class TaskRow:
    id: str
    level: int  # nesting below the root as drawn (0 = the root)
    kind: str
    state: str
    title: str
    depth: int = 0
    owner: str = ""
    attempts: int = 0
    result: str = ""
    heat: float | None = None  # current pheromone, while the task is open
    children: int = 0  # length of its child list
    pending: int = 0  # children not yet terminal
    hidden: int = 0  # children not drawn for lack of rows
    injected_by: str = ""


@dataclass(frozen=True)
class WorkerRow:
    id: str
    alive: bool
    seen_s: float  # seconds since its last heartbeat
    host: str = ""
    mind: str = ""
    current: str = ""
    tasks: int = 0
    tokens_per_s: float = 0.0
    slots: int = 1
    worker_class: str = ""
    strength: int = 0  # what it offers against tasks' requirements (section 6a)
    code: bool = False


@dataclass(frozen=True)
class ClassFlow:
    """Where work flows, per worker class (section 6a), from the events this watcher read:
    tasks claimed, answered and failed (reaps included) by workers of the class, and tasks
    escalated to it (claimed after another class failed them)."""

    worker_class: str
    claimed: int = 0
    done: int = 0
    failed: int = 0
    escalated: int = 0


@dataclass(frozen=True)
class EventRow:
    id: str
    at: int
    type: str
    task: str
    who: str
    detail: str = ""


@dataclass(frozen=True)
class Snapshot:
    """Everything one frame draws; also what `swarm watch --json` prints."""

    swarm: str
    title: str
    state: str
    outcome: str
    reason: str
    now: int  # ms
    elapsed_s: float
    budgets: tuple[Budget, ...]
    counts: dict[str, int]
    tree: tuple[TaskRow, ...]
    hot: tuple[TaskRow, ...]
    workers: tuple[WorkerRow, ...]
    workers_alive: int
    workers_total: int
    throughput: tuple[int, ...]  # completions per BUCKET_S, oldest first
    events: tuple[EventRow, ...]
    height: int
    initial: float = 1.0  # the pheromone of a fresh task, the heat bars' unit
    flow: tuple[ClassFlow, ...] = ()
    unmet: int = 0  # open tasks whose requirements no live worker meets (section 6a)
    check: str = ""  # the verdict on the root's latest checked answer: pass | fail | error
    checks: int = 0  # the root's answers checked so far


@dataclass
class WatchState:
    """What the watcher carries between frames so each frame reads only what is new."""

    swarm: str = ""  # whose events these are (a watcher following the newest may switch)
    cursor: str | None = None  # last event id counted
    buckets: dict[int, int] = field(default_factory=dict)  # bucket index -> completions
    # worker -> the tasks it claimed and has not posted, newest last: fresher than the
    # heartbeat record, which is published only every lease/4
    holding: dict[str, list[str]] = field(default_factory=dict)
    # worker class -> [claimed, done, failed, escalated] (ClassFlow), from the events
    flow: dict[str, list[int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """How the frame's lines are shared out; the reads follow it."""

    tree: int
    workers: int
    events: int


def plan(height: int, workers: int | None = None) -> Plan:
    """Rows per section for a frame `height` lines tall (`workers`: how many there are)."""
    avail = max(height - HEADER_LINES - RULE_LINES, 8)
    w_cap = min(max(avail // 5, 1), 8)
    w_rows = w_cap if workers is None else max(min(workers, w_cap), 1)
    e_rows = min(max(avail // 4, 2), 12)
    return Plan(tree=max(avail - w_rows - e_rows, 3), workers=w_rows, events=e_rows)


def _tail_rows(height: int) -> int:
    """Most events a frame can show: its own rows plus those a short tree leaves free."""
    p = plan(height, 1)
    return p.events + p.tree - 1


# -- reading ----------------------------------------------------------------------------------


@dataclass
class _Fetched:
    """One task as read: its fields, its pheromone score and the start of its child list."""

    fields: dict[str, str]
    score: float | None
    child_ids: list[str]
    n_children: int


def _queue_task(reads: Reads, tid: str, child_cap: int) -> None:
    reads.task((tid, "fields"), tid, TASK_FIELDS)
    reads.open_score((tid, "score"), tid)
    reads.child_ids((tid, "children"), tid, child_cap)
    reads.child_count((tid, "n"), tid)


def _take_task(r: dict[Hashable, Any], tid: str) -> _Fetched:
    return _Fetched(r[tid, "fields"], r[tid, "score"], r[tid, "children"], r[tid, "n"])


def _round_robin(lists: Sequence[Sequence[str]], budget: int) -> list[str]:
    """Up to `budget` ids, taking the first of every list, then the second...

    so a wide tree shows a little of every branch rather than all of the first one.
    """
    picked: list[str] = []
    depth = 0
    while len(picked) < budget and any(depth < len(ids) for ids in lists):
        for ids in lists:
            if depth < len(ids) and len(picked) < budget:
                picked.append(ids[depth])
        depth += 1
    return picked


def _events(replies: Iterable[tuple[str, dict[str, str]]]) -> list[EventRow]:
    rows = []
    for eid, f in replies:
        extra = {k: v for k, v in f.items() if k not in ("type", "task", "worker", "at")}
        detail = " ".join(f"{k}={v}" for k, v in extra.items())
        rows.append(
            EventRow(
                eid,
                _int(f.get("at")),
                f.get("type", ""),
                f.get("task", ""),
                f.get("worker", ""),
                detail,
            )
        )
    return rows


POSTED = ("completed", "split", "failed", "released")


def _follow(state: WatchState, events: list[EventRow], now_ms: int) -> None:
    """Fold newly read events into the watcher's state: completions into the sparkline
    buckets (by when they happened), claims and posts into what each worker holds."""
    for ev in events:
        if ev.type == "completed":
            b = ev.at // (BUCKET_S * 1000)
            state.buckets[b] = state.buckets.get(b, 0) + 1
        _count_flow(state, ev)
        if ev.type == "claimed":
            state.holding.setdefault(ev.who, []).append(ev.task)
        elif ev.type in POSTED:
            _drop(state.holding.get(ev.who), ev.task)
        elif ev.type == "reaped":
            _drop(state.holding.get(_field(ev.detail, "owner")), ev.task)
    if events:
        state.cursor = events[-1].id
    oldest = now_ms // (BUCKET_S * 1000) - BUCKETS
    for b in [b for b in state.buckets if b <= oldest]:
        del state.buckets[b]


FLOW_CLASSES = 32  # classes counted at most (their names come from Redis)
_FLOW_SLOT = {"claimed": 0, "completed": 1, "failed": 2, "reaped": 2}


def _count_flow(state: WatchState, ev: EventRow) -> None:
    slot = _FLOW_SLOT.get(ev.type)
    name = _field(ev.detail, "class")
    if slot is None or not name:
        return
    if name not in state.flow and len(state.flow) >= FLOW_CLASSES:
        return
    counts = state.flow.setdefault(name, [0, 0, 0, 0])
    counts[slot] += 1
    if ev.type == "claimed" and _field(ev.detail, "rule") == "escalated":
        counts[3] += 1


def _flow(state: WatchState) -> tuple[ClassFlow, ...]:
    return tuple(ClassFlow(name, *counts) for name, counts in sorted(state.flow.items()))


def _drop(tasks: list[str] | None, tid: str) -> None:
    if tasks and tid in tasks:
        tasks.remove(tid)


def _field(detail: str, name: str) -> str:
    for part in detail.split(" "):
        key, _, value = part.partition("=")
        if key == name:
            return value
    return ""


def _series(state: WatchState, now_ms: int) -> tuple[int, ...]:
    last = now_ms // (BUCKET_S * 1000)
    return tuple(state.buckets.get(b, 0) for b in range(last - BUCKETS + 1, last + 1))


@dataclass(frozen=True)
class _First:
    """The replies of a frame's first round trip."""

    meta: dict[str, Any]
    root: _Fetched
    hot: list[tuple[str, float]]  # top of the open set, with stored scores
    seen: list[tuple[str, int]]  # the most recently seen workers, with their last beat (ms)
    workers_total: int
    unmet: int
    tail: list[EventRow]  # the newest events, oldest first
    new: list[EventRow]  # events after the watcher's cursor


def _read_first(
    board: Board, state: WatchState, height: int, now_ms: int, workers: int | None
) -> _First:
    reads = board.reads()
    reads.meta("meta", META_FIELDS)
    # the root's children fill the tree when there are few workers to show
    _queue_task(reads, "0", plan(height, 1).tree)
    reads.hottest("hot", HOT)
    reads.workers_seen("seen", plan(height).workers if workers is None else workers)
    reads.workers_total("workers")
    reads.unmet_count("unmet")
    # renewals are most of the stream and say nothing to a person: read extra, drop them
    reads.newest_events("tail", _tail_rows(height) * 4)
    since = f"({state.cursor}" if state.cursor else f"{now_ms - BUCKET_S * BUCKETS * 1000}-0"
    reads.events_from("new", since, EVENT_BATCH)
    r = reads.run()
    tail = [e for e in _events(r["tail"]) if e.type != "renewed"]
    return _First(
        meta=r["meta"],
        root=_take_task(r, "0"),
        hot=r["hot"],
        seen=r["seen"],
        workers_total=r["workers"],
        unmet=r["unmet"],
        tail=tail[-_tail_rows(height) :],
        new=_events(r["new"]),
    )


HOT_FIELDS = ("title", "kind", "depth")


@dataclass
class _Records:
    """Reads that ride on the tree's first level: the hot tasks' titles, the shown workers'
    records and the count of live workers (which needs the lease from the first round trip)."""

    hot: list[str]
    workers: list[str]
    alive_since: int
    hot_records: list[dict[str, str]] = field(default_factory=list)
    worker_records: list[dict[str, str | None]] = field(default_factory=list)
    alive: int = 0

    def queue(self, reads: Reads) -> None:
        for tid in self.hot:
            reads.task(("hot", tid), tid, HOT_FIELDS)
        for wid in self.workers:
            reads.worker(("worker", wid), wid, WORKER_FIELDS)
        reads.workers_since("alive", self.alive_since)

    def take(self, r: dict[Hashable, Any]) -> None:
        self.hot_records = [r["hot", tid] for tid in self.hot]
        self.worker_records = [r["worker", wid] for wid in self.workers]
        self.alive = r["alive"]


def _walk(board: Board, root: _Fetched, rows: int, records: _Records) -> dict[str, _Fetched]:
    """The visible tree, breadth first under a row budget, one round trip per level; the
    first level's round trip also carries `records`, so a frame always costs at least two."""
    fetched = {"0": root}
    frontier = ["0"]
    first = True
    while first or frontier:
        ids = _round_robin([fetched[t].child_ids for t in frontier], rows - len(fetched))
        if not ids and not first:
            break
        cap = rows - len(fetched) - len(ids)  # rows left for the next level's children
        reads = board.reads()
        for tid in ids:
            _queue_task(reads, tid, max(cap, 0))
        if first:
            records.queue(reads)
        r = reads.run()
        for tid in ids:
            fetched[tid] = _take_task(r, tid)
        if first:
            records.take(r)
        frontier = ids if cap > 0 else []
        first = False
    return fetched


def _row(tid: str, lvl: int, f: _Fetched, heat: float | None, drawn: int) -> TaskRow:
    d = f.fields
    return TaskRow(
        id=tid,
        level=lvl,
        kind=d.get("kind", "work"),
        state=d.get("state", "?"),
        title=d.get("title", ""),
        depth=_int(d.get("depth")),
        owner=d.get("owner", ""),
        attempts=_int(d.get("attempts")),
        result=_outcome(d),
        heat=heat,
        children=f.n_children,
        pending=_int(d.get("pending")),
        hidden=max(f.n_children - drawn, 0),
        injected_by=d.get("injected_by", ""),
    )


def _outcome(fields: dict[str, str]) -> str:
    """The answer of a done task; else why it is where it is (split, failed, cancelled)."""
    state = fields.get("state")
    if state == "done":
        return fields.get("result", "")
    return "" if state == "claimed" else fields.get("reason", "")


Heat = Callable[[float | None], float | None]


def _tree_rows(fetched: dict[str, _Fetched], heat: Heat) -> tuple[TaskRow, ...]:
    """The fetched tasks in tree order (depth first), each knowing how many children it hides."""
    rows: list[TaskRow] = []
    stack = [("0", 0)]
    while stack:
        tid, lvl = stack.pop()
        f = fetched[tid]
        drawn = [c for c in f.child_ids if c in fetched]
        rows.append(_row(tid, lvl, f, heat(f.score), len(drawn)))
        stack.extend((c, lvl + 1) for c in reversed(drawn))
    return tuple(rows)


def _reset(state: WatchState | None, swarm_id: str) -> WatchState:
    """A fresh history, in the caller's object when there is one (it holds on to it)."""
    fresh = WatchState(swarm=swarm_id)
    if state is None:
        return fresh
    state.__dict__.update(fresh.__dict__)
    return state


def _heat_fn(meta: dict[str, Any], now_ms: int) -> Heat:
    lam = _float(meta.get("lambda"))
    t_s = (now_ms - _int(meta.get("created"), now_ms)) / 1000

    def heat(score: float | None) -> float | None:
        return None if score is None else level(score, t_s, lam)

    return heat


def _stale_ms(meta: dict[str, Any]) -> int:
    """When a worker counts as stale: the rule the workers' heartbeat is built on."""
    return stale_ms(meta.get("lease_ms"))


def _workers(
    seen: list[tuple[str, int]], records: _Records, state: WatchState, now_ms: int, stale_ms: int
) -> tuple[WorkerRow, ...]:
    rows = []
    for (wid, at), rec in zip(seen, records.worker_records, strict=True):
        # what the events say it holds is fresher than its last heartbeat's `current`
        held = state.holding.get(wid)
        current = ",".join(held[-max(_int(rec["slots"], 1), 1) :]) if held else rec["current"]
        rows.append(
            WorkerRow(
                id=wid,
                alive=now_ms - at <= stale_ms,
                seen_s=max(now_ms - at, 0) / 1000,
                host=rec["host"] or "",
                mind=rec["mind"] or "",
                current=current or "",
                tasks=_int(rec["tasks"]),
                tokens_per_s=_float(rec["tokens_per_s"]),
                slots=max(_int(rec["slots"], 1), 1),
                worker_class=rec["class"] or "",
                strength=_int(rec["strength"]),
                code=rec["code"] == "1",
            )
        )
    return tuple(rows)


def _budgets_of(meta: dict[str, Any], elapsed: float, seen_depth: int) -> tuple[Budget, ...]:
    return (
        Budget("tasks", _int(meta.get("tasks")), _int(meta.get("max_tasks"))),
        Budget("tokens", _int(meta.get("tokens")), _int(meta.get("max_tokens"))),
        # `depth_reached`, where the scripts keep it, else the deepest task in view
        Budget("depth", _int(meta.get("depth_reached"), seen_depth), _int(meta.get("max_depth"))),
        Budget("time", elapsed, _float(meta.get("deadline_s"))),
    )


def _elapsed_s(meta: dict[str, Any], now_ms: int) -> float:
    created = _int(meta.get("created"), now_ms)
    end = _int(meta.get("finished"), now_ms) if meta.get("finished") else now_ms
    return max(end - created, 0) / 1000


def snapshot(
    client: Any,
    swarm_id: str,
    state: WatchState | None = None,
    *,
    height: int = 24,
    now: float | None = None,
    workers: int | None = None,
) -> Snapshot:
    """Read one frame of `swarm_id`, `height` lines tall, in a number of round trips that
    depends on the height but not on the number of tasks. `state` carries the event cursor,
    throughput and holdings from frame to frame (pass the same object every time).
    `workers`: how many of the most recently seen workers to read (default: the rows the
    terminal frame has for them, at most 8; the dashboard, which scrolls, asks for more)."""
    if state is None or state.swarm != swarm_id:
        state = _reset(state, swarm_id)
    now_ms = int((time.time() if now is None else now) * 1000)
    board = Board(client, swarm_id)
    first = _read_first(board, state, height, now_ms, workers)
    meta = first.meta
    if meta["state"] is None:
        raise NoSuchSwarm(f"no swarm {swarm_id!r} on this Redis")
    stale_ms = _stale_ms(meta)
    records = _Records([t for t, _ in first.hot], [w for w, _ in first.seen], now_ms - stale_ms)
    fetched = _walk(board, first.root, plan(height, len(first.seen)).tree, records)
    _follow(state, first.new, now_ms)
    heat = _heat_fn(meta, now_ms)
    tree = _tree_rows(fetched, heat)
    hot = tuple(
        TaskRow(
            tid, 0, v.get("kind") or "work", "open", v.get("title") or "",
            depth=_int(v.get("depth")), heat=heat(score),
        )
        for (tid, score), v in zip(first.hot, records.hot_records, strict=True)
    )  # fmt: skip
    elapsed = _elapsed_s(meta, now_ms)
    return Snapshot(
        swarm=swarm_id,
        title=meta.get("title") or "",
        state=meta["state"],
        outcome=meta.get("outcome") or "",
        reason=meta.get("wrap_reason") or "",
        now=now_ms,
        elapsed_s=elapsed,
        budgets=_budgets_of(meta, elapsed, max(r.depth for r in tree + hot)),
        counts={s: _int(meta.get(f"n_{s}")) for s in STATES},
        tree=tree,
        hot=hot,
        workers=_workers(first.seen, records, state, now_ms, stale_ms),
        workers_alive=records.alive,
        workers_total=first.workers_total,
        throughput=_series(state, now_ms),
        flow=_flow(state),
        unmet=first.unmet,
        events=tuple(first.tail),
        height=height,
        initial=_float(meta.get("initial"), 1.0) or 1.0,
        check=meta.get("check_verdict") or "",
        checks=_int(meta.get("checks")),
    )


def to_json(snap: Snapshot) -> str:
    return json.dumps(dataclasses.asdict(snap), indent=2)
