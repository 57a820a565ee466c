"""The `sim` mind: deterministic, parameterised, instant; for tests and benchmarks only.

`sim:branch=B,depth=D,think=SECONDS,fail=P,seed=N,code=0|1` splits every task above depth D
into B children titled `<parent title>.<i>`, answers each leaf with `leaf <title>`,
synthesises by joining its children's answers in order, sleeps `think` seconds a step and
fails a step with probability P. With `code=1` a leaf first asks to run a line of Python and
puts the execution's output into its answer.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

from swarm.minds.base import Interrupted, MindError
from swarm.protocol import (
    ActionKind,
    Answer,
    Code,
    Confidence,
    Split,
    Subtask,
    ThinkRequest,
    Thought,
)
from swarm.task import Kind


@dataclass(frozen=True)
class SimConfig:
    branch: int = 3
    depth: int = 2
    think: float = 0.0
    fail: float = 0.0
    seed: int = 0
    code: bool = False


_FIELDS = {"branch": int, "depth": int, "think": float, "fail": float, "seed": int, "code": int}


def parse_sim_spec(spec: str) -> SimConfig:
    """`branch=3,depth=2,think=0.05` -> SimConfig, with a clear error for a bad part."""
    values: dict[str, float | int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, eq, raw = part.partition("=")
        if not eq or name not in _FIELDS:
            known = ", ".join(_FIELDS)
            raise ValueError(f"sim mind: bad option {part!r} (known: {known}, as name=value)")
        try:
            values[name] = _FIELDS[name](raw)
        except ValueError:
            raise ValueError(f"sim mind: {name} must be a number, got {raw!r}") from None
    cfg = SimConfig(**{k: (bool(v) if k == "code" else v) for k, v in values.items()})  # type: ignore[arg-type]
    if cfg.branch < 1 or cfg.depth < 0 or cfg.think < 0 or not 0 <= cfg.fail <= 1:
        raise ValueError("sim mind: need branch >= 1, depth >= 0, think >= 0, 0 <= fail <= 1")
    return cfg


class SimMind:
    """Deterministic given its seed; thread-safe (the random stream is shared under a lock)."""

    name = "sim"

    def __init__(
        self, config: SimConfig, *, sleep: Callable[[float], object] | None = None
    ) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        self._lock = threading.Lock()
        self._interrupted = threading.Event()
        # Thinking is waiting on the interrupt, so an interrupted step ends at once.
        self._sleep = sleep or self._interrupted.wait

    def reseed(self, run_seed: int) -> None:
        """A fresh random stream for one run of an evaluation (swarm/evals), still set by
        `seed`: runs differ from each other and repeat exactly."""
        with self._lock:
            self._rng = random.Random(f"{self.config.seed}|{run_seed}")

    def think(self, request: ThinkRequest) -> Thought:
        self._check()
        if self.config.think:
            self._sleep(self.config.think)
            self._check()
        if self.config.fail:
            with self._lock:
                unlucky = self._rng.random() < self.config.fail
            if unlucky:
                raise MindError(f"sim: simulated failure on {request.task.title!r}")
        return Thought(self._decide(request), tokens=1)

    def _decide(self, request: ThinkRequest) -> Answer | Split | Code:
        task, allowed = request.task, request.allowed
        if task.kind is Kind.SYNTHESIZE:
            parts = [c.result for c in request.children if c.result]
            return Answer(" | ".join(parts) or "(nothing to synthesise)", Confidence.HIGH)
        if task.depth < self.config.depth and ActionKind.SPLIT in allowed:
            n = min(self.config.branch, request.limits.max_children)
            subtasks = tuple(Subtask(f"{task.title}.{i}") for i in range(1, n + 1))
            return Split(subtasks, reason="sim: fixed tree")
        if self.config.code and ActionKind.CODE in allowed and not request.executions:
            return Code(f"print(len({task.title!r}))", why="sim: measure the title")
        if request.executions:
            out = request.executions[-1].output
            return Answer(
                f"leaf {task.title} [ran: {out.stdout.strip() or out.error}]", Confidence.HIGH
            )
        return Answer(f"leaf {task.title}", Confidence.HIGH)

    def interrupt(self) -> None:
        self._interrupted.set()

    def _check(self) -> None:
        if self._interrupted.is_set():
            raise Interrupted("sim: interrupted")

    def close(self) -> None:
        pass
