"""`swarm eval` with the scripted mind, whose every answer is known: the report's arithmetic
checked exactly, equal budgets, and a resume after a real interruption (SIGKILL)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from swarm import keys
from swarm.evals.arms import ArmError, parse_arm, parse_arms, with_suite_answers
from swarm.evals.report import summarise, write_json, write_png
from swarm.evals.results import ResultsError, ResultsFile, RunResult
from swarm.evals.runner import EvalPlan, Evaluation
from swarm.evals.suite import SuiteError, load_suite
from swarm.minds import make_mind
from swarm.minds.scripted import first_right

ROOT = Path(__file__).resolve().parent.parent

PURPOSES = {
    "a-sum": ("Sum", "Add 2 and 3.", "5", "6"),
    "b-word": ("Word", "Name the colour of the sky.", "blue", "green"),
    "c-count": ("Count", "How many legs has a spider?", "8", "6"),
}


TITLES = tuple(title for title, *_ in PURPOSES.values())


def make_suite(folder: Path, retries: int = 2) -> Path:
    folder.mkdir()
    answers = {}
    for name, (title, text, right, wrong) in PURPOSES.items():
        expected = right if not right.isdigit() else int(right)
        check = json.dumps({"expected": expected, "retries": retries})
        (folder / f"{name}.md").write_text(f"---\ncheck: {check}\n---\n# {title}\n\n{text}\n")
        answers[title] = {"right": right, "wrong": wrong}
    (folder / "answers.json").write_text(json.dumps(answers))
    (folder / "README.md").write_text("not a purpose")
    return folder


def evaluation(client: Any, out: Path) -> Evaluation:
    return Evaluation(
        client=client,
        results=ResultsFile(out / "runs.jsonl"),
        make_mind=lambda arm: make_mind(arm.mind, slots=arm.workers),
    )


def test_report_arithmetic_is_exact(redis_url: str, tmp_path: Path) -> None:
    suite = make_suite(tmp_path / "suite")
    mind = f"scripted:answers={suite},accuracy=0.5,seed=4,tokens=10"
    arms = parse_arms([f"single:{mind}", f"workers=2:{mind},split=2"])
    plan = EvalPlan(items=load_suite(suite), arms=arms, seeds=4)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    runs = evaluation(client, tmp_path / "out").run(plan)
    assert len(runs) == 3 * 2 * 4

    # What the scripted mind will do is known in advance: its first answer is right where
    # first_right says so; a wrong one is sent back and fixed (fix=1) in the workers arm;
    # each step costs 10 tokens: single 1 step; workers split + 2 parts + synthesis (+ 1).
    expected: dict[tuple[str, str, int], tuple[bool, int, int]] = {}
    for name, (title, *_rest) in PURPOSES.items():
        for seed in range(4):
            right = first_right(0.5, 4, seed, title, 0, TITLES)
            expected[(name, arms[0].label, seed)] = (right, 10, 1)
            expected[(name, arms[1].label, seed)] = (True, 40 if right else 50, 1 if right else 2)
    got = {(r.purpose, r.arm, r.seed): (r.passed, r.tokens, r.checks) for r in runs}
    assert got == expected
    assert {r.budget for r in runs} == {500_000}  # each purpose's own, both arms alike
    assert all(r.outcome == "answered" for r in runs)

    report = summarise(runs)
    single, workers = report.arms
    first_rights = sum(v[0] for k, v in expected.items() if k[1] == arms[0].label)
    assert first_rights == 4 * 1  # floor(0.5 x 3) purposes right in each of the 4 seeds
    assert (single.runs, single.passed, single.fixed) == (12, first_rights, 0)
    assert (workers.runs, workers.passed, workers.fixed) == (12, 12, 12 - first_rights)
    assert workers.rejected == 12 - first_rights and single.rejected == 12 - first_rights
    assert single.pass_rate == first_rights / 12
    by_seed = [sum(expected[(n, arms[0].label, s)][0] for n in PURPOSES) / 3 for s in range(4)]
    assert single.pass_rate_by_seed.mean == pytest.approx(sum(by_seed) / 4)
    assert single.pass_rate_by_seed.lo == min(by_seed) and single.pass_rate_by_seed.hi == max(
        by_seed
    )
    tokens = [expected[k][1] for k in expected if k[1] == arms[1].label]
    assert workers.tokens.mean == pytest.approx(sum(tokens) / 12)
    mean = sum(tokens) / 12
    assert workers.tokens.sd == pytest.approx(math.sqrt(sum((t - mean) ** 2 for t in tokens) / 11))
    cell = next(c for c in report.cells if c.purpose == "a-sum" and c.arm == arms[1].label)
    assert (cell.runs, cell.passed) == (4, 4)

    write_json(report, tmp_path / "report.json")
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["arms"][0]["passed"] == first_rights and data["arms"][1]["pass_rate"] == 1.0
    assert [p["purpose"] for p in data["purposes"]] == list(PURPOSES)
    pytest.importorskip("matplotlib")
    write_png(report, tmp_path / "report.png")
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_spent_budget_ends_with_the_last_answer_failing(redis_url: str, tmp_path: Path) -> None:
    suite = make_suite(tmp_path / "suite")
    mind = f"scripted:answers={suite},accuracy=0,split=2,tokens=10"
    plan = EvalPlan(load_suite(suite), parse_arms([f"workers=2:{mind}"]), seeds=1, budget=35)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    runs = evaluation(client, tmp_path / "out").run(plan)
    # split 10 + parts 20 = 30 < 35; the wrong synthesis brings it to 40: no room to re-check
    assert {(r.passed, r.tokens, r.checks, r.verdict, r.budget) for r in runs} == {
        (False, 40, 1, "fail", 35)
    }


def test_single_means_one_call(redis_url: str, tmp_path: Path) -> None:
    suite = make_suite(tmp_path / "suite")
    mind = f"scripted:answers={suite},accuracy=0,split=3"
    plan = EvalPlan(load_suite(suite), parse_arms([f"single:{mind}"]), seeds=1)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    runs = evaluation(client, tmp_path / "out").run(plan)
    assert {(r.passed, r.tokens, r.tasks, r.checks) for r in runs} == {(False, 10, 1, 1)}
    assert not client.zrange(keys.INDEX, 0, -1)  # every run's swarm removed


def test_a_scripted_arm_without_answers_knows_the_suites_expected_values(
    redis_url: str, tmp_path: Path
) -> None:
    suite = make_suite(tmp_path / "suite")
    (suite / "answers.json").unlink()  # only the checks' expected values are known
    arms = with_suite_answers(parse_arms(["workers=1:scripted:accuracy=0.5,seed=2"]), str(suite))
    assert arms[0].mind == f"scripted:accuracy=0.5,seed=2,answers={suite}"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    runs = evaluation(client, tmp_path / "out").run(EvalPlan(load_suite(suite), arms, seeds=2))
    assert all(r.passed for r in runs)  # fixed after a re-check where the first was wrong
    wrong_first = sum(not first_right(0.5, 2, r.seed, r.title, 0, TITLES) for r in runs)
    assert sum(r.checks == 2 for r in runs) == wrong_first


def test_arms_and_suites_refuse_bad_input(tmp_path: Path) -> None:
    assert parse_arm("workers=8:openai:http://h:1/v1#m").mind == "openai:http://h:1/v1#m"
    for bad in ("single", "workers=0:sim", "workers=x:sim", "team=2:sim", "single:"):
        with pytest.raises(ArmError):
            parse_arm(bad)
    named = parse_arm("eight@workers=8:sim:seed=2")
    assert (named.label, named.workers, named.mind) == ("eight", 8, "sim:seed=2")
    with pytest.raises(ArmError, match="same name"):
        parse_arms(["single:sim", "single:sim"])
    with pytest.raises(ArmError, match="same name"):
        parse_arms(["a@single:sim", "a@workers=2:sim"])
    with pytest.raises(SuiteError, match="no purpose files"):
        load_suite(tmp_path)
    (tmp_path / "x.md").write_text("# No check\n")
    with pytest.raises(ValueError, match="no check"):
        load_suite(tmp_path)


def run(n: int, passed: bool = True) -> RunResult:
    return RunResult("p", "P", "arm", n, 100, passed, "pass", 1, "answered", 10, 1, 0.5, "a", "s")


def test_results_file_drops_a_torn_line_and_refuses_others(tmp_path: Path) -> None:
    results = ResultsFile(tmp_path / "runs.jsonl")
    results.append(run(0))
    results.append(run(1))
    with open(results.path, "ab") as f:
        f.write(b'{"purpose": "p", "arm"')  # killed mid-write
    assert [r.seed for r in results.load()] == [0, 1]
    assert results.path.read_bytes().endswith(b"\n")  # the torn tail is cut
    results.append(run(2))
    assert [r.seed for r in results.load()] == [0, 1, 2]
    with open(results.path, "ab") as f:
        f.write(b'{"purpose": 3}\n')
    with pytest.raises(ResultsError, match=r"runs\.jsonl:4: not a run record"):
        results.load()


def test_resume_after_a_real_interruption(redis_url: str, tmp_path: Path) -> None:
    """Kill `swarm eval` mid-run (SIGKILL: nothing of it cleans up), run it again: every run
    that had finished is kept as it was, the rest are done once, and the swarm the killed
    run left behind is removed."""
    suite = make_suite(tmp_path / "suite")
    out = tmp_path / "out"
    mind = f"scripted:answers={suite},accuracy=0.5,think=0.05"
    cmd = [
        sys.executable, "-m", "swarm", "eval", str(suite), "--arm", f"single:{mind}",
        "--arm", f"workers=2:{mind},split=2", "--seeds", "2", "--no-code", "-o", str(out),
        "--redis", redis_url,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    runs = out / "runs.jsonl"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    pending = out / "pending.json"

    def mid_run() -> bool:  # 3 runs finished, and a fourth run's swarm on the board
        if not runs.exists() or runs.read_bytes().count(b"\n") < 3 or not pending.exists():
            return False
        try:
            sid = json.loads(pending.read_text())["swarm"]
        except ValueError:
            return False
        return client.zscore(keys.INDEX, sid) is not None

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not mid_run():
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    before = runs.read_bytes()
    finished = before.count(b"\n")
    assert 3 <= finished < 12, "the eval finished or never started before the kill"
    left = json.loads(pending.read_text())["swarm"]
    assert client.zscore(keys.INDEX, left) is not None  # the killed run's swarm is still there

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"resuming: {finished} of 12 runs already finished" in again.stderr
    after = runs.read_bytes()
    assert after.startswith(before)  # what had finished is untouched
    records = [json.loads(line) for line in after.splitlines()]
    assert len(records) == 12
    assert len({(r["purpose"], r["arm"], r["seed"]) for r in records}) == 12
    assert client.zscore(keys.INDEX, left) is None and not (out / "pending.json").exists()
    assert not client.zrange(keys.INDEX, 0, -1)
    report = json.loads((out / "report.json").read_text())
    assert sum(a["runs"] for a in report["arms"]) == 12
    # a third time: nothing left to run, the report again, as JSON on stdout
    third = subprocess.run([*cmd, "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert third.returncode == 0 and json.loads(third.stdout) == report
    assert runs.read_bytes() == after


@pytest.mark.parametrize("accuracy", [0.0, 0.3, 0.7, 0.75, 1.0])
def test_scripted_accuracy_is_exact_in_every_seed(accuracy: float) -> None:
    titles = [f"purpose {i}" for i in range(20)]
    for run_seed in range(5):
        right = [first_right(accuracy, 1, run_seed, t, 0, titles) for t in titles]
        assert sum(right) == math.floor(accuracy * 20 + 1e-9)
    rotated = {tuple(first_right(0.5, 1, s, t, 0, titles) for t in titles) for s in range(8)}
    assert len(rotated) > 1  # which purposes are right changes with the seed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--arm", "team=2:sim"], "write single:MIND or workers=N:MIND"),
        (["--arm", "single:scripted:accuracy=2"], "need 0 <= accuracy <= 1"),
        (["--arm", "single:scripted:answers=/nonexistent.json"], "cannot read /nonexistent.json"),
        (["--arm", "single:gpt:x"], "unknown mind 'gpt'"),
    ],
)
def test_eval_command_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    suite = make_suite(tmp_path / "suite")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "swarm", "eval", str(suite), "-o", str(out), *args],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and message in proc.stderr
    assert not out.exists()  # nothing started, nothing written


def test_one_eval_per_results_folder(tmp_path: Path) -> None:
    from swarm import system

    suite = make_suite(tmp_path / "suite")
    out = tmp_path / "out"
    out.mkdir()
    mind = f"scripted:answers={suite}"
    with system.exclusive_lock(out / "eval.lock"):  # as a running eval holds it
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "swarm",
                "eval",
                str(suite),
                "-o",
                str(out),
                "--arm",
                f"single:{mind}",
            ],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 1 and "another `swarm eval` is writing to" in proc.stderr
    assert not (out / "runs.jsonl").exists()
