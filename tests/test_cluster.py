"""The board suite, a sim swarm and the CLI on a local three-master Redis Cluster.

The cluster (three `valkey-server --cluster-enabled yes` on free ports, slots assigned with
ADDSLOTSRANGE and joined with MEET) is started once for this module and stopped at its end.
Every board test of tests/test_board.py runs here again with a `RedisCluster` client.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.cluster

from swarm.board import Board, list_swarms, newest_running
from swarm.config import RedisSettings, connect
from swarm.minds.sim import SimConfig, SimMind
from swarm.task import SwarmState
from swarm.worker import Worker, WorkerConfig
from tests import test_board
from tests.conftest import make_purpose

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from _servers import Cluster, start_cluster, start_server

pytestmark = pytest.mark.slow

# The board suite, collected again in this module, where `client` is the cluster's.
for _name, _test in vars(test_board).items():
    if _name.startswith("test_") and callable(_test):
        globals()[_name] = _test


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    found = start_cluster(3)
    yield found
    found.stop()


@pytest.fixture(scope="module")
def cluster_client(cluster: Cluster) -> Iterator[Any]:
    client = connect(RedisSettings(url=cluster.url))
    assert isinstance(client, redis.cluster.RedisCluster)  # auto-detected from one node
    yield client
    client.close()


@pytest.fixture
def client(cluster_client: Any) -> Any:
    """Overrides conftest's `client`: the board suite above runs on the cluster."""
    return cluster_client


def node_of(client: Any, swarm_id: str) -> str:
    node = client.get_node_from_key(f"swarm:{{{swarm_id}}}:meta")
    return f"{node.host}:{node.port}"


def ids_on_distinct_nodes(client: Any, n: int, prefix: str) -> list[str]:
    """Swarm ids whose hash tags live on `n` different masters."""
    found: dict[str, str] = {}
    i = 0
    while len(found) < n:
        sid = f"{prefix}-{i}"
        found.setdefault(node_of(client, sid), sid)
        i += 1
    return list(found.values())


def leaves(titles: list[str], branch: int, levels: int) -> list[str]:
    for _ in range(levels):
        titles = [f"{t}.{i}" for t in titles for i in range(1, branch + 1)]
    return [f"leaf {t}" for t in titles]


def test_cluster_has_three_masters_sharing_the_slots(cluster_client: Any) -> None:
    masters = {f"{n.host}:{n.port}" for n in cluster_client.get_primaries()}
    assert len(masters) == 3
    slots = {redis.cluster.key_slot(f"swarm:{{s{i}}}:meta".encode()) for i in range(50)}
    assert len({cluster_client.nodes_manager.get_node_from_slot(s).name for s in slots}) == 3


def test_every_key_of_a_swarm_shares_one_slot(cluster_client: Any) -> None:
    board = Board.seed(cluster_client, make_purpose(tasks=("a", "b")))
    k = board.keys
    names = [k.meta, k.open, k.traits, k.leases, k.fence, k.events, k.workers, k.task("1")]
    names += [k.children("0"), k.worker("w")]
    assert len({redis.cluster.key_slot(n.encode()) for n in names}) == 1


