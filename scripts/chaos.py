"""Chaos run: real `swarm worker` processes on an AOF Valkey, killed, frozen and cut off.

    python scripts/chaos.py                                  # 8 workers, think 20-200 ms
    python scripts/chaos.py --workers 16 --kill-every 1 --branch 4 --depth 4
    python scripts/chaos.py --no-restart-redis --no-cut --json

What it does: starts a Valkey with `appendonly yes` in a temporary directory, seeds a purpose
that the sim mind splits into a `branch`^`depth` tree, and runs `--workers` workers whose
think times are spread evenly over `--think-min`..`--think-max` (one value per worker; the
sim mind takes one). Then, until the swarm is done:

- every `--kill-every` seconds a random worker gets SIGKILL (one holding a task, if any
  does) and a new one starts in its place;
- once, at `--restart-at` of the work, the server is killed (SIGKILL, or SHUTDOWN with
  `--graceful-restart`) and started again on the same AOF;
- once, at `--cut-at` of the work, a worker holding a task is frozen (SIGSTOP) for longer
  than its lease, so its task is reaped and redone, then thawed (SIGCONT): its late result
  must be refused by the fence.

Then it checks, from the task hashes and the whole event stream: the swarm is done with an
answer; every task is terminal and none is lost (counters, `open`, `leases` empty, the tree
has exactly the tasks the sim splits make); no task has more than one `completed` or
`split` event, and every completion came from the worker holding the task's latest claim;
the root answer holds every leaf exactly once, in order. It prints the time from each kill
to the reaping of the killed worker's task. Exit status 1 if any check fails.

With `--appendfsync always` (the default) a crash of the server loses nothing it has
acknowledged. With `everysec`, a crash of the server process alone normally loses nothing
either (Redis hands the AOF to the OS before it replies, unless a slow fsync makes it
postpone that write, for up to 2 s); a crash of the machine can lose about a second of
writes. The run cannot show that loss; bench/README-table.md says what it would break.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from _servers import Server, start_server  # noqa: E402

from swarm.board import Board  # noqa: E402

TITLE = "Chaos"
TERMINAL = {"done", "dead", "cancelled"}


@dataclass(frozen=True)
class ChaosConfig:
    workers: int = 8
    think_min: float = 0.02
    think_max: float = 0.2
    branch: int = 3
    depth: int = 5
    kill_every: float = 2.0  # seconds between SIGKILLs; 0: none
    lease: float = 2.0
    restart_redis: bool = True
    restart_at: float = 0.5  # fraction of the lifecycles done
    graceful_restart: bool = False  # SHUTDOWN instead of SIGKILL
    appendfsync: str = "always"
    cut: bool = True
    cut_at: float = 0.3
    cut_for: float = 0.0  # 0: two leases and a half second
    max_attempts: int = 10
    timeout: float = 300.0
    seed: int | None = None
    server: str = "valkey"

    @property
    def tasks(self) -> int:
        """Every task the sim mind's splits make: 1 + B + B^2 + ... + B^D."""
        return sum(self.branch**d for d in range(self.depth + 1))

    def think(self, slot: int) -> float:
        if self.workers == 1:
            return self.think_min
        return self.think_min + (self.think_max - self.think_min) * slot / (self.workers - 1)


@dataclass
class ChaosReport:
    config: dict[str, Any]
    swarm_id: str = ""
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    tasks: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    events: int = 0
    completions: int = 0
    kills: int = 0
    kills_holding: int = 0
    reaped: int = 0
    kill_to_reap_s: list[float] = field(default_factory=list)
    kill_to_reclaim_s: list[float] = field(default_factory=list)
    redis_restarts: int = 0
    redis_down_s: float = 0.0
    cut: dict[str, Any] = field(default_factory=dict)
    worker_exits: int = 0  # workers that exited on their own before the end (restarted)

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        for name in ("kill_to_reap_s", "kill_to_reclaim_s"):
            values = out.pop(name)
            out[name] = _stats(values)
        return out


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {
        "n": len(values),
        "min": round(ordered[0], 3),
        "median": round(statistics.median(ordered), 3),
        "max": round(ordered[-1], 3),
    }


