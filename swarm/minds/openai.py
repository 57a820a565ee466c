"""The `openai` mind: any OpenAI-compatible chat endpoint (llama.cpp server, Ollama, vLLM).

The step's JSON schema goes in `response_format`, so a server that enforces it can only
answer with a valid action; the answer is validated anyway, because not every server
enforces every keyword. An invalid answer gets one retry that shows the model its
mistake; a second invalid answer fails the attempt. Plain urllib keeps this dependency-free.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from swarm.minds import prompts
from swarm.minds.base import Interrupted, MindError
from swarm.protocol import InvalidAction, ThinkRequest, Thought, action_schema, parse_action

DEFAULT_CONTEXT = 8192
_POLL_S = 0.1  # how often a step waiting on the server looks for an interrupt


def _estimate_tokens(text: str) -> int:
    """Tokens in `text`, roughly: the server's tokenizer is not available here."""
    return len(text) // 3 + 1


class OpenAIMind:
    """Asks an OpenAI-compatible `/chat/completions` endpoint for each step's action.

    `api_key` defaults to $OPENAI_API_KEY.
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        max_tokens: int = 1024,
        temperature: float = 0.2,
        timeout: float = 300.0,
        context: int = DEFAULT_CONTEXT,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.timeout = timeout
        self.context = context
        self.tokens_per_s = 0.0
        self._lock = threading.Lock()
        self._interrupted = threading.Event()

    def think(self, request: ThinkRequest) -> Thought:
        self._check()
        budget = (
            self.context
            - self.max_tokens
            - _estimate_tokens(prompts.system_prompt(request.purpose, request.purpose_title))
        )
        messages = prompts.messages(request, max(budget, 256), _estimate_tokens)
        schema = action_schema(request.allowed, request.limits)
        content, tokens = self._complete(messages, schema)
        try:
            return Thought(parse_action(content, request.allowed, request.limits), tokens, content)
        except InvalidAction as exc:
            retry = [
                *messages,
                {"role": "assistant", "content": content},
                {
                    "role": "user",
                    "content": f"That reply is not valid: {exc}. Reply again with one JSON object "
                    "that follows the rules.",
                },
            ]
        content, used = self._complete(retry, schema)
        try:
            action = parse_action(content, request.allowed, request.limits)
        except InvalidAction as exc:
            raise MindError(
                f"{self.model} gave an invalid answer twice: {exc}", tokens=tokens + used
            ) from None
        return Thought(action, tokens=tokens + used, raw=content)

    def interrupt(self) -> None:
        self._interrupted.set()

    def _check(self) -> None:
        if self._interrupted.is_set():
            raise Interrupted(f"{self.model}: interrupted")

    def close(self) -> None:
        pass

    def _complete(self, messages: list[dict[str, str]], schema: dict[str, Any]) -> tuple[str, int]:
        """The reply's text and the tokens the server charged for it."""
        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "action", "schema": schema},
            },
        }
        started = time.perf_counter()
        reply = self._post(body)
        elapsed = time.perf_counter() - started
        try:
            content = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise MindError(f"{self.url} answered without a message: {str(reply)[:200]}") from None
        if not isinstance(content, str):
            raise MindError(f"{self.url} answered without text content")
        usage = reply.get("usage") or {}
        completion = int(usage.get("completion_tokens") or _estimate_tokens(content))
        prompt = int(
            usage.get("prompt_tokens") or sum(_estimate_tokens(m["content"]) for m in messages)
        )
        if elapsed > 0:
            with self._lock:
                self.tokens_per_s = completion / elapsed
        return content, prompt + completion

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        """The request runs on its own daemon thread, so an interrupt need not wait for the
        server (up to `timeout`); an abandoned request ends on its own."""
        outcome: list[dict[str, Any] | MindError] = []
        done = threading.Event()

        def call() -> None:
            try:
                outcome.append(self._request(body))
            except MindError as exc:
                outcome.append(exc)
            except Exception as exc:  # a bug here must fail the step, not hang it
                outcome.append(MindError(f"{self.url}: {type(exc).__name__}: {exc}"))
            finally:
                done.set()

        threading.Thread(target=call, name="openai-request", daemon=True).start()
        while not done.wait(_POLL_S):
            self._check()
        result = outcome[0]
        if isinstance(result, MindError):
            raise result
        return result

    def _request(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                data = json.load(resp)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:200]
            raise MindError(f"{self.url} answered {exc.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise MindError(f"cannot reach {self.url}: {reason}") from None
        except ValueError:
            raise MindError(f"{self.url} answered with something that is not JSON") from None
        if not isinstance(data, dict):
            raise MindError(f"{self.url} answered with JSON that is not an object")
        return data


# The worker's factory is the constructor itself.
make_openai_mind = OpenAIMind
