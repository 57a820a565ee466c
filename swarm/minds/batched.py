"""The `onnx` mind's batched engine (the default on a CPU): Phi-3 (or any ORT GenAI model folder)
run in-process through ONNX Runtime, slots decoded together in one batch.

How a step runs, and why (figures measured with onnxruntime-genai 0.18 and onnxruntime
1.32 on a 2-core CPU; `scripts/bench_mind.py`):

- Slots decode together. Each slot's step is a job for one loop thread that owns the
  model (`decoder.Decoder`): every turn of the loop runs one chunk of prompt for each job
  that is still reading its prompt, then one token for every job that is writing, all
  rows in one batched call. A job that ends frees its row at once and the next job takes
  it while the others go on writing (continuous batching). `decoder`'s docstring says
  why this does not use ORT GenAI's `Engine` or batched `Generator` (0.18).
- The purpose stays in the KV cache. A row keeps the chat-formatted system prompt of the
  last purpose it served; a job on the same purpose rewinds the row to it, or copies it
  from another row that holds it, so a task costs its own prompt, not the purpose again.
- Each job has its own guidance: an `llguidance` matcher for the JSON schema of the
  actions its step allows, compact (no free whitespace, which a random model would
  otherwise emit forever), masks that row's logits before each token is picked (greedy).
- A generation that reaches `max_new_tokens` is retried once with bounds tight enough
  that no answer can exceed the limit (ASCII strings, at most two tokens a character);
  if that fails too the step fails with a MindError, never a crash.
- Every native call is bounded: one prompt chunk (at most 256 tokens; while other rows
  write, sized to take about a second, so their tokens keep coming) or one decode step.
  ONNX Runtime releases the GIL while it runs, and `interrupt()` ends the run in progress
  through its terminate flag, so every step in progress or later raises `Interrupted`
  within milliseconds.
- Memory: the model once, plus a KV cache row per slot of `context` positions (2048 by
  default, not the model's whole window), resident in full once the slot has run
  (`BatchedMind.memory` says how much; the worker prints it and warns when it cannot fit).
  Processes do not share the weights: ONNX Runtime prepacks them into private memory
  (PSS per process is about its RSS, `bench_mind --pss`), and without prepacking the int4
  matmuls ran about 60x slower here, so slots, not processes, are how a host shares one
  copy.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swarm import memory
from swarm.minds import prompts
from swarm.minds.base import Interrupted, MindError
from swarm.minds.decoder import EXECUTION_PROVIDERS, Decoder, DecoderInterrupted
from swarm.minds.onnx import (  # what both engines share: limits, schemas, accounting
    _NOTE_ROOM,
    DEFAULT_MAX_NEW_TOKENS,
    MIN_NEW_TOKENS,
    Usage,
    _Attempt,
    _retried,
    _Text,
    guided_schema,
)
from swarm.models import ModelError, check_model_dir
from swarm.protocol import (
    Limits,
    ThinkRequest,
    Thought,
)

# The KV cache a slot gets unless `context` says otherwise: a purpose of up to half of it,
# a task, and an answer. The model's own window (4k for Phi-3-mini) would cost twice the
# memory per slot for prompts a swarm's steps do not reach.
DEFAULT_CONTEXT = 2048
PROVIDERS = tuple(EXECUTION_PROVIDERS)


def _import_og() -> Any:
    try:
        import onnxruntime_genai as og
    except ImportError:
        raise ModelError(
            "the onnx mind needs onnxruntime-genai: pip install 'swarm[onnx]'"
        ) from None
    return og


class _Runtime(_Text):
    """The tokenizer, the chat format and the guidance vocabulary of one model folder."""

    def __init__(self, model_dir: str | Path) -> None:
        self.og = _import_og()
        import numpy as np

        self.np = np
        self.folder = check_model_dir(model_dir)
        try:
            genai = json.loads((self.folder / "genai_config.json").read_text())["model"]
            self.context_length = int(genai["context_length"])
            self.vocab_size = int(genai["vocab_size"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(
                f"cannot read the model config in {self.folder}: genai_config.json lacks {exc}"
            ) from None
        try:
            # From the config alone: the weights are loaded once, by the decoder.
            self.tokenizer = self.og.Tokenizer(self.og.Config(str(self.folder)))
        except Exception as exc:  # ORT GenAI raises plain RuntimeErrors
            raise ModelError(f"cannot load the tokenizer in {self.folder}: {exc}") from None
        eos = genai.get("eos_token_id", [])
        self.eos = frozenset(eos if isinstance(eos, list) else [eos])
        bos = genai.get("bos_token_id")
        probe = list(self.tokenizer.encode("a"))
        # Sentencepiece tokenizers put a BOS in front of every encode; text appended
        # mid-sequence must not carry one.
        self.strip_bos = bos is not None and len(probe) > 1 and probe[0] == bos
        self._guidance: Any = None
        self._grammars: dict[str, Any] = {}

    def matcher(self, schema: str) -> Any:
        """A fresh llguidance matcher for `schema` (its grammar compiled once per schema)."""
        import llguidance

        if self._guidance is None:
            path = self.folder / "tokenizer.json"
            try:
                self._guidance = llguidance.LLTokenizer(
                    path.read_text(), n_vocab=self.vocab_size, eos_token=sorted(self.eos)
                )
            except (OSError, ValueError) as exc:
                raise ModelError(f"guidance cannot read {path}: {exc}") from None
        grammar = self._grammars.get(schema)
        if grammar is None:
            grammar = self._grammars[schema] = llguidance.LLMatcher.grammar_from_json_schema(schema)
        matcher = llguidance.LLMatcher(self._guidance, grammar)
        if matcher.is_error():
            raise MindError(f"the guidance grammar failed: {matcher.get_error()}")
        return matcher


@dataclass
class _Job:
    """One attempt at a step: a prompt to read into a row, then guided tokens to write."""

    system: str  # the purpose's system prompt: rows holding it can be reused
    prefix: Any  # its token ids
    task: Any  # the task's token ids (after the prefix)
    budget: int
    matcher: Any
    done: threading.Event = field(default_factory=threading.Event)
    row: int = -1
    todo: Any = None  # prompt ids still to read
    then: Any = None  # the task's ids, while `todo` is the purpose
    base: int = 0  # where the prompt's task starts in the row
    prefilled: int = 0
    out: list[int] = field(default_factory=list)
    pending: int = -1  # the token picked last, to feed at the next step
    prefill_s: float = 0.0
    decode_started: float = 0.0
    decode_s: float = 0.0
    error: BaseException | None = None


# While other rows are writing, a chunk of prompt is sized to take about this long, so
# their next token never waits long for a row that is reading. Not shorter than _CHUNK_MIN
# tokens: every call reads all the weights, so tiny chunks would make reading cost as much
# as writing. With no row writing nobody waits, and a prompt is read _CHUNK_MAX tokens a
# call: paced chunks then only cost (measured on the Phi-3-mini shapes, 2 cores: a 133-token
# task read in 35-token chunks took 4.6 s against 4.0 s in one call). _CHUNK_MAX bounds
# what one call allocates (logits for every position it reads: 125 KB a token for Phi-3).
_CHUNK_S = 1.0
_CHUNK_MIN, _CHUNK_MAX, _CHUNK_FIRST = 32, 256, 64


def chunk_size(paced: int, *, others_writing: bool) -> int:
    """How many prompt tokens the next read call takes: `paced` (the tokens that take about
    _CHUNK_S at the rate measured so far) while others write, else as many as allowed."""
    return max(_CHUNK_MIN, min(_CHUNK_MAX, paced)) if others_writing else _CHUNK_MAX


class _Batcher:
    """The loop thread that owns the decoder: takes jobs, reads prompts, writes tokens."""

    def __init__(self, runtime: _Runtime, decoder: Decoder) -> None:
        self.runtime, self.decoder, self.np = runtime, decoder, runtime.np
        rows = decoder.rows
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._jobs: dict[int, _Job] = {}  # by row
        self._holds: list[str | None] = [None] * rows  # the purpose each row's cache holds
        self._bases = [0] * rows
        self._chunk = _CHUNK_FIRST
        self._bitmask = self.np.zeros((1, (runtime.vocab_size + 31) // 32), dtype=self.np.int32)
        self.interrupted = False
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="onnx-mind", daemon=True)
        self._thread.start()

    def submit(self, job: _Job) -> None:
        if self.interrupted:
            raise Interrupted("the onnx mind was interrupted")
        if self._closed:
            raise MindError("the onnx mind is closed")
        self._queue.put(job)

    def interrupt(self) -> None:
        self.interrupted = True
        self.decoder.interrupt()
        self._queue.put(None)  # wakes an idle loop

    def close(self) -> None:
        self._closed = True
        self._queue.put(None)
        self._thread.join()

    def _loop(self) -> None:
        waiting: list[_Job] = []
        while True:
            stop = self._take(waiting, block=not self._jobs)
            if stop or self.interrupted:
                self._fail_all(waiting, stop)
                if stop:
                    return
                continue
            self._seat(waiting)
            try:
                others = any(j.todo is None for j in self._jobs.values())
                for job in [j for j in self._jobs.values() if j.todo is not None]:
                    self._read(job, chunk_size(self._chunk, others_writing=others))
                writing = [j for j in self._jobs.values() if j.todo is None]
                if writing:
                    self._write(writing)
            except DecoderInterrupted:
                continue  # the next turn fails every job
            except Exception as exc:  # the rows' state is unknown: fail their jobs
                for job in list(self._jobs.values()):
                    self._finish(job, MindError(f"onnxruntime failed: {exc}"))
                self._holds = [None] * len(self._holds)

    def _take(self, waiting: list[_Job], *, block: bool) -> bool:
        """Move submitted jobs to `waiting`; True when the mind is closing."""
        try:
            item = self._queue.get(timeout=0.5) if block else self._queue.get_nowait()
            while True:
                if item is None:
                    if self._closed:
                        return True
                else:
                    waiting.append(item)
                item = self._queue.get_nowait()
        except queue.Empty:
            return False

    def _fail_all(self, waiting: list[_Job], closing: bool) -> None:
        error: MindError = (
            MindError("the onnx mind is closed")
            if closing and not self.interrupted
            else Interrupted("the onnx mind was interrupted")
        )
        for job in [*waiting, *self._jobs.values()]:
            self._finish(job, error)
        waiting.clear()

    def _seat(self, waiting: list[_Job]) -> None:
        """Give waiting jobs free rows, preferring one that holds their purpose."""
        reading = {j.system for j in self._jobs.values() if j.then is not None}
        for job in list(waiting):
            free = [r for r in range(self.decoder.rows) if r not in self._jobs]
            if not free:
                return
            holders = [r for r, s in enumerate(self._holds) if s == job.system]
            if not holders and job.system in reading:
                continue  # a row is reading this purpose: wait for it rather than read it twice
            waiting.remove(job)
            same = [r for r in free if r in holders]
            row = (same or [r for r in free if self._holds[r] is None] or free)[0]
            job.row = row
            self._jobs[row] = job
            if row in holders:
                self.decoder.rewind(row, self._bases[row])
                job.todo = job.task
            elif holders:
                started = time.perf_counter()
                self.decoder.copy(holders[0], row, self._bases[holders[0]])
                job.prefill_s += time.perf_counter() - started
                self._holds[row], self._bases[row] = job.system, self._bases[holders[0]]
                job.todo = job.task
            else:
                # Read the purpose first; the row holds it once that is done.
                self.decoder.rewind(row, 0)
                self._holds[row] = None
                job.todo, job.then = job.prefix, job.task
                job.prefilled = len(job.prefix)
                reading.add(job.system)
            job.base = len(job.prefix)

    def _read(self, job: _Job, size: int) -> None:
        """One chunk of the job's prompt; after the last one, its first token."""
        chunk, job.todo = job.todo[:size], job.todo[size:]
        started = time.perf_counter()
        logits = self.decoder.prefill(job.row, chunk)
        elapsed = time.perf_counter() - started
        job.prefill_s += elapsed
        self._chunk = int(len(chunk) / max(elapsed, 1e-6) * _CHUNK_S)
        if len(job.todo) == 0 and job.then is not None:
            self._holds[job.row], self._bases[job.row] = job.system, len(job.prefix)
            job.todo, job.then = job.then, None
        elif len(job.todo) == 0:
            job.todo = None
            job.prefilled += len(job.task)
            job.decode_started = time.perf_counter()
            self._pick(job, logits)

    def _write(self, jobs: list[_Job]) -> None:
        """One token for every writing job, in one call."""
        logits = self.decoder.step([j.row for j in jobs], [j.pending for j in jobs])
        for job, row_logits in zip(jobs, logits, strict=True):
            self._pick(job, row_logits)

    def _pick(self, job: _Job, logits: Any) -> None:
        """The best token its guidance allows; ends the job when it is the last."""
        from llguidance.numpy import fill_next_token_bitmask

        np = self.np
        fill_next_token_bitmask(job.matcher, self._bitmask, 0)
        bits = np.unpackbits(self._bitmask[0].view(np.uint8), bitorder="little")
        allowed = bits[: len(logits)].astype(bool)
        token = int(np.argmax(np.where(allowed, logits, -np.inf)))
        job.out.append(token)
        job.matcher.consume_token(token)
        if token in self.runtime.eos or len(job.out) >= job.budget or job.matcher.is_stopped():
            job.decode_s = time.perf_counter() - job.decode_started
            self._finish(job, None)
        else:
            job.pending = token

    def _finish(self, job: _Job, error: BaseException | None) -> None:
        job.error = error
        if self._jobs.get(job.row) is job:
            del self._jobs[job.row]
            if error is not None:
                self._holds[job.row] = None
        job.done.set()


