#!/usr/bin/env python
"""Does a worker on a real model keep its lease while it thinks, and stop when told?

    python scripts/check_heartbeat.py --size small --threads 1 --lease 4
    python scripts/check_heartbeat.py --model /work/models/mini --lease 20

Seeds a purpose long enough that prefilling it outlasts the lease, runs one `swarm worker`
(the onnx mind) on it in its own process, and meanwhile claims on the same swarm as a
second worker every half second, so a lease that ran out would be reaped at once.
`--term-after` seconds after the worker's claim (default: 2.5 leases) it sends SIGTERM and
times the exit. Prints, and writes to bench/results/check_heartbeat_<name>.json:
- the longest gap between renewals of the held task (its claim and its release count as
  ends), against half the lease;
- how often the task was reaped while the worker lived;
- seconds from SIGTERM to the process's exit, against the grace;
- whether the step was still thinking at SIGTERM (no answer or failure posted yet).
Exits 1 when a figure misses its bound. The random-weight models write gibberish, which
does not matter here: only time does.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from _servers import start_server  # noqa: E402

from swarm.board import Board, ClaimStatus  # noqa: E402
from swarm.purpose import Budgets, Purpose, Tuning  # noqa: E402

RESULTS = ROOT / "bench" / "results"
REAPER = "check-reaper"

# Varied sentences, so the tokenizer sees ordinary prose (about 1.3 tokens a word).
SENTENCES = (
    "Estimate how much fresh water the city uses in a year, by households, industry,",
    "agriculture and leaks, and compare each share with the national average.",
    "Say which figures are measured and which are modelled, and where each comes from.",
    "Prefer the water authority's own reports; a newspaper figure needs a second source.",
    "Give every estimate a range, and explain what would narrow it the most.",
)


def long_purpose(words: int, lease_s: float) -> Purpose:
    text, n = [], 0
    while n < words:
        sentence = SENTENCES[len(text) % len(SENTENCES)]
        text.append(f"{sentence} (Note {len(text) + 1}.)")
        n += len(sentence.split()) + 2
    return Purpose(
        title="Water use, in long form",
        text="Water use, in long form\n\n" + " ".join(text),
        name="check-heartbeat",
        budgets=Budgets(lease_s=lease_s, max_tasks=10, max_depth=1),
        tuning=Tuning(epsilon=0.0),
    )


def model_for(size: str) -> Path:
    spec = importlib.util.spec_from_file_location(
        "make_tiny_phi3", ROOT / "scripts" / "make_tiny_phi3.py"
    )
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return Path(script.build(size, ROOT / ".models" / size))


def purpose_tokens(model: Path, purpose: Purpose) -> int | None:
    """Tokens in the purpose, with the model's own tokenizer.json (no model loaded)."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        return None
    return len(Tokenizer.from_file(str(model / "tokenizer.json")).encode(purpose.text).ids)


class Reaper:
    """Claims as a second worker every `every_s`: reaps any lease that ran out at once."""

    def __init__(self, board: Board, every_s: float = 0.5) -> None:
        self.board = board
        self.every_s = every_s
        self.stop = threading.Event()
        self.taken = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.every_s):
            outcome = self.board.claim(REAPER, lease_s=60)
            if outcome.status is ClaimStatus.OK and outcome.claim is not None:
                self.taken += 1  # put it back: this worker is only here to reap
                self.board.release(outcome.claim, REAPER)


def task_events(board: Board, task: str) -> list[dict[str, str]]:
    return [f for _, f in board.events(count=100_000) if f.get("task") == task]


