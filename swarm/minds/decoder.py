"""The decoder: one ONNX Runtime session over an ORT GenAI model folder, and a KV cache of
one row per slot, run a bounded piece at a time.

Why not ORT GenAI's own loop. What does not work in onnxruntime-genai 0.18.0 (Linux x64
CPU wheel, the Phi-3 GroupQueryAttention models its builder writes; reproduced here on the
tiny model, upstream-style):

- `og.Engine`, `Request.rewind_to_start_of_turn(turn_id)`: after a request's first turn
  (the purpose) and a second turn (a task), rewinding to the start of the second turn and
  beginning a third makes the engine prefill the whole sequence again. Expected: the first
  turn's tokens stay in the KV cache. Seen: the third turn takes as long as a cold request
  of purpose + task (0.15 s vs 0.014 s for the second turn at a 3,000-token purpose on the
  tiny model) and every later one too; `TurnUsage.cached_prompt_tokens` is 0 throughout.
  (The Engine does batch requests, statically, 4 rows unless configured, and a turn's
  guidance and a forced token, `lark_grammar` `start: <[ID]>`, work.)
- A batched `og.Generator` (`batch_size=2`) with `GeneratorParams.set_guidance(
  "json_schema", ...)`: once one sequence's grammar accepts and it emits EOS while the
  other goes on, the next `generate_next_token()` raises `RuntimeError: Error computing
  mask: compute_mask() called after stop`. Expected: the finished sequence is padded.
  Independently of guidance, `append_tokens` on a batched generator appends to every
  sequence at once and `rewind_to` rewinds them all, so a slot could neither start its
  next task while the others write nor rewind alone.

The model itself takes ragged batches: GroupQueryAttention reads each row's length from
its attention mask and writes the new keys and values at that position in a buffer it
shares between past and present. So this module binds one buffer per layer, holding a row
per slot, and runs:

- `prefill(row, ids)`: one chunk of one row's prompt (a few dozen tokens), alone;
- `step(rows, tokens)`: one token for every decoding row, in one batched call.

A row's length is just a number here: rewinding to the purpose is setting it back, and a
row can take another row's purpose by copying its first positions. Every call is one
session run: ONNX Runtime releases the GIL while it runs, and `interrupt()` sets the
run's terminate flag, which ends it within milliseconds.

Memory: a row is resident in full (`capacity` positions of every layer's keys and values)
from its first call on, whatever length it has reached (measured: the first call on a row
adds its whole reserve to the process's RSS), so `capacity` is what sizes a slot. On a GPU
provider the buffers still live in host memory and are copied each call: correct, not fast,
and not measured here.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarm.models import ModelError

# ORT execution providers for the mind's `provider` option.
EXECUTION_PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "dml": "DmlExecutionProvider",
}
_PROVIDER_PACKAGES = {"cuda": "onnxruntime-gpu", "dml": "onnxruntime-directml"}
_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16"}


def _default_threads() -> int:
    return max(1, min((os.cpu_count() or 2) // 2, 16))


class DecoderInterrupted(RuntimeError):
    """A run ended by `interrupt()`."""


@dataclass(frozen=True)
class Shape:
    """What the KV cache of a model folder's decoder looks like."""

    layers: int
    kv_heads: int
    head_size: int
    vocab: int
    itemsize: int  # bytes of one cached number

    @property
    def bytes_per_token(self) -> int:
        """Keys and values of one position, every layer."""
        return 2 * self.layers * self.kv_heads * self.head_size * self.itemsize


def read_shape(genai: dict[str, Any], itemsize: int = 4) -> Shape:
    decoder = genai["decoder"]
    return Shape(
        layers=int(decoder["num_hidden_layers"]),
        kv_heads=int(decoder["num_key_value_heads"]),
        head_size=int(decoder["head_size"]),
        vocab=int(genai["vocab_size"]),
        itemsize=itemsize,
    )