@dataclass(frozen=True)
class MemoryPlan:
    """What a mind takes: the model once, and a KV cache row per slot."""

    model_bytes: int  # what loading the model added to this process's memory
    kv_bytes_per_token: int
    context: int
    slots: int

    @property
    def slot_bytes(self) -> int:
        return self.kv_bytes_per_token * self.context

    @property
    def total_bytes(self) -> int:
        return self.model_bytes + self.slots * self.slot_bytes

    def describe(self) -> str:
        mb = 1024 * 1024
        return (
            f"model {self.model_bytes / mb:,.0f} MB, KV cache "
            f"{self.slot_bytes / mb:,.0f} MB per slot ({self.context} tokens at "
            f"{self.kv_bytes_per_token / 1024:,.0f} KB), {self.slots} slot(s): "
            f"up to {self.total_bytes / mb:,.0f} MB"
        )


class BatchedMind:
    """Thinks with an ORT GenAI model folder in this process; slots decode as one batch."""

    # `think` may be called from any number of slot threads (at most `slots` run at once,
    # the rest wait for a row); `close` ends the loop, and later calls fail with a MindError.

    name = "onnx"

    def __init__(
        self,
        runtime: _Runtime,
        *,
        slots: int = 1,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        context: int | None = None,
        provider: str = "cpu",
        threads: int | None = None,
    ) -> None:
        self._runtime = runtime
        self.slots = slots
        self.max_new_tokens = max_new_tokens
        self.context = min(context or DEFAULT_CONTEXT, runtime.context_length)
        if self.context < max_new_tokens + 256:
            raise ModelError(
                f"context {self.context} is too small for max_new_tokens {max_new_tokens} "
                "plus a prompt; lower max_new_tokens or raise the context"
            )
        if max_new_tokens < MIN_NEW_TOKENS:
            raise ModelError(
                f"max_new_tokens must be at least {MIN_NEW_TOKENS}, got {max_new_tokens}"
            )
        if slots < 1:
            raise ModelError(f"slots must be at least 1, got {slots}")
        if provider not in PROVIDERS:
            raise ModelError(
                f"unknown provider {provider!r}; choose one of: {', '.join(PROVIDERS)}"
            )
        if threads is not None and threads < 1:
            raise ModelError(f"threads must be at least 1, got {threads}")
        import onnxruntime  # noqa: F401  (its libraries are not the model's memory)

        before = memory.rss_bytes()
        decoder = Decoder(
            runtime.folder, rows=slots, capacity=self.context, provider=provider, threads=threads
        )
        # What loading took (weights, prepacked); the files' size when that cannot be told.
        loaded = memory.rss_bytes() - before
        self.memory = MemoryPlan(
            model_bytes=loaded if loaded > 0 else _model_bytes(runtime.folder),
            kv_bytes_per_token=decoder.shape.bytes_per_token,
            context=self.context,
            slots=slots,
        )
        self.usage = Usage()  # since the mind was made
        self.last = Usage()  # of the latest step
        self.tokens_per_s = 0.0
        self._account_lock = threading.Lock()
        self._batcher = _Batcher(runtime, decoder)

    @property
    def model_dir(self) -> Path:
        return self._runtime.folder

    def think(self, request: ThinkRequest) -> Thought:
        return _retried(request, self._attempt, self._account, self.max_new_tokens)

    def interrupt(self) -> None:
        """Every step in progress or later raises Interrupted (within one model call)."""
        self._batcher.interrupt()

    def close(self) -> None:
        self._batcher.close()

    def _attempt(self, request: ThinkRequest, limits: Limits, *, tight: bool) -> _Attempt:
        runtime = self._runtime
        system = prompts.system_prompt(
            prompts.fit_text(request.purpose, self.context // 2, runtime.count),
            request.purpose_title,
        )
        prefix, suffix = runtime.chat(system)
        prefix_ids = runtime.encode(prefix)
        room = self.context - len(prefix_ids) - self.max_new_tokens - _NOTE_ROOM
        task = prompts.task_prompt(request, room - runtime.count(suffix), runtime.count)
        if tight:
            task += (
                f"\n(Your last reply ran past {self.max_new_tokens} tokens; keep this one short.)"
            )
        schema = guided_schema(limits, tight=tight, allowed=request.allowed)
        task_ids = runtime.encode(task + suffix, continuation=True)
        # A long purpose can leave less than max_new_tokens of the row: stop there.
        budget = min(self.max_new_tokens, self.context - len(prefix_ids) - len(task_ids))
        if budget < 1:
            raise MindError(f"the purpose and task fill the whole context of {self.context}")
        job = _Job(
            system=system,
            prefix=prefix_ids,
            task=task_ids,
            budget=budget,
            matcher=runtime.matcher(schema),
        )
        self._batcher.submit(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        finished = bool(job.out) and job.out[-1] in runtime.eos
        return _Attempt(
            text=runtime.decode(job.out[:-1] if finished else job.out),
            prompt_tokens=job.base + len(job.task),
            prefilled_tokens=job.prefilled,
            generated=len(job.out),
            finished=finished,
            prefill_s=job.prefill_s,
            decode_s=job.decode_s,
        )

    def _account(self, attempts: list[_Attempt]) -> None:
        last = Usage(thinks=1, retries=len(attempts) - 1)
        for a in attempts:
            last.prompt_tokens += a.prompt_tokens
            last.prefilled_tokens += a.prefilled_tokens
            last.generated_tokens += a.generated
            last.prefill_s += a.prefill_s
            last.decode_s += a.decode_s
        with self._account_lock:
            self.last = last
            self.usage.add(last)
            if last.decode_s > 0:
                rate = last.generated_tokens / last.decode_s
                # Smoothed so the live view shows a steady figure, not the last step's.
                smoothed = 0.7 * self.tokens_per_s + 0.3 * rate
                self.tokens_per_s = rate if self.tokens_per_s == 0 else smoothed


def _model_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.onnx*") if p.is_file())


def make_batched_mind(
    model_dir: str | Path,
    *,
    provider: str = "cpu",
    threads: int | None = None,
    slots: int = 1,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    context: int | None = None,
) -> BatchedMind:
    """Load the model in `model_dir`; a ModelError (one line) when it cannot be used."""
    return BatchedMind(
        _Runtime(model_dir),
        slots=slots,
        max_new_tokens=max_new_tokens,
        context=context,
        provider=provider,
        threads=threads,
    )
