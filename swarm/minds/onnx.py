"""The `onnx` mind: Phi-3 (or any ORT GenAI model folder) run in-process by onnxruntime-genai.

How one step runs, and why (figures measured with onnxruntime-genai 0.18 on a 2-core CPU):

- The purpose's tokens stay in the KV cache. A `Generator` is given the chat-formatted
  system prompt once; each step appends its task prompt, generates, and `rewind_to`s the
  end of the purpose, so a task costs its own prompt, not the purpose again. (`og.Engine`
  can rewind a request to the start of a turn too, but from the second rewind on it
  prefilled the whole sequence again.)
- The answer is constrained by guidance to the JSON schema of every action, compact (no
  free whitespace, which a random model would otherwise emit forever). A generator's
  guidance is fixed when it is made, so one schema serves every step, and while the
  action's name is written the tokens naming an action this step does not allow are
  masked out of the logits.
- A generation that reaches `max_new_tokens` is retried once with bounds tight enough
  that no answer can exceed the limit (ASCII strings, at most two tokens a character);
  if that fails too the step fails with a MindError, never a crash.
- Every native call is kept short. The Python binding holds the GIL through each call
  (src/python/python.cpp releases it nowhere; a second thread made no progress meanwhile),
  so the worker's heartbeat, its signal handlers and an interrupt all wait for the call in
  progress: a purpose prefilled in one call froze renewals for minutes on Phi-3-mini. So
  prompts are appended in chunks sized from the measured time per token (`_append_chunked`)
  and decoding goes a token a call; `interrupt()` is checked between calls.
- Slots take turns on the one generator, on one thread. The batched Generator with
  guidance fails once one sequence finishes before the others, and batching did not speed
  up prefill on CPU, which is where a task's time goes. Taking turns costs no memory per
  slot.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from swarm.minds import prompts, runtime
from swarm.minds.base import TURNS, Interrupted, MindError
from swarm.models import ModelError, check_model_dir
from swarm.protocol import (
    ActionKind,
    InvalidAction,
    Limits,
    ThinkRequest,
    Thought,
    action_schema,
    parse_action,
)

DEFAULT_MAX_NEW_TOKENS = 512
MIN_NEW_TOKENS = 128  # room for the smallest split, with tight bounds
_NOTE_ROOM = 32  # tokens kept free for the note a retry adds to its prompt
# About how long one native call may take: a renewal, a signal or an interrupt waits for
# the call in progress. Each call costs some CPU beyond its tokens: on Phi-3-mini, 16-token
# chunks (about a second each on 2 cores) prefill at 0.97 of one call's speed, 8-token
# ones at 0.88 (`scripts/bench_genai.py --prefill-sweep 32,16,8`).
CHUNK_S = 1.0
log = logging.getLogger("swarm.minds.onnx")
_FIRST_CHUNK = 4  # tokens, before the pace is known (a fraction of a second on mini)
_GROWTH = 4  # the most a chunk grows over the one before
ALL_ACTIONS = frozenset(ActionKind)

# Where the task goes when the chat template is rendered once per purpose; what comes
# before it is the cached prefix, what comes after it ends every task prompt.
_TASK_SLOT = "⟦swarm-task⟧"

# Phi-3's own format, for model folders that carry no chat template.
PHI3_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

# Printable ASCII, tab and newline: in JSON each costs at most two bytes (`\"`, `\n`), and
# llguidance only allows the short escapes, so at most two tokens.
_TIGHT_PATTERN = "^[\\t\\n -~]*$"
_TIGHT_TOKENS_PER_CHAR = 2


def guided_schema(
    limits: Limits, *, tight: bool = False, allowed: frozenset[ActionKind] = ALL_ACTIONS
) -> str:
    """The guidance JSON schema: the allowed actions, compact; tight = ASCII strings only."""
    schema = action_schema(allowed, limits)
    if tight:
        _restrict_strings(schema)
    schema["x-guidance"] = {"whitespace_flexible": False}
    return json.dumps(schema)


def _restrict_strings(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("type") == "string":
            node["pattern"] = _TIGHT_PATTERN
        for value in node.values():
            _restrict_strings(value)
    elif isinstance(node, list):
        for value in node:
            _restrict_strings(value)


def tight_limits(limits: Limits, budget: int) -> Limits:
    """Bounds under which no action's JSON (ASCII strings) can need more than `budget` tokens."""
    # Fewer subtasks when the budget is small: each costs JSON around its strings.
    for kids in range(min(limits.max_children, 3), 0, -1):
        # The fixed JSON around the strings, in bytes (a token is at least one byte).
        frame = {
            "answer": len('{"action":"answer","answer":"","confidence":"medium"}'),
            "code": len('{"action":"code","code":"","why":""}'),
            "split": len('{"action":"split","subtasks":[],"reason":""}')
            + kids * len('{"title":"","detail":"","tags":[]},'),
        }
        # EOS, and the one character every field keeps even when scaled to nothing.
        room = budget - 1 - max(frame.values()) - _TIGHT_TOKENS_PER_CHAR * (2 * kids + 1)
        if room >= budget // 4:
            break
    if room <= 0:
        raise ValueError(f"{budget} tokens cannot hold any action")
    chars = {
        "answer": limits.max_answer,
        "code": limits.max_code + limits.max_reason,
        "split": kids * (limits.max_title + limits.max_detail) + limits.max_reason,
    }
    scale = min(1.0, min(room / (_TIGHT_TOKENS_PER_CHAR * n) for n in chars.values()))

    def cut(n: int) -> int:
        return max(1, int(n * scale))

    return replace(
        limits,
        max_children=kids,
        max_title=cut(limits.max_title),
        max_detail=cut(limits.max_detail),
        max_answer=cut(limits.max_answer),
        max_reason=cut(limits.max_reason),
        max_code=cut(limits.max_code),
        max_tags=0,
    )