def wait_for_claim(board: Board, worker: subprocess.Popen[bytes], timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for f in task_events(board, "0"):
            if f["type"] == "claimed" and f["worker"] != REAPER:
                return f["worker"]
        if worker.poll() is not None:
            raise SystemExit(f"the worker exited ({worker.returncode}) before claiming")
        time.sleep(0.2)
    raise SystemExit(f"no claim within {timeout_s:.0f} s (model load?)")


def renewal_gaps(events: list[dict[str, str]], worker: str) -> list[float]:
    """From the worker's claim, through its renewals, to the task's next owner change: its
    release, answer or failure, or a reap by anyone (the lease had run out)."""
    at: list[float] = []
    for f in events:
        mine = f["worker"] == worker
        if not at:
            if mine and f["type"] == "claimed":
                at.append(int(f["at"]) / 1000)
            continue
        if mine and f["type"] == "renewed":
            at.append(int(f["at"]) / 1000)
        elif f["type"] == "reaped" or (mine and f["type"] in ("released", "completed", "failed")):
            at.append(int(f["at"]) / 1000)
            break
    return [b - a for a, b in itertools.pairwise(at)]


POSTS = {"completed", "failed", "split"}  # what ends a step on the board


def check(args: argparse.Namespace, model: Path, url: str) -> dict[str, Any]:
    client = redis.Redis.from_url(url, decode_responses=True)
    purpose = long_purpose(args.words, args.lease)
    board = Board.seed(client, purpose, swarm_id=f"check-heartbeat-{time.time_ns()}")
    mind = f"onnx:{model}?context={args.context}"
    if args.engine != "auto":  # (a tree from before the engines knows no such option)
        mind += f"&engine={args.engine}"
    if args.threads:
        mind += f"&threads={args.threads}"
    if getattr(args, "chunk_s", None):
        mind += f"&chunk_s={args.chunk_s}"
    cmd = [sys.executable, "-m", "swarm", "worker", "--redis", url, "--swarm", board.id]
    cmd += ["--mind", mind, "--slots", str(args.slots), "--grace", str(args.grace), "--no-code"]
    cmd += ["--lease", str(args.lease)]  # exactly this lease, not one raised to fit the mind
    if getattr(args, "verbose", False):
        cmd.append("-vv")
    checkout = str(args.checkout or ROOT)
    env = {**os.environ, "PYTHONPATH": checkout}
    log_path = Path(tempfile.mkdtemp(prefix="check-heartbeat-")) / "worker.log"
    with open(log_path, "w") as log:
        worker = subprocess.Popen(cmd, cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            holder = wait_for_claim(board, worker, args.load_timeout)
            claimed = time.monotonic()
            reaper = Reaper(board)
            reaper.thread.start()
            term_after = args.term_after if args.term_after is not None else 2.5 * args.lease
            while time.monotonic() - claimed < term_after and worker.poll() is None:
                time.sleep(0.1)
            reaper.stop.set()
            reaper.thread.join()
            posted = {f["type"] for f in task_events(board, "0") if f["worker"] == holder}
            thinking = not POSTS & posted
            termed = time.monotonic()
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(args.grace + 120)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            exit_s = time.monotonic() - termed
        finally:
            if worker.poll() is None:
                worker.kill()
    events = task_events(board, "0")
    gaps = renewal_gaps(events, holder)
    logged = log_path.read_text(errors="replace").splitlines()
    tokens = purpose_tokens(model, purpose)  # the mind keeps half the context of it
    return {
        "checkout": checkout,
        "swarm": board.id,
        "model": str(model),
        "threads": args.threads,
        "chunk_s": getattr(args, "chunk_s", None),
        "slots": args.slots,
        "lease_s": args.lease,
        "grace_s": args.grace,
        "purpose_words": len(purpose.text.split()),
        "purpose_tokens": tokens,
        "purpose_tokens_prefilled": None if tokens is None else min(tokens, args.context // 2),
        "held_s_before_sigterm": round(term_after, 1),
        "thinking_at_sigterm": thinking,
        "renewals": sum(1 for f in events if f["type"] == "renewed" and f["worker"] == holder),
        "longest_renewal_gap_s": round(max(gaps, default=0.0), 2),
        "renewal_gaps_s": [round(g, 2) for g in gaps],
        "reaps_while_alive": sum(1 for f in events if f["type"] == "reaped"),
        "taken_by_reaper": reaper.taken,
        "sigterm_to_exit_s": round(exit_s, 2),
        "exit_code": worker.returncode,
        "released": "released" in [f["type"] for f in events],
        # Read after the exit: a step can post between the check above and the signal.
        "posted": bool(POSTS & {f["type"] for f in events if f["worker"] == holder}),
        "warnings": [line for line in logged if "lease" in line and "WARNING" in line][:5],
        "log": str(log_path),
        "log_tail": logged[-5:],
    }


def verdict(r: dict[str, Any]) -> list[str]:
    misses = []
    if r["longest_renewal_gap_s"] > r["lease_s"] / 2:
        misses.append(f"a renewal gap of {r['longest_renewal_gap_s']} s > half the lease")
    if r["reaps_while_alive"]:
        misses.append(f"reaped {r['reaps_while_alive']} time(s) while alive")
    if r["sigterm_to_exit_s"] > r["grace_s"] + 10:
        misses.append(f"{r['sigterm_to_exit_s']} s from SIGTERM to exit > grace + 10 s")
    if r["exit_code"] != 0:
        misses.append(f"exit code {r['exit_code']}")
    return misses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="an ORT GenAI model folder")
    parser.add_argument("--size", default="small", help="random model to build when no --model")
    parser.add_argument("--name", help="results file suffix (default: the model folder's name)")
    parser.add_argument("--lease", type=float, default=20.0, help="the purpose's lease_s")
    parser.add_argument("--grace", type=float, default=5.0, help="the worker's --grace")
    parser.add_argument("--threads", type=int, help="model threads (fewer: slower prefill)")
    parser.add_argument("--slots", type=int, default=1)
    parser.add_argument("--chunk-s", type=float, help="the onnx mind's chunk_s (default its own)")
    parser.add_argument(
        "--engine",
        choices=("auto", "batch", "genai"),
        default="auto",
        help="the onnx mind's engine (genai: the one whose calls hold the GIL)",
    )
    parser.add_argument("--context", type=int, default=4096, help="purpose gets half")
    parser.add_argument("--words", type=int, default=1400, help="purpose length in words")
    parser.add_argument("--term-after", type=float, help="seconds held before SIGTERM")
    parser.add_argument("--load-timeout", type=float, default=600.0)
    parser.add_argument("--verbose", action="store_true", help="the worker logs at debug level")
    parser.add_argument("--redis", help="a Redis URL (default: a throwaway Valkey)")
    parser.add_argument(
        "--checkout", type=Path, help="run the worker of this checkout (default: this one)"
    )
    args = parser.parse_args(argv)
    model = (args.model or model_for(args.size)).resolve()
    server = None
    url = args.redis
    if url is None:
        server = start_server()
        url = server.url
    try:
        result = check(args, model, url)
    finally:
        if server is not None:
            server.stop()
    result["misses"] = verdict(result)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"check_heartbeat_{args.name or model.name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"written to {out}", file=sys.stderr)
    return 1 if result["misses"] else 0


if __name__ == "__main__":
    sys.exit(main())
