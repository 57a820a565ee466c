"""Who may read and write, and the page's writes, each through the board's own script.

Every write is a `Board` method (pause, resume, boost, inject, cancel): the same atomic Lua
script the CLI runs, recorded on the event stream with who asked (`person:<name>@dashboard`;
the name is what the page sends, the token is what grants the right to write).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from swarm.board import Board, BoardError, InvalidRequest
from swarm.requirements import InvalidStrength, Requirements, check_strength

BODY_MAX = 16 * 1024  # an inject's title and detail fit several times over
NAME = re.compile(r"^[A-Za-z0-9._-]{1,40}$")
TASK_ID = re.compile(r"^[0-9]{1,12}$")
LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server to this machine."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_of(header: str) -> str:
    """The name in a Host header, without its port ("[::1]:80" -> "::1")."""
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


@dataclass(frozen=True)
class Access:
    """Writes always need the token; reads need it unless the server is bound to loopback."""

    token: str
    open_reads: bool

    def _bearer_ok(self, headers: Mapping[str, str]) -> bool:
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            return False
        return hmac.compare_digest(given.strip().encode(), self.token.encode())

    def may_read(self, headers: Mapping[str, str]) -> bool:
        return self.open_reads or self._bearer_ok(headers)

    def may_write(self, headers: Mapping[str, str]) -> bool:
        return self._bearer_ok(headers)


class Refused(Exception):
    """A write that cannot be done as asked; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse_body(raw: bytes) -> dict[str, Any]:
    if len(raw) > BODY_MAX:
        raise Refused(f"request body over {BODY_MAX} bytes", 413)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Refused("request body is not JSON") from None
    if not isinstance(body, dict):
        raise Refused("request body must be a JSON object")
    return body


def who(body: Mapping[str, Any]) -> str:
    name = body.get("who")
    if not isinstance(name, str) or not NAME.match(name):
        name = "anonymous"
    return f"person:{name}@dashboard"


def _text(body: Mapping[str, Any], key: str, default: str = "") -> str:
    value = body.get(key, default)
    if not isinstance(value, str):
        raise Refused(f"'{key}' must be a string")
    return value


def _task_id(body: Mapping[str, Any], key: str = "task") -> str:
    value = body.get(key)
    if not isinstance(value, str) or not TASK_ID.match(value):
        raise Refused(f"'{key}' must be a task id (digits)")
    return value


def _amount(body: Mapping[str, Any], board: Board) -> float:
    value = body.get("amount")
    if value is None or value == "":
        return board.default_boost()
    try:
        amount = float(value)
    except (TypeError, ValueError):
        raise Refused("'amount' must be a number") from None
    if not 0 < amount < 1e12:
        raise Refused("'amount' must be positive")
    return amount


def _requires(body: Mapping[str, Any]) -> Requirements:
    """An injected task's requirements: min_strength (0-9, '' for none), needs_code (bool)."""
    code = body.get("needs_code", False)
    if not isinstance(code, bool):
        raise Refused("'needs_code' must be true or false")
    raw = body.get("min_strength", "")
    try:
        strength = 0 if raw in (None, "") else check_strength(raw, "min_strength")
    except InvalidStrength as exc:
        raise Refused(str(exc)) from None
    return Requirements(min_strength=strength, needs_code=code)


def act(board: Board, action: str, body: Mapping[str, Any]) -> str:
    """Do one write; returns what to tell the person, raises Refused with why not."""
    by = who(body)
    try:
        return _act(board, action, body, by)
    except (BoardError, InvalidRequest) as exc:
        raise Refused(str(exc), 409) from None


def _act(board: Board, action: str, body: Mapping[str, Any], by: str) -> str:
    if action == "pause":
        if not board.pause(by):
            raise Refused(f"swarm {board.id} is {board.state().value}, not running", 409)
        return f"paused {board.id}"
    if action == "resume":
        if not board.resume(by):
            raise Refused(f"swarm {board.id} is {board.state().value}, not paused", 409)
        return f"resumed {board.id}"
    if action == "boost":
        tid = _task_id(body)
        amount = _amount(body, board)
        if not board.boost(tid, amount, by):
            raise Refused(f"task {tid} is not open", 409)
        return f"boosted {tid} by {amount:.4g}"
    if action == "inject":
        parent = _task_id(body, "parent") if body.get("parent") not in (None, "") else "0"
        tid = board.inject(
            _text(body, "title"),
            by,
            parent=parent,
            detail=_text(body, "detail"),
            tags=[t.strip() for t in _text(body, "tags").split(",") if t.strip()],
            requires=_requires(body),
        )
        return f"injected task {tid} under {parent}"
    if action == "cancel":
        if body.get("all") is True:
            board.cancel(None, by)
            return f"cancelled swarm {board.id}"
        tid = _task_id(body)
        n = board.cancel(tid, by)
        return f"cancelled {n} task(s)"
    raise Refused(f"no action {action!r}", 404)


ACTIONS = ("pause", "resume", "boost", "inject", "cancel")
