"""Errors a user can fix, and the decorator that turns them into one line on stderr."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click
import redis

from swarm.board import BoardError
from swarm.config import ConnectionFailed, EmbeddedStartFailed
from swarm.display import safe_line
from swarm.keys import InvalidSwarmId, check_swarm_id
from swarm.models import ModelError
from swarm.outage import describe, is_outage, refusal_code
from swarm.purpose import PurposeError
from swarm.sandbox.base import SandboxUnavailable

F = TypeVar("F", bound=Callable[..., Any])

# One line on stderr, exit status 1, never a traceback.
USER_ERRORS: tuple[type[Exception], ...] = (
    ConnectionFailed,
    EmbeddedStartFailed,
    PurposeError,
    BoardError,
    ModelError,
    SandboxUnavailable,
    ValueError,
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
