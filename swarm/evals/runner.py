"""Running an evaluation: every purpose of a suite under every arm and seed, one swarm each.

A run seeds the purpose as its own swarm (a fresh id), runs an in-process worker with as
many slots as the arm has workers until the swarm is finished, reads the outcome, the check's
verdict and the tokens from the swarm's meta, appends the result to the results file and
deletes the swarm. One mind per arm serves all of that arm's runs (a model loads once); the
workers borrow it and never close it.
"""

from __future__ import annotations

import contextlib
import json
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from swarm.board import Board
from swarm.check import Check
from swarm.evals.arms import Arm
from swarm.evals.results import ResultsFile, RunResult
from swarm.evals.suite import SuiteItem
from swarm.minds.base import Mind
from swarm.protocol import ThinkRequest, Thought
from swarm.purpose import Purpose
from swarm.stored import integer
from swarm.trace import delete_swarm
from swarm.worker import CodeRunner, Worker, WorkerConfig

MAX_ANSWER_KEPT = 2000
PENDING = "pending.json"  # the swarm of the run in progress, removed on resume if left over


@dataclass(frozen=True)
class EvalPlan:
    items: list[SuiteItem]
    arms: list[Arm]
    seeds: int = 3
    budget: int | None = None  # tokens per run, every arm alike; None: each purpose's own
    run_timeout_s: float = 600.0
    code: bool = True  # offer minds code (checks run in the sandbox either way)
    keep: bool = False  # keep each run's swarm on Redis (for `swarm export`)

    def runs(self) -> Iterator[tuple[SuiteItem, Arm, int]]:
        """In the order they run: seed by seed, so a stopped eval has whole seeds done first."""
        for seed in range(self.seeds):
            for item in self.items:
                for arm in self.arms:
                    yield item, arm, seed

    def budget_of(self, item: SuiteItem) -> int:
        return self.budget if self.budget is not None else item.purpose.budgets.max_tokens


class _Borrowed:
    """A worker's view of the arm's mind: it thinks with it but never interrupts or closes it
    (a worker does both when it stops, after every run); the eval does that once, at the end."""

    def __init__(self, mind: Mind) -> None:
        self._mind = mind
        self.name = mind.name

    def think(self, request: ThinkRequest) -> Thought:
        return self._mind.think(request)

    def interrupt(self) -> None:
        """Not the shared mind's: the next run needs it."""

    def close(self) -> None:
        """Closed by the eval when the arm is done."""

    def __getattr__(self, name: str) -> Any:  # min_lease_s, tokens_per_s, memory
        return getattr(self._mind, name)


def arm_purpose(purpose: Purpose, arm: Arm, budget: int) -> Purpose:
    """The purpose as this arm runs it: the token budget every arm shares, and for `single`
    no depth (the root must answer), no listed tasks and no re-check: one call."""
    budgets = replace(purpose.budgets, max_tokens=budget)
    check: Check | None = purpose.check
    tasks = purpose.tasks
    if arm.single:
        budgets = replace(budgets, max_depth=0)
        check = replace(check, retries=0) if check is not None else None
        tasks = ()
    return replace(purpose, budgets=budgets, check=check, tasks=tasks)


