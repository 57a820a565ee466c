"""Trails: what each class of worker has made of each kind of task, and how it decays.

An outcome (an answer, a failure, a lease that expired) updates, inside the script that posts
it, the decayed counts of the worker's class for each of the task's kinds (its tags, else
`@work` / `@synthesize`): successes, failures, seconds and tokens of the successes. The claim
rule reads them (docs/architecture.md section 6a). A swarm keeps its own trails under its hash
tag; the long-lived ones (`swarm:trails`, outside every swarm's slot) seed each new swarm and
take each swarm's new outcomes back, decayed and bounded in size, so the next swarm starts
from what earlier ones learned.

Everything here is read from Redis and so untrusted: unreadable values count as no trail.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from swarm import keys
from swarm.scripts import scripts_for, scripts_without_flags, shebang_unsupported

HALF_LIFE_S = 7 * 24 * 3600.0  # the long-lived trails halve every week without news
MAX_TRAILS = 4096  # the long-lived hash keeps at most this many (class, kind) trails
MAX_CLASS = 40

# A worker class names a kind of worker (`phi3-cpu`, `gpu-large`): it is part of trail field
# names (`<class>|<kind>`) and of comma-separated lists on Redis, so neither '|' nor ','.
_CLASS = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:+-]{{0,{MAX_CLASS - 1}}}")
CLASS_RULE = (
    f"1 to {MAX_CLASS} characters: letters, digits, '.', '_', ':', '+' and '-', "
    "starting with a letter or a digit"
)


class InvalidWorkerClass(ValueError):
    """A worker class outside the documented character set or length."""


def check_class(value: str) -> str:
    """`value` if it is a valid worker class, else InvalidWorkerClass (a one-line message)."""
    if _CLASS.fullmatch(value):
        return value
    from swarm.display import safe_line

    shown = safe_line(value)[:60]
    raise InvalidWorkerClass(f"invalid worker class '{shown}': a class is {CLASS_RULE}")


def default_class(mind_name: str, model: str = "") -> str:
    """A worker's class when none is given: its mind, and its model folder's name if any."""
    raw = f"{mind_name}:{model}" if model else mind_name
    cleaned = re.sub(r"[^A-Za-z0-9._:+-]", "-", raw).strip("-.:_+")[:MAX_CLASS]
    return cleaned if _CLASS.fullmatch(cleaned) else "worker"


@dataclass(frozen=True)
class Trail:
    """One worker class on one kind of task: decayed counts as of `stamp` (ms)."""

    worker_class: str
    kind: str
    successes: float
    failures: float
    seconds: float  # summed over the successes
    tokens: float  # summed over the successes
    stamp: int

    @property
    def outcomes(self) -> float:
        return self.successes + self.failures

    @property
    def success_rate(self) -> float:
        """Laplace-smoothed: 0.5 with no outcomes."""
        return (self.successes + 1) / (self.outcomes + 2)

    @property
    def theta(self) -> float:
        """The class's response threshold for this kind (section 6a): 1 with no trail."""
        return (self.failures + 1) / (self.successes + 1)

    @property
    def mean_s(self) -> float:
        return self.seconds / self.successes if self.successes > 0 else 0.0

    @property
    def mean_tokens(self) -> float:
        return self.tokens / self.successes if self.successes > 0 else 0.0

    def decayed(self, now_ms: int, half_life_s: float = HALF_LIFE_S) -> Trail:
        """As it stands at `now_ms` (what the Lua scripts compute on their next touch)."""
        k = 1.0
        if now_ms > self.stamp and half_life_s > 0:
            k = math.exp(-math.log(2) * (now_ms - self.stamp) / (half_life_s * 1000))
        return Trail(
            self.worker_class,
            self.kind,
            self.successes * k,
            self.failures * k,
            self.seconds * k,
            self.tokens * k,
            self.stamp,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "class": self.worker_class,
            "kind": self.kind,
            "successes": round(self.successes, 3),
            "failures": round(self.failures, 3),
            "success_rate": round(self.success_rate, 3),
            "theta": round(self.theta, 3),
            "mean_s": round(self.mean_s, 3),
            "mean_tokens": round(self.mean_tokens, 1),
            "updated": self.stamp,
        }


def _count(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        return 0.0
    return value if 0 <= value < 1e15 else 0.0  # NaN and inf fail this too


def parse(field: str, value: str) -> Trail | None:
    """A trail from its hash field and value (the Lua format), or None if unreadable."""
    worker_class, bar, kind = field.partition("|")
    parts = value.split("|")
    if not bar or not kind or not _CLASS.fullmatch(worker_class) or len(parts) != 5:
        return None
    s, f, secs, tokens, stamp = (_count(p) for p in parts)
    return Trail(worker_class, kind, s, f, secs, tokens, int(stamp))


def parse_all(found: Mapping[str, str]) -> list[Trail]:
    """Readable trails, by class then kind."""
    trails = (parse(k, v) for k, v in found.items())
    return sorted((t for t in trails if t is not None), key=lambda t: (t.worker_class, t.kind))


def _flat(pairs: Iterable[tuple[str, str]]) -> list[str]:
    return [x for pair in pairs for x in pair]


class Trails:
    """The long-lived trails on one Redis (`swarm:trails`): read, fold into, seed from, reset."""

    def __init__(
        self, client: Any, *, half_life_s: float = HALF_LIFE_S, max_trails: int = MAX_TRAILS
    ) -> None:
        self.client = client
        self.key = keys.TRAILS
        self.half_life_s = half_life_s
        self.max_trails = max_trails

    def _run(self, name: str, keys_: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return scripts_for(self.client)[name](keys=list(keys_), args=list(args))
        except Exception as exc:
            if shebang_unsupported(exc):
                return scripts_without_flags(self.client)[name](keys=list(keys_), args=list(args))
            raise

    def read(self) -> list[Trail]:
        return parse_all(self.client.hgetall(self.key))

    def seed_args(self) -> list[str]:
        """Field/value pairs to start a swarm from (readable ones only, at most max_trails)."""
        found = self.client.hgetall(self.key)
        good = [(k, v) for k, v in found.items() if parse(k, v) is not None]
        return _flat(good[: self.max_trails])

    def fold(self, pairs: Sequence[str], now_ms: int) -> int:
        """Fold outcomes (field/value pairs from a swarm's trails_take) in; returns the size."""
        if not pairs:
            return int(self.client.hlen(self.key))
        args = [now_ms, int(self.half_life_s * 1000), self.max_trails, *pairs]
        return int(self._run("trails_fold", [self.key], args))

    def reset(self, worker_class: str | None = None, kind: str | None = None) -> int:
        """Forget trails (all, or one class's, or one kind's); returns how many went."""
        if worker_class is None and kind is None:
            n = int(self.client.hlen(self.key))
            self.client.delete(self.key)
            return n
        doomed = [
            f"{t.worker_class}|{t.kind}"
            for t in self.read()
            if (worker_class is None or t.worker_class == worker_class)
            and (kind is None or t.kind == kind)
        ]
        return int(self.client.hdel(self.key, *doomed)) if doomed else 0
