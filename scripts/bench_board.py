"""Blackboard benchmarks: lifecycles/s against RQ and the round-trip ceiling, claim latency
with up to a million open tasks, and scale-out of slow workers. Figures, not assertions.

    python scripts/bench_board.py --quick          # under a minute
    python scripts/bench_board.py                  # the full run (a few minutes)
    python scripts/bench_board.py --json           # one JSON object on stdout
    python scripts/bench_board.py --quick --latency-only   # claim latency alone

By default the script starts its own `redis-server` (no persistence) on a free port, so
nothing else shares it; `--redis URL` uses an existing server instead (noisier; the bench's
keys are deleted afterwards). Every figure is measured in this run, side by side, and
repeated figures are medians; ratios are taken between figures of the same run.

A lifecycle is claim -> think (sim, think=0) -> complete. The open tasks are bulk-written in
the layout the Lua scripts keep (task hashes, children lists, `open`, `traits`): a tree
with a fan-out of 16 whose leaves are answered and whose inner nodes are synthesised, as
the sim mind's splits would have built it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any
from unittest.mock import patch

import redis
from redis.utils import HIREDIS_AVAILABLE

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from _servers import start_server  # noqa: E402

from swarm import scripts  # noqa: E402
from swarm.board import Board, TaskContext  # noqa: E402
from swarm.minds.sim import SimConfig, SimMind  # noqa: E402
from swarm.protocol import ActionKind, Answer, ThinkRequest  # noqa: E402
from swarm.purpose import Budgets, Purpose, Tuning  # noqa: E402
from swarm.task import Kind, State, Task  # noqa: E402
from swarm.worker import Worker, WorkerConfig  # noqa: E402

FANOUT = 16
RESULTS = ROOT / "bench" / "results"


def noop() -> None:
    """The RQ job: nothing, so RQ's own overhead is all that is measured."""


# ------------------------------------------------------------------ bulk open tasks


@dataclass(frozen=True)
class Bulk:
    board: Board
    leaves: int
    total: int  # every task, the root included; each is one lifecycle (answer or synthesis)


def _level_sizes(leaves: int, fanout: int) -> list[int]:
    sizes = [leaves]
    while sizes[0] > 1:
        sizes.insert(0, math.ceil(sizes[0] / fanout))
    if len(sizes) == 1:
        sizes.insert(0, 1)  # one leaf still hangs under a root
    return sizes


# Writes tasks first..last of one level of the bulk tree with `new_task` (swarm/lua/_lib.lua),
# as split.lua makes them, under parents that are already there; the leaves get spread-out
# scores. Bench-only: the product makes tasks only in seed, split and inject.
BULK_LUA = """
local first, last, level_first, parent_first = tonumber(ARGV[1]), tonumber(ARGV[2]),
  tonumber(ARGV[3]), tonumber(ARGV[4])
local fanout, leaf, now = tonumber(ARGV[5]), ARGV[6] == '1', tonumber(ARGV[7])
if first == 1 then  -- the seeded root is open: it becomes the waiting parent of the tree
  take_open('0')
  move('0', 'open', 'waiting', now)
end
for i = first, last do
  local parent = tostring(parent_first + math.floor((i - level_first) / fanout))
  local score = leaf and (i * 7919 % 1000) * 1e-6 or 0
  new_task({id = tostring(i), parent = parent, title = 't' .. i,
    state = leaf and 'open' or 'waiting'}, now, score)
end
return last - first + 1
"""


def bulk_swarm(client: Any, leaves: int, *, fanout: int = FANOUT, epsilon: float = 0.05) -> Bulk:
    """A running swarm whose tree is already split: `leaves` open tasks, inner nodes waiting."""
    sizes = _level_sizes(leaves, fanout)
    depth, total = len(sizes) - 1, sum(sizes)
    purpose = Purpose(
        title="bench",
        text="bench",
        name="bench",
        sandbox="none",
        budgets=Budgets(max_tasks=total, max_depth=depth, max_children=fanout, max_tokens=10**12),
        tuning=Tuning(epsilon=epsilon),
    )
    board = Board.seed(client, purpose)
    now = board.now_ms()
    write = client.register_script(scripts.prelude() + BULK_LUA)
    first = [0]
    for d in range(1, depth + 1):
        first.append(first[-1] + sizes[d - 1])
        for start in range(0, sizes[d], 20_000):
            count = min(20_000, sizes[d] - start)
            lo = first[d] + start
            args = [lo, lo + count - 1, first[d], first[d - 1], fanout, int(d == depth), now]
            write(keys=board._script_keys, args=args)
    client.hset(board.keys.meta, "next_id", total - 1)
    return Bulk(board, leaves, total)


