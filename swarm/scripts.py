"""The Lua scripts of `swarm/lua/`, loaded once from package data and registered once per client.

Each script starts with a Redis 7 shebang naming its flags. A plain `#!lua` script may write,
so a full Redis (maxmemory under noeviction) refuses it before it runs, never half-way;
`allow-oom` marks the ones that must run even then (renewing a lease, giving a task back,
which take no memory to speak of) and `no-writes` the read-only ones. Servers that do not
read shebangs (fakeredis, Redis 6) get the same scripts without that line.
"""

from __future__ import annotations

import weakref
from functools import cache
from importlib import resources
from typing import Any

from redis.commands.core import Script

from swarm.purpose import DEFAULT_SETTINGS

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
    "trails_take",
    "trails_seed",
    "trails_fold",
)

_registered: weakref.WeakKeyDictionary[Any, dict[str, Script]] = weakref.WeakKeyDictionary()


@cache
def source(name: str, *, flags: bool = True) -> str:
    """A script's full source: its shebang (when `flags`), the shared prelude, the operation."""
    lua = resources.files("swarm") / "lua"
    body = (lua / f"{name}.lua").read_text("utf-8")
    shebang, _, rest = body.partition("\n")
    if not shebang.startswith("#!lua"):
        raise ValueError(f"swarm/lua/{name}.lua must start with its #!lua shebang")
    return (shebang + "\n" if flags else "") + prelude() + "\n" + rest


@cache
def prelude() -> str:
    """What every script starts with: DEFAULTS, then `_lib.lua` (the shared functions, among
    them `new_task`, which a bench or test that builds tasks in bulk also uses)."""
    return _defaults() + (resources.files("swarm") / "lua" / "_lib.lua").read_text("utf-8")


def _defaults() -> str:
    """The Lua table of what a missing meta field reads as: the purpose defaults."""
    pairs = ", ".join(f'["{name}"] = {value!r}' for name, value in DEFAULT_SETTINGS.items())
    return f"local DEFAULTS = {{{pairs}}}\n"


def scripts_for(client: Any) -> dict[str, Script]:
    """The registered scripts of one client (EVALSHA, loading on NOSCRIPT)."""
    found = _registered.get(client)
    if found is None:
        found = {name: client.register_script(source(name)) for name in NAMES}
        _registered[client] = found
    return found


def shebang_unsupported(exc: Exception) -> bool:
    """The server could not compile a script because it does not read its shebang line."""
    return "near '#'" in str(exc)


def scripts_without_flags(client: Any) -> dict[str, Script]:
    """The client's scripts re-registered without shebangs, for a server that rejects them."""
    found = {name: client.register_script(source(name, flags=False)) for name in NAMES}
    _registered[client] = found
    return found
