"""The Mind protocol every thinking backend implements, and its test double."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

from swarm.protocol import Action, ThinkRequest, Thought


class MindError(RuntimeError):
    """A mind could not produce a valid action for this step; the attempt fails with this reason."""


@runtime_checkable
class Mind(Protocol):
    """Turns one step's request into one validated action.

    `think` may be called from several slot threads at once; a mind that cannot serve
    them concurrently serialises internally.
    """

    name: str

    def think(self, request: ThinkRequest) -> Thought: ...

    def close(self) -> None: ...


class ScriptedMind:
    """Test double: answers from a function of the request, or from a fixed list in order."""

    name = "scripted"

    def __init__(self, script: Callable[[ThinkRequest], Action] | Iterable[Action]) -> None:
        if callable(script):
            self._fn: Callable[[ThinkRequest], Action] = script
        else:
            queue = list(script)
            self._fn = lambda _req: queue.pop(0)
        self.requests: list[ThinkRequest] = []

    def think(self, request: ThinkRequest) -> Thought:
        self.requests.append(request)
        return Thought(self._fn(request), tokens=1)

    def close(self) -> None:
        pass


class Interrupted(MindError):
    """`interrupt()` was called: the step was abandoned, not failed by the model."""