def drop_swarm(client: Any, bulk: Bulk) -> None:
    """Delete every key of a bench swarm by name (no SCAN, no FLUSH: the server may be shared)."""
    k = bulk.board.keys
    names = [k.meta, k.open, k.traits, k.leases, k.fence, k.events, k.workers]
    names += [k.trails, k.trails_new, k.failed, k.classes]
    names += [k.worker(w) for w in client.zrange(k.workers, 0, -1)]
    pipe = client.pipeline(transaction=False)
    pipe.unlink(*names)
    for start in range(0, bulk.total, 1000):
        ids = range(start, min(start + 1000, bulk.total))
        pipe.unlink(*(k.task(str(i)) for i in ids), *(k.children(str(i)) for i in ids))
    pipe.zrem("swarm:index", bulk.board.id)
    pipe.execute()


# ------------------------------------------------------------------ measuring


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def measure_rate(
    progress: Callable[[], int],
    total: int,
    *,
    warm: float = 0.03,
    max_s: float = 10.0,
    timeout_s: float = 120.0,
    alive: Callable[[], bool] = lambda: True,
) -> float:
    """Items/s in the steady window: from `warm` of `total` done until 95% or `max_s` later."""
    deadline = time.monotonic() + timeout_s
    while (c0 := progress()) < warm * total:
        if time.monotonic() > deadline or not alive():
            raise RuntimeError(f"no progress: {c0}/{total} after {timeout_s:g} s")
        time.sleep(0.01)
    t0 = time.monotonic()
    while True:
        time.sleep(0.02)
        c1, t1 = progress(), time.monotonic()
        if c1 >= 0.95 * total or t1 - t0 >= max_s or t1 > deadline or not alive():
            return (c1 - c0) / (t1 - t0)


def roundtrip(client: Any, seconds: float) -> dict[str, float]:
    """The ceiling for one client: sequential PINGs and EVALSHAs of a trivial script."""
    script = client.register_script("return 1")
    script()
    rates = {}
    for name, call in (("ping", client.ping), ("eval", script)):
        n, t0 = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds:
            for _ in range(200):
                call()
            n += 200
        rates[name] = n / elapsed
    return rates


# A what-if, not the product: the context a prompt uses (ancestry titles and details,
# finished siblings' and children's results) read in one script with HMGET and returned by
# position. The product adopted the one-script read (read_context in swarm/lua/_lib.lua,
# also run by Board.context through context.lua), with replies that carry their field
# names; measured side by side, this shows what naming the fields costs.
LEAN_CONTEXT_LUA = """
local TASK, CHILDREN = KEYS[1], KEYS[2]
local tid, parent, path = ARGV[1], ARGV[2], ARGV[3]
local ancestry, siblings, children = {}, {}, {}
for id in string.gmatch(path, '[^,]+') do
  ancestry[#ancestry + 1] = redis.call('HMGET', TASK .. id, 'title', 'detail')
end
if parent ~= '' then
  for _, s in ipairs(redis.call('LRANGE', CHILDREN .. parent, 0, -1)) do
    if s ~= tid then
      local h = redis.call('HMGET', TASK .. s, 'state', 'title', 'result', 'confidence')
      if h[1] == 'done' then siblings[#siblings + 1] = {s, h[2], h[3], h[4]} end
    end
  end
end
for _, s in ipairs(redis.call('LRANGE', CHILDREN .. tid, 0, -1)) do
  local h = redis.call('HMGET', TASK .. s, 'state', 'title', 'result', 'confidence')
  children[#children + 1] = {s, h[1], h[2], h[3], h[4]}
end
return {ancestry, siblings, children}
"""


_lean_scripts: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _lean_children(reply: list[Any], task: Task) -> tuple[Task, ...]:
    return tuple(
        Task(id=c[0], parent=task.id, depth=task.depth + 1, kind=Kind.WORK, title=c[2] or "",
             state=State(c[1] or "open"), result=c[3] or "", confidence=c[4] or "")
        for c in reply[2]
    )  # fmt: skip


def lean_context(board: Board, task: Task) -> TaskContext:
    """What LEAN_CONTEXT_LUA gives, as the TaskContext that Board.context returns."""
    script = _lean_scripts.get(board.client)
    if script is None:
        script = _lean_scripts[board.client] = board.client.register_script(LEAN_CONTEXT_LUA)
    keys = [board.keys.task_prefix, board.keys.children_prefix]
    reply = script(keys=keys, args=[task.id, task.parent, ",".join(task.path)])
    ancestry = tuple(
        Task(id=tid, parent="", depth=0, kind=Kind.WORK, title=a[0] or "", detail=a[1] or "")
        for tid, a in zip(task.path, reply[0], strict=True)
    )
    siblings = tuple(
        Task(id=x[0], parent=task.parent, depth=task.depth, kind=Kind.WORK, title=x[1] or "",
             state=State.DONE, result=x[2] or "", confidence=x[3] or "")
        for x in reply[1]
    )  # fmt: skip
    return TaskContext(ancestry, siblings, _lean_children(reply, task))