def _provider_config(og: Any, folder: Path, provider: str, threads: int | None) -> Any:
    """The model's config set to run on `provider` (see swarm.minds.runtime for `auto`)."""
    if threads is not None and threads < 1:
        raise ModelError(f"threads must be at least 1, got {threads}")
    try:
        config = og.Config(str(folder))
    except Exception as exc:  # ORT GenAI raises plain RuntimeErrors
        raise ModelError(f"cannot read the model config in {folder}: {exc}") from None
    config.clear_providers()
    if provider != "cpu":
        config.append_provider(provider)
    if threads is not None:
        options = {"intra_op_num_threads": threads, "inter_op_num_threads": 1}
        config.overlay(json.dumps({"model": {"decoder": {"session_options": options}}}))
    return config


class _Pacer:
    """Sizes native calls to about `chunk_s` from the measured seconds per token, and carries
    the interrupt every step checks between calls."""

    def __init__(self, chunk_s: float = CHUNK_S) -> None:
        self.chunk_s = chunk_s
        self.per_token: float | None = None  # the latest chunk's: follows load and position
        self.last = _FIRST_CHUNK
        self.longest_s = 0.0  # the longest chunk yet, shown by the worker's debug log
        self.interrupted = threading.Event()

    def check(self) -> None:
        """Before each native call: stop if interrupted, and let a renewal go first."""
        if self.interrupted.is_set():
            raise Interrupted("the onnx mind was interrupted")
        TURNS.between()

    def chunk(self) -> int:
        if self.per_token is None:
            return _FIRST_CHUNK
        # Growth is capped: a small chunk's time per token understates a big one's, where
        # attention over the chunk itself starts to count.
        return max(1, min(int(self.chunk_s / self.per_token), _GROWTH * self.last))

    def observe(self, tokens: int, seconds: float) -> None:
        if tokens > 0 and seconds > 0:
            self.per_token = seconds / tokens
            self.last = tokens
            self.longest_s = max(self.longest_s, seconds)


