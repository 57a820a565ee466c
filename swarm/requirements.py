"""What a task needs of the worker that takes it, and what a worker offers (section 6a).

A task may require a minimum **strength** and **code** execution; a worker publishes its
strength (a small integer class: how capable its model is, set by `swarm worker --strength`)
and whether it can run code. The claim rule never gives a worker a task it does not meet.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_STRENGTH = 9  # strengths are 0..9: a handful of classes, not a score

# A worker's strength when none is given, by mind. The sim mind is a test double, so it
# ranks lowest; onnx runs a small local model (Phi-3-mini's class); an OpenAI-compatible
# server usually serves a larger model than fits a laptop. A mind not listed gets 1. These
# are orderings, not measurements: give `--strength` for anything that differs.
DEFAULT_STRENGTH = {"sim": 1, "onnx": 2, "openai": 3}


class InvalidStrength(ValueError):
    """A strength outside 0..9 or not a whole number: one line for the user."""


def check_strength(value: object, what: str = "strength") -> int:
    """A strength as given (an int, or text from a flag or the environment), checked."""
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) > MAX_STRENGTH:
        shown = text[:20].encode("ascii", "replace").decode()
        raise InvalidStrength(f"invalid {what} '{shown}': a whole number from 0 to {MAX_STRENGTH}")
    return int(text)


def default_strength(mind_name: str) -> int:
    return DEFAULT_STRENGTH.get(mind_name, 1)


@dataclass(frozen=True)
class Requirements:
    """What a task needs: a worker at least this strong, and one that can run code."""

    min_strength: int = 0
    needs_code: bool = False

    def met_by(self, strength: int, code: bool) -> bool:
        return strength >= self.min_strength and (code or not self.needs_code)

    def describe(self) -> str:
        parts = [f"strength >= {self.min_strength}"] if self.min_strength else []
        return ", ".join([*parts, "code"] if self.needs_code else parts) or "nothing"
