"""The task record as it lives in `swarm:{id}:task:<tid>`, and its states."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, get_type_hints


class State(str, Enum):
    OPEN = "open"
    CLAIMED = "claimed"
    WAITING = "waiting"
    DONE = "done"
    DEAD = "dead"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (State.DONE, State.DEAD, State.CANCELLED)


class Kind(str, Enum):
    WORK = "work"
    SYNTHESIZE = "synthesize"


class SwarmState(str, Enum):
    RUNNING = "running"
    PAUSED = "paused"
    WRAPPING = "wrapping"
    DONE = "done"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (SwarmState.DONE, SwarmState.CANCELLED)


@dataclass(frozen=True)
class Task:
    """A task hash decoded. Its attributes are the one list of a task hash's fields (with `id`,
    which names the key): `from_hash` decodes each by its type, and a field added here is read
    everywhere Python reads tasks. A field a task is born with also goes in `_lib.lua`'s
    NEW_TASK_FIELDS, the one place Lua creates tasks (docs/architecture.md, adding a field)."""

    id: str
    parent: str = ""
    depth: int = 0
    kind: Kind = Kind.WORK
    title: str = ""
    detail: str = ""
    tags: tuple[str, ...] = ()
    state: State = State.OPEN
    attempts: int = 0
    owner: str = ""
    fence: int = 0
    result: str = ""
    confidence: str = ""
    tokens: int = 0
    priority: int = 0
    reason: str = ""
    created: int = 0
    updated: int = 0
    path: tuple[str, ...] = ()  # ancestor ids, root first
    pending: int = 0  # children not yet terminal, while waiting
    injected_by: str = ""  # the person who injected it, if one did
    score: float = 0.0  # its pheromone score when claimed, restored if it is given back
    # division of labour (docs/architecture.md section 6a)
    owner_class: str = ""  # the class of the worker that claimed it last
    claimed_at: int = 0  # ms, when it was claimed last (a success's time on its trails)
    failed_by: tuple[str, ...] = ()  # worker classes that failed it, in order (escalation)
    # requirements: the least strength of a worker that may take it, and whether it needs a
    # worker that can run code; at least its parent's (swarm/requirements.py)
    min_strength: int = 0
    needs_code: int = 0  # 1: only a worker that can run code may take it
    feedback: str = ""  # the root: what its check said of the last answer it sent back
    rejected: int = 0  # the root: answers its check sent back so far (complete.lua)
    sent_back: str = ""  # the root: `fence|worker` of the last post sent back (a resend's reply)

    @classmethod
    def from_hash(cls, tid: str, h: dict[str, str], **known: Any) -> Task:
        """Build a Task from the decoded fields of its Redis hash (absent fields: defaults;
        `known`: fields the caller knows otherwise, already typed)."""
        decoded = {k: _DECODERS[k](v) for k, v in h.items() if k in _DECODERS}
        decoded.update(known)
        return cls(id=tid, **decoded)


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v for v in value.split(",") if v)


_BY_TYPE: dict[Any, Callable[[str], Any]] = {
    str: str,
    int: int,
    float: float,
    Kind: Kind,
    State: State,
    tuple[str, ...]: _csv,
}
_DECODERS = {name: _BY_TYPE[hint] for name, hint in get_type_hints(Task).items() if name != "id"}
FIELDS: tuple[str, ...] = tuple(_DECODERS)  # every field of a task hash, in Task's order
INT_FIELDS = tuple(name for name in FIELDS if _DECODERS[name] is int)
LIST_FIELDS = tuple(name for name in FIELDS if _DECODERS[name] is _csv)  # comma-separated