def purpose_text(cfg: ChaosConfig) -> str:
    return f"""---
name: chaos
sandbox: none
budgets:
  max_tasks: {cfg.tasks}
  max_depth: {cfg.depth}
  max_children: {max(cfg.branch, 1)}
  max_attempts: {cfg.max_attempts}
  max_tokens: 1000000000
  deadline_s: {int(cfg.timeout * 10)}
---
# {TITLE}

Split into {cfg.branch} parts, {cfg.depth} levels deep, and answer every leaf.
"""


def expected_leaves(branch: int, depth: int) -> list[str]:
    titles = [TITLE]
    for _ in range(depth):
        titles = [f"{t}.{i}" for t in titles for i in range(1, branch + 1)]
    return [f"leaf {t}" for t in titles]


# ------------------------------------------------------------------ workers


@dataclass
class _Slot:
    think: float
    proc: subprocess.Popen[bytes] | None = None
    name: str = ""
    log: IO[bytes] | None = None
    started: int = 0


class WorkerPool:
    """N worker slots; a slot whose process is killed or exits gets a new process."""

    def __init__(self, cfg: ChaosConfig, url: str, swarm_id: str, logs: Path) -> None:
        self.cfg, self.url, self.swarm_id, self.logs = cfg, url, swarm_id, logs
        self.slots = [_Slot(cfg.think(n)) for n in range(cfg.workers)]
        self.killed: set[int] = set()  # pids we killed on purpose

    def start(self, n: int) -> None:
        slot = self.slots[n]
        slot.started += 1
        slot.name = f"chaos{n}x{slot.started}"
        if slot.log is not None:
            slot.log.close()
        slot.log = open(self.logs / f"{slot.name}.log", "wb")  # noqa: SIM115 (closed in stop)
        mind = f"sim:branch={self.cfg.branch},depth={self.cfg.depth},think={slot.think:g}"
        slot.proc = subprocess.Popen(
            [sys.executable, "-m", "swarm", "worker", "--redis", self.url, "--swarm",
             self.swarm_id, "--mind", mind, "--lease", f"{self.cfg.lease:g}", "--burst",
             "--no-code", "--name", slot.name],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=slot.log, stderr=slot.log,
        )  # fmt: skip

    def prefix(self, n: int) -> str:
        """The start of the worker id (`<name>-<pid>-`), as it appears in events."""
        slot = self.slots[n]
        assert slot.proc is not None
        return f"{slot.name}-{slot.proc.pid}-"

    def running(self) -> list[int]:
        return [n for n, s in enumerate(self.slots) if s.proc is not None and s.proc.poll() is None]

    def kill(self, n: int) -> str:
        slot = self.slots[n]
        assert slot.proc is not None
        wid = self.prefix(n)
        self.killed.add(slot.proc.pid)
        slot.proc.send_signal(signal.SIGKILL)
        slot.proc.wait(10)
        return wid

    def exited(self) -> list[int]:
        """Slots whose process ended by itself (not by our SIGKILL)."""
        return [
            n
            for n, s in enumerate(self.slots)
            if s.proc is not None and s.proc.poll() is not None and s.proc.pid not in self.killed
        ]

    def stop(self, grace_s: float = 10.0) -> None:
        for s in self.slots:
            if s.proc is not None and s.proc.poll() is None:
                s.proc.send_signal(signal.SIGCONT)
                s.proc.terminate()
        deadline = time.monotonic() + grace_s
        for s in self.slots:
            if s.proc is None:
                continue
            try:
                s.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                s.proc.kill()
                s.proc.wait()
            if s.log is not None:
                s.log.close()


# ------------------------------------------------------------------ the run


_AWAY = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


