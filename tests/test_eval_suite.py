"""The shipped suite (evals/suite): every purpose parses, has a check, and its check passes
the known right answer and fails the known wrong one (python checks in the real jail)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarm.check import CheckKind, Verdict, run_check
from swarm.evals.suite import SuiteItem, load_suite
from swarm.sandbox.limits import ExecLimits

SUITE = Path(__file__).resolve().parent.parent / "evals" / "suite"
ITEMS = load_suite(SUITE)
ANSWERS = json.loads((SUITE / "answers.json").read_text())


def test_the_suite_is_big_and_varied_enough() -> None:
    assert len(ITEMS) >= 20
    kinds = {item.purpose.check.kind for item in ITEMS if item.purpose.check}
    assert kinds == set(CheckKind)
    assert set(ANSWERS) == {item.purpose.title for item in ITEMS}


@pytest.fixture(scope="module")
def jail() -> Iterator[object]:
    if shutil.which("bwrap") is None:
        pytest.skip("needs bubblewrap")
    from swarm.sandbox.local import LocalSandbox

    box = LocalSandbox(ExecLimits(timeout_s=20, cpu_s=10, memory_mb=512))
    yield box
    box.close()


@pytest.mark.parametrize("item", ITEMS, ids=[i.name for i in ITEMS])
def test_check_passes_the_right_answer_and_fails_the_wrong_one(
    item: SuiteItem, jail: object
) -> None:
    check = item.purpose.check
    assert check is not None
    known = ANSWERS[item.purpose.title]
    right = run_check(check, known["right"], jail.run)  # type: ignore[attr-defined]
    wrong = run_check(check, known["wrong"], jail.run)  # type: ignore[attr-defined]
    assert right.verdict is Verdict.PASS, right.output
    assert wrong.verdict is Verdict.FAIL, wrong.output
    # the feedback a mind gets never holds the expected value itself
    if check.kind is CheckKind.EXPECTED:
        assert check.expected not in wrong.output
