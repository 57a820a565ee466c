"""Division of labour in simulation: one mixed swarm, learning off and on, several seeds.

    python scripts/bench_labour.py            # 5 seeds, about a minute
    python scripts/bench_labour.py --seeds 2  # quicker

The swarm: a purpose listing easy and hard tasks (tags `easy`, `hard`), served by weak sim
workers (fast, fail a hard step with probability 0.8) and one strong one (half their speed,
fails a hard step with probability 0.05), all in this process. Each seed runs three swarms on
one Redis: learning `off` (the claim rule without trails or escalation: the baseline),
learning `on` starting from no trails, and `on` again (`warm`), which starts from the trails the
previous swarm left; then `needs`: learning on from no trails, the hard tasks injected with a
requirement (`min_strength` 2, which only the strong worker has: weak ones are strength 1), so
no weak worker ever tries one. Reported per mode: failed attempts, dead tasks, wall time from
seed to the root's answer; medians over seeds, and the ratios between modes, all from this run.

The script starts its own `redis-server` on a free port (or uses `--redis URL`; its keys are
deleted afterwards, and the long-lived trails are set aside and put back).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from _servers import start_server  # noqa: E402

from swarm.board import Board  # noqa: E402
from swarm.minds.sim import SimMind, parse_sim_spec  # noqa: E402
from swarm.purpose import Budgets, Purpose, RootTask, Tuning  # noqa: E402
from swarm.requirements import Requirements  # noqa: E402
from swarm.trace import delete_swarm  # noqa: E402
from swarm.trails import Trails  # noqa: E402
from swarm.worker import Worker, WorkerConfig  # noqa: E402

RESULTS = ROOT / "bench" / "results"


@dataclass(frozen=True)
class Setup:
    easy: int = 16
    hard: int = 16
    weak: int = 3
    strong: int = 1
    think_s: float = 0.04
    weak_spec: str = "depth=1,fail_tags=hard:0.8"
    strong_spec: str = "depth=1,fail_tags=hard:0.05,speed=0.5"
    max_attempts: int = 3
    timeout_s: float = 120.0


def purpose(setup: Setup, learning: float, needs: bool = False) -> Purpose:
    tasks = [RootTask(f"easy {i}", tags=("easy",)) for i in range(setup.easy)]
    if not needs:  # with requirements, the hard ones are injected (a task states them)
        tasks += [RootTask(f"hard {i}", tags=("hard",)) for i in range(setup.hard)]
    random.Random(0).shuffle(tasks)
    return Purpose(
        title="mixed work",
        text="mixed work\n\nEasy and hard tasks for weak and strong workers.",
        name="labour",
        sandbox="none",
        budgets=Budgets(
            max_tasks=setup.easy + setup.hard + 1,
            max_depth=1,
            max_attempts=setup.max_attempts,
            lease_s=10,
            deadline_s=setup.timeout_s,
        ),
        tuning=Tuning(learning=learning),
        tasks=tuple(tasks),
    )


def run_swarm(
    client: Any, setup: Setup, learning: float, seed: int, needs: bool = False
) -> dict[str, Any]:
    """One swarm to its answer; its figures from the board's counters and events."""
    board = Board.seed(client, purpose(setup, learning, needs), rng=random.Random(seed))
    started = time.monotonic()
    if needs:
        strong_only = Requirements(min_strength=2)
        order = list(range(setup.hard))
        random.Random(seed).shuffle(order)
        for i in order:
            board.inject(f"hard {i}", "bench", tags=["hard"], requires=strong_only)
    workers = []
    for n in range(setup.weak + setup.strong):
        weak = n < setup.weak
        spec = f"{setup.weak_spec if weak else setup.strong_spec},think={setup.think_s}"
        mind = SimMind(parse_sim_spec(f"{spec},seed={seed * 100 + n}"))
        config = WorkerConfig(
            swarm_id=board.id,
            worker_class="weak" if weak else "strong",
            strength=1 if weak else 2,
            poll_s=0.05,
        )
        workers.append(Worker(client, mind, config, rng=random.Random(seed * 100 + n)))
    threads = [
        threading.Thread(target=w.run, kwargs={"install_signals": False}, daemon=True)
        for w in workers
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + setup.timeout_s
    while board.state().value not in ("done", "cancelled") and time.monotonic() < deadline:
        time.sleep(0.02)
    wall_s = time.monotonic() - started
    for w in workers:
        w.stop()
    for t in threads:
        t.join(30)
    counts: dict[str, int] = {}
    for _, f in board.events(count=100_000):
        counts[f["type"]] = counts.get(f["type"], 0) + 1
    status = board.status()
    hard_done = 0
    by_class = {"weak": 0, "strong": 0}
    for task in board.children("0"):
        if task.state.value == "done":
            hard_done += "hard" in task.tags
            done_by = task.owner_class or "?"
            by_class[done_by] = by_class.get(done_by, 0) + 1
    figures = {
        "answered": status["outcome"] == "answered",
        "failed_attempts": counts.get("failed", 0) + counts.get("reaped", 0),
        "dead": status["by_state"]["dead"],
        "escalated": counts.get("escalated", 0),
        "wall_s": round(wall_s, 3),
        "hard_done": hard_done,
        "done_by_class": by_class,
    }
    delete_swarm(client, board.id)
    return figures


def median(rows: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rows))


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode, rows in runs.items():
        out[mode] = {
            "failed_attempts_median": median(rows, "failed_attempts"),
            "failed_attempts_total": sum(r["failed_attempts"] for r in rows),
            "dead_total": sum(r["dead"] for r in rows),
            "wall_s_median": round(median(rows, "wall_s"), 3),
            "answered": sum(r["answered"] for r in rows),
            "runs": len(rows),
        }
    off = out["off"]
    for mode in ("on", "warm", "needs"):
        m = out[mode]
        if off["failed_attempts_total"]:
            m["failed_attempts_vs_off"] = round(
                m["failed_attempts_total"] / off["failed_attempts_total"], 3
            )
        m["wall_vs_off"] = round(m["wall_s_median"] / off["wall_s_median"], 3)
    return out


