"""A Redis outage: which errors mean "not now" rather than "wrong", and what to tell a person.

Besides a lost connection, a server can refuse a command for a while: it is full
(`maxmemory` under `noeviction`), a read-only replica, loading its data, cut off from its
primary, busy with a long script, unable to persist, or resharding. None of these says the
request was wrong, so a worker waits and retries (keeping its lease and the attempt) and a
command prints one line saying what is wrong and how to fix it.

Redis refusing *who we are* is not an outage: a wrong password (WRONGPASS, NOAUTH) or an
ACL user without a command it needs (NOPERM) stays wrong however long one waits, so a
process says so in one line and stops (`access_refused`). redis-py raises a wrong password
as an AuthenticationError, a ConnectionError: it is told apart here.
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


# Refusals of who we are, by error code (also inside a script's wrapped error).
_ACCESS_CODES = ("WRONGPASS", "NOAUTH", "NOPERM")
_LOGIN = (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError)


def _access_code(exc: BaseException) -> str | None:
    text = str(exc)
    first = text.split(" ", 1)[0]
    if first in _ACCESS_CODES:
        return first
    wrapped = _WRAPPED.search(text)
    return wrapped.group(1) if wrapped and wrapped.group(1) in _ACCESS_CODES else None


def access_refused(exc: BaseException) -> str | None:
    """One line when Redis refuses who we are (a wrong password, an ACL user without the
    command), else None. It quotes no password: the server's words name none."""
    if not isinstance(exc, redis.RedisError):
        return None
    code = _access_code(exc)
    said = " ".join(str(exc).split())[:200] or type(exc).__name__
    if isinstance(exc, redis.exceptions.NoPermissionError) or code == "NOPERM":
        return (
            f"Redis refused a command to this user ({said}): give the ACL user the commands "
            "it needs (workers/redis-users.sh lists each role's)"
        )
    if isinstance(exc, redis.exceptions.AuthenticationWrongNumberOfArgsError):
        return (
            "Redis refused the login: this server does not support ACL user names "
            "(set no SWARM_REDIS_USERNAME, or upgrade to Redis 6 or later)"
        )
    if isinstance(exc, _LOGIN) or code in ("WRONGPASS", "NOAUTH"):
        return (
            f"Redis refused the login ({said}): check the password and user name "
            "(SWARM_REDIS_PASSWORD, SWARM_REDIS_USERNAME or the URL's)"
        )
    return None


def is_outage(exc: BaseException) -> bool:
    """True when Redis is away or refusing for now: wait and retry, the request was fine."""
    if access_refused(exc) is not None:
        return False
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
