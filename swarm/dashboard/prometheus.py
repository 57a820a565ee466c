"""`/metrics`: the swarms' counters in the Prometheus text format, read at scrape time.

Each scrape reads the newest `limit` swarms' meta counters and worker counts in two
pipelined round trips (O(swarms), never O(tasks)), plus the exec queue's length. Names follow
Prometheus conventions: `swarm_` prefix, `_total` on counters, base units (seconds), labels
for the swarm, the task state and the budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from swarm.board import list_swarms, stale_ms
from swarm.keys import SwarmKeys
from swarm.stored import number as _num
from swarm.task import State, SwarmState

METRICS_SWARMS = 50
TITLE_CHARS = 80
META = (
    "state",
    "title",
    "tasks",
    "max_tasks",
    "tokens",
    "max_tokens",
    "completions",
    "failures",
    "reaps",
    "created",
    "finished",
    "deadline_s",
    "lease_ms",
    "depth_reached",
    "max_depth",
    *(f"n_{s.value}" for s in State),
)


class SwarmCollector(Collector):
    """Collects per-swarm metrics from Redis on each scrape."""

    def __init__(
        self,
        client: Any,
        *,
        exec_depth: Callable[[], dict[str, int]] | None = None,
        limit: int = METRICS_SWARMS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.exec_depth = exec_depth
        self.limit = limit
        self.clock = clock

    def _read(self) -> tuple[list[str], list[dict[str, Any]], list[tuple[int, int]]]:
        ids = list_swarms(self.client, self.limit)
        if not ids:
            return [], [], []
        pipe = self.client.pipeline(transaction=False)
        for sid in ids:
            pipe.hmget(SwarmKeys(sid).meta, META)
        metas = [dict(zip(META, v, strict=True)) for v in pipe.execute()]
        now_ms = int(self.clock() * 1000)
        pipe = self.client.pipeline(transaction=False)
        for sid, m in zip(ids, metas, strict=True):
            since = now_ms - stale_ms(m["lease_ms"])
            pipe.zcount(SwarmKeys(sid).workers, since, "+inf")
            pipe.zcard(SwarmKeys(sid).workers)
        r = pipe.execute()
        workers = [(int(r[2 * i]), int(r[2 * i + 1])) for i in range(len(ids))]
        return ids, metas, workers

    def collect(self) -> Iterator[Metric]:
        ids, metas, workers = self._read()
        now_s = self.clock()
        info = GaugeMetricFamily(
            "swarm_info", "A swarm on the board (always 1).", labels=["swarm", "title"]
        )
        state = GaugeMetricFamily(
            "swarm_state",
            "1 for the swarm's current state, 0 for the others.",
            labels=["swarm", "state"],
        )
        tasks = GaugeMetricFamily("swarm_tasks", "Tasks by state.", labels=["swarm", "state"])
        created = CounterMetricFamily("swarm_tasks_created", "Tasks created.", labels=["swarm"])
        tokens = CounterMetricFamily("swarm_tokens", "Tokens spent.", labels=["swarm"])
        completions = CounterMetricFamily(
            "swarm_completions", "Task steps answered.", labels=["swarm"]
        )
        failures = CounterMetricFamily(
            "swarm_failures", "Task steps that failed.", labels=["swarm"]
        )
        reaps = CounterMetricFamily(
            "swarm_reaps", "Expired leases taken back from lost workers.", labels=["swarm"]
        )
        used = GaugeMetricFamily(
            "swarm_budget_used_ratio",
            "Share of a budget spent (1 = all of it).",
            labels=["swarm", "budget"],
        )
        elapsed = GaugeMetricFamily(
            "swarm_elapsed_seconds", "Seconds since seeding (to the end).", labels=["swarm"]
        )
        alive = GaugeMetricFamily(
            "swarm_workers_alive", "Workers whose heartbeat is fresh.", labels=["swarm"]
        )
        known = GaugeMetricFamily(
            "swarm_workers_registered",
            "Workers on the swarm's list, stale ones too.",
            labels=["swarm"],
        )
        for sid, m, (n_alive, n_known) in zip(ids, metas, workers, strict=True):
            if m["state"] is None:
                continue  # in the index, its keys gone
            info.add_metric([sid, (m["title"] or "")[:TITLE_CHARS]], 1)
            for s in SwarmState:
                state.add_metric([sid, s.value], 1 if m["state"] == s.value else 0)
            for st in State:
                tasks.add_metric([sid, st.value], _num(m[f"n_{st.value}"]))
            created.add_metric([sid], _num(m["tasks"]))
            tokens.add_metric([sid], _num(m["tokens"]))
            completions.add_metric([sid], _num(m["completions"]))
            failures.add_metric([sid], _num(m["failures"]))
            reaps.add_metric([sid], _num(m["reaps"]))
            end_s = _num(m["finished"]) / 1000 if m["finished"] else now_s
            spent_s = max(end_s - _num(m["created"]) / 1000, 0.0)
            elapsed.add_metric([sid], spent_s)
            for name, spent, limit in (
                ("tasks", _num(m["tasks"]), _num(m["max_tasks"])),
                ("tokens", _num(m["tokens"]), _num(m["max_tokens"])),
                ("depth", _num(m["depth_reached"]), _num(m["max_depth"])),
                ("time", spent_s, _num(m["deadline_s"])),
            ):
                used.add_metric([sid, name], spent / limit if limit > 0 else 0.0)
            alive.add_metric([sid], n_alive)
            known.add_metric([sid], n_known)
        yield from (
            info,
            state,
            tasks,
            created,
            tokens,
            completions,
            failures,
            reaps,
            used,
            elapsed,
            alive,
            known,
        )
        if self.exec_depth is not None:
            depth = GaugeMetricFamily(
                "swarm_exec_queue_depth", "Code jobs waiting for an executor.", labels=["queue"]
            )
            for queue, n in self.exec_depth().items():
                depth.add_metric([queue], n)
            yield depth


class HubCollector(Collector):
    """The dashboard's own: live readers and the browsers they serve."""

    def __init__(self, hub: Any) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        feeds = GaugeMetricFamily(
            "swarm_dashboard_readers", "Swarms being read for open pages (one reader each)."
        )
        feeds.add_metric([], len(self.hub.feeds))
        subs = GaugeMetricFamily("swarm_dashboard_streams", "Open live streams (browser pages).")
        subs.add_metric([], self.hub.subscribers)
        yield feeds
        yield subs


def exec_depth_reader(conn: Any, queue: str) -> Callable[[], dict[str, int]]:
    """The exec queue's length (RQ keeps a queue as a list under `rq:queue:<name>`)."""
    from rq import Queue

    key = Queue.redis_queue_namespace_prefix + queue

    def read() -> dict[str, int]:
        return {queue: int(conn.llen(key))}

    return read
