"""Benchmark code execution: `print(1)` in the bare local jail, the round trip through RQ
(enqueue -> executor -> result), and runs/s with 1 and 4 executor processes.

    python scripts/bench_exec.py [--runs 50] [--jobs 200] [--redis URL] [--json]
    python scripts/bench_exec.py --against DIR [--runs 100]

Needs bubblewrap and a Redis (default redis://127.0.0.1:6379/0). Starts its own
`swarm executor` processes on a throw-away queue and stops them afterwards.

`--against DIR` instead compares the bare jail of this checkout with the one of another
checkout (DIR holds its `swarm/`, e.g. `git archive main swarm | tar -x -C DIR`): one process
each, runs taken in turn, so a jail change's cost is a ratio from one run, not two.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import redis
from rq import Queue, Worker

from swarm.sandbox.client import ExecClient
from swarm.sandbox.limits import ExecLimits
from swarm.sandbox.local import LocalSandbox

CODE = "print(1)"


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {
        "p50_ms": round(pick(0.5) * 1000, 1),
        "p95_ms": round(pick(0.95) * 1000, 1),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 1),
    }


def interleaved(runners: list[Callable[[], Any]], runs: int) -> list[list[float]]:
    """Samples of each runner, taken in turn, so a busy moment on the machine hits all alike."""
    for run in runners:
        run()  # warm-up: page cache, first connection
    samples: list[list[float]] = [[] for _ in runners]
    for _ in range(runs):
        for run, times in zip(runners, samples, strict=True):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    return samples


@contextmanager
def executor(url: str, conn: redis.Redis, processes: int) -> Iterator[str]:
    """A `swarm executor` with `processes` workers on a fresh queue, stopped on exit."""
    queue = f"bench-exec-{uuid.uuid4().hex[:8]}"
    cmd = [sys.executable, "-m", "swarm", "executor", "--redis", url, "--queue", queue]
    cmd += ["--sandbox", "local", "--processes", str(processes)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while len(Worker.all(queue=Queue(queue, connection=conn))) < processes:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"executor with {processes} process(es) did not start")
            time.sleep(0.05)
        yield queue
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        Queue(queue, connection=conn).delete(delete_jobs=True)


def throughput(client: ExecClient, jobs: int, concurrency: int) -> float:
    """Runs/s with `concurrency` callers keeping the queue busy."""
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        outputs = list(pool.map(lambda _: client.run(CODE, 10), range(jobs)))
    elapsed = time.perf_counter() - start
    failed = [o.error for o in outputs if o.error]
    if failed:
        raise SystemExit(f"{len(failed)} runs failed, first: {failed[0]}")
    return jobs / elapsed


def measure(url: str, runs: int, jobs: int) -> dict[str, Any]:
    conn = redis.Redis.from_url(url)
    limits = ExecLimits()
    box = LocalSandbox(limits)
    result: dict[str, Any] = {"cpus": os.cpu_count(), "runs": runs, "jobs": jobs}
    with executor(url, conn, 1) as queue:
        client = ExecClient(conn, queue, limits)
        bare, rq = interleaved([lambda: box.run(CODE, 10), lambda: client.run(CODE, 10)], runs)
        result["bare_sandbox"], result["rq_round_trip"] = percentiles(bare), percentiles(rq)
        result["runs_per_s_1_executor"] = round(throughput(client, jobs, 8), 1)
    with executor(url, conn, 4) as queue:
        client = ExecClient(conn, queue, limits)
        result["runs_per_s_4_executors"] = round(throughput(client, jobs, 8), 1)
    result["rq_overhead_ms_p50"] = round(
        result["rq_round_trip"]["p50_ms"] - result["bare_sandbox"]["p50_ms"], 1
    )
    result["speedup_4_vs_1"] = round(
        result["runs_per_s_4_executors"] / result["runs_per_s_1_executor"], 2
    )
    return result


_JAIL_SERVER = """
import sys, time
from swarm.sandbox.limits import ExecLimits
from swarm.sandbox.local import LocalSandbox
box = LocalSandbox(ExecLimits())
print("ready", flush=True)
for _ in sys.stdin:
    start = time.perf_counter()
    out = box.run(sys.argv[1], 10)
    print(time.perf_counter() - start if out.ok else -1.0, flush=True)
"""


class _JailServer:
    """A process running the bare jail of the checkout at `root`, one run per request."""

    def __init__(self, root: str) -> None:
        env = {**os.environ, "PYTHONPATH": root}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _JAIL_SERVER, CODE], env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        if self._line() != "ready":
            raise SystemExit(f"the jail of {root} does not start")

    def _line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def run(self) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        seconds = float(self._line())
        if seconds < 0:
            raise SystemExit(f"{CODE} failed in a jail")
        return seconds

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def compare(other: str, runs: int) -> dict[str, Any]:
    """print(1) in this checkout's bare jail and in `other`'s, taken in turn."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    servers = [_JailServer(here), _JailServer(other)]
    try:
        mine, theirs = interleaved([s.run for s in servers], runs)
    finally:
        for server in servers:
            server.close()
    result: dict[str, Any] = {"cpus": os.cpu_count(), "runs": runs, "against": other}
    result["this_checkout"], result["other_checkout"] = percentiles(mine), percentiles(theirs)
    result["p50_ratio"] = round(
        result["this_checkout"]["p50_ms"] / result["other_checkout"]["p50_ms"], 2
    )
    return result


def table(r: dict[str, Any]) -> str:
    bare, rq = r["bare_sandbox"], r["rq_round_trip"]
    rows = [
        f"print(1), {r['runs']} runs each, {r['cpus']} CPUs",
        f"{'':28}{'p50 ms':>10}{'p95 ms':>10}{'mean ms':>10}",
        f"{'bare local sandbox':28}{bare['p50_ms']:>10}{bare['p95_ms']:>10}{bare['mean_ms']:>10}",
        f"{'RQ round trip (1 executor)':28}{rq['p50_ms']:>10}{rq['p95_ms']:>10}{rq['mean_ms']:>10}",
        f"RQ overhead at p50: {r['rq_overhead_ms_p50']} ms "
        f"(round trip / bare = {rq['p50_ms'] / bare['p50_ms']:.2f}x)",
        f"throughput, {r['jobs']} jobs from 8 callers: "
        f"1 executor {r['runs_per_s_1_executor']} runs/s, "
        f"4 executors {r['runs_per_s_4_executors']} runs/s "
        f"({r['speedup_4_vs_1']}x)",
        f"target p50 < 150 ms: {'met' if rq['p50_ms'] < 150 else 'MISSED'}",
    ]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument(
        "--redis", default=os.environ.get("SWARM_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--against", metavar="DIR", help="compare the bare jail with DIR's")
    args = parser.parse_args()
    if args.against:
        compared = compare(args.against, args.runs)
        if args.json:
            print(json.dumps(compared, indent=2))
            return
        mine, theirs = compared["this_checkout"], compared["other_checkout"]
        print(f"{CODE}, bare jail, {args.runs} runs each, taken in turn, {compared['cpus']} CPUs")
        print(f"this checkout p50 {mine['p50_ms']} ms, {args.against} p50 {theirs['p50_ms']} ms")
        print(f"ratio at p50: {compared['p50_ratio']}x")
        return
    result = measure(args.redis, args.runs, args.jobs)
    print(json.dumps(result, indent=2) if args.json else table(result))


if __name__ == "__main__":
    main()
