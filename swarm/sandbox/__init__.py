"""Where model-written code runs: an E2B micro-VM or a local bubblewrap jail
(docs/architecture.md section 9).

`make_sandbox` picks one; `client.ExecClient` sends code to an executor through RQ;
`executor.run_executor` is the RQ side. Backends are imported only when chosen.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from swarm import system
from swarm.sandbox.base import Sandbox, SandboxUnavailable
from swarm.sandbox.limits import ExecLimits

KINDS = ("auto", "local", "e2b", "none")

__all__ = ["KINDS", "ExecLimits", "Sandbox", "SandboxUnavailable", "make_sandbox", "resolve_kind"]


def resolve_kind(kind: str, env: Mapping[str, str] = os.environ) -> str:
    """`auto` is E2B when E2B_API_KEY is set, else the local jail."""
    if kind not in KINDS:
        raise ValueError(f"unknown sandbox {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "auto":
        return "e2b" if env.get("E2B_API_KEY") else "local"
    return kind


def make_sandbox(
    kind: str, limits: ExecLimits | None = None, env: Mapping[str, str] = os.environ
) -> Sandbox:
    """The sandbox `kind` names, ready to run; SandboxUnavailable says why one cannot run here."""
    chosen = resolve_kind(kind, env)
    if chosen == "e2b":
        from swarm.sandbox.e2b import E2BSandbox

        return E2BSandbox(limits, api_key=env.get("E2B_API_KEY"))
    if chosen == "local":
        if not system.LOCAL_JAIL:
            raise SandboxUnavailable(
                "the local jail needs Linux (bubblewrap); run the executor on a Linux machine, "
                "or use --sandbox e2b"
            )
        from swarm.sandbox.local import LocalSandbox

        return LocalSandbox(limits)
    from swarm.sandbox.disabled import DisabledSandbox

    return DisabledSandbox()
