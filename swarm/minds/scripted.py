"""The `scripted` mind: known right and wrong answers at a known accuracy, for evaluations.

`scripted:answers=PATH,accuracy=0.7,fix=1,split=3,tokens=10,seed=N,think=SECONDS`

- `answers`: a JSON file mapping each purpose's title to `{"right": "...", "wrong": "..."}`,
  or a suite folder: its `answers.json` if there is one, and for each purpose file whose
  check is an expected value and that the table does not list, that value (right) and
  another (wrong). A purpose it knows no answer for fails the step. `swarm eval` gives a
  scripted arm without `answers` the suite it runs.
- The root's final answer (answered directly, or the synthesis after a split) is right for
  exactly floor(accuracy x N) of the N purposes the table knows, in every run seed: the
  purposes are spread evenly along a circle and which of them are right rotates with a hash
  of (seed, run seed, how many answers the check already rejected). So a suite run under
  `scripted:accuracy=0.7` has a first-answer pass rate of 0.7 (to one purpose) in each seed,
  runs repeat exactly, and tests know every outcome in advance (`first_right`).
- `fix=1`: an answer given after the check rejected one is right (the mind can fix it);
  `fix=0`: it is drawn again like the first.
- `split=K`: the root splits into K parts when it may (each part answered `part i of K`),
  then synthesises; `split=0` answers the root directly.
- `tokens`: what every step costs, so token figures are exact; `think`: seconds per step.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from swarm.minds.base import Interrupted, MindError, spec_values
from swarm.protocol import ActionKind, Answer, Confidence, Split, Subtask, ThinkRequest, Thought
from swarm.task import Kind

MAX_ANSWERS_BYTES = 1 << 20


@dataclass(frozen=True)
class ScriptedConfig:
    answers: str = ""
    accuracy: float = 1.0
    fix: bool = True
    split: int = 0
    tokens: int = 10
    seed: int = 0
    think: float = 0.0


@dataclass(frozen=True)
class Known:
    right: str
    wrong: str = "I do not know."


_FIELDS: dict[str, Callable[[str], object]] = {
    "answers": str,
    "accuracy": float,
    "fix": int,
    "split": int,
    "tokens": int,
    "seed": int,
    "think": float,
}


def parse_scripted_spec(spec: str) -> ScriptedConfig:
    """`answers=suite,accuracy=0.7,fix=1` -> ScriptedConfig; ValueError names a bad part."""
    values = spec_values(spec, _FIELDS, "scripted")
    if "fix" in values:
        values["fix"] = bool(values["fix"])
    cfg = ScriptedConfig(**values)  # type: ignore[arg-type]
    if not cfg.answers:
        raise ValueError("scripted mind: give answers=PATH (a JSON file or a suite folder)")
    if not 0 <= cfg.accuracy <= 1 or not 0 <= cfg.split <= 32:
        raise ValueError("scripted mind: need 0 <= accuracy <= 1 and 0 <= split <= 32")
    if cfg.tokens < 0 or cfg.think < 0:
        raise ValueError("scripted mind: tokens and think must not be negative")
    return cfg


def load_answers(path: str) -> dict[str, Known]:
    """Title -> Known from a JSON file, or from a suite folder (its `answers.json`, then its
    purposes' expected values); ValueError says why."""
    file = Path(path)
    if file.is_dir():
        table = _load_table(file / "answers.json") if (file / "answers.json").exists() else {}
        return {**_expected_values(file), **table}
    return _load_table(file)


def _expected_values(folder: Path) -> dict[str, Known]:
    """What a suite's expected-value checks accept, and a value they refuse."""
    from swarm.check import CheckKind
    from swarm.purpose import PurposeError, load_purpose

    known: dict[str, Known] = {}
    for path in sorted(folder.glob("*.md")):
        try:
            purpose = load_purpose(path)
        except PurposeError:
            continue  # not a purpose (a README): the suite loader says so where it matters
        check = purpose.check
        if check is None or check.kind is not CheckKind.EXPECTED:
            continue
        right = check.expected + (f" {check.unit}" if check.unit else "")
        wrong = f"not {check.expected}"
        if check.number:  # a number outside the tolerance
            wrong = f"{float(check.expected) + 1 + 2 * check.tolerance:.12g}"
        known[purpose.title] = Known(right, wrong)
    return known


def _load_table(file: Path) -> dict[str, Known]:
    try:
        with file.open("rb") as f:
            data = f.read(MAX_ANSWERS_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"scripted mind: cannot read {file}: {exc.strerror or exc}") from None
    if len(data) > MAX_ANSWERS_BYTES:
        raise ValueError(f"scripted mind: {file} is over 1 MiB")
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError):
        raise ValueError(f"scripted mind: {file} is not JSON") from None
    if not isinstance(raw, dict):
        raise ValueError(f"scripted mind: {file} must map titles to answers")
    table: dict[str, Known] = {}
    for title, entry in raw.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("right"), str):
            raise ValueError(f"scripted mind: {file}: {title!r} needs a 'right' answer (text)")
        wrong = entry.get("wrong", Known.wrong)
        table[title] = Known(entry["right"], wrong if isinstance(wrong, str) else Known.wrong)
    return table


