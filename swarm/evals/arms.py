"""An arm of an evaluation: how a purpose is run (one call, or N workers) and with which mind."""

from __future__ import annotations

from dataclasses import dataclass

MAX_WORKERS = 64


class ArmError(ValueError):
    """An arm that cannot be parsed; one line."""


@dataclass(frozen=True)
class Arm:
    """`single:MIND`: one call with the whole purpose (the root answered directly: no split,
    no re-check). `workers=N:MIND`: N workers (slots of one worker sharing one mind) run the
    swarm as usual, splits and re-checks included."""

    label: str  # as given on the command line; names the arm in results and reports
    mind: str
    workers: int = 1
    single: bool = False


MAX_LABEL = 40


def parse_arm(text: str) -> Arm:
    """`single:MIND`, `workers=N:MIND`, each optionally named: `NAME@workers=8:MIND` (the
    name labels the arm in results and reports; by default the whole text does)."""
    head, sep, mind = text.partition(":")
    label = text
    if "@" in head:
        label, head = head.split("@", 1)
        if not label or len(label) > MAX_LABEL or not label.isprintable():
            raise ArmError(f"arm {text[:80]!r}: a name before '@' is 1 to {MAX_LABEL} characters")
    if not sep or not mind.strip():
        raise ArmError(f"arm {text[:80]!r}: write single:MIND or workers=N:MIND")
    if head == "single":
        return Arm(label, mind, 1, True)
    name, eq, raw = head.partition("=")
    if name != "workers" or not eq:
        raise ArmError(f"arm {text[:80]!r}: write single:MIND or workers=N:MIND")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_WORKERS:
        raise ArmError(f"arm {text[:80]!r}: workers must be a whole number from 1 to {MAX_WORKERS}")
    return Arm(label, mind, int(raw), False)


def with_suite_answers(arms: list[Arm], suite: str) -> list[Arm]:
    """A scripted arm without `answers=` answers from the suite being run."""
    out = []
    for arm in arms:
        kind, _, options = arm.mind.partition(":")
        if kind == "scripted" and "answers=" not in options:
            mind = f"scripted:{options + ',' if options else ''}answers={suite}"
            arm = Arm(arm.label, mind, arm.workers, arm.single)
        out.append(arm)
    return out


def parse_arms(texts: tuple[str, ...] | list[str]) -> list[Arm]:
    arms = [parse_arm(t) for t in texts]
    labels = [a.label for a in arms]
    if len(set(labels)) != len(labels):
        raise ArmError("two arms have the same name")
    if not arms:
        raise ArmError("give at least one --arm (single:MIND or workers=N:MIND)")
    return arms
