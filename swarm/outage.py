"""A Redis outage: which errors mean "not now" rather than "wrong", and what to tell a person.

Besides a lost connection, a server can refuse a command for a while: it is full
(`maxmemory` under `noeviction`), a read-only replica, loading its data, cut off from its
primary, busy with a long script, unable to persist, or resharding. None of these says the
request was wrong, so a worker waits and retries (keeping its lease and the attempt) and a
command prints one line saying what is wrong and how to fix it.
"""

from __future__ import annotations

import logging
import re
import threading

import redis

# Connection trouble; BusyLoadingError (LOADING) is a ConnectionError in redis-py.
_CONNECTION = (redis.ConnectionError, redis.TimeoutError)

# Server-side refusals by error code: what is wrong, and what fixes it.
REFUSALS: dict[str, str] = {
    "OOM": "Redis is full (maxmemory reached under the noeviction policy) and refuses writes: "
    "raise maxmemory (CONFIG SET maxmemory <bytes>) or free memory (`swarm rm` old swarms)",
    "READONLY": "Redis is a read-only replica: point the swarm at the primary",
    "LOADING": "Redis is loading its data set into memory",
    "MASTERDOWN": "the Redis replica lost its link to the primary (MASTERDOWN)",
    "BUSY": "Redis is busy running a long script (BUSY): wait for it, or SCRIPT KILL it",
    "MISCONF": "Redis cannot save its data to disk and refuses writes (MISCONF): "
    "free disk space or fix the RDB directory's permissions",
    "NOREPLICAS": "Redis has fewer replicas than min-replicas-to-write and refuses writes",
    "TRYAGAIN": "the Redis Cluster is moving the swarm's slot (TRYAGAIN)",
    "CLUSTERDOWN": "the Redis Cluster is down (CLUSTERDOWN)",
}

# Inside a script, Redis 7 keeps the refused command's code at the front of the reply;
# older servers wrap it as "ERR Error running script ...: @user_script:N: -OOM ...".
_WRAPPED = re.compile(r"@user_script:\d+: -([A-Z]+) ")


def refusal_code(exc: BaseException) -> str | None:
    """The error code of a server-side refusal that passes with time, else None."""
    if not isinstance(exc, redis.ResponseError):
        return None
    code = getattr(exc, "status_code", None)
    if code is None:
        text = str(exc)
        first = text.split(" ", 1)[0]
        wrapped = _WRAPPED.search(text)
        code = first if first in REFUSALS else (wrapped.group(1) if wrapped else None)
    return code if code in REFUSALS else None


def is_outage(exc: BaseException) -> bool:
    """True when Redis is away or refusing for now: wait and retry, the request was fine."""
    return isinstance(exc, _CONNECTION) or refusal_code(exc) is not None


def describe(exc: BaseException) -> str:
    """One line: what is wrong with Redis and, for a refusal, how to fix it."""
    code = refusal_code(exc)
    if code is not None:
        return REFUSALS[code]
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"Redis is unreachable ({first})"


class OutageNotice:
    """Says once per kind of outage that it began and once that it ended (thread-safe)."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._lock = threading.Lock()
        self._current: str | None = None

    def saw(self, exc: BaseException) -> None:
        what = describe(exc)
        with self._lock:
            if what == self._current:
                self._log.debug("still waiting: %s", what)
                return
            self._current = what
        self._log.warning("%s; waiting and retrying, held work is kept", what)

    def cleared(self) -> None:
        if self._current is None:  # the common case, without taking the lock
            return
        with self._lock:
            was, self._current = self._current, None
        if was is not None:
            self._log.warning("Redis answers again; carrying on")
