"""A `swarm worker` process on a real model whose prefill outlasts the lease: renewed on time,
never reaped, and out soon after SIGTERM (scripts/check_heartbeat.py, CI-sized).

The `small` model with one thread prefills the purpose (2,048 tokens, half the context) for
longer than the 6 s lease (seconds on a fast core, minutes on a busy machine). The mind's
calls are cut to a quarter second (`chunk_s`), in scale with that short lease. Before the
onnx mind chunked its prefill, this worker renewed nothing for the whole prefill, was
reaped, and took minutes to exit after SIGTERM (bench/results/check_heartbeat_*before.json).
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import redis
from conftest_models import small_model  # noqa: F401  (a fixture)

from swarm.trace import delete_swarm

ROOT = Path(__file__).resolve().parent.parent


def check_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "check_heartbeat", ROOT / "scripts" / "check_heartbeat.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("engine", ["genai", "batch"])
def test_a_worker_thinking_past_its_lease_keeps_it_and_stops_on_sigterm(
    small_model: Path,  # noqa: F811
    redis_url: str,
    engine: str,
) -> None:
    script = check_script()
    args = argparse.Namespace(
        lease=6.0,
        grace=1.0,
        threads=1,
        slots=1,
        context=4096,
        words=1400,
        term_after=15.0,  # two and a half leases: renewed a few times, then stopped mid-step
        load_timeout=120.0,
        checkout=None,
        chunk_s=0.25,
        verbose=False,
        engine=engine,  # genai holds the GIL through each call; batch's ONNX Runtime does not
    )
    result = script.check(args, small_model, redis_url)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    delete_swarm(client, result["swarm"])
    assert result["renewals"] >= 4, result
    # The script's bound is half the lease; on a machine loaded by other jobs a renewal
    # can come a second late, so the test keeps some of the lease in hand instead.
    assert result["longest_renewal_gap_s"] < 0.75 * args.lease, result["renewal_gaps_s"]
    assert result["reaps_while_alive"] == 0, result
    assert result["sigterm_to_exit_s"] < args.grace + 10 and result["exit_code"] == 0, result
    # Stopped mid-step, it gave the task back rather than leaving it to the lease; a step
    # that posted between the script's last look and the signal is the other way out (read
    # from the events after the exit, so the race with SIGTERM cannot fail the test).
    assert result["released"] or result["posted"], result
