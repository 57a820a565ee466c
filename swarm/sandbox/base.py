"""The Sandbox protocol: somewhere model-written code can run without hurting anyone."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from swarm.protocol import ExecOutput


class SandboxUnavailable(RuntimeError):
    """The chosen sandbox cannot run on this machine; the message says how to fix it."""


@runtime_checkable
class Sandbox(Protocol):
    name: str

    def run(self, code: str, timeout_s: float) -> ExecOutput: ...

    def close(self) -> None: ...