class _Run:
    """One chaos run: workers, faults on a schedule, then the checks."""

    def __init__(self, cfg: ChaosConfig, say: Callable[[str], None]) -> None:
        self.cfg, self.say = cfg, say
        self.rng = random.Random(cfg.seed)
        self.report = ChaosReport(config=asdict(cfg))
        self.kills: list[tuple[float, str]] = []  # (time, worker id prefix)
        self.cut_info: dict[str, Any] = {}
        self.cut_state = "pending" if cfg.cut else "off"  # then "stopped", then "done"
        self.cut_slot, self.cut_until = -1, 0.0
        self.restarted = not cfg.restart_redis
        self.next_kill = float("inf")

    def go(self, server: Server, workdir: Path) -> None:
        cfg, report = self.cfg, self.report
        purpose = workdir / "purpose.md"
        purpose.write_text(purpose_text(cfg))
        seeded = subprocess.run(
            [sys.executable, "-m", "swarm", "seed", str(purpose), "--redis", server.url],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )  # fmt: skip
        swarm_id = seeded.stdout.strip()
        report.swarm_id = swarm_id
        client = redis.Redis.from_url(server.url, decode_responses=True, socket_timeout=5)
        board = Board(client, swarm_id)
        # The stream is capped at 10,000 events by default; the checks need all of them.
        client.hset(board.keys.meta, "events_max", 10_000_000)
        logs = workdir / "logs"
        logs.mkdir()
        pool = WorkerPool(cfg, server.url, swarm_id, logs)
        started = time.monotonic()
        try:
            for n in range(cfg.workers):
                pool.start(n)
            self.say(f"seeded {swarm_id}: {cfg.tasks} tasks, {cfg.workers} workers on {server.url}")
            self._loop(server, client, board, pool)
            report.seconds = round(time.monotonic() - started, 2)
        finally:
            pool.stop()
            client.close()
        client = redis.Redis.from_url(server.url, decode_responses=True, socket_timeout=30)
        try:
            verify(client, Board(client, swarm_id), cfg, report, self.kills, self.cut_info, logs)
        finally:
            client.close()

    def _loop(self, server: Server, client: Any, board: Board, pool: WorkerPool) -> None:
        cfg = self.cfg
        t0 = time.monotonic()
        self.next_kill = t0 + cfg.kill_every if cfg.kill_every > 0 else float("inf")
        while True:
            now = time.monotonic()
            if now - t0 > cfg.timeout:
                self.report.failures.append(f"timeout: not done after {cfg.timeout:g} s")
                return
            done, state = self._progress(client, board)
            if state in ("done", "cancelled"):
                return
            self._replace_exited(client, board, pool)
            if now >= self.next_kill:
                self._kill_one(client, board, pool)
                self.next_kill = now + cfg.kill_every
            if not self.restarted and done >= cfg.restart_at * cfg.tasks:
                self._restart(server, done)
            self._cut_step(client, board, pool, done, now)
            time.sleep(0.05)

    def _progress(self, client: Any, board: Board) -> tuple[int, str]:
        """(tasks completed so far, swarm state); (-1, '') while the server is away."""
        try:
            m = client.hmget(board.keys.meta, "completions", "state")
        except _AWAY:
            return -1, ""
        return int(m[0] or 0), str(m[1] or "")

    def _replace_exited(self, client: Any, board: Board, pool: WorkerPool) -> None:
        """A worker that exited by itself (it could not connect while the server was down,
        or it crashed) is replaced; one that exited because the swarm just ended is not."""
        for n in pool.exited():
            if self._progress(client, board)[1] in ("done", "cancelled"):
                return
            self.report.worker_exits += 1
            proc = pool.slots[n].proc
            self.say(f"worker {n} exited with {proc.returncode if proc else '?'}; restarting it")
            pool.start(n)

    def _kill_one(self, client: Any, board: Board, pool: WorkerPool) -> None:
        """SIGKILL a random worker, preferring one that holds a task, and start a new one."""
        frozen = self.cut_slot if self.cut_state == "stopped" else -1
        victims = [n for n in pool.running() if n != frozen]
        if not victims:
            return
        owners = self._held(client, board)
        holders = [n for n in victims if any(o.startswith(pool.prefix(n)) for o in owners)]
        n = self.rng.choice(holders or victims)
        self.kills.append((time.time(), pool.kill(n)))
        pool.start(n)

    def _restart(self, server: Server, done: int) -> None:
        self.restarted = True
        down = server.restart(crash=not self.cfg.graceful_restart)
        self.report.redis_restarts += 1
        self.report.redis_down_s = round(down, 3)
        self.say(f"restarted the server at {done}/{self.cfg.tasks} done ({down:.2f} s down)")

    def _cut_step(self, client: Any, board: Board, pool: WorkerPool, done: int, now: float) -> None:
        cfg = self.cfg
        if self.cut_state == "pending" and done >= cfg.cut_at * cfg.tasks:
            self.cut_slot = self._cut(client, board, pool)
            if self.cut_slot >= 0:
                self.cut_state = "stopped"
                self.cut_until = now + (cfg.cut_for or 2 * cfg.lease + 0.5)
        elif self.cut_state == "stopped" and now >= self.cut_until:
            proc = pool.slots[self.cut_slot].proc
            assert proc is not None
            proc.send_signal(signal.SIGCONT)
            self.cut_info["thawed_at"] = time.time()
            self.cut_state = "done"
            self.say(f"thawed worker {self.cut_info['worker']}")

    def _held(self, client: Any, board: Board) -> dict[str, str]:
        """Worker id -> a task it holds now (empty while the server is away)."""
        try:
            held = client.zrange(board.keys.leases, 0, -1)
            pipe = client.pipeline(transaction=False)
            for t in held:
                pipe.hget(board.keys.task(t), "owner")
            return {str(o): t for o, t in zip(pipe.execute(), held, strict=True) if o}
        except _AWAY:
            return {}

    def _cut(self, client: Any, board: Board, pool: WorkerPool) -> int:
        """Freeze a running worker that holds a task; returns its slot, or -1 to try later.

        What it holds is read again once it is frozen: until then it may finish its task
        and take another.
        """
        owners = self._held(client, board)
        for n in pool.running():
            prefix = pool.prefix(n)
            if not any(o.startswith(prefix) for o in owners):
                continue
            proc = pool.slots[n].proc
            assert proc is not None
            proc.send_signal(signal.SIGSTOP)
            time.sleep(0.1)  # a command it had already sent lands meanwhile
            mine = [t for o, t in self._held(client, board).items() if o.startswith(prefix)]
            if not mine:
                proc.send_signal(signal.SIGCONT)
                continue
            self.cut_info.update(worker=prefix, task=mine[0], stopped_at=time.time(), slot=n)
            self.say(f"froze worker {prefix} holding task {mine[0]}")
            return n
        return -1