def worker_in_process(client: Any, leaves: int, *, lean: bool, max_s: float) -> float:
    """Lifecycles/s of the real Worker loop (one slot, heartbeat thread) in this process.

    With `lean`, Board.context is swapped for `lean_context` while it runs: a what-if for
    the change suggested in bench/README-table.md, not how the product runs.
    """
    bulk = bulk_swarm(client, leaves)
    # A heartbeat that renews a task the slot has just completed logs a spurious "lease lost".
    logging.getLogger("swarm.worker").setLevel(logging.ERROR)
    worker = Worker(
        client, SimMind(SimConfig(depth=0)), WorkerConfig(swarm_id=bulk.board.id, burst=True)
    )
    swap: AbstractContextManager[Any] = (
        patch.object(Board, "context", lean_context) if lean else nullcontext()
    )
    with swap:
        thread = threading.Thread(target=worker.run, kwargs={"install_signals": False})
        thread.start()
        try:
            rate = measure_rate(
                lambda: int(client.hget(bulk.board.keys.meta, "completions") or 0),
                bulk.total,
                warm=0.02,
                max_s=max_s,
                alive=thread.is_alive,
            )
        finally:
            worker.stop()
            thread.join()
    drop_swarm(client, bulk)
    return rate


def board_api(client: Any, n: int, *, context: str) -> dict[str, Any]:
    """Lifecycles/s through the Board API in this process, and what each phase costs (us).

    `context`: "none" (claim, think, complete), "board" (plus Board.context, as the worker
    does) or "lean" (plus LEAN_CONTEXT_LUA instead).
    """
    bulk = bulk_swarm(client, n)
    board, mind = bulk.board, SimMind(SimConfig(depth=0))
    lean = client.register_script(LEAN_CONTEXT_LUA)
    lean_keys = [board.keys.task_prefix, board.keys.children_prefix]
    phases = {"claim": 0.0, "context": 0.0, "think": 0.0, "complete": 0.0}
    done, t_start = 0, time.perf_counter()
    while done < n:
        t0 = time.perf_counter()
        claim = board.claim("bench-api").claim
        t1 = time.perf_counter()
        assert claim is not None
        task, children = claim.task, ()
        if context == "board":
            children = board.context(task).children
        elif context == "lean":
            reply = lean(keys=lean_keys, args=[task.id, task.parent, ",".join(task.path)])
            children = _lean_children(reply, task)
        t2 = time.perf_counter()
        allowed = frozenset({ActionKind.ANSWER})
        thought = mind.think(
            ThinkRequest(purpose="bench", task=task, allowed=allowed, children=children)
        )
        t3 = time.perf_counter()
        assert isinstance(thought.action, Answer)
        board.complete(claim, "bench-api", thought.action.answer, tokens=thought.tokens)
        t4 = time.perf_counter()
        for name, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            phases[name] += dt
        done += 1
    rate = done / (time.perf_counter() - t_start)
    drop_swarm(client, bulk)
    return {"per_s": rate, "us": {k: round(v / done * 1e6, 1) for k, v in phases.items()}}


# ------------------------------------------------------------------ processes


