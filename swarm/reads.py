"""Reads of one swarm sent in one round trip and answered by name.

`watch`, the dashboard, `export` and `ls` read many keys at once. A `Reads` queues each read
under a name the caller chooses (a string, or a tuple such as `(task id, "score")`) on one
pipeline; `run()` sends them together and returns every reply decoded, under its name, so
no caller picks replies out by position. Everything read is untrusted: the decoders are
lenient (a number that is not one reads as absent) and the caller bounds what it asks for.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from swarm.keys import SwarmKeys

Decode = Callable[[Any], Any]


def _same(reply: Any) -> Any:
    return reply


def _score(reply: Any) -> float | None:
    try:
        value = float(reply)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def _scored(reply: Any) -> list[tuple[str, float]]:
    return [(str(member), float(score)) for member, score in reply]


def _beats(reply: Any) -> list[tuple[str, int]]:
    return [(str(member), int(score)) for member, score in reply]


def _fields(names: Sequence[str]) -> Decode:
    """HMGET's reply as a dict of the fields that are there."""

    def decode(reply: Any) -> dict[str, str]:
        return {k: v for k, v in zip(names, reply, strict=True) if v is not None}

    return decode


def _all_fields(names: Sequence[str]) -> Decode:
    """HMGET's reply as a dict of every name asked for (None where absent)."""

    def decode(reply: Any) -> dict[str, str | None]:
        return dict(zip(names, reply, strict=True))

    return decode


def _events(reply: Any) -> list[tuple[str, dict[str, str]]]:
    return [(str(eid), dict(fields)) for eid, fields in reply]


class Reads:
    """Reads of one swarm's keys, queued on one pipeline and answered by name."""

    def __init__(self, client: Any, keys: SwarmKeys) -> None:
        self.keys = keys
        self._pipe = client.pipeline(transaction=False)
        self._names: list[tuple[Hashable, Decode]] = []

    def _queue(self, name: Hashable, decode: Decode = _same) -> Any:
        self._names.append((name, decode))
        return self._pipe

    def __len__(self) -> int:
        return len(self._names)

    def run(self) -> dict[Hashable, Any]:
        """Send every queued read in one round trip; each reply decoded, under its name."""
        if not self._names:
            return {}
        replies = self._pipe.execute()
        return {name: decode(r) for (name, decode), r in zip(self._names, replies, strict=True)}

    # -- the swarm -------------------------------------------------------------------------

    def meta(self, name: Hashable, fields: Sequence[str]) -> None:
        """Fields of the swarm's meta: a dict holding every name asked for (None if absent)."""
        self._queue(name, _all_fields(fields)).hmget(self.keys.meta, list(fields))

    # -- tasks --------------------------------------------------------------------------------

    def task(self, name: Hashable, tid: str, fields: Sequence[str] | None = None) -> None:
        """A task's hash (only `fields` when given): a dict of the fields it has."""
        if fields is None:
            self._queue(name, dict).hgetall(self.keys.task(tid))
        else:
            self._queue(name, _fields(fields)).hmget(self.keys.task(tid), list(fields))

    def child_ids(self, name: Hashable, tid: str, limit: int | None = None) -> None:
        """A task's child ids in order, the first `limit` of them when given."""
        # LRANGE 0 -1 is the whole list: a limit of 0 asks for the empty range 1..0 instead
        start, stop = (0, -1) if limit is None else (0, limit - 1) if limit > 0 else (1, 0)
        self._queue(name, list).lrange(self.keys.children(tid), start, stop)

    def child_count(self, name: Hashable, tid: str) -> None:
        self._queue(name, int).llen(self.keys.children(tid))

    def open_score(self, name: Hashable, tid: str) -> None:
        """The task's stored pheromone score while it is open, else None."""
        self._queue(name, _score).zscore(self.keys.open, tid)

    def hottest(self, name: Hashable, n: int) -> None:
        """The `n` open tasks with the highest stored scores: (id, score), highest first."""
        self._queue(name, _scored).zrevrange(self.keys.open, 0, n - 1, withscores=True)

    # -- workers ----------------------------------------------------------------------------

    def workers_seen(self, name: Hashable, n: int) -> None:
        """The `n` workers seen most recently: (id, last beat in ms), newest first."""
        self._queue(name, _beats).zrevrange(self.keys.workers, 0, n - 1, withscores=True)

    def workers_total(self, name: Hashable) -> None:
        self._queue(name, int).zcard(self.keys.workers)

    def unmet_count(self, name: Hashable) -> None:
        """Open tasks that no live worker meets the requirements of (section 6a)."""
        self._queue(name, int).hlen(self.keys.unmet)

    def workers_since(self, name: Hashable, since_ms: int) -> None:
        """How many workers beat at or after `since_ms`."""
        self._queue(name, int).zcount(self.keys.workers, since_ms, "+inf")

    def worker(self, name: Hashable, wid: str, fields: Sequence[str]) -> None:
        """A worker's record: a dict holding every field asked for (None if absent)."""
        self._queue(name, _all_fields(fields)).hmget(self.keys.worker(wid), list(fields))

    # -- events -------------------------------------------------------------------------------

    def newest_events(self, name: Hashable, n: int) -> None:
        """The `n` newest events, oldest first: (id, fields)."""
        self._queue(name, lambda r: _events(reversed(r))).xrevrange(
            self.keys.events, "+", "-", count=n
        )

    def events_from(self, name: Hashable, start: str, n: int) -> None:
        """Up to `n` events from stream id `start` (XRANGE syntax: '(' excludes it)."""
        self._queue(name, _events).xrange(self.keys.events, start, "+", count=n)