def test_two_swarms_on_different_nodes_run_side_by_side(cluster_client: Any) -> None:
    """Workers (threads, one RedisCluster client) finish two swarms that live on two masters."""
    a, b = ids_on_distinct_nodes(cluster_client, 2, "shard")
    assert node_of(cluster_client, a) != node_of(cluster_client, b)
    boards = [
        Board.seed(cluster_client, make_purpose(tasks=("x", "y")), swarm_id=sid) for sid in (a, b)
    ]
    assert newest_running(cluster_client) == b  # swarm:index, untagged, on a third slot
    mind = SimMind(SimConfig(branch=2, depth=3))
    workers = [
        Worker(cluster_client, mind, WorkerConfig(swarm_id=bd.id, burst=True, slots=2))
        for bd in boards
        for _ in range(2)
    ]
    threads = [threading.Thread(target=w.run, kwargs={"install_signals": False}) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
        assert not t.is_alive(), "a worker did not finish"
    for bd in boards:
        assert bd.state() is SwarmState.DONE
        assert (bd.answer() or "").split(" | ") == leaves(["x", "y"], 2, 2)
        st = bd.status()
        assert st["by_state"]["done"] == st["tasks"] == 1 + 2 + 4 + 8
        completed = Counter(f["task"] for _, f in bd.events(count=1000) if f["type"] == "completed")
        assert set(completed.values()) == {1}
    assert {a, b} <= set(list_swarms(cluster_client))
    assert newest_running(cluster_client) not in (a, b)


def test_pipelines_and_reads_work_across_the_cluster(cluster_client: Any) -> None:
    """The non-transactional pipelines (context, tasks, heartbeat) route to the swarm's node."""
    board = Board.seed(cluster_client, make_purpose(tasks=("a", "b", "c")))
    claim = board.claim("w1").claim
    assert claim is not None
    ctx = board.context(claim.task)
    assert [t.id for t in ctx.ancestry] == ["0"]
    assert len(board.children("0")) == 3
    board.heartbeat("w1", {"host": "h"}, ttl_s=10)
    assert board.workers_alive() == 1
    board.forget_worker("w1")
    assert board.workers_alive() == 0


def test_cli_seed_worker_result_on_the_cluster(cluster: Cluster, tmp_path: Path) -> None:
    """`swarm` commands given any one node's URL detect the cluster and just work."""
    purpose = tmp_path / "p.md"
    purpose.write_text("---\nsandbox: none\n---\n# On a cluster\n\n## Tasks\n\n- a\n- b\n")
    swarm = [sys.executable, "-m", "swarm"]
    url = cluster.urls[1]
    sid = subprocess.run(
        [*swarm, "seed", str(purpose), "--redis", url],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    subprocess.run(
        [*swarm, "worker", "--redis", cluster.urls[2], "--swarm", sid, "--burst", "--no-code",
         "--mind", "sim:branch=2,depth=2"],
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    answer = subprocess.run(
        [*swarm, "result", "--redis", url, "--swarm", sid],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    assert answer.split(" | ") == leaves(["a", "b"], 2, 1)


# -------------------------------------------------------------- RQ's exec queue


def test_exec_queue_on_a_cluster_is_refused_clearly(cluster: Cluster) -> None:
    client_mod = pytest.importorskip("swarm.sandbox.client")
    with pytest.raises(client_mod.UnsupportedRedis, match=r"Cluster.*SWARM_EXEC_REDIS_URL"):
        client_mod.exec_connection(RedisSettings(url=cluster.url))


def test_executor_command_on_a_cluster_exits_with_one_line(cluster: Cluster) -> None:
    pytest.importorskip("swarm.sandbox.executor")
    done = subprocess.run(
        [sys.executable, "-m", "swarm", "executor", "--redis", cluster.url, "--burst"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "Redis Cluster" in done.stderr and "Traceback" not in done.stderr


def test_worker_code_on_a_cluster_without_exec_url_tells_the_mind(cluster: Cluster) -> None:
    client_mod = pytest.importorskip("swarm.sandbox.client")
    runner = client_mod.runner_factory(RedisSettings(url=cluster.url).for_exec())("any")
    out = runner.run("print(1)", 5.0)
    assert "Redis Cluster" in out.error


def test_exec_url_moves_the_queue_off_the_cluster(cluster: Cluster) -> None:
    client_mod = pytest.importorskip("swarm.sandbox.client")
    plain = start_server()
    try:
        settings = RedisSettings(url=cluster.url, exec_url=plain.url)
        conn = client_mod.exec_connection(settings.for_exec())
        assert conn.ping()
        conn.close()
    finally:
        plain.stop()
