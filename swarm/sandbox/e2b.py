"""E2BSandbox: model-written Python in an E2B code-interpreter micro-VM.

One warm sandbox per executor process, recycled after `recycle_after` runs, when it gets old
(E2B kills idle sandboxes at their timeout) or after any infrastructure error. Each run gets a
fresh interpreter context, so one task's variables never leak into another's. The SDK is
imported lazily: it takes most of a second and only executors that choose E2B need it.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from swarm.protocol import ExecOutput
from swarm.sandbox.base import SandboxUnavailable
from swarm.sandbox.capture import OutputCapture, clip
from swarm.sandbox.limits import ExecLimits

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_BINARY_FORMATS = ("png", "jpeg", "svg", "pdf")
_INSTALL_HINT = "the e2b sandbox needs the E2B SDK: pip install 'swarm-blackboard[e2b]'"


def _sdk() -> Any:
    try:
        import e2b_code_interpreter
    except ImportError:
        raise SandboxUnavailable(_INSTALL_HINT) from None
    return e2b_code_interpreter


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def _result_text(result: Any) -> str:
    """One rich display result (a cell's value, a chart, an image) as the line a mind can read."""
    parts: list[str] = []
    chart = getattr(result, "chart", None)
    if chart is not None:
        kind = getattr(getattr(chart, "type", None), "value", "chart")
        parts.append(f"[chart: {kind} {getattr(chart, 'title', '') or ''}]".replace(" ]", "]"))
    if result.text:
        parts.append(result.text)
    for fmt in _BINARY_FORMATS:
        data = getattr(result, fmt, None)
        if data:
            parts.append(f"[{fmt} image, {len(data)} bytes]")
    if not parts:
        parts.append(f"[{', '.join(result.formats()) or 'empty'} result]")
    return " ".join(parts)


class E2BSandbox:
    """Runs each snippet in a fresh context of a warm E2B sandbox."""

    name = "e2b"

    def __init__(
        self,
        limits: ExecLimits | None = None,
        *,
        api_key: str | None = None,
        recycle_after: int = 50,
        lifetime_s: int = 600,
        template: str | None = None,
        internet: bool = False,
        clock: Callable[[], float] = time.monotonic,
        sdk_options: Mapping[str, Any] | None = None,
    ) -> None:
        """`sdk_options` go to `Sandbox.create` (debug, api_url, sandbox_url: for tests)."""
        self.limits = limits or ExecLimits()
        self._options = dict(sdk_options or {})
        if not api_key and not self._options.get("debug"):
            raise SandboxUnavailable(
                "the e2b sandbox needs E2B_API_KEY (https://e2b.dev/dashboard?tab=keys), "
                "or use --sandbox local"
            )
        self._sdk = _sdk()
        self._api_key = api_key
        self.recycle_after = recycle_after
        self.lifetime_s = lifetime_s
        self._template = template
        self._internet = internet
        self._clock = clock
        self._box: Any = None
        self._runs = 0
        self._born = 0.0

    def _create(self) -> Any:
        try:
            return self._sdk.Sandbox.create(
                template=self._template,
                timeout=self.lifetime_s,
                allow_internet_access=self._internet,
                api_key=self._api_key,
                **self._options,
            )
        except self._sdk.AuthenticationException as exc:
            raise SandboxUnavailable(
                f"E2B rejected the API key ({_first_line(exc)}); check E2B_API_KEY"
            ) from None

    def _sandbox(self) -> Any:
        # Retired a minute before E2B would kill it, so a run never lands on a dying sandbox.
        worn = self._runs >= self.recycle_after
        old = self._clock() - self._born > self.lifetime_s - 60
        if self._box is not None and (worn or old):
            self._discard()
        if self._box is None:
            self._box = self._create()
            self._born = self._clock()
            self._runs = 0
        return self._box

    def _discard(self) -> None:
        box, self._box = self._box, None
        if box is None:
            return
        # Already gone, or E2B unreachable: its own timeout reaps it.
        with contextlib.suppress(Exception):
            box.kill()

    def run(self, code: str, timeout_s: float) -> ExecOutput:
        wall_s = self.limits.wall_s(timeout_s)
        cap = self.limits.output_bytes
        stdout, stderr = OutputCapture(cap), OutputCapture(cap)
        start = self._clock()
        try:
            box = self._sandbox()
            execution = self._execute(box, code, wall_s, stdout, stderr)
        except SandboxUnavailable:
            raise
        except self._sdk.TimeoutException as exc:
            self._discard()  # the kernel may still be running the snippet
            error = (
                f"timeout after {wall_s:g}s"
                if "Execution timed out" in str(exc)
                else _first_line(exc)
            )
            return self._output(stdout, stderr, error, start)
        except Exception as exc:
            self._discard()
            return self._output(stdout, stderr, f"sandbox error: {_first_line(exc)}", start)
        self._runs += 1
        for result in execution.results:
            stdout.feed((_result_text(result) + "\n").encode())
        error = ""
        if execution.error is not None:
            err = execution.error
            stderr.feed(_ANSI.sub("", err.traceback or "").encode())
            error = f"{err.name}: {err.value}"[:300]
        return self._output(stdout, stderr, error, start)

    def _execute(
        self, box: Any, code: str, wall_s: float, stdout: OutputCapture, stderr: OutputCapture
    ) -> Any:
        # Streamed output goes straight into the captures, so a timeout still shows what came.
        context = box.create_code_context()
        execution = box.run_code(
            code,
            context=context,
            timeout=wall_s,
            on_stdout=lambda msg: stdout.feed(msg.line.encode()),
            on_stderr=lambda msg: stderr.feed(msg.line.encode()),
        )
        # Only after a clean run: a sandbox that failed mid-run is discarded whole instead.
        try:
            box.remove_code_context(context)
        except Exception:
            self._discard()
        return execution

    def _output(
        self, stdout: OutputCapture, stderr: OutputCapture, error: str, start: float
    ) -> ExecOutput:
        duration = round(self._clock() - start, 4)
        return ExecOutput(stdout.text(), stderr.text(), clip(error, 1000), duration)

    def close(self) -> None:
        self._discard()
