"""Every Redis key name of the system, in one place.

All keys of one swarm share the hash tag `{<swarm-id>}`, so every Lua script touches a
single slot and a swarm runs unchanged on Redis Cluster (swarms shard by id).
"""

from __future__ import annotations

from dataclasses import dataclass

# zset: swarm id -> created (ms). Not tagged: seed.lua writes it with the swarm on one server;
# on a Redis Cluster it lives in another slot and only single-key commands reach it.
INDEX = "swarm:index"

# The RQ queue of code jobs (RQ prefixes it with `rq:queue:`; it may live on another Redis).
EXEC_QUEUE = "swarm-exec"


def exec_queue(swarm_id: str | None = None, base: str = EXEC_QUEUE) -> str:
    """The shared exec queue, or a swarm's own (`swarm-exec:<id>`)."""
    return f"{base}:{swarm_id}" if swarm_id else base


@dataclass(frozen=True)
class SwarmKeys:
    swarm_id: str

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