# ------------------------------------------------------------------ the checks


def _events(client: Any, board: Board) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    last = "-"
    while True:
        batch = client.xrange(board.keys.events, last if last == "-" else f"({last}", "+", 5000)
        if not batch:
            return out
        out += [dict(f) for _, f in batch]
        last = batch[-1][0]


def verify(
    client: Any,
    board: Board,
    cfg: ChaosConfig,
    report: ChaosReport,
    kills: list[tuple[float, str]],
    cut: dict[str, Any],
    logs: Path,
) -> None:
    fail = report.failures.append
    meta = client.hgetall(board.keys.meta)
    if meta.get("state") != "done" or meta.get("outcome") != "answered":
        fail(f"swarm ended {meta.get('state')} ({meta.get('outcome') or 'no outcome'})")
    n_tasks = int(meta.get("next_id", 0)) + 1
    report.tasks = n_tasks
    if n_tasks != cfg.tasks or int(meta.get("tasks", 0)) != cfg.tasks:
        fail(f"{n_tasks} tasks exist (meta says {meta.get('tasks')}), the tree has {cfg.tasks}")
    pipe = client.pipeline(transaction=False)
    for tid in range(n_tasks):
        pipe.hmget(board.keys.task(str(tid)), "state", "title")
    states = Counter(str(s) for s, _ in pipe.execute())
    report.by_state = dict(states)
    if set(states) - TERMINAL:
        fail(f"tasks not terminal (lost): {dict(states)}")
    if states.get("done", 0) != n_tasks:
        fail(f"not every task is done: {dict(states)}")
    for counter in ("n_open", "n_claimed", "n_waiting"):
        if int(meta.get(counter, 0)) != 0:
            fail(f"meta {counter} is {meta.get(counter)}, expected 0")
    if client.zcard(board.keys.open) or client.zcard(board.keys.leases):
        fail("open or leases not empty at the end")

    events = _events(client, board)
    report.events = len(events)
    if not events or events[0].get("type") != "seeded":
        fail("the event stream was trimmed; the checks below are incomplete")
    _check_events(events, report)
    _check_answer(meta.get("answer", ""), cfg, report)
    _kill_times(events, kills, report)
    if cut:
        _check_cut(events, cut, logs, report)