def report(summary: dict[str, Any]) -> str:
    lines = [f"{'mode':<6}{'failed (median, total)':>26}{'dead':>7}{'wall s':>9}{'vs off':>22}"]
    for mode, m in summary.items():
        vs = ""
        if "failed_attempts_vs_off" in m:
            vs = f"failed x{m['failed_attempts_vs_off']}, wall x{m['wall_vs_off']}"
        lines.append(
            f"{mode:<6}{m['failed_attempts_median']:>16g} {m['failed_attempts_total']:>8}"
            f"{m['dead_total']:>7}{m['wall_s_median']:>9.2f}   {vs}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5, help="seeds (each runs off, on, warm, needs)")
    ap.add_argument("--redis", metavar="URL", help="use this server instead of starting one")
    ap.add_argument("--out", type=Path, help="write the JSON here (default bench/results/)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    setup = Setup()
    server = None if args.redis else start_server(kind="redis")
    url = args.redis or (server.url if server else "")
    started = time.time()
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": [], "warm": [], "needs": []}
    try:
        client = redis.Redis.from_url(url, decode_responses=True)
        store = Trails(client)
        kept = client.hgetall(store.key)  # an existing server's trails are put back after
        try:
            for seed in range(args.seeds):
                store.reset()
                for mode, learning in (("off", 0.0), ("on", 1.0), ("warm", 1.0), ("needs", 1.0)):
                    if mode == "needs":
                        store.reset()  # from no trails, as `on`
                    runs[mode].append(run_swarm(client, setup, learning, seed, mode == "needs"))
                    print(f"seed {seed} {mode}: {runs[mode][-1]}", file=sys.stderr, flush=True)
        finally:
            store.reset()
            if kept:
                client.hset(store.key, mapping=kept)
        client.close()
    finally:
        if server is not None:
            server.stop()
    summary = summarise(runs)
    result = {
        "summary": summary,
        "runs": runs,
        "setup": asdict(setup),
        "meta": {
            "command": " ".join(["python scripts/bench_labour.py", *(argv or sys.argv[1:])]),
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": round(time.time() - started, 1),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
    }
    out = args.out or RESULTS / "bench_labour.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(report(summary))
    print(f"\nwritten to {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
