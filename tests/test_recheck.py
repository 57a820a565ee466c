"""The re-check on the board (a real Redis and fakeredis): a root answer that fails its check
goes back as a synthesize task with the checker's output, within the re-checks and budgets;
and a worker with the scripted mind has a wrong root answer sent back and fixed."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from swarm.board import Board, LeaseLost
from swarm.check import CheckResult, Verdict, parse_check
from swarm.minds.prompts import task_prompt
from swarm.minds.scripted import Known, ScriptedConfig, ScriptedMind
from swarm.protocol import ActionKind, Confidence, ThinkRequest
from swarm.purpose import Budgets, Purpose, Tuning
from swarm.task import Kind, State, SwarmState
from swarm.trace import delete_swarm, export_swarm, to_markdown
from swarm.worker import Worker, WorkerConfig
from tests.conftest import FakeClock

FAIL = CheckResult(Verdict.FAIL, "41 is not the expected number.")
PASS = CheckResult(Verdict.PASS, "the answer equals the expected number")


def checked_purpose(retries: int = 2, max_tokens: int = 1000, max_depth: int = 2) -> Purpose:
    return Purpose(
        title="Add",
        text="# Add\n\nAdd 40 and 2.",
        name="add",
        budgets=Budgets(max_tokens=max_tokens, max_depth=max_depth),
        tuning=Tuning(epsilon=0.0),
        check=parse_check({"expected": 42, "retries": retries}),
    )


@pytest.fixture
def made(client: Any, clock: FakeClock) -> Iterator[Any]:
    boards: list[Board] = []

    def make(purpose: Purpose) -> Board:
        boards.append(Board.seed(client, purpose, clock=clock, rng=random.Random(3)))
        return boards[-1]

    yield make
    for board in boards:
        delete_swarm(client, board.id)


def claim(board: Board, worker: str = "w1") -> Any:
    outcome = board.claim(worker)
    assert outcome.claim is not None, outcome
    return outcome.claim


def types(board: Board) -> list[str]:
    return [e["type"] for _, e in board.events()]


def test_failed_root_answer_goes_back_with_feedback_then_passes(made: Any) -> None:
    board = made(checked_purpose())
    first = claim(board)
    assert board.complete_checked(first, "w1", "41", Confidence.HIGH, FAIL, tokens=5) is True
    root = board.task("0")
    assert (root.state, root.kind, root.result, root.rejected) == (
        State.OPEN, Kind.SYNTHESIZE, "41", 1,
    )  # fmt: skip
    assert root.feedback == FAIL.output and root.tokens == 5
    meta = board.meta()
    assert (meta["state"], meta["checks"], meta["check_verdict"]) == ("running", "1", "fail")
    again = claim(board, "w2")
    assert again.task.feedback == FAIL.output and again.task.result == "41"
    assert board.complete_checked(again, "w2", "42", Confidence.HIGH, PASS, tokens=7) is False
    assert board.state() is SwarmState.DONE
    status = board.status()
    assert status["outcome"] == "answered" and status["tokens"] == 12
    assert status["check"] == {"verdict": "pass", "checks": 2, "output": PASS.output}
    assert board.answer() == "42"
    assert types(board).count("checked") == 2 and types(board).count("sent_back") == 1
    assert types(board).count("completed") == 1  # at most once per task, as before
    checked = [e for _, e in board.events() if e["type"] == "checked"]
    assert [(e["verdict"], e["checks"]) for e in checked] == [("fail", "1"), ("pass", "2")]


def test_out_of_rechecks_the_last_answer_stands_marked_failing(made: Any) -> None:
    board = made(checked_purpose(retries=1))
    assert board.complete_checked(claim(board), "w1", "40", Confidence.LOW, FAIL) is True
    assert board.complete_checked(claim(board), "w1", "41", Confidence.LOW, FAIL) is False
    status = board.status()
    assert (status["state"], status["outcome"]) == ("done", "answered")
    assert status["check"]["verdict"] == "fail" and status["check"]["checks"] == 2
    assert board.answer() == "41"


def test_no_recheck_once_the_token_budget_is_spent(made: Any) -> None:
    board = made(checked_purpose(max_tokens=10))
    assert (
        board.complete_checked(claim(board), "w1", "41", Confidence.LOW, FAIL, tokens=10) is False
    )
    assert board.status()["check"]["verdict"] == "fail" and board.answer() == "41"


def test_an_error_is_recorded_not_sent_back(made: Any) -> None:
    board = made(checked_purpose())
    error = CheckResult(Verdict.ERROR, "no sandbox serves this swarm: the check cannot run")
    assert board.complete_checked(claim(board), "w1", "42", Confidence.LOW, error) is False
    assert board.status()["check"]["verdict"] == "error" and board.state() is SwarmState.DONE


def test_a_resent_post_is_answered_as_the_first_and_a_stale_one_refused(made: Any) -> None:
    board = made(checked_purpose())
    first = claim(board)
    assert board.complete_checked(first, "w1", "41", Confidence.LOW, FAIL) is True
    # redis-py resending the same post: the same reply, nothing applied twice
    assert board.complete_checked(first, "w1", "41", Confidence.LOW, FAIL) is True
    assert board.meta()["checks"] == "1" and board.task("0").rejected == 1
    with pytest.raises(LeaseLost):
        board.complete_checked(first, "w9", "41", Confidence.LOW, FAIL)


def test_a_verdict_on_a_non_root_task_changes_nothing(made: Any) -> None:
    from swarm.protocol import Subtask

    board = made(checked_purpose())
    root = claim(board)
    board.split(root, "w1", [Subtask("part")])
    child = claim(board)
    assert board.complete_checked(child, "w1", "x", Confidence.LOW, FAIL) is False
    assert board.task(child.task.id).state is State.DONE
    assert "checks" not in board.meta()


def test_the_trace_records_each_check(made: Any, client: Any) -> None:
    board = made(checked_purpose())
    board.complete_checked(claim(board), "w1", "41", Confidence.HIGH, FAIL)
    board.complete_checked(claim(board), "w1", "42", Confidence.HIGH, PASS)
    data = export_swarm(client, board.id)
    assert data["check"]["kind"] == "expected number"
    assert [(c["verdict"], c["output"]) for c in data["check"]["history"]] == [
        ("fail", FAIL.output), ("pass", PASS.output),
    ]  # fmt: skip
    assert "42" not in data["check"]["kind"]
    md = to_markdown(data)
    assert "## Check" in md and "fail" in md and FAIL.output in md


def test_the_mind_sees_the_feedback(made: Any) -> None:
    board = made(checked_purpose())
    board.complete_checked(claim(board), "w1", "41", Confidence.HIGH, FAIL)
    again = claim(board)
    request = ThinkRequest(
        purpose="Add 40 and 2.", task=again.task, allowed=frozenset({ActionKind.ANSWER})
    )
    prompt = task_prompt(request)
    assert "failed its check" in prompt and "41" in prompt and FAIL.output in prompt


# ---------------------------------------------------------------- a worker, for real


def scripted(accuracy: float, fix: bool, split: int = 0) -> ScriptedMind:
    config = ScriptedConfig(answers="-", accuracy=accuracy, fix=fix, split=split, tokens=10)
    return ScriptedMind(config, {"Add": Known("42", "41")})


def run_worker(client: Any, board: Board, mind: ScriptedMind, slots: int = 1) -> None:
    config = WorkerConfig(swarm_id=board.id, slots=slots, burst=True, poll_s=0.02, grace_s=0)
    Worker(client, mind, config, rng=random.Random(1)).run(install_signals=False)


@pytest.mark.parametrize("split", [0, 2])
def test_worker_has_a_wrong_root_answer_sent_back_and_fixed(
    client: Any, made: Any, split: int
) -> None:
    board = Board.seed(client, checked_purpose(), rng=random.Random(3))
    try:
        run_worker(client, board, scripted(accuracy=0.0, fix=True, split=split), slots=2)
        status = board.status()
        assert board.answer() == "42" and status["outcome"] == "answered"
        assert status["check"]["verdict"] == "pass" and status["check"]["checks"] == 2
        # every step costs 10: [split, parts,] the wrong answer, the fixed one
        assert status["tokens"] == 10 * (2 + (1 + split if split else 0))
    finally:
        delete_swarm(client, board.id)


def test_worker_that_cannot_fix_ends_with_the_answer_marked_failing(client: Any) -> None:
    board = Board.seed(client, checked_purpose(retries=2), rng=random.Random(3))
    try:
        run_worker(client, board, scripted(accuracy=0.0, fix=False))
        status = board.status()
        assert board.answer() == "41" and status["check"] == {
            "verdict": "fail", "checks": 3, "output": FAIL.output,
        }  # fmt: skip
        assert status["tokens"] == 30
    finally:
        delete_swarm(client, board.id)


def test_cli_worker_process_status_and_result_show_the_check(redis_url: str, tmp_path: Any) -> None:
    """A real `swarm worker` process with the scripted mind: the wrong answer is sent back
    and fixed; `status` and `result --json` say how the answer fared."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    folder = Path(str(tmp_path))
    (folder / "add.md").write_text(
        "---\ncheck: {expected: 42, retries: 1}\n---\n# Add\n\nAdd 40 and 2.\n"
    )
    (folder / "answers.json").write_text(json.dumps({"Add": {"right": "42", "wrong": "41"}}))
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root), "SWARM_REDIS_URL": redis_url}

    def swarm(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "swarm", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    sid = swarm("seed", str(folder / "add.md")).stdout.strip()
    mind = f"scripted:answers={folder},accuracy=0,fix=1"
    worker = swarm("worker", "--swarm", sid, "--burst", "--no-code", "--mind", mind)
    assert worker.returncode == 0, worker.stderr
    status = swarm("status", "--swarm", sid).stdout
    assert "check pass after 2 check(s)" in status
    result = json.loads(swarm("result", "--json", "--swarm", sid).stdout)
    assert (result["answer"], result["check"]) == ("42", "pass")


@pytest.mark.slow
@pytest.mark.skipif(__import__("shutil").which("bwrap") is None, reason="needs bubblewrap")
def test_python_check_through_a_real_executor_sends_back_and_fixes(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole path: a worker's root answer, its python check run by an RQ executor in the
    bubblewrap jail, the check's own message as the feedback, the fixed answer passing."""
    import os
    import subprocess
    import sys
    import time
    import uuid

    import redis as redis_py

    from swarm.config import redis_settings
    from swarm.sandbox.client import executors_serving, runner_factory

    queue = f"swarm-exec-check-{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("SWARM_EXEC_QUEUE", queue)
    executor = subprocess.Popen(
        [sys.executable, "-m", "swarm", "executor", "--redis", redis_url, "--sandbox", "local"],
        env={**os.environ, "SWARM_EXEC_QUEUE": queue},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis_py.Redis.from_url(redis_url, decode_responses=True)
    source = (
        "def check(answer):\n"
        "    return answer.strip() == str(6 * 7), 'recount: ' + answer + ' is off'\n"
    )
    purpose = Purpose(
        title="Add",
        text="# Add\n\nMultiply 6 by 7.",
        tuning=Tuning(epsilon=0.0),
        check=parse_check({"python": source, "retries": 1}),
    )
    board = Board.seed(client, purpose)
    try:
        deadline = time.monotonic() + 20
        while not executors_serving(redis_py.Redis.from_url(redis_url), queue):
            assert time.monotonic() < deadline and executor.poll() is None, "no executor"
            time.sleep(0.05)
        settings = redis_settings(redis_url, env={})
        assert settings is not None
        mind = scripted(accuracy=0.0, fix=True)
        config = WorkerConfig(swarm_id=board.id, burst=True, poll_s=0.02)
        Worker(client, mind, config, code_runner=runner_factory(settings)).run(
            install_signals=False
        )
        status = board.status()
        assert board.answer() == "42" and status["check"]["verdict"] == "pass"
        checked = [e for _, e in board.events() if e["type"] == "checked"]
        assert [e["verdict"] for e in checked] == ["fail", "pass"]
        assert checked[0]["output"] == "recount: 41 is off"  # the check's words, from the jail
    finally:
        delete_swarm(client, board.id)
        executor.terminate()
        executor.wait(20)


def test_watch_shows_the_check(made: Any, client: Any) -> None:
    from rich.console import Console

    from swarm.watch import WatchState, render, snapshot

    board = made(checked_purpose())
    board.complete_checked(claim(board), "w1", "41", Confidence.HIGH, FAIL)
    board.complete_checked(claim(board), "w1", "42", Confidence.HIGH, PASS)
    snap = snapshot(client, board.id, WatchState(), height=20)
    assert (snap.check, snap.checks) == ("pass", 2)
    console = Console(width=100, record=True)
    console.print(render(snap, 100, 20))
    assert "check pass (2)" in console.export_text()


def test_swarm_up_on_the_checked_example_says_how_the_answer_fared(
    redis_url: str, tmp_path: Any
) -> None:
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from swarm.purpose import load_purpose

    root = Path(__file__).resolve().parent.parent
    example = root / "examples" / "checked.md"
    purpose = load_purpose(example)
    assert purpose.check is not None and "264.7" not in purpose.text  # the block is cut
    answers = Path(str(tmp_path)) / "answers.json"
    answers.write_text(json.dumps({purpose.title: {"right": "264.70", "wrong": "248.70"}}))
    mind = f"scripted:answers={answers},accuracy=0,split=3"
    proc = subprocess.run(
        [sys.executable, "-m", "swarm", "up", str(example), "--redis", redis_url, "-q",
         "--workers", "2", "--mind", mind, "--no-code"],
        env={**os.environ, "PYTHONPATH": str(root), "SWARM_HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "264.70"
    assert "check pass after 2 check(s)" in proc.stderr


def test_the_dashboard_payload_carries_the_check(made: Any, clock: FakeClock) -> None:
    pytest.importorskip("starlette")
    from swarm.dashboard import view

    board = made(checked_purpose())
    board.complete_checked(claim(board), "w1", "41", Confidence.HIGH, FAIL)
    data = view.Reader(board.client, board.id, clock=clock).read()
    assert (data["check"], data["checks"], data["answer"]) == ("fail", 1, None)
    board.complete_checked(claim(board), "w1", "42", Confidence.HIGH, PASS)
    data = view.Reader(board.client, board.id, clock=clock).read()
    assert (data["check"], data["checks"], data["answer"]) == ("pass", 2, "42")