@contextmanager
def processes(
    cmds: list[list[str]], env: dict[str, str]
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start processes; on the way out SIGTERM, then SIGKILL what is left."""
    with tempfile.TemporaryFile() as errors:
        procs = [
            subprocess.Popen(
                c, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=errors,
            )
            for c in cmds
        ]  # fmt: skip
        try:
            yield procs
        except BaseException:
            errors.seek(0)
            sys.stderr.write(errors.read()[-3000:].decode(errors="replace"))
            raise
        finally:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            for p in procs:
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def _with_client_name(url: str, name: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}client_name={name}"


def _wait_connected(client: Any, names: set[str], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not names <= {c.get("name", "") for c in client.client_list()}:
        if time.monotonic() > deadline:
            raise RuntimeError("worker processes did not connect")
        time.sleep(0.1)


def swarm_workers(
    client: Any,
    url: str,
    *,
    procs: int,
    slots: int = 1,
    leaves: int,
    think: float = 0.0,
    max_s: float = 10.0,
) -> float:
    """Lifecycles/s of `procs` real `swarm worker` processes (`slots` each) in steady state.

    The swarm is paused while the processes start (each names its connection, so the script
    sees when all are up), then resumed; the rate is taken over the steady window.
    """
    bulk = bulk_swarm(client, leaves)
    board = bulk.board
    board.pause("bench")
    mind = f"sim:depth=0,think={think:g}"
    tag = board.id
    cmds = [
        [sys.executable, "-m", "swarm", "worker", "--redis", _with_client_name(url, f"{tag}-{n}"),
         "--swarm", board.id, "--mind", mind, "--slots", str(slots), "--burst", "--no-code"]
        for n in range(procs)
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with processes(cmds, env) as running:
        _wait_connected(client, {f"{tag}-{n}" for n in range(procs)})
        time.sleep(0.3)
        board.resume("bench")
        rate = measure_rate(
            lambda: int(client.hget(board.keys.meta, "completions") or 0),
            bulk.total,
            warm=0.02 if think == 0 else 0.1,
            max_s=max_s,
            alive=lambda: any(p.poll() is None for p in running),
        )
    drop_swarm(client, bulk)
    return rate


def rq_workers(client: Any, url: str, *, fork: bool, jobs: int, max_s: float) -> float:
    """Jobs/s of one `rq worker` process (SimpleWorker, or the forking Worker) on no-op jobs."""
    from rq import Queue

    name = f"bench-{os.getpid()}-{random.getrandbits(24):06x}"
    queue = Queue(name, connection=client, serializer="rq.serializers.JSONSerializer")
    pipe = client.pipeline(transaction=False)
    for start in range(0, jobs, 1000):
        batch = [Queue.prepare_data("bench_board.noop") for _ in range(min(1000, jobs - start))]
        queue.enqueue_many(batch, pipeline=pipe)
        pipe.execute()
    worker_class = "rq.worker.Worker" if fork else "rq.worker.SimpleWorker"
    cmd = [
        sys.executable, "-m", "rq.cli", "worker", "--burst", "--url", url, "--path",
        str(ROOT / "scripts"), "-w", worker_class, "-S", "rq.serializers.JSONSerializer",
        "--logging_level", "WARNING", name,
    ]  # fmt: skip
    with processes([cmd], dict(os.environ)) as running:
        rate = measure_rate(
            lambda: jobs - queue.count,
            jobs,
            warm=0.02,
            max_s=max_s,
            alive=lambda: running[0].poll() is None,
        )
    queue.delete(delete_jobs=True)
    return rate


# ------------------------------------------------------------------ claim latency


def with_trails(client: Any, bulk: Bulk) -> None:
    """Trails for a classed claim to weigh (docs/architecture.md section 6a): two live classes
    with outcomes on the bulk tasks' kind, the claiming class the better one, so it takes
    what it draws (a declined claim would time less work), and a task escalated to it."""
    k, now = bulk.board.keys, bulk.board.now_ms()
    client.hset(k.classes, mapping={"bench": now + 3_600_000, "other": now + 3_600_000})
    client.hset(
        k.trails, mapping={"bench|@work": f"9|1|9|90|{now}", "other|@work": f"1|9|1|9|{now}"}
    )
    top = client.zrevrange(k.open, 0, 0)
    client.hset(k.failed, top[0], "other")


UNFIT = 4  # top tasks that need strength 1: a strength-0 claim skips them (section 6a)


def with_requirements(client: Any, bulk: Bulk) -> None:
    """The top UNFIT open tasks need strength 1, which a live worker (strength 9, code) meets:
    a claim by a strength-0 worker skips them among its K candidates, checking each against the
    live profiles and the unmet marks (the path a requirement adds); the other claims pass
    strength 9 and skip none."""
    k, now = bulk.board.keys, bulk.board.now_ms()
    client.hset(k.profiles, "9|1", now + 3_600_000)
    for tid in client.zrevrange(k.open, 0, UNFIT - 1):
        client.hset(k.task(tid), "min_strength", 1)
        fields = client.hget(k.traits, tid).split("|")
        fields[4] = "1"  # kind|priority|depth|created|min_strength|needs_code|tags
        client.hset(k.traits, tid, "|".join(fields))


def reference_claim(client: Any, ref: str) -> Any:
    """claim.lua as it was at git `ref` (with that ref's _lib.lua), registered on `client`:
    timed in the same run as today's, so a change to the claim rule is measured side by side."""

    def show(path: str) -> str:
        return subprocess.run(
            ["git", "show", f"{ref}:{path}"], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout

    body = show("swarm/lua/claim.lua").partition("\n")[2]  # no shebang: as on any server
    return client.register_script(show("swarm/lua/_lib.lua") + "\n" + body)


def _timed_raw(script: Any, bulk: Bulk, *more: str) -> float:
    """One claim by a script called directly (no reply decoding), then a release (not timed);
    returns seconds. The reference and today's claim are compared this way."""
    board = bulk.board
    args = ["bench-latency", board.now_ms(), 60_000, board.rng.random(), board.rng.random()]
    args += [board.rng.random(), "", 8, *more]
    a = time.perf_counter()
    reply = script(keys=board._script_keys, args=args)
    took = time.perf_counter() - a
    # positional ({'ok', tid, fence, ...}) before replies were named ({'ok', 'id', tid, ...})
    tid, fence = (reply[2], reply[4]) if reply[1] == "id" else (reply[1], reply[2])
    board._run("release", tid, fence, "bench-latency", board.now_ms())
    return took


def claim_latency(
    client: Any, sizes: tuple[int, ...], samples: int, against: str | None = None
) -> dict[str, Any]:
    """Claim and release timings (ms) with each number of open tasks, measured interleaved.

    Every size's swarm exists at once and each round claims and releases once in each, so
    the machine's noise falls on all sizes alike. A release puts the task back, keeping
    `open` at its size. With `against`, a claim by that git ref's claim.lua is timed in the
    same rounds.
    """
    reference = reference_claim(client, against) if against else None
    bulks = []
    for size in sizes:
        t0 = time.monotonic()
        bulks.append(bulk_swarm(client, size))
        log(f"  bulk-wrote {size:,} open tasks in {time.monotonic() - t0:.1f} s")
    for bulk in bulks:
        with_trails(client, bulk)
        with_requirements(client, bulk)
    claims: list[list[float]] = [[] for _ in sizes]
    classed: list[list[float]] = [[] for _ in sizes]
    unfit: list[list[float]] = [[] for _ in sizes]
    releases: list[list[float]] = [[] for _ in sizes]
    referenced: list[list[float]] = [[] for _ in sizes]
    raw: list[list[float]] = [[] for _ in sizes]
    raw_classed: list[list[float]] = [[] for _ in sizes]
    today = bulks[0].board._scripts["claim"] if bulks else None
    for i in range(samples + 200):
        for n, bulk in enumerate(bulks):
            a = time.perf_counter()
            claim = bulk.board.claim("bench-latency", strength=9).claim
            b = time.perf_counter()
            assert claim is not None
            bulk.board.release(claim, "bench-latency")
            c = time.perf_counter()
            # the same claim by a worker with a class: trails, thresholds, escalation read
            found = bulk.board.claim("bench-latency", worker_class="bench", strength=9).claim
            d = time.perf_counter()
            assert found is not None
            bulk.board.release(found, "bench-latency")
            # by a worker that meets none of the UNFIT top tasks: it skips them
            e = time.perf_counter()
            weak = bulk.board.claim("bench-latency", strength=0).claim
            f = time.perf_counter()
            assert weak is not None and int(weak.task.min_strength) == 0
            bulk.board.release(weak, "bench-latency")
            ref_s = raw_s = raw_classed_s = 0.0
            if reference is not None:
                ref_s = _timed_raw(reference, bulk)
                raw_s = _timed_raw(today, bulk, "", "9")
                raw_classed_s = _timed_raw(today, bulk, "bench", "9")
            if i >= 200:  # the first ones warm the connection and the script cache
                claims[n].append((b - a) * 1000)
                releases[n].append((c - b) * 1000)
                classed[n].append((d - c) * 1000)
                unfit[n].append((f - e) * 1000)
                referenced[n].append(ref_s * 1000)
                raw[n].append(raw_s * 1000)
                raw_classed[n].append(raw_classed_s * 1000)
    memory = client.info("memory").get("used_memory_human", "?")
    for bulk in bulks:
        drop_swarm(client, bulk)
    out: dict[str, Any] = {"server_memory_with_all": memory}
    for n, size in enumerate(sizes):
        cl, cc, rel = sorted(claims[n]), sorted(classed[n]), sorted(releases[n])
        cu = sorted(unfit[n])
        if against:
            out.setdefault("against", against)
            for name, series in (
                (against, referenced[n]),
                ("today", raw[n]),
                ("today_classed", raw_classed[n]),
            ):
                series.sort()
                out[f"{size}_script_{name}"] = {
                    "claim_p50_ms": round(_percentile(series, 0.5), 3),
                    "claim_p99_ms": round(_percentile(series, 0.99), 3),
                }
        out[str(size)] = {
            "claim_p50_ms": round(_percentile(cl, 0.5), 3),
            "claim_p99_ms": round(_percentile(cl, 0.99), 3),
            "claim_class_p50_ms": round(_percentile(cc, 0.5), 3),
            "claim_class_p99_ms": round(_percentile(cc, 0.99), 3),
            "claim_unfit_p50_ms": round(_percentile(cu, 0.5), 3),
            "claim_unfit_p99_ms": round(_percentile(cu, 0.99), 3),
            "release_p50_ms": round(_percentile(rel, 0.5), 3),
            "release_p99_ms": round(_percentile(rel, 0.99), 3),
        }
    return out


# ------------------------------------------------------------------ the run


@dataclass(frozen=True)
class Plan:
    repeat: int
    leaves_1: int
    leaves_8: int
    api_n: int
    rq_simple_jobs: int
    rq_fork_jobs: int
    window_s: float
    latency_sizes: tuple[int, ...]
    latency_samples: int
    scale_modes: tuple[tuple[int, int], ...]  # (processes, slots each)
    scale_leaves: int
    scale_window_s: float


QUICK = Plan(1, 2500, 3000, 1500, 1500, 200, 3.0, (1_000, 100_000), 1000,
             ((4, 8),), 1500, 4.0)  # fmt: skip
FULL = Plan(3, 12000, 16000, 5000, 6000, 800, 8.0, (1_000, 100_000, 1_000_000), 5000,
            ((32, 1), (4, 8)), 4000, 12.0)  # fmt: skip


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(client: Any, url: str, plan: Plan) -> dict[str, Any]:
    figures: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        figures.setdefault(key, []).append(value)
        log(f"  {key:32s} {value:12,.1f}")

    api_us: dict[str, float] = {}
    lean_us: dict[str, float] = {}
    for r in range(plan.repeat):
        log(f"round {r + 1}/{plan.repeat}")
        rt = roundtrip(client, 1.0)
        add("roundtrip_ping_per_s", rt["ping"])
        add("roundtrip_eval_per_s", rt["eval"])
        api = board_api(client, plan.api_n, context="none")
        add("board_api_lifecycles_per_s", api["per_s"])
        api = board_api(client, plan.api_n, context="board")
        add("board_api_ctx_lifecycles_per_s", api["per_s"])
        api_us = api["us"]
        api = board_api(client, plan.api_n, context="lean")
        add("board_api_lean_ctx_lifecycles_per_s", api["per_s"])
        lean_us = api["us"]
        add("worker_in_process_per_s", worker_in_process(
            client, plan.leaves_1, lean=False, max_s=plan.window_s))  # fmt: skip
        add("worker_in_process_lean_per_s", worker_in_process(
            client, plan.leaves_1, lean=True, max_s=plan.window_s))  # fmt: skip
        add("lifecycles_per_s_1", swarm_workers(
            client, url, procs=1, leaves=plan.leaves_1, max_s=plan.window_s))  # fmt: skip
        add("rq_simple_jobs_per_s", rq_workers(
            client, url, fork=False, jobs=plan.rq_simple_jobs, max_s=plan.window_s))  # fmt: skip
        add("lifecycles_per_s_8", swarm_workers(
            client, url, procs=8, leaves=plan.leaves_8, max_s=plan.window_s))  # fmt: skip
        add("rq_fork_jobs_per_s", rq_workers(
            client, url, fork=True, jobs=plan.rq_fork_jobs, max_s=plan.window_s))  # fmt: skip
    result: dict[str, Any] = {k: round(_median(v), 1) for k, v in figures.items()}
    result["samples"] = {k: [round(x, 1) for x in v] for k, v in figures.items()}
    result["board_api_phase_us"] = api_us
    result["board_api_lean_phase_us"] = lean_us

    log(f"claim latency with {', '.join(f'{n:,}' for n in plan.latency_sizes)} open tasks")
    latency = claim_latency(client, plan.latency_sizes, plan.latency_samples)
    result["server_memory_with_all"] = latency.pop("server_memory_with_all")
    result["claim_latency"] = latency
    log(f"  {latency}")

    scale = {}
    for procs, slots in plan.scale_modes:
        workers, think = procs * slots, 0.2
        log(f"scale-out: {procs} processes x {slots} slots, think {think}")
        rate = swarm_workers(client, url, procs=procs, slots=slots, leaves=plan.scale_leaves,
                             think=think, max_s=plan.scale_window_s)  # fmt: skip
        ideal = workers / think
        scale[f"{procs}x{slots}"] = {
            "processes": procs, "slots": slots, "workers": workers, "think_s": think,
            "tasks_per_s": round(rate, 1), "ideal_per_s": ideal,
            "of_ideal": round(rate / ideal, 3),
        }  # fmt: skip
        log(f"  {scale[f'{procs}x{slots}']}")
    result["scale_out"] = scale
    result["ratios"] = ratios(result)
    return result


def ratios(r: dict[str, Any]) -> dict[str, float]:
    lat = r["claim_latency"]
    out = {
        "worker_1_vs_rq_simple": r["lifecycles_per_s_1"] / r["rq_simple_jobs_per_s"],
        "worker_1_vs_rq_fork": r["lifecycles_per_s_1"] / r["rq_fork_jobs_per_s"],
        "worker_8_vs_worker_1": r["lifecycles_per_s_8"] / r["lifecycles_per_s_1"],
        "worker_1_vs_board_api_ctx": r["lifecycles_per_s_1"] / r["board_api_ctx_lifecycles_per_s"],
        "board_api_vs_eval_ceiling": r["board_api_lifecycles_per_s"] / r["roundtrip_eval_per_s"],
        "lean_ctx_vs_board_ctx": (
            r["board_api_lean_ctx_lifecycles_per_s"] / r["board_api_ctx_lifecycles_per_s"]
        ),
        "worker_lean_vs_worker": r["worker_in_process_lean_per_s"] / r["worker_in_process_per_s"],
    }
    sizes = sorted(lat, key=int)
    if len(sizes) > 1:
        out[f"claim_p99_{sizes[-1]}_vs_{sizes[0]}"] = (
            lat[sizes[-1]]["claim_p99_ms"] / lat[sizes[0]]["claim_p99_ms"]
        )
        out[f"claim_p50_{sizes[-1]}_vs_{sizes[0]}"] = (
            lat[sizes[-1]]["claim_p50_ms"] / lat[sizes[0]]["claim_p50_ms"]
        )
    out.update(classed_ratios(lat))
    for name, s in r["scale_out"].items():
        out[f"scale_out_{name}_of_ideal"] = s["of_ideal"]
    return {k: round(v, 3) for k, v in out.items()}


def classed_ratios(lat: dict[str, Any]) -> dict[str, float]:
    """A claim by a worker with a class (trails read) against one without, and one that skips
    candidates it does not meet against one that skips none, same run."""
    out = {}
    for size, v in lat.items():
        out[f"claim_class_vs_plain_p50_{size}"] = v["claim_class_p50_ms"] / v["claim_p50_ms"]
        if "claim_unfit_p50_ms" in v:
            out[f"claim_unfit_vs_plain_p50_{size}"] = v["claim_unfit_p50_ms"] / v["claim_p50_ms"]
    return out


def targets(r: dict[str, Any]) -> list[tuple[str, bool]]:
    ra, lat = r["ratios"], r["claim_latency"]
    checks = [
        ("one worker process >= 1,000 lifecycles/s", r["lifecycles_per_s_1"] >= 1000),
        ("one worker process >= 10x RQ SimpleWorker", ra["worker_1_vs_rq_simple"] >= 10),
    ]
    big = max(lat, key=int) if lat else None
    if big and "1000" in lat and big != "1000":
        key = f"claim_p99_{big}_vs_1000"
        checks.append((f"claim p99 at {int(big):,} open within 2x of at 1,000", ra[key] <= 2))
    for name, s in r["scale_out"].items():
        checks.append((f"scale-out {name} (think 0.2) >= 85% of ideal", s["of_ideal"] >= 0.85))
    return checks


def latency_table(latency: dict[str, Any]) -> str:
    lines = [
        "open tasks   claim p50 ms   claim p99 ms   classed p50   classed p99"
        "   unfit p50   unfit p99   release p50 ms   release p99 ms"
    ]
    for size, v in latency.items():
        lines.append(
            f"{int(size):>10,}   {v['claim_p50_ms']:12.3f}   {v['claim_p99_ms']:12.3f}"
            f"   {v['claim_class_p50_ms']:11.3f}   {v['claim_class_p99_ms']:11.3f}"
            f"   {v['claim_unfit_p50_ms']:9.3f}   {v['claim_unfit_p99_ms']:9.3f}"
            f"   {v['release_p50_ms']:14.3f}   {v['release_p99_ms']:14.3f}"
        )
    return "\n".join(lines)


def report(r: dict[str, Any]) -> str:
    lines = ["", "figure                               median"]
    for key in (
        "roundtrip_ping_per_s", "roundtrip_eval_per_s", "board_api_lifecycles_per_s",
        "board_api_ctx_lifecycles_per_s", "board_api_lean_ctx_lifecycles_per_s",
        "worker_in_process_per_s", "worker_in_process_lean_per_s",
        "lifecycles_per_s_1", "lifecycles_per_s_8",
        "rq_simple_jobs_per_s", "rq_fork_jobs_per_s",
    ):  # fmt: skip
        lines.append(f"{key:34s} {r[key]:10,.0f} /s   samples {r['samples'][key]}")
    lines.append(f"board API phases, us per lifecycle, Board.context: {r['board_api_phase_us']}")
    lines.append(
        f"board API phases, us per lifecycle, lean context: {r['board_api_lean_phase_us']}"
    )
    lines.append("")
    lines.append(latency_table(r["claim_latency"]))
    lines.append("")
    for name, s in r["scale_out"].items():
        lines.append(
            f"scale-out {name:6s} {s['workers']} workers think {s['think_s']}: "
            f"{s['tasks_per_s']:.1f}/s of ideal {s['ideal_per_s']:.0f}/s = {s['of_ideal']:.0%}"
        )
    lines.append("")
    lines += [f"ratio {k:36s} {v:8.3f}" for k, v in r["ratios"].items()]
    lines.append("")
    lines += [f"[{'met' if ok else 'MISSED'}] {what}" for what, ok in targets(r)]
    lines.append(
        f"(what-if) the Worker loop with a one-script lean context read: "
        f"{r['worker_in_process_lean_per_s']:,.0f}/s vs {r['worker_in_process_per_s']:,.0f}/s"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a reduced run, under a minute")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    ap.add_argument("--redis", metavar="URL", help="use this server instead of starting one")
    ap.add_argument("--server", choices=("redis", "valkey"), default="redis",
                    help="which server binary to start (default redis-server)")  # fmt: skip
    ap.add_argument("--out", type=Path, help="write the JSON here (default bench/results/)")
    ap.add_argument("--repeat", type=int, help="rounds of the side-by-side figures")
    ap.add_argument("--no-million", action="store_true", help="claim latency up to 100,000")
    ap.add_argument(
        "--latency-only", action="store_true", help="only the claim latency (plain and classed)"
    )
    ap.add_argument(
        "--against", metavar="GIT_REF", help="with --latency-only: time that ref's claim.lua too"
    )
    args = ap.parse_args(argv)

    plan = QUICK if args.quick else FULL
    if args.repeat:
        plan = replace(plan, repeat=args.repeat)
    if args.no_million:
        plan = replace(plan, latency_sizes=tuple(n for n in plan.latency_sizes if n < 10**6))
    server = None if args.redis else start_server(kind=args.server)
    url = args.redis or (server.url if server else "")
    started = time.time()
    try:
        client = redis.Redis.from_url(url, decode_responses=True)
        if args.latency_only:
            latency = claim_latency(
                client, plan.latency_sizes, plan.latency_samples, against=args.against
            )
            result = {"server_memory_with_all": latency.pop("server_memory_with_all")}
            against = {k: latency.pop(k) for k in list(latency) if not k.isdigit()}
            result["claim_latency"], result["claim_latency_against"] = latency, against
            ratios_ = classed_ratios(latency)
            for size in latency:
                ref = against.get(f"{size}_script_{args.against}")
                if ref:  # scripts called alike, in the same rounds
                    for name in ("today", "today_classed"):
                        ratios_[f"script_{name}_p50_{size}_vs_{args.against}"] = (
                            against[f"{size}_script_{name}"]["claim_p50_ms"] / ref["claim_p50_ms"]
                        )
            result["ratios"] = {k: round(v, 3) for k, v in ratios_.items()}
        else:
            result = run(client, url, plan)
        result["meta"] = {
            "command": " ".join(["python scripts/bench_board.py", *(argv or sys.argv[1:])]),
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": round(time.time() - started, 1),
            "server": f"{args.server}-server {client.info('server').get('redis_version')}"
            if server
            else "external",
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "redis_py": redis.__version__,
            "hiredis": bool(HIREDIS_AVAILABLE),
            "plan": asdict(plan),
        }
        client.close()
    finally:
        if server is not None:
            server.stop()
    name = (
        "bench_board" + ("_quick" if args.quick else "") + ("_latency" if args.latency_only else "")
    )
    out = args.out or RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result))
    elif args.latency_only:
        print(latency_table(result["claim_latency"]))
        for name, v in result["claim_latency_against"].items():
            if isinstance(v, dict):
                print(
                    f"{name}: claim p50 {v['claim_p50_ms']:.3f} ms, p99 {v['claim_p99_ms']:.3f} ms"
                )
        print("\n".join(f"ratio {k:36s} {v:8.3f}" for k, v in result["ratios"].items()))
    else:
        print(report(result))
        print(f"\nwritten to {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
