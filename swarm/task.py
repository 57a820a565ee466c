"""The task record as it lives in `swarm:{id}:task:<tid>`, and its states."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


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
    id: str
    parent: str
    depth: int
    kind: Kind
    title: str
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


    @property
    def is_root(self) -> bool:
        return self.parent == ""

    @classmethod
    def from_hash(cls, tid: str, h: dict[str, str]) -> Task:
        """Build a Task from the decoded fields of its Redis hash."""
        tags = h.get("tags", "")
        return cls(
            id=tid,
            parent=h.get("parent", ""),
            depth=int(h.get("depth", 0)),
            kind=Kind(h.get("kind", Kind.WORK.value)),
            title=h.get("title", ""),
            detail=h.get("detail", ""),
            tags=tuple(t for t in tags.split(",") if t),
            state=State(h.get("state", State.OPEN.value)),
            attempts=int(h.get("attempts", 0)),
            owner=h.get("owner", ""),
            fence=int(h.get("fence", 0)),
            result=h.get("result", ""),
            confidence=h.get("confidence", ""),
            tokens=int(h.get("tokens", 0)),
            priority=int(h.get("priority", 0)),
            reason=h.get("reason", ""),
            created=int(h.get("created", 0)),
            updated=int(h.get("updated", 0)),
            path=tuple(p for p in h.get("path", "").split(",") if p),
        )