def _check_events(events: list[dict[str, str]], report: ChaosReport) -> None:
    fail = report.failures.append
    completed = Counter(e["task"] for e in events if e["type"] == "completed")
    report.completions = sum(completed.values())
    twice = {t: n for t, n in completed.items() if n > 1}
    if twice:
        fail(f"results accepted more than once: {twice}")
    if len(completed) != report.tasks:
        fail(f"{len(completed)} tasks have a `completed` event, {report.tasks} expected")
    splits = Counter(e["task"] for e in events if e["type"] == "split")
    if any(n > 1 for n in splits.values()):
        fail(f"tasks split more than once: {[t for t, n in splits.items() if n > 1]}")
    # Fencing, seen from the stream: a post (completed, split, failed) must come from the
    # worker of the task's latest claim, with no reap or release in between.
    holder: dict[str, str] = {}
    for e in events:
        kind, tid = e["type"], e["task"]
        if kind == "claimed":
            holder[tid] = e["worker"]
        elif kind in ("reaped", "released"):
            holder.pop(tid, None)
        elif kind in ("completed", "split", "failed") and holder.pop(tid, None) != e["worker"]:
            fail(f"task {tid}: {kind} by {e['worker']}, who did not hold its lease")


def _check_answer(answer: str, cfg: ChaosConfig, report: ChaosReport) -> None:
    got = answer.split(" | ") if answer else []
    want = expected_leaves(cfg.branch, cfg.depth)
    counts = Counter(got)
    missing = [leaf for leaf in want if leaf not in counts]
    twice = [leaf for leaf, n in counts.items() if n > 1]
    extra = [leaf for leaf in counts if leaf not in set(want)]
    if missing or twice or extra:
        report.failures.append(
            f"root answer: {len(missing)} leaves missing, {len(twice)} twice, {len(extra)} "
            f"unexpected (e.g. {(missing + twice + extra)[:3]})"
        )
    elif got != want:
        report.failures.append("root answer holds every leaf once, but out of order")


def _at(event: dict[str, str]) -> float:
    return int(event["at"]) / 1000


def _kill_times(
    events: list[dict[str, str]], kills: list[tuple[float, str]], report: ChaosReport
) -> None:
    """Time from each kill to the reaping (and the next claim) of the killed worker's tasks.

    Only reaps after the kill count: a worker may also have lost a task earlier (its
    commands failed while the server restarted, so it dropped the task and the lease ran
    out), which is reaped like any other.
    """
    report.kills = len(kills)
    killed_at = {prefix: t for t, prefix in kills}
    holding: set[str] = set()
    for i, e in enumerate(events):
        if e["type"] != "reaped":
            continue
        report.reaped += 1
        owner = e.get("owner", "")
        prefix = next((p for p in killed_at if owner.startswith(p)), None)
        if prefix is None or _at(e) < killed_at[prefix] - 0.05:  # 50 ms of clock slack
            continue
        holding.add(prefix)
        report.kill_to_reap_s.append(_at(e) - killed_at[prefix])
        again = next(
            (x for x in events[i + 1 :] if x["type"] == "claimed" and x["task"] == e["task"]), None
        )
        if again is not None:
            report.kill_to_reclaim_s.append(_at(again) - killed_at[prefix])
    report.kills_holding = len(holding)