@dataclass
class Evaluation:
    client: Any
    results: ResultsFile
    make_mind: Callable[[Arm], Mind]
    code_runner: Callable[[str], CodeRunner | None] | None = None
    say: Callable[[str], None] = lambda _line: None
    minds: dict[str, Mind] = field(default_factory=dict)
    _stopping: threading.Event = field(default_factory=threading.Event)

    def run(self, plan: EvalPlan) -> list[RunResult]:
        """Every run of the plan not already in the results file; returns all finished runs."""
        self._clean_pending()
        done = {r.key: r for r in self.results.load()}
        todo = [
            (item, arm, seed)
            for item, arm, seed in plan.runs()
            if (item.name, arm.label, seed, plan.budget_of(item)) not in done
        ]
        total = sum(1 for _ in plan.runs())
        if done:
            self.say(f"resuming: {total - len(todo)} of {total} runs already finished")
        started = time.monotonic()
        try:
            for n, (item, arm, seed) in enumerate(todo, total - len(todo) + 1):
                result = self.run_one(plan, item, arm, seed)
                self.results.append(result)
                done[result.key] = result
                ran = n - (total - len(todo))
                left_s = (time.monotonic() - started) / ran * (total - n)
                self.say(_progress(n, total, result, left_s))
        finally:
            self.close()
        keys = [(i.name, a.label, s, plan.budget_of(i)) for i, a, s in plan.runs()]
        return [done[k] for k in keys if k in done]

    def stop(self) -> None:
        """Stop the run in progress (its result is not recorded) and start no other."""
        self._stopping.set()
        for mind in self.minds.values():
            mind.interrupt()

    def close(self) -> None:
        for mind in self.minds.values():
            mind.close()
        self.minds.clear()

    def _mind(self, arm: Arm, seed: int) -> Mind:
        mind = self.minds.get(arm.label)
        if mind is None:
            mind = self.minds[arm.label] = self.make_mind(arm)
        reseed = getattr(mind, "reseed", None)
        if callable(reseed):  # the sim and scripted minds: each run its own draws
            reseed(seed)
        return mind

    def run_one(self, plan: EvalPlan, item: SuiteItem, arm: Arm, seed: int) -> RunResult:
        budget = plan.budget_of(item)
        purpose = arm_purpose(item.purpose, arm, budget)
        mind = self._mind(arm, seed)
        sid = f"eval-{seed}-{secrets.token_hex(5)}"
        self._pending(sid)
        board = Board.seed(self.client, purpose, swarm_id=sid, rng=random.Random(seed))
        config = WorkerConfig(
            swarm_id=sid,
            slots=arm.workers,
            burst=True,
            poll_s=0.05,
            grace_s=0.0,
            max_code_rounds=3 if plan.code else 0,
            name=f"eval-{arm.workers}",
        )
        worker = Worker(
            self.client,
            _Borrowed(mind),
            config,
            code_runner=self.code_runner,
            rng=random.Random(seed),
        )
        started = time.monotonic()
        try:
            timed_out = self._work(worker, board, plan.run_timeout_s)
            wall_s = time.monotonic() - started
            return _result(item, arm, seed, budget, board, wall_s, timed_out)
        finally:  # a stopped run is not recorded, and leaves nothing behind either
            if not plan.keep:
                delete_swarm(self.client, sid)
            self._pending(None)

    def _work(self, worker: Worker, board: Board, timeout_s: float) -> bool:
        """Run the worker until the swarm is finished; past `timeout_s` cancel the swarm (the
        worker then sees it closed). Whether it timed out."""
        timed_out = threading.Event()

        def expire() -> None:
            timed_out.set()
            with contextlib.suppress(Exception):
                board.cancel(None, "eval", reason="eval run timed out")

        timer = threading.Timer(timeout_s, expire)
        timer.daemon = True
        timer.start()
        thread = threading.Thread(target=worker.run, kwargs={"install_signals": False})
        thread.start()
        try:
            while thread.is_alive():
                thread.join(0.05)
                # A finished swarm ends its worker now, not at the worker's next look (0.2 s).
                if self._stopping.is_set() or board.state().terminal:
                    worker.stop()
        except BaseException:  # Ctrl+C: stop this run's worker before anything else
            self.stop()
            worker.stop()
            thread.join(10.0)
            raise
        finally:
            timer.cancel()
        if self._stopping.is_set():
            raise KeyboardInterrupt
        return timed_out.is_set()

    # A run in progress has its swarm id in a file beside the results: a killed eval leaves
    # that swarm on Redis, and the next one deletes it before it starts.

    def _pending(self, sid: str | None) -> None:
        path = self.results.path.parent / PENDING
        if sid is None:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"swarm": sid}))
        tmp.replace(path)

    def _clean_pending(self) -> None:
        path = self.results.path.parent / PENDING
        if not path.exists():
            return
        with contextlib.suppress(ValueError, OSError):
            sid = json.loads(path.read_text()[:1000]).get("swarm")
            if isinstance(sid, str):
                with contextlib.suppress(Exception):
                    delete_swarm(self.client, sid)
                    self.say(f"removed swarm {sid}, left by a stopped run")
        path.unlink(missing_ok=True)


def _result(
    item: SuiteItem, arm: Arm, seed: int, budget: int, board: Board, wall_s: float, timed_out: bool
) -> RunResult:
    meta: dict[str, str] = board.client.hgetall(board.keys.meta)
    outcome = meta.get("outcome", "") or meta.get("state", "")
    verdict = meta.get("check_verdict", "") or "none"
    note = ""
    if timed_out:
        outcome, note = "timeout", "the run outlasted --run-timeout and was cancelled"
    elif outcome != "answered":
        note = meta.get("answer", "")[:300] if outcome == "failed" else ""
    answered = outcome == "answered"
    return RunResult(
        purpose=item.name,
        title=item.purpose.title,
        arm=arm.label,
        seed=seed,
        budget=budget,
        passed=answered and verdict == "pass",
        verdict=verdict,
        checks=integer(meta.get("checks")),
        outcome=outcome,
        tokens=integer(meta.get("tokens")),
        tasks=integer(meta.get("tasks")),
        wall_s=round(wall_s, 4),
        answer=(meta.get("answer", "") if answered else "")[:MAX_ANSWER_KEPT],
        swarm=board.id,
        note=note,
    )


def _progress(n: int, total: int, r: RunResult, left_s: float) -> str:
    verdict = "PASS" if r.passed else ("fail" if r.outcome == "answered" else r.outcome)
    again = f", {r.checks} checks" if r.checks > 1 else ""
    left = f", about {_duration(left_s)} left" if n < total else ""
    return (
        f"[{n}/{total}{left}] {r.purpose} | {r.arm} | seed {r.seed}: {verdict} "
        f"({r.tokens} tokens, {r.wall_s:.2f} s{again})"
    )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def results_path(out: Path) -> Path:
    return out / "runs.jsonl"
