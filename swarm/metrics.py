"""A worker's own numbers (claims, thinking, tokens, exec round trips, Redis errors).

The worker calls a `WorkerMetrics`; `NoMetrics` is the default and costs nothing, and
`PrometheusMetrics` (`swarm worker --metrics-port`) keeps them in a prometheus_client
registry served over HTTP for Prometheus to scrape. prometheus_client comes with the
`dashboard` extra and is imported only when metrics are asked for.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

# Think steps last from milliseconds (sim) to minutes (a large model on a CPU).
THINK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
EXEC_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class WorkerMetrics(Protocol):
    def claimed(self) -> None: ...

    def thought(self, seconds: float, tokens: int) -> None: ...

    def executed(self, seconds: float) -> None: ...

    def redis_error(self) -> None: ...


class NoMetrics:
    """What a worker records when nobody scrapes it: nothing."""

    def claimed(self) -> None:
        pass

    def thought(self, seconds: float, tokens: int) -> None:
        pass

    def executed(self, seconds: float) -> None:
        pass

    def redis_error(self) -> None:
        pass


class PrometheusMetrics:
    """One worker's metrics in their own registry (so a test can make several)."""

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._info = Gauge(
            "swarm_worker_info", "This worker (always 1).", ["worker", "host", "mind"], registry=r
        )
        self._claims = Counter("swarm_worker_claims", "Tasks claimed.", registry=r)
        self._think = Histogram(
            "swarm_worker_think_seconds",
            "Seconds per think step.",
            buckets=THINK_BUCKETS,
            registry=r,
        )
        self._tokens = Counter("swarm_worker_tokens", "Tokens generated.", registry=r)
        self._rate = Gauge(
            "swarm_worker_tokens_per_second", "Tokens per second of thinking, so far.", registry=r
        )
        self._exec = Histogram(
            "swarm_worker_exec_round_trip_seconds",
            "Seconds from sending code to the exec queue to having its output.",
            buckets=EXEC_BUCKETS,
            registry=r,
        )
        self._redis_errors = Counter(
            "swarm_worker_redis_errors",
            "Redis calls that failed (connection, timeout).",
            registry=r,
        )
        self._lock = threading.Lock()  # slots think in parallel; the rate needs both sums
        self._think_s = 0.0
        self._token_count = 0

    def identify(self, worker: str, host: str, mind: str) -> None:
        """Name the worker (its id is made with it, after this object)."""
        self._info.labels(worker, host, mind).set(1)

    def claimed(self) -> None:
        self._claims.inc()

    def thought(self, seconds: float, tokens: int) -> None:
        self._think.observe(seconds)
        self._tokens.inc(max(tokens, 0))
        with self._lock:
            self._think_s += seconds
            self._token_count += max(tokens, 0)
            if self._think_s > 0:
                self._rate.set(self._token_count / self._think_s)

    def executed(self, seconds: float) -> None:
        self._exec.observe(seconds)

    def redis_error(self) -> None:
        self._redis_errors.inc()

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve /metrics on a daemon thread; returns the port bound (0 picks a free one)."""
        from prometheus_client import start_http_server

        server, _ = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)
