"""The `sim` mind: deterministic, parameterised, instant; for tests and benchmarks only.

`sim:branch=B,depth=D,think=SECONDS,fail=P,seed=N,code=0|1` splits every task above depth D
into B children titled `<parent title>.<i>`, answers each leaf with `leaf <title>`,
synthesises by joining its children's answers in order, sleeps `think` seconds a step and
fails a step with probability P. With `code=1` a leaf first asks to run a line of Python and
puts the execution's output into its answer.

Heterogeneous swarms (a weak and a strong worker side by side) are simulated with two more:
`fail_tags=hard:0.8+big:0.3` fails a step on a task tagged `hard` with probability 0.8 (the
highest of the task's tags counts; a task with none of them fails with P), and `speed=S`
divides the think time by S (`speed=0.5` thinks twice as long).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

from swarm.minds.base import Interrupted, MindError, spec_values
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
    fail_tags: tuple[tuple[str, float], ...] = ()  # (tag, failure probability) pairs
    speed: float = 1.0  # think time is divided by this

    def failure_chance(self, tags: tuple[str, ...]) -> float:
        """The chance a step on a task with these tags fails: its worst tag's, else `fail`."""
        found = [p for tag, p in self.fail_tags if tag in tags]
        return max(found) if found else self.fail

    @property
    def step_s(self) -> float:
        return self.think / self.speed


_FIELDS = {
    "branch": int,
    "depth": int,
    "think": float,
    "fail": float,
    "seed": int,
    "code": int,
    "speed": float,
}
_TAG_CHANCES = "fail_tags"  # a list: tag:p joined by '+'


def parse_sim_spec(spec: str) -> SimConfig:
    """`branch=3,depth=2,think=0.05` -> SimConfig, with a clear error for a bad part."""
    values = spec_values(spec, _FIELDS, "sim", raw=(_TAG_CHANCES,))
    fail_tags = _parse_tag_chances(str(values.pop(_TAG_CHANCES, "")))
    cfg = SimConfig(
        **{k: (bool(v) if k == "code" else v) for k, v in values.items()},  # type: ignore[arg-type]
        fail_tags=fail_tags,
    )
    if cfg.branch < 1 or cfg.depth < 0 or cfg.think < 0 or not 0 <= cfg.fail <= 1:
        raise ValueError("sim mind: need branch >= 1, depth >= 0, think >= 0, 0 <= fail <= 1")
    if not 0.001 <= cfg.speed <= 1000:  # NaN fails this too
        raise ValueError("sim mind: speed must be between 0.001 and 1000")
    return cfg


def _parse_tag_chances(raw: str) -> tuple[tuple[str, float], ...]:
    """`hard:0.8+big:0.3` -> (('hard', 0.8), ('big', 0.3))."""
    found: list[tuple[str, float]] = []
    for item in filter(None, raw.split("+")):
        tag, colon, chance = item.partition(":")
        try:
            p = float(chance)
        except ValueError:
            p = -1.0
        if not colon or not tag or not 0 <= p <= 1:
            raise ValueError(
                f"sim mind: fail_tags wants tag:probability items joined by '+', got {item!r}"
            )
        found.append((tag, p))
    return tuple(found)


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
            self._sleep(self.config.step_s)
            self._check()
        chance = self.config.failure_chance(request.task.tags)
        if chance:
            with self._lock:
                unlucky = self._rng.random() < chance
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