def _append_chunked(generator: Any, ids: Any, pacer: _Pacer) -> None:
    """`generator.append_tokens(ids)` in chunks of about `pacer.chunk_s` each, checking for
    an interrupt between them. The last axis is the sequence, so a batch (rows) works too.
    Same KV cache and next token as one call (tests/test_onnx_mind.py)."""
    total = ids.shape[-1]
    start = 0
    while start < total:
        pacer.check()
        stop = min(total, start + pacer.chunk())
        began = time.perf_counter()
        generator.append_tokens(ids[..., start:stop])
        pacer.observe(stop - start, time.perf_counter() - began)
        start = stop
    pacer.check()


@dataclass
class Usage:
    """Counters since the mind was made; `prefilled` < `prompt` is the KV cache at work."""

    thinks: int = 0
    retries: int = 0
    prompt_tokens: int = 0  # tokens the model read, purpose included, summed over attempts
    prefilled_tokens: int = 0  # of those, how many it computed (the rest came from the cache)
    generated_tokens: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0

    def add(self, other: Usage) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class _Attempt:
    text: str
    prompt_tokens: int
    prefilled_tokens: int
    generated: int
    finished: bool  # ended by the grammar, not by the token limit
    prefill_s: float
    decode_s: float


class _Text:
    """Text to token ids and back, and the chat prompt around a task: what both engines'
    runtimes do with the tokenizer (they set `tokenizer`, `np` and `strip_bos`)."""

    tokenizer: Any
    np: Any
    strip_bos: bool

    def encode(self, text: str, *, continuation: bool = False) -> Any:
        ids = self.np.asarray(self.tokenizer.encode(text), dtype=self.np.int32)
        if continuation and self.strip_bos and len(ids):
            ids = ids[1:]
        return ids

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(self.np.asarray(ids, dtype=self.np.int32)))

    def chat(self, system: str) -> tuple[str, str]:
        """(prefix, suffix): the prompt for a task is prefix + task + suffix."""
        rendered = self._render(
            [{"role": "system", "content": system}, {"role": "user", "content": _TASK_SLOT}]
        )
        if system not in rendered.split(_TASK_SLOT)[0]:
            # Some templates (early Phi-3) drop the system message: the purpose then opens
            # the user turn, which still keeps it in front of every task.
            rendered = self._render([{"role": "user", "content": f"{system}\n\n{_TASK_SLOT}"}])
        prefix, _, suffix = rendered.partition(_TASK_SLOT)
        return prefix, suffix

    def _render(self, messages: list[dict[str, str]]) -> str:
        text = json.dumps(messages)
        try:
            return str(self.tokenizer.apply_chat_template(text, add_generation_prompt=True))
        except RuntimeError:  # the folder has no chat template
            return str(
                self.tokenizer.apply_chat_template(
                    text, template_str=PHI3_TEMPLATE, add_generation_prompt=True
                )
            )