def first_right(
    accuracy: float, seed: int, run_seed: int, title: str, attempt: int, titles: Sequence[str]
) -> bool:
    """Whether the answer to `title` after `attempt` rejections is right (before fixing).
    `titles` is every purpose the mind knows, in order: purpose k of the rotated order is
    right when the k-th step of accuracy along 0..N crosses a whole number, which happens
    for exactly floor(accuracy x N) values of k."""
    n = len(titles)
    digest = hashlib.sha256(f"{seed}|{run_seed}|{attempt}".encode()).digest()
    k = (titles.index(title) + int.from_bytes(digest[:8], "big")) % n
    eps = 1e-9  # 0.7 x 10 is 7.000000000000001 or 6.9999...: count it as 7
    return math.floor((k + 1) * accuracy + eps) > math.floor(k * accuracy + eps)


class ScriptedMind:
    """A real plug-in behind the Mind protocol whose every answer is known in advance."""

    name = "scripted"

    def __init__(
        self,
        config: ScriptedConfig,
        answers: dict[str, Known] | None = None,
        *,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        self.config = config
        self.answers = answers if answers is not None else load_answers(config.answers)
        self.titles = tuple(self.answers)  # the order accuracy is spread over
        self.run_seed = 0
        self._interrupted = threading.Event()
        self._sleep = sleep or self._interrupted.wait

    def reseed(self, run_seed: int) -> None:
        """The eval harness gives each run its seed, so runs differ and repeat exactly."""
        self.run_seed = run_seed

    def think(self, request: ThinkRequest) -> Thought:
        self._check()
        if self.config.think:
            self._sleep(self.config.think)
            self._check()
        return Thought(self._decide(request), tokens=self.config.tokens)

    def _decide(self, request: ThinkRequest) -> Answer | Split:
        task = request.task
        if task.parent:  # not the root: a part of a split
            return Answer(f"{task.title}: done", Confidence.HIGH)
        if task.kind is Kind.WORK and self.config.split and ActionKind.SPLIT in request.allowed:
            n = min(self.config.split, request.limits.max_children)
            parts = tuple(Subtask(f"part {i} of {n}") for i in range(1, n + 1))
            return Split(parts, reason="scripted: fixed split")
        known = self.answers.get(request.purpose_title)
        if known is None:
            raise MindError(f"scripted: no known answer for {request.purpose_title!r}")
        return Answer(known.right if self.right(request) else known.wrong, Confidence.HIGH)

    def right(self, request: ThinkRequest) -> bool:
        attempt = request.task.rejected
        if attempt and self.config.fix:
            return True
        cfg = self.config
        title = request.purpose_title
        return first_right(cfg.accuracy, cfg.seed, self.run_seed, title, attempt, self.titles)

    def interrupt(self) -> None:
        self._interrupted.set()

    def _check(self) -> None:
        if self._interrupted.is_set():
            raise Interrupted("scripted: interrupted")

    def close(self) -> None:
        pass