def _check_cut(
    events: list[dict[str, str]], cut: dict[str, Any], logs: Path, report: ChaosReport
) -> None:
    """The frozen worker's task was reaped while it slept, and its late post did not count.

    A late post is one made under the claim it held when it was frozen; after it wakes it
    may claim the same task again, fairly, and complete it under the new fence.
    """
    prefix, task, stopped = cut["worker"], cut["task"], cut["stopped_at"] - 0.05
    mine = [e for e in events if e["task"] == task]
    frozen_fence = next(
        (e.get("fence") for e in reversed(mine)
         if e["type"] == "claimed" and e["worker"].startswith(prefix) and _at(e) < stopped),
        None,
    )  # fmt: skip
    reaped = [
        e
        for e in mine
        if e["type"] == "reaped" and e.get("owner", "").startswith(prefix) and _at(e) >= stopped
    ]
    late, fence = [], None
    for e in mine:
        if e["type"] == "claimed":
            fence = e.get("fence")
        elif (
            e["type"] in ("completed", "split", "failed")
            and e["worker"].startswith(prefix)
            and _at(e) >= stopped
            and fence == frozen_fence
        ):
            late.append(e)
    log_file = logs / f"{prefix.split('-')[0]}.log"
    text = log_file.read_text(errors="replace") if log_file.exists() else ""
    said = [" ".join(line.split()) for line in text.splitlines() if "lease lost" in line]
    report.cut = {
        "worker": prefix,
        "task": task,
        "frozen_s": round(cut.get("thawed_at", cut["stopped_at"]) - cut["stopped_at"], 2),
        "thawed_before_the_end": "thawed_at" in cut,
        "reaped_while_frozen": bool(reaped),
        "late_posts_accepted": len(late),
        "worker_said": said[:4],
    }
    if not reaped:
        report.failures.append(f"frozen worker's task {task} was not reaped")
    if late:
        report.failures.append(f"a frozen worker's late post was accepted: {late}")


# ------------------------------------------------------------------ entry points


def run(cfg: ChaosConfig, say: Callable[[str], None] = print) -> ChaosReport:
    """One chaos run on a server of its own; the server and its files are gone afterwards."""
    with tempfile.TemporaryDirectory(prefix="swarm-chaos-") as tmp:
        workdir = Path(tmp)
        server = start_server(
            kind=cfg.server, directory=workdir / "data", aof=True, appendfsync=cfg.appendfsync
        )
        chaos = _Run(cfg, say)
        try:
            chaos.go(server, workdir)
        finally:
            server.stop()
        return chaos.report


def print_report(report: ChaosReport, say: Callable[[str], None] = print) -> None:
    s = report.summary()
    say(f"swarm {s['swarm_id']}: {s['tasks']} tasks in {s['seconds']} s, {s['by_state']}")
    say(f"events {s['events']}, completions {s['completions']} (each task at most once)")
    say(f"kills {s['kills']} ({s['kills_holding']} holding a task), reaped {s['reaped']}, "
        f"worker exits {s['worker_exits']}")  # fmt: skip
    say(f"kill -> reaped    {s['kill_to_reap_s']}")
    say(f"kill -> reclaimed {s['kill_to_reclaim_s']}")
    say(f"server restarts {s['redis_restarts']} ({s['redis_down_s']} s down)")
    if s["cut"]:
        say(f"frozen worker: {s['cut']}")
    if report.ok:
        say("OK: every task terminal, none lost, no result twice, every leaf once in the answer")
    for f in report.failures:
        say(f"FAILED: {f}")


