"""The Lua scripts of `swarm/lua/`, loaded once from package data and registered once per client."""

from __future__ import annotations

import weakref
from functools import cache
from importlib import resources
from typing import Any

from redis.commands.core import Script

NAMES = (
    "seed",
    "claim",
    "renew",
    "complete",
    "split",
    "fail",
    "release",
    "cancel",
    "boost",
    "pause",
    "resume",
    "inject",
    "context",
)

_registered: weakref.WeakKeyDictionary[Any, dict[str, Script]] = weakref.WeakKeyDictionary()


@cache
def source(name: str) -> str:
    """A script's full source: the shared prelude, then the operation itself."""
    lua = resources.files("swarm") / "lua"
    return (lua / "_lib.lua").read_text("utf-8") + "\n" + (lua / f"{name}.lua").read_text("utf-8")


def scripts_for(client: Any) -> dict[str, Script]:
    """The registered scripts of one client (EVALSHA, loading on NOSCRIPT)."""
    found = _registered.get(client)
    if found is None:
        found = {name: client.register_script(source(name)) for name in NAMES}
        _registered[client] = found
    return found
