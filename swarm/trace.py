"""A swarm's whole trace: what `swarm export` writes (json or md) and `swarm rm` deletes.

Export and rm walk every task, following the child lists down from the root in pipelined
chunks (never SCAN or KEYS), so they cost a few round trips per thousand tasks and work on a
Redis Cluster, where all of one swarm's keys live on one slot.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from swarm import keys as key_names
from swarm.board import BoardError
from swarm.check import Check, CheckError
from swarm.display import md_block, md_inline
from swarm.keys import SwarmKeys
from swarm.reads import Reads
from swarm.stored import number as _num  # a meta field may hold anything, 'inf' included
from swarm.task import INT_FIELDS, LIST_FIELDS, SwarmState

CHUNK = 1000  # commands per pipeline: big enough to amortise the round trip, small enough
# not to hold the server or the client's memory for long

FORMAT = "swarm-export/1"
# The task fields an export carries (swarm-export/1: a format others read, so it changes only
# with its version); each is decoded as its type in swarm/task.py `Task`.
TASK_ORDER = (
    "id", "parent", "depth", "kind", "title", "detail", "tags", "state", "attempts", "owner",
    "result", "confidence", "tokens", "reason", "injected_by", "created", "updated",
)  # fmt: skip
TUNING = (
    "half_life_s", "initial", "q", "rho_fail", "alpha", "beta", "epsilon", "candidates",
    "synth_bonus",
)  # fmt: skip
LIVE_STATES = (SwarmState.RUNNING.value, SwarmState.PAUSED.value, SwarmState.WRAPPING.value)

# -- walking a whole swarm ----------------------------------------------------------------------


def _chunks(items: list[str], size: int = CHUNK) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def walk(
    client: Any, keys: SwarmKeys, *, hashes: bool
) -> dict[str, tuple[dict[str, str], list[str]]]:
    """Every task reachable from the root: id -> (its hash, or {} without `hashes`; its children).

    Level by level, CHUNK tasks per round trip.
    """
    found: dict[str, tuple[dict[str, str], list[str]]] = {}
    level = ["0"]
    while level:
        nxt: list[str] = []
        for chunk in _chunks(level):
            reads = Reads(client, keys)
            for tid in chunk:
                if hashes:
                    reads.task((tid, "hash"), tid)
                reads.child_ids((tid, "children"), tid)
            r = reads.run()
            for tid in chunk:
                kids = [k for k in r[tid, "children"] if k not in found]
                found[tid] = (r[tid, "hash"] if hashes else {}, kids)
                nxt.extend(kids)
        level = nxt
    return found


def events(client: Any, keys: SwarmKeys) -> list[dict[str, str]]:
    """The whole event stream (what the cap has kept of it), oldest first."""
    out: list[dict[str, str]] = []
    start = "-"
    while True:
        batch = client.xrange(keys.events, start, "+", count=CHUNK)
        out.extend({"id": eid, **fields} for eid, fields in batch)
        if len(batch) < CHUNK:
            return out
        start = f"({batch[-1][0]}"


# -- export ----------------------------------------------------------------------------------


def _task_record(tid: str, h: dict[str, str]) -> dict[str, Any]:
    rec: dict[str, Any] = {"id": tid}
    for name in TASK_ORDER[1:]:
        value: Any = h.get(name, "")
        if name in INT_FIELDS:
            value = int(value or 0)
        elif name in LIST_FIELDS:
            value = [t for t in str(value).split(",") if t]
        rec[name] = value
    return rec


def _nest(tasks: dict[str, tuple[dict[str, str], list[str]]]) -> dict[str, Any]:
    """The tree as nested records, built bottom-up so a deep tree needs no recursion."""
    records = {tid: {**_task_record(tid, h), "children": []} for tid, (h, _) in tasks.items()}
    for tid, (_, kids) in tasks.items():
        records[tid]["children"] = [records[k] for k in kids if k in records]
    return records.get("0", {})


def _budgets(meta: dict[str, str], deepest: int, now_ms: int) -> dict[str, dict[str, float]]:
    created = int(_num(meta.get("created")))
    end = int(_num(meta.get("finished"))) or now_ms
    return {
        "tasks": {"spent": int(_num(meta.get("tasks"))), "limit": int(_num(meta.get("max_tasks")))},
        "tokens": {
            "spent": int(_num(meta.get("tokens"))),
            "limit": int(_num(meta.get("max_tokens"))),
        },
        "depth": {"spent": deepest, "limit": int(_num(meta.get("max_depth")))},
        "time_s": {"spent": max(end - created, 0) / 1000, "limit": _num(meta.get("deadline_s"))},
    }


def export_swarm(client: Any, swarm_id: str, *, now: float | None = None) -> dict[str, Any]:
    """Everything about one swarm, as plain data (what `swarm export --format json` writes)."""
    keys = SwarmKeys(swarm_id)
    meta: dict[str, str] = client.hgetall(keys.meta)
    if not meta:
        raise BoardError(f"no swarm {swarm_id!r} on this Redis")
    tasks = walk(client, keys, hashes=True)
    stream = events(client, keys)
    deepest = max((int(h.get("depth", 0) or 0) for h, _ in tasks.values()), default=0)
    now_ms = int((time.time() if now is None else now) * 1000)
    return {
        "format": FORMAT,
        "swarm": swarm_id,
        "exported_at": now_ms,
        "title": meta.get("title", ""),
        "purpose": meta.get("purpose", ""),
        "state": meta.get("state", ""),
        "outcome": meta.get("outcome", ""),
        "answer": meta.get("answer"),
        "created": int(_num(meta.get("created"))),
        "finished": int(_num(meta.get("finished"))) or None,
        "budgets": _budgets(meta, deepest, now_ms),
        "counts": {s: int(_num(meta.get(f"n_{s}"))) for s in _STATES},
        "completions": int(_num(meta.get("completions"))),
        "tuning": {name: _num(meta.get(name)) for name in TUNING},
        "task_count": len(tasks),
        "tree": _nest(tasks),
        "check": _check_record(meta, stream),
        "events": stream,
    }


_STATES = ("open", "claimed", "waiting", "done", "dead", "cancelled")


def _check_record(meta: dict[str, str], stream: list[dict[str, str]]) -> dict[str, Any] | None:
    """The purpose's check (its kind, never an expected value), the verdict on the answer
    that stands, and every check made, from the `checked` events (the stream's cap allowing)."""
    stored = meta.get("check", "")
    if not stored:
        return None
    try:
        kind = Check.from_json(stored).describe()
    except CheckError:
        kind = "unreadable"
    history = [
        {
            "at": int(_num(e.get("at"))),
            "worker": e.get("worker", ""),
            "verdict": e.get("verdict", ""),
            "output": e.get("output", ""),
        }
        for e in stream
        if e.get("type") == "checked"
    ]
    return {
        "kind": kind,
        "retries": int(_num(meta.get("check_retries"))),
        "verdict": meta.get("check_verdict", ""),
        "checks": int(_num(meta.get("checks"))),
        "history": history,
    }


def _md_check(check: dict[str, Any] | None) -> list[str]:
    if check is None:
        return []
    verdict = check["verdict"] or "not checked yet"
    lines = [
        "## Check",
        "",
        f"{md_inline(check['kind'])}; verdict on the answer: **{md_inline(verdict)}** after "
        f"{check['checks']} check(s), at most {check['retries']} sent back.",
        "",
    ]
    lines += [
        f"{i}. {md_inline(c['verdict'])} ({md_inline(c['worker'])}): {md_inline(c['output'])}"
        for i, c in enumerate(check["history"], 1)
    ]
    return [*lines, ""] if check["history"] else lines


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def _md_task(rec: dict[str, Any], out: list[str]) -> None:
    """One task as a list item; its children nested below it (iteratively, for deep trees)."""
    stack: list[tuple[dict[str, Any], int]] = [(rec, 0)]
    while stack:
        task, lvl = stack.pop()
        pad = "  " * lvl
        facts = [task["state"], task["kind"]]
        if task["owner"]:
            facts.append(f"by {task['owner']}")
        if task["attempts"]:
            facts.append(f"{task['attempts']} failed attempt(s)")
        if task["injected_by"]:
            facts.append(f"injected by {task['injected_by']}")
        title = f"#{md_inline(task['id'])} {md_inline(task['title'])}"
        out.append(f"{pad}- **{title}** ({md_inline(', '.join(facts))})")
        if task["result"]:
            out += ["", *md_block(task["result"], pad + "  ")]
        elif task["reason"]:
            out += ["", f"{pad}  reason: {md_inline(task['reason'])}"]
        stack.extend((c, lvl + 1) for c in reversed(task["children"]))


def to_markdown(data: dict[str, Any]) -> str:
    """The export as a document a person reads top to bottom: answer first, then how."""
    # Every string from Redis (titles, texts, results, names, even state words) is written
    # as escaped inline text or inside a fence it cannot close: it cannot forge a heading,
    # a link, HTML or a table row, nor carry a terminal escape.
    b = data["budgets"]
    answer = data["answer"]
    lines = [
        f"# {md_inline(data['title']) or md_inline(data['swarm'])}",
        "",
        f"Swarm {md_inline(data['swarm'])}: **{md_inline(data['state'])}**"
        + (f" ({md_inline(data['outcome'])})" if data["outcome"] else "")
        + f", started {_when(data['created'])}, finished {_when(data['finished'])}.",
        "",
        "## Answer",
        "",
        *(md_block(answer) if answer is not None else ["_No answer yet._"]),
        "",
        *_md_check(data.get("check")),
        "## Budgets",
        "",
        "| budget | spent | limit |",
        "| --- | ---: | ---: |",
        *(f"| {name} | {v['spent']:g} | {v['limit']:g} |" for name, v in b.items()),
        "",
        "Tasks by state: "
        + ", ".join(f"{n} {s}" for s, n in data["counts"].items() if n)
        + f"; {data['completions']} completions.",
        "",
        "## Purpose",
        "",
        *md_block(data["purpose"]),
        "",
        f"## Tasks ({data['task_count']})",
        "",
    ]
    if data["tree"]:
        _md_task(data["tree"], lines)
    lines += ["", f"## Events ({len(data['events'])})", ""]
    lines += ["| time | event | task | who | details |", "| --- | --- | --- | --- | --- |"]
    for ev in data["events"]:
        rest = {k: v for k, v in ev.items() if k not in ("id", "type", "task", "worker", "at")}
        detail = " ".join(f"{k}={v}" for k, v in rest.items())
        at = int(_num(ev.get("at")))
        cells = (ev.get("type", ""), ev.get("task", ""), ev.get("worker", ""), detail)
        lines.append(f"| {_when(at)} | " + " | ".join(md_inline(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


# -- rm --------------------------------------------------------------------------------------


def delete_swarm(client: Any, swarm_id: str) -> int:
    """Delete every key of a swarm and its index entry; returns how many keys existed."""
    keys = SwarmKeys(swarm_id)
    names = [keys.meta, keys.open, keys.traits, keys.leases, keys.fence, keys.events, keys.workers]
    names += [keys.requests, keys.requests_until]
    names += [keys.trails, keys.trails_new, keys.failed, keys.classes, keys.profiles, keys.unmet]
    names += [keys.worker(w) for w in client.zrange(keys.workers, 0, -1)]
    for tid in walk(client, keys, hashes=False):
        names += [keys.task(tid), keys.children(tid)]
    deleted = 0
    for chunk in _chunks(names):
        deleted += int(client.unlink(*chunk))
    client.zrem(key_names.INDEX, swarm_id)
    return deleted
