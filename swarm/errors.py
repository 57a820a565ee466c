"""Errors a user can fix, and the decorator that turns them into one line on stderr."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click
import redis

from swarm.board import BoardError
from swarm.config import ConnectionFailed, EmbeddedStartFailed
from swarm.models import ModelError
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


def user_errors(fn: F) -> F:
    """A click command whose user errors print as one line (exit 1) instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as exc:
            raise click.ClickException(str(exc)) from None
        except redis.exceptions.NoPermissionError as exc:
            # An ACL user doing what its role may not (the read-only user pausing a swarm).
            raise click.ClickException(f"Redis refused it: {exc}") from None

    return wrapper  # type: ignore[return-value]