class _Runtime(_Text):
    """The loaded model and tokenizer, and what the mind derives from them once."""

    def __init__(self, model_dir: str | Path, provider: str, threads: int | None) -> None:
        self.og = runtime.import_og()
        import numpy as np

        self.np = np
        self.folder = check_model_dir(model_dir)
        available = runtime.available_providers(self.og)
        built_for = runtime.model_providers(self.folder)
        self.provider = runtime.choose_provider(provider, available, built_for)
        config = _provider_config(self.og, self.folder, self.provider, threads)
        try:
            self.model = self.og.Model(config)
            self.tokenizer = self.og.Tokenizer(self.model)
        except Exception as exc:
            raise ModelError(f"cannot load the model in {self.folder}: {exc}") from None
        try:
            genai = json.loads((self.folder / "genai_config.json").read_text())["model"]
            self.context_length = int(genai["context_length"])
            self.vocab_size = int(genai["vocab_size"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{self.folder}/genai_config.json lacks {exc}") from None
        eos = genai.get("eos_token_id", [])
        self.eos = frozenset(eos if isinstance(eos, list) else [eos])
        bos = genai.get("bos_token_id")
        probe = list(self.tokenizer.encode("a"))
        # Sentencepiece tokenizers put a BOS in front of every encode; text appended
        # mid-sequence must not carry one.
        self.strip_bos = bos is not None and len(probe) > 1 and probe[0] == bos
        self.features = runtime.probe_features(self.og, self.model, int(probe[-1]))
        self._token_texts: list[str] | None = None
        self._masks: dict[tuple[tuple[str, ...], str], Any] = {}

    def token_texts(self) -> list[str]:
        """Each token's text, by id; decoded once, when steering first needs it."""
        if self._token_texts is None:
            self._token_texts = [self.decode([i]) for i in range(self.vocab_size)]
        return self._token_texts

    def allowed_mask(self, heads: tuple[str, ...], text: str) -> Any:
        """Tokens that keep `text` on the way to (or past) one of `heads`; cached per state."""
        key = (heads, text)
        mask = self._masks.get(key)
        if mask is None:
            texts = self.token_texts()
            mask = self.np.fromiter(
                (
                    any((text + s).startswith(h) or h.startswith(text + s) for h in heads)
                    for s in texts
                ),
                dtype=bool,
                count=len(texts),
            )
            self._masks[key] = mask
        return mask

    def generator(self, schema: str, max_length: int) -> Any:
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(max_length=max_length)
        if self.features.guidance:
            params.set_guidance("json_schema", schema)
        # One native call that allocates the whole KV cache (2-3 s of CPU for a 4k context
        # on Phi-3-mini): the heartbeat renews first.
        TURNS.beat_now()
        return self.og.Generator(self.model, params)


class _Prefixed:
    """A guided generator whose KV cache holds one purpose, rewound to it after every step."""

    def __init__(
        self, runtime: _Runtime, schema: str, system: str, max_length: int, pacer: _Pacer
    ) -> None:
        self.runtime = runtime
        self.schema = schema
        self.system = system
        self.max_length = max_length
        self.pacer = pacer
        self.prefix, self.suffix = runtime.chat(system)
        self._start()

    def _start(self) -> None:
        ids = self.runtime.encode(self.prefix)
        self.generator = self.runtime.generator(self.schema, self.max_length)
        started = time.perf_counter()
        _append_chunked(self.generator, ids, self.pacer)
        self.pending_prefill = (len(ids), time.perf_counter() - started)
        self.base = int(self.generator.token_count())

    def run(self, task: str, budget: int, allowed: frozenset[ActionKind]) -> _Attempt:
        runtime, gen, np = self.runtime, self.generator, self.runtime.np
        ids = runtime.encode(task + self.suffix, continuation=True)
        heads = tuple(f'{{"action":"{k.value}"' for k in ActionKind if k in allowed)
        steering = allowed != ALL_ACTIONS and runtime.features.logits
        longest = max(map(len, heads))
        seen = ""
        out: list[int] = []
        started = time.perf_counter()
        try:
            _append_chunked(gen, ids, self.pacer)
            prefilled = time.perf_counter()
            while len(out) < budget and not gen.is_done():
                self.pacer.check()
                if steering:
                    logits = gen.get_logits()
                    mask = runtime.allowed_mask(heads, seen)
                    gen.set_logits(np.where(mask, logits, np.finfo(np.float32).min))
                gen.generate_next_token()
                token = int(gen.get_next_tokens()[0])
                out.append(token)
                if steering:
                    seen += runtime.token_texts()[token]
                    steering = len(seen) < longest and not any(map(seen.startswith, heads))
        finally:
            cached_n, cached_s = self.pending_prefill
            self.pending_prefill = (0, 0.0)
            if runtime.features.rewind:
                gen.rewind_to(self.base)
            else:  # a runtime without rewind: a fresh generator, the purpose prefilled again
                self._start()
        finished = bool(out) and out[-1] in runtime.eos
        return _Attempt(
            text=runtime.decode(out[:-1] if finished else out),
            prompt_tokens=self.base + len(ids),
            prefilled_tokens=cached_n + len(ids),
            generated=len(out),
            finished=finished,
            prefill_s=cached_s + prefilled - started,
            decode_s=time.perf_counter() - prefilled,
        )


class OnnxMind:
    """Thinks with an ORT GenAI model in this process; thread-safe, slots take turns."""

    # `think` may be called from any number of slot threads; `close` waits for the step
    # in progress, and later calls fail with a MindError. After `interrupt`, the step in
    # progress raises Interrupted at its next native call, and so does every later one.

    name = "onnx"
    # The shortest lease a worker claims with for this mind. A renewal is due every quarter
    # lease and must land within half of it; it may wait out one native call: a chunk, or
    # a new generator (2-3 s of CPU on Phi-3-mini, 7-11 s of wall time on a loaded 2-core
    # machine), which is made right after a renewal, so that costs the lease only its length.
    min_lease_s = 20.0

    def __init__(
        self,
        runtime: _Runtime,
        *,
        slots: int = 1,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        context: int | None = None,
        chunk_s: float = CHUNK_S,
    ) -> None:
        self._runtime = runtime
        self.slots = slots
        self.max_new_tokens = max_new_tokens
        self.context = min(context or runtime.context_length, runtime.context_length)
        if self.context < max_new_tokens + 256:
            raise ModelError(
                f"context {self.context} is too small for max_new_tokens {max_new_tokens} "
                "plus a prompt; lower max_new_tokens or raise the context"
            )
        if max_new_tokens < MIN_NEW_TOKENS:
            raise ModelError(
                f"max_new_tokens must be at least {MIN_NEW_TOKENS}, got {max_new_tokens}"
            )
        self.usage = Usage()  # since the mind was made
        self.last = Usage()  # of the latest step
        self.tokens_per_s = 0.0
        if not 0 < chunk_s <= 60:
            raise ModelError(f"chunk_s must be above 0 and at most 60, got {chunk_s}")
        self._pacer = _Pacer(chunk_s)
        # Every model call runs on this one thread, in arrival order: the slots take turns
        # (see the module's docstring), and the allocator keeps one arena for the model's
        # buffers instead of growing one per slot thread (measured: +60 MB with 4 slots).
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnx-mind")
        self._normal: _Prefixed | None = None  # the generator holding the current purpose

    @property
    def model_dir(self) -> Path:
        return self._runtime.folder

    def think(self, request: ThinkRequest) -> Thought:
        self._pacer.check()
        try:
            job = self._thread.submit(self._think, request)
        except RuntimeError:  # shut down
            raise MindError("the onnx mind is closed") from None
        return job.result()

    def interrupt(self) -> None:
        self._pacer.interrupted.set()

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self._normal = None

    def _think(self, request: ThinkRequest) -> Thought:
        self._pacer.check()  # queued behind a step that was interrupted
        return _retried(request, self._attempt, self._account, self.max_new_tokens)

    def _attempt(self, request: ThinkRequest, limits: Limits, *, tight: bool) -> _Attempt:
        runtime = self._runtime
        system = prompts.system_prompt(
            prompts.fit_text(request.purpose, self.context // 2, runtime.count),
            request.purpose_title,
        )
        normal = self._normal
        schema = guided_schema(request.limits)
        if normal is None or normal.system != system or normal.schema != schema:
            normal = self._normal = self._make_prefixed(schema, system, self.context)
        room = self.context - normal.base - self.max_new_tokens - _NOTE_ROOM
        task = prompts.task_prompt(request, room - runtime.count(normal.suffix), runtime.count)
        generator = normal
        if tight:
            task += (
                f"\n(Your last reply ran past {self.max_new_tokens} tokens; keep this one short.)"
            )
            # Made for this retry and dropped after it, sized to what it needs: retries are
            # rare with a real model, and a KV cache of the whole window is large.
            need = normal.base + runtime.count(task + normal.suffix) + self.max_new_tokens + 1
            tight_schema = guided_schema(limits, tight=True)
            generator = self._make_prefixed(tight_schema, system, min(need, self.context))
        try:
            return generator.run(task, self.max_new_tokens, request.allowed)
        except Interrupted:
            raise  # the generator was rewound to its purpose: still good
        except Exception as exc:
            # The generator's state is unknown after a failure; the next step makes a new one.
            if generator is normal:
                self._normal = None
            raise MindError(f"onnxruntime-genai failed: {exc}") from None

    def _make_prefixed(self, schema: str, system: str, max_length: int) -> _Prefixed:
        try:
            return _Prefixed(self._runtime, schema, system, max_length, self._pacer)
        except Interrupted:
            raise
        except Exception as exc:
            raise MindError(f"onnxruntime-genai could not start a generation: {exc}") from None

    def _account(self, attempts: list[_Attempt]) -> None:
        last = Usage(thinks=1, retries=len(attempts) - 1)
        for a in attempts:
            last.prompt_tokens += a.prompt_tokens
            last.prefilled_tokens += a.prefilled_tokens
            last.generated_tokens += a.generated
            last.prefill_s += a.prefill_s
            last.decode_s += a.decode_s
        self.last = last
        self.usage.add(last)
        log.debug(
            "step: %d tokens prefilled in %.1f s, %d generated in %.1f s; longest chunk yet %.2f s",
            last.prefilled_tokens,
            last.prefill_s,
            last.generated_tokens,
            last.decode_s,
            self._pacer.longest_s,
        )
        if last.decode_s > 0:
            rate = last.generated_tokens / last.decode_s
            # Smoothed so the live view shows a steady figure, not the last step's.
            smoothed = 0.7 * self.tokens_per_s + 0.3 * rate
            self.tokens_per_s = rate if self.tokens_per_s == 0 else smoothed


def _retried(
    request: ThinkRequest,
    attempt: Callable[..., _Attempt],
    account: Callable[[list[_Attempt]], None],
    max_new_tokens: int,
) -> Thought:
    """One step, both engines: an attempt, and one retry with bounds tight enough to fit
    `max_new_tokens` when the first ran out of tokens before its JSON closed."""
    first = attempt(request, request.limits, tight=False)
    attempts = [first]
    if not first.finished and not _parses(first.text, request):
        attempts.append(attempt(request, tight_limits(request.limits, max_new_tokens), tight=True))
    final = attempts[-1]
    account(attempts)
    tokens = sum(a.prompt_tokens + a.generated for a in attempts)
    if not final.finished and not _parses(final.text, request):
        raise MindError(
            f"the answer did not fit in {max_new_tokens} tokens, "
            "even with its bounds tightened to fit",
            tokens=tokens,
        )
    try:
        action = parse_action(final.text, request.allowed, request.limits)
    except InvalidAction as exc:
        raise MindError(f"the model's answer did not validate: {exc}", tokens=tokens) from None
    return Thought(action, tokens=tokens, raw=final.text)


def _parses(text: str, request: ThinkRequest) -> bool:
    try:
        parse_action(text, request.allowed, request.limits)
    except InvalidAction:
        return False
    return True


def make_onnx_mind(
    model_dir: str | Path,
    *,
    provider: str = "auto",
    threads: int | None = None,
    slots: int = 1,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    context: int | None = None,
    chunk_s: float = CHUNK_S,
) -> OnnxMind:
    """Load the model in `model_dir`; a ModelError (one line) when it cannot be used."""
    return OnnxMind(
        _Runtime(model_dir, provider, threads),
        slots=slots,
        max_new_tokens=max_new_tokens,
        context=context,
        chunk_s=chunk_s,
    )