def _think_range(text: str) -> tuple[float, float]:
    lo, sep, hi = text.partition("..")
    try:
        low, high = float(lo), float(hi if sep else lo)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected A..B in seconds, got {text!r}") from None
    if not 0 <= low <= high:
        raise argparse.ArgumentTypeError(f"need 0 <= A <= B, got {text!r}")
    return low, high


def parse_args(argv: list[str] | None) -> tuple[ChaosConfig, argparse.Namespace]:
    d = ChaosConfig()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=d.workers)
    ap.add_argument("--think-min", type=float, default=d.think_min, help="seconds")
    ap.add_argument("--think-max", type=float, default=d.think_max, help="seconds")
    ap.add_argument("--think", type=_think_range, metavar="A..B",
                    help="both at once, in seconds: 0.02..0.2 (or one value)")  # fmt: skip
    ap.add_argument("--branch", type=int, default=d.branch)
    ap.add_argument("--depth", type=int, default=d.depth)
    ap.add_argument(
        "--kill-every",
        "--kill-interval",
        type=float,
        default=d.kill_every,
        help="seconds; 0: no kills",
    )
    ap.add_argument("--lease", type=float, default=d.lease, help="workers' lease, seconds")
    ap.add_argument("--restart-redis", action=argparse.BooleanOptionalAction,
                    default=d.restart_redis)  # fmt: skip
    ap.add_argument("--restart-at", type=float, default=d.restart_at, help="fraction of work")
    ap.add_argument("--graceful-restart", action="store_true", help="SHUTDOWN, not SIGKILL")
    ap.add_argument("--appendfsync", choices=("always", "everysec"), default=d.appendfsync)
    ap.add_argument("--cut", action=argparse.BooleanOptionalAction, default=d.cut,
                    help="freeze one worker past its lease, then thaw it")  # fmt: skip
    ap.add_argument("--cut-at", type=float, default=d.cut_at, help="fraction of work")
    ap.add_argument("--cut-for", type=float, default=d.cut_for, help="seconds (0: 2 leases + 0.5)")
    ap.add_argument("--max-attempts", type=int, default=d.max_attempts)
    ap.add_argument("--timeout", "--duration", type=float, default=d.timeout,
                    help="give up after this many seconds")  # fmt: skip
    ap.add_argument("--seed", type=int, default=None, help="for the choice of victims")
    ap.add_argument("--server", choices=("valkey", "redis"), default=d.server)
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--out", type=Path, help="also write the JSON report here")
    a = ap.parse_args(argv)
    if a.think is not None:
        a.think_min, a.think_max = a.think
    cfg = ChaosConfig(
        workers=a.workers, think_min=a.think_min, think_max=a.think_max, branch=a.branch,
        depth=a.depth, kill_every=a.kill_every, lease=a.lease, restart_redis=a.restart_redis,
        restart_at=a.restart_at, graceful_restart=a.graceful_restart, appendfsync=a.appendfsync,
        cut=a.cut, cut_at=a.cut_at, cut_for=a.cut_for, max_attempts=a.max_attempts,
        timeout=a.timeout, seed=a.seed, server=a.server,
    )  # fmt: skip
    if cfg.workers < 1 or cfg.branch < 1 or cfg.depth < 0 or cfg.lease < 1:
        ap.error("need --workers >= 1, --branch >= 1, --depth >= 0, --lease >= 1")
    if not 0 <= cfg.think_min <= cfg.think_max:
        ap.error("need 0 <= --think-min <= --think-max")
    if cfg.tasks > 1_000_000:
        ap.error(f"{cfg.tasks} tasks is more than a purpose allows (1,000,000)")
    return cfg, a


def main(argv: list[str] | None = None) -> int:
    cfg, args = parse_args(argv)
    say: Callable[[str], None] = (lambda m: print(m, file=sys.stderr)) if args.json else print
    report = run(cfg, say)
    summary = report.summary()
    summary["command"] = "python scripts/chaos.py " + " ".join(argv or sys.argv[1:])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    if args.json:
        print(json.dumps(summary))
    else:
        print_report(report, say)
    return 0 if report.ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
