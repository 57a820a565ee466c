"""What a mind is asked and what it may answer: requests, actions, their JSON schema, validation.

The schema is built per step from the actions allowed at that step, and every string and
array in it is bounded, so a guided decoder (ORT GenAI guidance, an OpenAI-compatible
`response_format`) can only produce an answer that `parse_action` accepts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from swarm.task import Task


class ActionKind(str, Enum):
    ANSWER = "answer"
    SPLIT = "split"
    CODE = "code"


class Confidence(str, Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def weight(self) -> float:
        """The factor a success deposit is scaled by (q * confidence: docs/architecture.md 5)."""
        return {"low": 0.3, "medium": 0.6, "high": 1.0}[self.value]


@dataclass(frozen=True)
class Limits:
    """Bounds on every string and array a mind may produce."""

    max_children: int = 5
    max_title: int = 120
    max_detail: int = 600
    max_answer: int = 2000
    max_reason: int = 300
    max_code: int = 4000
    max_tags: int = 4
    max_tag: int = 32


@dataclass(frozen=True)
class Subtask:
    title: str
    detail: str = ""
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Answer:
    answer: str
    confidence: Confidence = Confidence.MEDIUM
    kind: ActionKind = field(default=ActionKind.ANSWER, init=False)


@dataclass(frozen=True)
class Split:
    subtasks: tuple[Subtask, ...]
    reason: str = ""
    kind: ActionKind = field(default=ActionKind.SPLIT, init=False)


@dataclass(frozen=True)
class Code:
    code: str
    why: str = ""
    kind: ActionKind = field(default=ActionKind.CODE, init=False)


Action = Answer | Split | Code


@dataclass(frozen=True)
class ExecOutput:
    """What running a `code` action produced, as shown to the mind (already truncated)."""

    stdout: str = ""
    stderr: str = ""
    error: str = ""
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass(frozen=True)
class Execution:
    code: str
    output: ExecOutput


@dataclass(frozen=True)
class ThinkRequest:
    """One step of thinking about one task."""

    purpose: str
    task: Task
    allowed: frozenset[ActionKind]
    limits: Limits = Limits()
    purpose_title: str = ""
    ancestry: tuple[Task, ...] = ()  # root first, parent last
    siblings: tuple[Task, ...] = ()  # finished siblings, with their results
    children: tuple[Task, ...] = ()  # for a synthesize step: the children, in order
    executions: tuple[Execution, ...] = ()  # earlier code rounds of this step


@dataclass(frozen=True)
class Thought:
    action: Action
    tokens: int = 0
    raw: str = ""


class InvalidAction(ValueError):
    """A mind's answer does not fit the step's schema."""


def _string(max_len: int, min_len: int = 1) -> dict[str, Any]:
    return {"type": "string", "minLength": min_len, "maxLength": max_len}


def _answer_schema(limits: Limits) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "action": {"const": "answer"},
            "answer": _string(limits.max_answer),
            "confidence": {"enum": [c.value for c in Confidence]},
        },
        "required": ["action", "answer", "confidence"],
        "additionalProperties": False,
    }


def _split_schema(limits: Limits) -> dict[str, Any]:
    subtask = {
        "type": "object",
        "properties": {
            "title": _string(limits.max_title),
            "detail": _string(limits.max_detail, 0),
            "tags": {
                "type": "array",
                "items": _string(limits.max_tag),
                "maxItems": limits.max_tags,
            },
        },
        "required": ["title", "detail"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "action": {"const": "split"},
            "subtasks": {
                "type": "array",
                "items": subtask,
                "minItems": 1,
                "maxItems": limits.max_children,
            },
            "reason": _string(limits.max_reason, 0),
        },
        "required": ["action", "subtasks", "reason"],
        "additionalProperties": False,
    }


def _code_schema(limits: Limits) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "action": {"const": "code"},
            "code": _string(limits.max_code),
            "why": _string(limits.max_reason, 0),
        },
        "required": ["action", "code", "why"],
        "additionalProperties": False,
    }


_SCHEMAS = {
    ActionKind.ANSWER: _answer_schema,
    ActionKind.SPLIT: _split_schema,
    ActionKind.CODE: _code_schema,
}


def action_schema(allowed: frozenset[ActionKind], limits: Limits) -> dict[str, Any]:
    """The JSON schema of one step: one object per allowed action, in a fixed order."""
    if not allowed:
        raise ValueError("a step must allow at least one action")
    variants = [_SCHEMAS[k](limits) for k in ActionKind if k in allowed]
    if len(variants) == 1:
        return variants[0]
    return {"anyOf": variants}


def _need_str(obj: dict[str, Any], key: str, max_len: int, min_len: int = 1) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise InvalidAction(f"'{key}' must be a string")
    if not min_len <= len(value) <= max_len:
        raise InvalidAction(f"'{key}' must have {min_len}..{max_len} characters, has {len(value)}")
    return value


def _check_keys(obj: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        raise InvalidAction(f"unexpected field(s): {', '.join(extra)}")


def _parse_subtask(obj: Any, limits: Limits) -> Subtask:
    if not isinstance(obj, dict):
        raise InvalidAction("each subtask must be an object")
    _check_keys(obj, {"title", "detail", "tags"})
    tags = obj.get("tags", [])
    if not isinstance(tags, list) or len(tags) > limits.max_tags:
        raise InvalidAction(f"'tags' must be a list of at most {limits.max_tags} strings")
    for tag in tags:
        if not isinstance(tag, str) or not 1 <= len(tag) <= limits.max_tag:
            raise InvalidAction(f"each tag must be a string of 1..{limits.max_tag} characters")
    return Subtask(
        title=_need_str(obj, "title", limits.max_title),
        detail=_need_str(obj, "detail", limits.max_detail, 0) if "detail" in obj else "",
        tags=tuple(tags),
    )


def parse_action(
    data: str | dict[str, Any], allowed: frozenset[ActionKind], limits: Limits
) -> Action:
    """Validate a mind's answer (JSON text or a decoded object) against the step's rules."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise InvalidAction(f"not JSON: {exc.msg} at char {exc.pos}") from None
    if not isinstance(data, dict):
        raise InvalidAction("the answer must be a JSON object")
    try:
        kind = ActionKind(data.get("action"))
    except ValueError:
        raise InvalidAction(f"unknown action {data.get('action')!r}") from None
    if kind not in allowed:
        names = ", ".join(k.value for k in ActionKind if k in allowed)
        raise InvalidAction(f"action '{kind.value}' is not allowed at this step (allowed: {names})")
    if kind is ActionKind.ANSWER:
        _check_keys(data, {"action", "answer", "confidence"})
        try:
            confidence = Confidence(data.get("confidence"))
        except ValueError:
            raise InvalidAction("'confidence' must be one of low, medium, high") from None
        return Answer(_need_str(data, "answer", limits.max_answer), confidence)
    if kind is ActionKind.SPLIT:
        _check_keys(data, {"action", "subtasks", "reason"})
        subtasks = data.get("subtasks")
        if not isinstance(subtasks, list) or not 1 <= len(subtasks) <= limits.max_children:
            raise InvalidAction(f"'subtasks' must be a list of 1..{limits.max_children} items")
        reason = _need_str(data, "reason", limits.max_reason, 0) if "reason" in data else ""
        return Split(tuple(_parse_subtask(s, limits) for s in subtasks), reason)
    _check_keys(data, {"action", "code", "why"})
    why = _need_str(data, "why", limits.max_reason, 0) if "why" in data else ""
    return Code(_need_str(data, "code", limits.max_code), why)
