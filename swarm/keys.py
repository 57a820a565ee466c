"""Every Redis key name of the system, in one place.

All keys of one swarm share the hash tag `{<swarm-id>}`, so every Lua script touches a
single slot and a swarm runs unchanged on Redis Cluster (swarms shard by id).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# zset: swarm id -> created (ms). Not tagged: seed.lua writes it with the swarm on one server;
# on a Redis Cluster it lives in another slot and only single-key commands reach it.
INDEX = "swarm:index"

# hash: '<worker class>|<kind of task>' -> decayed outcome counts (swarm/trails.py). Not tagged:
# it outlives every swarm; single-key scripts fold swarms' outcomes into it and seed from it.
TRAILS = "swarm:trails"

# The RQ queue of code jobs (RQ prefixes it with `rq:queue:`; it may live on another Redis).
EXEC_QUEUE = "swarm-exec"


def exec_queue(swarm_id: str | None = None, base: str = EXEC_QUEUE) -> str:
    """The shared exec queue, or a swarm's own (`swarm-exec:<id>`)."""
    return f"{base}:{swarm_id}" if swarm_id else base


# A swarm id is 1 to 64 characters: ASCII letters, digits, '.', '_' and '-', starting with a
# letter or a digit. It is part of every key (inside the `{...}` hash tag, so no braces),
# of queue names and of file names, and it is shown on screens: nothing else may pass.
SWARM_ID_MAX = 64
SWARM_ID_RULE = (
    f"1 to {SWARM_ID_MAX} characters: letters, digits, '.', '_' and '-', "
    "starting with a letter or a digit"
)
_SWARM_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{SWARM_ID_MAX - 1}}}")


class InvalidSwarmId(ValueError):
    """A swarm id outside the documented character set or length."""


def is_swarm_id(value: object) -> bool:
    return isinstance(value, str) and _SWARM_ID.fullmatch(value) is not None


def check_swarm_id(value: str) -> str:
    """`value` if it is a valid swarm id, else InvalidSwarmId with a one-line message."""
    if is_swarm_id(value):
        return value
    from swarm.display import safe_line

    shown = safe_line(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    raise InvalidSwarmId(f"invalid swarm id '{shown}': a swarm id is {SWARM_ID_RULE}")


@dataclass(frozen=True)
class SwarmKeys:
    swarm_id: str

    def __post_init__(self) -> None:
        check_swarm_id(self.swarm_id)  # every key of a swarm is built here

    @property
    def prefix(self) -> str:
        return f"swarm:{{{self.swarm_id}}}:"

    @property
    def meta(self) -> str:
        return self.prefix + "meta"

    @property
    def open(self) -> str:
        return self.prefix + "open"

    @property
    def traits(self) -> str:
        return self.prefix + "traits"

    @property
    def leases(self) -> str:
        return self.prefix + "leases"

    @property
    def fence(self) -> str:
        return self.prefix + "fence"

    @property
    def workers(self) -> str:
        return self.prefix + "workers"

    @property
    def events(self) -> str:
        return self.prefix + "events"

    @property
    def requests(self) -> str:
        """hash: control request id -> its first reply (a resent request is not applied again)"""
        return self.prefix + "requests"

    @property
    def requests_until(self) -> str:
        """zset: control request id -> kept until (ms); expired ids are dropped"""
        return self.prefix + "requests:until"

    @property
    def task_prefix(self) -> str:
        """Passed in KEYS to scripts that reach tasks they only learn about inside Lua."""
        return self.prefix + "task:"

    @property
    def children_prefix(self) -> str:
        return self.prefix + "children:"

    def task(self, tid: str) -> str:
        return self.task_prefix + tid

    def children(self, tid: str) -> str:
        return self.children_prefix + tid

    def worker(self, wid: str) -> str:
        return self.prefix + "worker:" + wid

    # The scripts build these from the meta key's name (swarm/lua/_lib.lua), so that
    # every script keeps its eight KEYS; the names must agree.

    @property
    def trails(self) -> str:
        """hash: '<class>|<kind>' -> this swarm's decayed outcome counts (claims read it)"""
        return self.prefix + "trails"

    @property
    def trails_new(self) -> str:
        """hash: outcomes not yet folded into the long-lived TRAILS"""
        return self.prefix + "trails:new"

    @property
    def failed(self) -> str:
        """hash: task id -> the worker classes that failed it (escalation)"""
        return self.prefix + "failed"

    @property
    def classes(self) -> str:
        """hash: worker class -> 'beat|strength|code' of its latest heartbeat"""
        return self.prefix + "classes"

    @property
    def profiles(self) -> str:
        """hash: 'strength|code' -> the latest heartbeat (ms) of a worker offering that"""
        return self.prefix + "profiles"

    @property
    def unmet(self) -> str:
        """hash: open task id -> when (ms) a claim first saw no live worker meet it"""
        return self.prefix + "unmet"
