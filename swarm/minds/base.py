"""The Mind protocol every thinking backend implements, and its test double."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Protocol, runtime_checkable

from swarm.protocol import Action, ThinkRequest, Thought


class MindError(RuntimeError):
    """A mind could not produce a valid action for this step; the attempt fails with this reason.

    `tokens`: what the failed step spent (a model that generated an invalid answer), so the
    worker charges it to the swarm's token budget like a successful step's.
    """

    def __init__(self, *args: object, tokens: int = 0) -> None:
        super().__init__(*args)
        self.tokens = tokens


class Interrupted(MindError):
    """The mind was interrupted (the worker is stopping): the step has no result to post."""


def spec_values(
    spec: str, fields: Mapping[str, Callable[[str], object]], mind: str, raw: tuple[str, ...] = ()
) -> dict[str, object]:
    """`name=value,...` (the test minds' specs) -> {name: fields[name](value)}; the names in
    `raw` keep their text for the caller to parse. A ValueError names the bad part."""
    values: dict[str, object] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, eq, text = part.partition("=")
        if eq and name in raw:
            values[name] = text
            continue
        if not eq or name not in fields:
            known = ", ".join([*fields, *raw])
            raise ValueError(f"{mind} mind: bad option {part!r} (known: {known}, as name=value)")
        try:
            values[name] = fields[name](text)
        except ValueError:
            raise ValueError(f"{mind} mind: {name} must be a number, got {text!r}") from None
    return values


class Turns:
    """Lets short Python work (the worker's heartbeat) run first between a mind's native calls.

    onnxruntime-genai holds the GIL through every call, so a thread needing it a few times
    for one renewal (to send, to read the reply) would wait out a whole native call each time
    the model thread took it back first. A mind calls `between()` before each native call;
    while another thread is inside `first()`, that waits, at most `max_wait_s` (a renewal
    stuck on a dead Redis must not stall the model for long). The GIL is one per process, so
    there is one `Turns` per process: `TURNS`.
    """

    def __init__(self, max_wait_s: float = 0.5) -> None:
        self.max_wait_s = max_wait_s
        self._cond = threading.Condition()
        self._first = 0
        self._listeners: list[threading.Event] = []
        self._beats = 0

    @contextmanager
    def first(self) -> Iterator[None]:
        with self._cond:
            self._first += 1
        try:
            yield
        finally:
            with self._cond:
                self._first -= 1
                if not self._first:
                    self._cond.notify_all()

    def between(self) -> None:
        if not self._first:  # the usual case: no lock taken
            return
        with self._cond:
            self._cond.wait_for(lambda: not self._first, timeout=self.max_wait_s)

    # A native call that cannot be cut short (a new generator allocates its whole KV cache:
    # seconds on Phi-3-mini) goes right after a fresh renewal, so it costs the lease only
    # its own length. Heartbeats `listen` with the event that wakes them.

    def listen(self, wake: threading.Event) -> None:
        with self._cond:
            self._listeners.append(wake)

    def unlisten(self, wake: threading.Event) -> None:
        with self._cond:
            if wake in self._listeners:
                self._listeners.remove(wake)

    def beaten(self) -> None:
        """A heartbeat finished a beat."""
        with self._cond:
            self._beats += 1
            self._cond.notify_all()

    def beat_now(self, timeout_s: float = 2.0) -> None:
        """Before a long native call: wake every heartbeat and wait for their beats (bounded)."""
        with self._cond:
            if not self._listeners:
                return
            target = self._beats + len(self._listeners)
            for wake in self._listeners:
                wake.set()
            self._cond.wait_for(lambda: self._beats >= target, timeout=timeout_s)


TURNS = Turns()


@runtime_checkable
class Mind(Protocol):
    """Turns one step's request into one validated action.

    `think` may be called from several slot threads at once; a mind that cannot serve
    them concurrently serialises internally.
    """

    name: str

    def think(self, request: ThinkRequest) -> Thought: ...

    def interrupt(self) -> None:
        """Every think() in progress or started later raises `Interrupted`, within about one
        bounded native call (the worker calls this when it stops, after releasing its tasks)."""
        ...

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
        self.interrupted = threading.Event()

    def think(self, request: ThinkRequest) -> Thought:
        if self.interrupted.is_set():
            raise Interrupted("the scripted mind was interrupted")
        self.requests.append(request)
        return Thought(self._fn(request), tokens=1)

    def interrupt(self) -> None:
        self.interrupted.set()

    def close(self) -> None:
        pass