class Decoder:
    """The session and the KV rows. Not thread-safe: one thread drives it (interrupt aside)."""

    def __init__(
        self,
        folder: Path,
        *,
        rows: int,
        capacity: int,
        provider: str = "cpu",
        threads: int | None = None,
    ) -> None:
        import numpy as np
        import onnxruntime as ort

        self.np, self.ort = np, ort
        genai = json.loads((folder / "genai_config.json").read_text())["model"]
        decoder = genai["decoder"]
        self.session = self._session(folder / decoder["filename"], decoder, provider, threads)
        names = decoder.get("inputs", {}), decoder.get("outputs", {})
        past_k = names[0].get("past_key_names", "past_key_values.%d.key")
        past_v = names[0].get("past_value_names", "past_key_values.%d.value")
        pres_k = names[1].get("present_key_names", "present.%d.key")
        pres_v = names[1].get("present_value_names", "present.%d.value")
        self.input_ids = names[0].get("input_ids", "input_ids")
        self.attention_mask = names[0].get("attention_mask", "attention_mask")
        self.logits = names[1].get("logits", "logits")
        types = {i.name: i.type for i in self.session.get_inputs()}
        kv_type = _DTYPES.get(types.get(past_k % 0, ""))
        if kv_type is None or self.attention_mask not in types:
            raise ModelError(
                f"{folder}: the decoder needs float past keys/values and an attention mask"
            )
        self.dtype = np.dtype(kv_type)
        self.ids_dtype = np.int64 if types.get(self.input_ids) == "tensor(int64)" else np.int32
        self.shape = read_shape(genai, self.dtype.itemsize)
        self.rows, self.capacity = rows, capacity
        s = self.shape
        self._pairs = [
            (name % i, out % i)
            for i in range(s.layers)
            for name, out in ((past_k, pres_k), (past_v, pres_v))
        ]
        # One buffer per layer and kind: [rows, kv_heads, capacity, head_size], untouched.
        self._kv = [
            np.zeros((rows, s.kv_heads, capacity, s.head_size), self.dtype) for _ in self._pairs
        ]
        self._row_bytes = s.kv_heads * capacity * s.head_size * self.dtype.itemsize
        self.lengths = [0] * rows
        # Counters for the mind's figures: decode steps, rows they carried, the longest call.
        self.steps = 0
        self.rows_stepped = 0
        self.longest_call_s = 0.0
        # One set of run options for every call: `interrupt()` sets its terminate flag from
        # another thread. The graph id entry spares ORT's wrapper a failed lookup per call.
        self._options = self.ort.RunOptions()
        self._options.add_run_config_entry("gpu_graph_id", "-1")
        self._bindings: dict[tuple[int, int], Any] = {}

    def _session(
        self, path: Path, decoder: dict[str, Any], provider: str, threads: int | None
    ) -> Any:
        ort = self.ort
        ep = EXECUTION_PROVIDERS[provider]
        if ep not in ort.get_available_providers():
            raise ModelError(
                f"provider {provider!r} is not available in the installed onnxruntime; "
                f"install {_PROVIDER_PACKAGES[provider]} instead"
            )
        options = ort.SessionOptions()
        configured = decoder.get("session_options", {})
        if threads is None:
            # ORT GenAI's default: half the cores (a core's second hyperthread, or the rest
            # of the machine, is better left to the other work), at most 16.
            threads = int(configured.get("intra_op_num_threads", 0)) or _default_threads()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            return ort.InferenceSession(str(path), options, providers=[ep])
        except Exception as exc:  # ORT raises its own exception types
            raise ModelError(f"cannot load the model {path}: {exc}") from None

    @property
    def row_bytes(self) -> int:
        """The KV cache of one row at full capacity, in bytes."""
        return self.shape.bytes_per_token * self.capacity

    def copy(self, src: int, dst: int, length: int) -> None:
        """Row `dst` takes the first `length` positions of row `src` (a shared purpose)."""
        for buf in self._kv:
            buf[dst, :, :length] = buf[src, :, :length]
        self.lengths[dst] = length

    def rewind(self, row: int, length: int) -> None:
        self.lengths[row] = min(length, self.lengths[row])

    def prefill(self, row: int, ids: Any) -> Any:
        """Append `ids` to one row; the logits after its last token ([vocab])."""
        if self.lengths[row] + len(ids) > self.capacity:
            raise ValueError(f"row {row} would pass its capacity of {self.capacity} tokens")
        batch = self.np.asarray(ids, dtype=self.ids_dtype).reshape(1, -1)
        return self._run(row, [row], batch)[0]

    def step(self, rows: list[int], tokens: list[int]) -> Any:
        """Append one token to each row in `rows` in one call; their logits ([len(rows), vocab])."""
        first, last = min(rows), max(rows)
        if any(self.lengths[r] + 1 > self.capacity for r in rows):
            raise ValueError(f"a row would pass its capacity of {self.capacity} tokens")
        # The call covers the rows from first to last; a row in between that is not
        # decoding gets a filler token written past its length, where nothing is kept.
        batch = self.np.zeros((last - first + 1, 1), dtype=self.ids_dtype)
        for r, t in zip(rows, tokens, strict=True):
            batch[r - first, 0] = t
        logits = self._run(first, rows, batch)
        self.steps += 1
        self.rows_stepped += len(rows)
        return logits[[r - first for r in rows]]

    def interrupt(self) -> None:
        """End the run in progress, and make every later one fail at once."""
        self._options.terminate = True

    def _binding(self, first: int, count: int) -> Any:
        """The IO binding of rows first..first+count-1: their KV views, kept for reuse."""
        io = self._bindings.get((first, count))
        if io is None:
            io = self.session.io_binding()
            io.bind_output(self.logits)  # first, so it is output 0
            shape = [count, self.shape.kv_heads, self.capacity, self.shape.head_size]
            for (past, present), buf in zip(self._pairs, self._kv, strict=True):
                ptr = buf.ctypes.data + first * self._row_bytes
                io.bind_input(past, "cpu", 0, self.dtype, shape, ptr)
                io.bind_output(present, "cpu", 0, self.dtype, shape, ptr)
            self._bindings[(first, count)] = io
        return io

    def _run(self, first: int, active: list[int], batch: Any) -> Any:
        np = self.np
        count, width = batch.shape
        # A row that is not reading gets its filler at its length (or its last position,
        # when full: a row is always rewound before it is used again).
        ends = [
            self.lengths[first + i] + width
            if first + i in active
            else min(self.lengths[first + i] + 1, self.capacity)
            for i in range(count)
        ]
        mask = np.zeros((count, max(ends)), dtype=np.int64)
        for i, end in enumerate(ends):
            mask[i, :end] = 1
        io = self._binding(first, count)
        io.bind_cpu_input(self.input_ids, batch)
        io.bind_cpu_input(self.attention_mask, mask)
        io.bind_output(self.logits)  # let the run allocate it at this call's shape
        started = time.perf_counter()
        try:
            self.session.run_with_iobinding(io, self._options)
        except Exception as exc:
            if self._options.terminate:
                raise DecoderInterrupted("interrupted") from None
            raise RuntimeError(str(exc).splitlines()[0] if str(exc) else repr(exc)) from None
        finally:
            self.longest_call_s = max(self.longest_call_s, time.perf_counter() - started)
        logits = io.get_outputs()[0].numpy()
        for r in active:
            self.lengths[r] = ends[r - first]
        return logits[:, -1, :]
