"""The openai mind against a local stub of an OpenAI-compatible server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from swarm.minds.base import Mind, MindError
from swarm.minds.openai import make_openai_mind
from swarm.protocol import (
    ActionKind,
    Answer,
    Confidence,
    Limits,
    Split,
    ThinkRequest,
    action_schema,
)
from swarm.task import Kind, Task

TASK = Task(id="0", parent="", depth=0, kind=Kind.WORK, title="Name a fruit")
STEP = ThinkRequest(purpose="Fruit facts.", task=TASK, allowed=frozenset({ActionKind.ANSWER}))
GOOD = '{"action":"answer","answer":"Apple.","confidence":"high"}'


class Stub:
    """A server that answers each POST with the next scripted reply and records the bodies."""

    def __init__(self, replies: list[tuple[int, Any]]) -> None:
        self.replies = replies
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                stub.requests.append(json.loads(self.rfile.read(length)))
                stub.headers.append(dict(self.headers))
                status, body = stub.replies.pop(0)
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()


def completion(content: str, prompt: int = 100, completion: int = 20) -> dict[str, Any]:
    return {
        "choices": [{"message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
    }


@pytest.fixture
def stub() -> Iterator[Stub]:
    server = Stub([])
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_a_valid_answer_in_one_call(stub: Stub) -> None:
    stub.replies.append((200, completion(GOOD)))
    mind = make_openai_mind(stub.url, "phi3", api_key="sekret")
    assert isinstance(mind, Mind)
    thought = mind.think(STEP)
    assert thought.action == Answer("Apple.", Confidence.HIGH)
    assert thought.tokens == 120
    assert thought.raw == GOOD
    body = stub.requests[0]
    assert body["model"] == "phi3"
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "action", "schema": action_schema(STEP.allowed, STEP.limits)},
    }
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "Fruit facts." in body["messages"][0]["content"]
    assert "Name a fruit" in body["messages"][1]["content"]
    assert stub.headers[0]["Authorization"] == "Bearer sekret"
    assert mind.tokens_per_s > 0


def test_an_invalid_answer_is_retried_with_the_validation_error(stub: Stub) -> None:
    bad = '{"action":"split","subtasks":[],"reason":""}'
    stub.replies += [(200, completion(bad)), (200, completion(GOOD, 150, 10))]
    thought = make_openai_mind(stub.url, "phi3").think(STEP)
    assert isinstance(thought.action, Answer)
    assert thought.tokens == 120 + 160  # both calls are charged
    retry = stub.requests[1]["messages"]
    assert retry[:2] == stub.requests[0]["messages"]
    assert retry[2] == {"role": "assistant", "content": bad}
    assert retry[3]["role"] == "user"
    assert "action 'split' is not allowed at this step (allowed: answer)" in retry[3]["content"]


def test_two_invalid_answers_fail_the_attempt(stub: Stub) -> None:
    stub.replies += [(200, completion("not json")), (200, completion('{"action":"answer"}'))]
    with pytest.raises(
        MindError, match="phi3 gave an invalid answer twice: 'confidence' must be one of"
    ) as failed:
        make_openai_mind(stub.url, "phi3").think(STEP)
    assert len(stub.requests) == 2
    assert failed.value.tokens == 2 * (100 + 20)  # both calls' tokens, charged with the failure


def test_a_split_step_sends_its_schema_and_parses(stub: Stub) -> None:
    step = ThinkRequest(
        purpose="p", task=TASK, allowed=frozenset({ActionKind.ANSWER, ActionKind.SPLIT}),
        limits=Limits(max_children=2),
    )  # fmt: skip
    content = '{"action":"split","subtasks":[{"title":"a","detail":""}],"reason":"r"}'
    stub.replies.append((200, completion(content)))
    thought = make_openai_mind(stub.url, "m").think(step)
    assert isinstance(thought.action, Split)
    schema = stub.requests[0]["response_format"]["json_schema"]["schema"]
    assert schema["anyOf"][1]["properties"]["subtasks"]["maxItems"] == 2


def test_a_server_error_is_a_mind_error(stub: Stub) -> None:
    stub.replies.append((500, {"error": "model not loaded"}))
    with pytest.raises(MindError, match=r"answered 500: .*model not loaded"):
        make_openai_mind(stub.url, "phi3").think(STEP)


def test_a_reply_without_a_message_is_a_mind_error(stub: Stub) -> None:
    stub.replies.append((200, {"choices": []}))
    with pytest.raises(MindError, match="answered without a message"):
        make_openai_mind(stub.url, "phi3").think(STEP)


def test_an_unreachable_server_is_a_mind_error() -> None:
    with pytest.raises(MindError, match=r"cannot reach http://127\.0\.0\.1:9/v1/chat/completions"):
        make_openai_mind("http://127.0.0.1:9/v1", "phi3", timeout=2).think(STEP)


def test_the_api_key_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    assert make_openai_mind("http://x/v1", "m").api_key == "from-env"
    assert (
        make_openai_mind("http://x/v1/", "m", api_key="mine").url == "http://x/v1/chat/completions"
    )


def test_an_interrupt_ends_a_step_waiting_on_a_silent_server() -> None:
    import socket
    import time

    from swarm.minds.base import Interrupted

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # connections are accepted by the kernel and never answered
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        mind = make_openai_mind(url, "phi3", timeout=60)
        threading.Timer(0.3, mind.interrupt).start()
        began = time.monotonic()
        with pytest.raises(Interrupted):
            mind.think(STEP)
        assert time.monotonic() - began < 5
        with pytest.raises(Interrupted):
            mind.think(STEP)
    finally:
        silent.close()
