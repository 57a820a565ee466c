"""The local jail served to the tests by an unprivileged uid (the mode a non-root executor runs
in): started by tests/test_sandbox_local.py through setpriv, it reads one JSON request per line
on stdin and writes one ExecOutput per line on stdout.

argv: the ExecLimits as JSON. The first line out is `ready`, or `unavailable: <why>`.
"""

from __future__ import annotations

import dataclasses
import json
import sys

from swarm.sandbox.base import SandboxUnavailable
from swarm.sandbox.limits import ExecLimits
from swarm.sandbox.local import LocalSandbox


def main() -> None:
    try:
        box = LocalSandbox(ExecLimits(**json.loads(sys.argv[1])))
    except SandboxUnavailable as exc:
        print(f"unavailable: {exc}", flush=True)
        return
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        output = box.run(request["code"], request["timeout_s"])
        print(json.dumps(dataclasses.asdict(output)), flush=True)


if __name__ == "__main__":
    main()
