"""DisabledSandbox: the `none` choice — code is never run, and the mind is told so."""

from __future__ import annotations

from swarm.protocol import ExecOutput


class DisabledSandbox:
    name = "none"

    def run(self, code: str, timeout_s: float) -> ExecOutput:
        return ExecOutput(error="code execution is disabled here (sandbox: none)")

    def close(self) -> None:
        """Nothing to release."""
