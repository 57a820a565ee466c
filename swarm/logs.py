"""How swarm processes log: one line per event, as text for people or JSON for log shippers.

`SWARM_LOG_FORMAT=json` writes one JSON object a line (time, level, logger, message and the
fields a call passes in `extra`, such as task, outcome, tokens, seconds); `text` (the default)
writes plain lines, or Rich's coloured ones on a terminal. `SWARM_LOG_LEVEL` sets the level
(default WARNING; the container image sets INFO so `docker compose logs` shows every task).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import IO, Any, TypeVar

from redis.retry import Retry

T = TypeVar("T")

FORMAT_ENV = "SWARM_LOG_FORMAT"
LEVEL_ENV = "SWARM_LOG_LEVEL"
FORMATS = ("text", "json")

# What every LogRecord carries; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class LogSetupError(ValueError):
    """SWARM_LOG_FORMAT or SWARM_LOG_LEVEL holds something unknown."""


def printable(text: str, limit: int = 200) -> str:
    """Untrusted text (model output, a task title) as one log-safe line: no control characters,
    so it cannot forge a line or move the terminal's cursor, and at most `limit` characters."""
    flat = " ".join(text.split())
    safe = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in flat)
    return safe if len(safe) <= limit else safe[: limit - 1] + "…"


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The `extra=` fields of a record."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; the message keeps its text, `extra` fields become keys."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **fields(record),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _level(env: Mapping[str, str], verbose: int) -> int:
    raw = (env.get(LEVEL_ENV) or "WARNING").strip().upper()
    level = logging.getLevelName(raw)
    if not isinstance(level, int):
        raise LogSetupError(
            f"{LEVEL_ENV}={raw!r} is not a level: use DEBUG, INFO, WARNING or ERROR"
        )
    return max(logging.DEBUG, level - 10 * verbose)


def handler(env: Mapping[str, str] = os.environ, stream: IO[str] | None = None) -> logging.Handler:
    """The handler SWARM_LOG_FORMAT asks for, writing to `stream` (default stderr)."""
    stream = stream or sys.stderr
    kind = (env.get(FORMAT_ENV) or "text").strip().lower()
    if kind not in FORMATS:
        raise LogSetupError(f"{FORMAT_ENV}={kind!r} is unknown: use text or json")
    if kind == "json":
        out: logging.Handler = logging.StreamHandler(stream)
        out.setFormatter(JsonFormatter())
        return out
    if stream.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        return RichHandler(console=Console(file=stream), show_path=False, rich_tracebacks=False)
    # A pipe or a container log: whole lines that grep and `docker compose logs` keep intact.
    out = logging.StreamHandler(stream)
    out.setFormatter(logging.Formatter(TEXT_FORMAT))
    return out


def setup(
    verbose: int = 0, env: Mapping[str, str] = os.environ, stream: IO[str] | None = None
) -> None:
    """Configure the root logger from the environment; `-v` lowers the level by one step each."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler(env, stream))
    root.setLevel(_level(env, verbose))


class Outage:
    """Says once when Redis goes away and once when it is back, however many calls fail between
    (a worker's slots and heartbeat all notice the same outage)."""

    def __init__(self, log: logging.Logger, clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self._clock = clock
        self._since: float | None = None
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            if self._since is not None:
                return
            self._since = self._clock()
        self._log.warning(
            "Redis unavailable (%s); retrying with backoff",
            printable(str(exc) or type(exc).__name__),
            extra={"event": "redis_down"},
        )

    def ok(self) -> None:
        if self._since is None:  # the common case, without the lock
            return
        with self._lock:
            since, self._since = self._since, None
        if since is not None:
            away = round(self._clock() - since, 1)
            self._log.info(
                "Redis is back after %.1f s", away, extra={"event": "redis_up", "seconds": away}
            )


def task_outcome(
    log: logging.Logger,
    outcome: str,
    *,
    swarm: str,
    task: str,
    worker: str,
    tokens: int = 0,
    seconds: float = 0.0,
    detail: str = "",
) -> None:
    """The one INFO line a worker writes per task event: claimed, answered, sent_back (the
    root's answer failed its check and went back), split, failed, released; `detail` is
    shown literally (it may come from the model)."""
    if not log.isEnabledFor(logging.INFO):
        return  # the hot path of a quiet worker builds nothing
    seconds = round(seconds, 2)
    log.info(
        "task %s %s (%d tokens, %.2f s)%s",
        task,
        outcome,
        tokens,
        seconds,
        f": {printable(detail)}" if detail else "",
        extra={
            "event": "task",
            "outcome": outcome,
            "swarm": swarm,
            "task": task,
            "worker": worker,
            "tokens": tokens,
            "seconds": seconds,
            **({"detail": printable(detail)} if detail else {}),
        },
    )


# One per process: every client's retries report to it, so an outage is one line when the first
# command fails and one when a command gets through again, whoever noticed it.
REDIS = Outage(logging.getLogger("swarm.redis"))


class NoticingRetry(Retry):
    """redis-py's Retry that tells REDIS of every failed attempt and of the success after.

    redis-py retries inside each command, so a worker only sees an outage that outlasts all
    the attempts (and inside Docker, where a stopped Redis's name stops resolving and connects
    time out, that can be half a minute); here every outage is noticed at its first failure.
    """

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        def noticed(error: Exception, *count: int) -> Any:
            REDIS.failed(error)
            return fail(error, *count)

        value = super().call_with_retry(do, noticed, is_retryable, with_failure_count)
        REDIS.ok()
        return value
