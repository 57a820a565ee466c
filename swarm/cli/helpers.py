"""What every command shares: the `--redis` and `--swarm` options, the connection and the
swarm they name, who a person is, logging, and the one error path (`user_errors`): errors a
user can fix print as one line on stderr, exit 1, never a traceback.

Commands import from here; nothing outside `swarm/cli/` imports the CLI.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click
import redis
from rich.console import Console

from swarm import logs
from swarm.board import Board, BoardError, InvalidRequest, list_swarms
from swarm.config import (
    ConnectionFailed,
    EmbeddedStartFailed,
    RedisSettings,
    connect,
    redis_settings,
)
from swarm.display import safe_line, safe_text
from swarm.keys import InvalidSwarmId, check_swarm_id
from swarm.minds import MindSpecError
from swarm.models import ModelError
from swarm.outage import describe, is_outage, refusal_code
from swarm.purpose import PurposeError
from swarm.sandbox.base import SandboxUnavailable
from swarm.sandbox.limits import LimitsError
from swarm.trails import InvalidWorkerClass

F = TypeVar("F", bound=Callable[..., Any])

# One line on stderr, exit status 1, never a traceback. Each is a mistake a user can fix;
# a plain ValueError is not among them: it is a bug, and keeps its traceback.
USER_ERRORS: tuple[type[Exception], ...] = (
    ConnectionFailed,
    EmbeddedStartFailed,
    PurposeError,
    BoardError,
    ModelError,
    SandboxUnavailable,
    InvalidRequest,
    InvalidSwarmId,
    MindSpecError,
    LimitsError,
    logs.LogSetupError,
    InvalidWorkerClass,
)


def checked_swarm_id(_ctx: Any, _param: Any, value: str | None) -> str | None:
    """A click callback: a swarm id given on the command line must follow the id rule."""
    if value is None:
        return None
    try:
        return check_swarm_id(value)
    except InvalidSwarmId as exc:
        raise click.ClickException(str(exc)) from None  # one line, not a usage screen


def checked_swarm_ids(ctx: Any, param: Any, values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(str(checked_swarm_id(ctx, param, v)) for v in values)


def one_line(exc: BaseException) -> click.ClickException:
    """The error as click's one line, its text made safe to show (it may quote user input)."""
    return click.ClickException(safe_line(exc))


def user_errors(fn: F) -> F:
    """A click command whose user errors print as one line (exit 1) instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except click.UsageError:
            raise
        except click.ClickException as exc:
            raise one_line(exc) from None  # it may quote a task id or other input
        except USER_ERRORS as exc:
            raise one_line(exc) from None
        except redis.exceptions.NoPermissionError as exc:
            # An ACL user doing what its role may not (the read-only user pausing a swarm).
            raise click.ClickException(safe_line(f"Redis refused it: {exc}")) from None
        except redis.RedisError as exc:  # a full, read-only or unreachable Redis
            if not is_outage(exc):
                raise
            # A refused script never starts writing (swarm/scripts.py): nothing changed.
            tail = "; nothing was changed" if refusal_code(exc) else ""
            raise click.ClickException(safe_line(describe(exc) + tail)) from None

    return wrapper  # type: ignore[return-value]


# -- the shared options -----------------------------------------------------------------------


def redis_option(fn: F) -> F:
    """`--redis URL`: the Redis the swarms live on."""
    return click.option(
        "--redis",
        "redis_url",
        metavar="URL",
        help="Redis URL (redis://, rediss://, unix://); default $SWARM_REDIS_URL or $REDIS_URL.",
    )(fn)


def swarm_option(fn: F) -> F:
    """`--swarm ID`: which swarm (checked against the id rule; default the newest)."""
    return click.option(
        "--swarm",
        "swarm_id",
        metavar="ID",
        callback=checked_swarm_id,
        help="Which swarm (default: the newest).",
    )(fn)


def settings_for(redis_url: str | None) -> RedisSettings:
    """The Redis `--redis` (or the environment) names; a usage error when none is named."""
    settings = redis_settings(redis_url)
    if settings is None:
        raise click.ClickException(
            "no Redis named: pass --redis URL or set SWARM_REDIS_URL "
            "(or use `swarm up`, which starts an embedded Valkey)"
        )
    return settings


def client_for(redis_url: str | None) -> Any:
    return connect(settings_for(redis_url))


def board_for(client: Any, swarm_id: str | None) -> Board:
    """The swarm `--swarm` names, else the newest; an error when there is none."""
    if swarm_id is None:
        ids = list_swarms(client, 1)
        if not ids:
            raise click.ClickException("no swarm on this Redis yet: run `swarm seed PURPOSE`")
        swarm_id = ids[0]
    board = Board(client, swarm_id)
    board.state()  # raises NoSuchSwarm with a clear message
    return board


def open_board(redis_url: str | None, swarm_id: str | None) -> Board:
    return board_for(client_for(redis_url), swarm_id)


def who(env: Mapping[str, str] = os.environ) -> str:
    """The person acting, as events name them (USER on POSIX, USERNAME on Windows)."""
    return f"person:{env.get('USER') or env.get('USERNAME') or 'someone'}"


EXEC_DEFAULT_URL = "redis://127.0.0.1:6379/0"


def exec_settings(redis_url: str | None, env: Mapping[str, str] = os.environ) -> Any:
    """Where the exec queue lives: --redis, else SWARM_EXEC_REDIS_URL, SWARM_REDIS_URL,
    REDIS_URL, else the local default."""
    if redis_url:
        # An explicit --redis is the exec Redis itself, whatever SWARM_EXEC_REDIS_URL says.
        env = {k: v for k, v in env.items() if k != "SWARM_EXEC_REDIS_URL"}
        settings = redis_settings(redis_url, env=env)
    else:
        settings = redis_settings(env=env) or redis_settings(EXEC_DEFAULT_URL, env=env)
    assert settings is not None
    return settings.for_exec()


# -- consoles and logging ---------------------------------------------------------------------

console = Console(stderr=True)
out = Console(highlight=False, soft_wrap=True)


class _SafeRecords(logging.Filter):
    """Log lines quote tasks, answers and server replies: shown as text, never acted on."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed call: show it rather than fail the caller
            message = f"{record.msg} {record.args}"
        record.msg, record.args = safe_text(message), None
        return True


def setup_logging(verbose: int) -> None:
    try:
        logs.setup(verbose)
    except logs.LogSetupError as exc:
        raise click.ClickException(str(exc)) from None
    for handler in logging.getLogger().handlers:
        handler.addFilter(_SafeRecords())
