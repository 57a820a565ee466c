"""E2BSandbox with the real E2B SDK against a local stand-in for E2B's API and the
code-interpreter's endpoints (POST /v2/sandboxes, DELETE /sandboxes/<id>, POST /contexts,
DELETE /contexts/<id>, and POST /execute, which streams NDJSON)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from swarm.sandbox import SandboxUnavailable
from swarm.sandbox.limits import ExecLimits

pytest.importorskip("e2b_code_interpreter")

from swarm.sandbox.e2b import E2BSandbox

GOOD_KEY = "e2b_good"
TRACEBACK = "\x1b[0;31mZeroDivisionError\x1b[0m Traceback (most recent call last)\n1/0\n"


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class StandIn:
    url: str
    requests: list[Request] = field(default_factory=list)

    def paths(self, method: str | None = None) -> list[str]:
        return [r.path for r in self.requests if method in (None, r.method)]


def _script(code: str) -> list[dict[str, Any]]:
    """What the stand-in kernel streams back for a snippet, chosen by a word in it."""
    if "boom" in code:
        return [
            {"type": "stdout", "text": "before\n", "timestamp": 1},
            {"type": "error", "name": "ZeroDivisionError", "value": "division by zero",
             "traceback": TRACEBACK},
        ]  # fmt: skip
    if "chart" in code:
        return [
            {"type": "result", "text": "<Figure size 640x480 with 1 Axes>", "png": "iVBOR" * 10,
             "chart": {"type": "line", "title": "Growth", "elements": [], "x_label": "t",
                       "y_label": "n", "x_unit": None, "y_unit": None, "x_ticks": [],
                       "x_tick_labels": [], "x_scale": "linear", "y_ticks": [],
                       "y_tick_labels": [], "y_scale": "linear"}},
        ]  # fmt: skip
    return [
        {"type": "stdout", "text": "hello\n", "timestamp": 1},
        {"type": "stderr", "text": "careful\n", "timestamp": 2},
        {"type": "result", "text": "42", "is_main_result": True},
        {"type": "number_of_executions", "execution_count": 1},
    ]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, *args: Any) -> None:
        pass

    def _record(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null")
        self.server.stand_in.requests.append(
            Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        )
        return body

    def _reply(self, status: int, obj: Any = None) -> None:
        data = b"" if obj is None else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_DELETE(self) -> None:
        self._record()
        self._reply(204)

    def do_POST(self) -> None:
        body = self._record()
        if self.path == "/v2/sandboxes":
            if self.headers.get("X-API-KEY") != GOOD_KEY:
                self._reply(401, {"code": 401, "message": "Invalid API key"})
                return
            n = len(self.server.stand_in.paths("POST"))
            self._reply(201, {"templateID": "code-interpreter-v1", "sandboxID": f"sbx{n}",
                              "clientID": "c", "envdVersion": "0.2.0"})  # fmt: skip
        elif self.path == "/contexts":
            self._reply(200, {"id": "ctx1", "language": "python", "cwd": "/home/user"})
        elif self.path == "/execute":
            self._stream(body["code"])
        else:
            self._reply(404, {"code": 404, "message": "no such path"})

    def _stream(self, code: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for item in _script(code):
            self._chunk((json.dumps(item) + "\n").encode())
            if "slow" in code:
                time.sleep(3)
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.stand_in = StandIn(f"http://127.0.0.1:{server.server_address[1]}")  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server.stand_in  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def _box(stand_in: StandIn, key: str = GOOD_KEY, **kwargs: Any) -> E2BSandbox:
    options = {"api_url": stand_in.url, "sandbox_url": stand_in.url}
    return E2BSandbox(ExecLimits(timeout_s=5), api_key=key, sdk_options=options, **kwargs)


def test_run_sends_code_in_a_fresh_context_and_reads_the_stream(stand_in: StandIn) -> None:
    box = _box(stand_in)
    out = box.run("print('hello')", 5)
    assert out.error == ""
    assert out.stdout == "hello\n42\n"
    assert out.stderr == "careful\n"
    create = stand_in.requests[0]
    assert (create.method, create.path) == ("POST", "/v2/sandboxes")
    assert create.headers["x-api-key"] == GOOD_KEY
    assert create.body["allow_internet_access"] is False
    assert create.body["timeout"] == box.lifetime_s
    execute = next(r for r in stand_in.requests if r.path == "/execute")
    assert execute.body["code"] == "print('hello')"
    assert execute.body["context_id"] == "ctx1"
    assert execute.headers["e2b-sandbox-id"] == "sbx1"
    assert stand_in.paths("DELETE") == ["/contexts/ctx1"]
    box.close()
    assert stand_in.paths("DELETE")[-1] == "/sandboxes/sbx1"  # killed on close


def test_kernel_error_becomes_the_error_and_a_plain_traceback(stand_in: StandIn) -> None:
    out = _box(stand_in).run("boom", 5)
    assert out.error == "ZeroDivisionError: division by zero"
    assert out.stdout == "before\n"
    assert "\x1b[" not in out.stderr and "Traceback" in out.stderr


def test_charts_and_images_are_reduced_to_text(stand_in: StandIn) -> None:
    out = _box(stand_in).run("chart", 5)
    assert out.stdout == (
        "[chart: line Growth] <Figure size 640x480 with 1 Axes> [png image, 50 bytes]\n"
    )


def test_timeout_keeps_streamed_output_and_replaces_the_sandbox(stand_in: StandIn) -> None:
    box = _box(stand_in)
    out = box.run("slow", 1)
    assert out.error == "timeout after 1s"
    assert out.stdout == "hello\n"  # streamed before the deadline
    assert "/sandboxes/sbx1" in stand_in.paths("DELETE")  # the busy sandbox is killed
    assert box.run("print(1)", 5).error == ""
    creates = [r for r in stand_in.requests if r.path == "/v2/sandboxes"]
    assert len(creates) == 2


def test_sandbox_is_recycled_after_n_runs_and_when_old(stand_in: StandIn) -> None:
    now = [0.0]
    box = _box(stand_in, recycle_after=2, clock=lambda: now[0])
    for _ in range(3):
        assert box.run("print(1)", 5).error == ""
    assert stand_in.paths("POST").count("/v2/sandboxes") == 2
    now[0] += box.lifetime_s
    box.run("print(1)", 5)
    assert stand_in.paths("POST").count("/v2/sandboxes") == 3


def test_rejected_key_is_one_line(stand_in: StandIn) -> None:
    box = _box(stand_in, key="e2b_revoked")
    with pytest.raises(SandboxUnavailable) as info:
        box.run("print(1)", 5)
    assert "E2B rejected the API key" in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_key_is_one_line() -> None:
    with pytest.raises(SandboxUnavailable, match="needs E2B_API_KEY"):
        E2BSandbox(ExecLimits(), api_key=None)


def test_debug_mode_needs_no_api(stand_in: StandIn) -> None:
    box = E2BSandbox(ExecLimits(), sdk_options={"debug": True, "sandbox_url": stand_in.url})
    assert box.run("print('hello')", 5).stdout == "hello\n42\n"
    assert "/v2/sandboxes" not in stand_in.paths()
