#!/usr/bin/env python
"""The batch engine's decoder vs ORT GenAI's generator, one decode step at a time.

    python scripts/bench_decode.py --model /work/models/mini \
        --out bench/results/bench_decode_mini.json

Both run the same model folder on the same ONNX Runtime library with the same intra-op
threads (GenAI's default, which the decoder shares: half the cores; one here), unguided,
greedy, the KV cache at `--length` tokens, stepping in turn. Four layouts:

- `separate_decoder_first` / `separate_genai_first`: each engine in a process of its own
  (what a worker is), the two processes started in that order;
- `decoder_first` / `genai_first`: both engines in one process, loaded in that order.

Prints the median step of each and the paired ratio (GenAI's step time / the decoder's, per
pair of consecutive steps, so a change of load on a shared machine hits both alike), and
for each kind of layout the geometric mean of its two orders: on the Phi-3-mini shapes
whichever engine was loaded first stepped 5-10% slower, in one process or in two.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class _Engine:
    def step(self) -> float:
        raise NotImplementedError


class _Decoder(_Engine):
    def __init__(self, model: Path, ids: Any, capacity: int) -> None:
        from swarm.minds.decoder import Decoder

        # The decoder's default threads are ORT GenAI's: the model's setting, else half the cores.
        self.d = Decoder(model, rows=1, capacity=capacity)
        for i in range(0, len(ids), 256):
            self.d.prefill(0, ids[i : i + 256])
        self.token = 100

    def step(self) -> float:
        started = time.perf_counter()
        logits = self.d.step([0], [self.token])
        elapsed = time.perf_counter() - started
        self.token = int(logits[0].argmax())
        return elapsed


class _GenAI(_Engine):
    def __init__(self, model: Path, ids: Any, capacity: int) -> None:
        import numpy as np
        import onnxruntime_genai as og

        self.model = og.Model(og.Config(str(model)))
        params = og.GeneratorParams(self.model)
        params.set_search_options(max_length=capacity)
        self.gen = og.Generator(self.model, params)
        self.gen.append_tokens(ids.astype(np.int32))
        self.gen.generate_next_token()  # picks from the prompt's logits: no model call

    def step(self) -> float:
        started = time.perf_counter()
        self.gen.generate_next_token()
        return time.perf_counter() - started


ENGINES = {"decoder": _Decoder, "genai": _GenAI}
LAYOUTS = ("separate_decoder_first", "separate_genai_first", "decoder_first", "genai_first")


def _ids(model: Path, length: int) -> Any:
    """A prompt of random token ids the model's embedding has."""
    import numpy as np

    vocab = json.loads((model / "genai_config.json").read_text())["model"]["vocab_size"]
    return np.random.default_rng(0).integers(10, min(vocab, 4000), size=length)


def _summary(times: dict[str, list[float]]) -> dict[str, float]:
    dec, gen = times["decoder"], times["genai"]
    return {
        "decoder_ms": 1000 * statistics.median(dec),
        "genai_ms": 1000 * statistics.median(gen),
        "paired_genai_over_decoder": statistics.median(
            g / d for d, g in zip(dec, gen, strict=True)
        ),
    }


def one_process(model: Path, order: list[str], length: int, steps: int) -> dict[str, float]:
    engines = {
        name: ENGINES[name](model, _ids(model, length), length + steps + 16) for name in order
    }
    times: dict[str, list[float]] = {name: [] for name in order}
    for _ in range(steps):
        for name in order:
            times[name].append(engines[name].step())
    return _summary(times)


def child(engine: str, model: Path, length: int, steps: int) -> int:
    """`--child`: one engine; a step per line read, its seconds written back."""
    e = ENGINES[engine](model, _ids(model, length), length + steps + 16)
    print("READY", flush=True)
    for _ in sys.stdin:
        print(e.step(), flush=True)
    return 0


def separate(model: Path, order: list[str], length: int, steps: int) -> dict[str, float]:
    procs: dict[str, subprocess.Popen[str]] = {}
    for name in order:  # one at a time, so the loads do not compete
        p = subprocess.Popen(
            [sys.executable, __file__, "--child", name, "--model", str(model),
             "--length", str(length), "--steps", str(steps)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert p.stdout is not None and p.stdout.readline().strip() == "READY"
        procs[name] = p
    times: dict[str, list[float]] = {name: [] for name in procs}
    for _ in range(steps):
        for name, p in procs.items():
            assert p.stdin is not None and p.stdout is not None
            p.stdin.write("\n")
            p.stdin.flush()
            times[name].append(float(p.stdout.readline()))
    for p in procs.values():
        assert p.stdin is not None
        p.stdin.close()
        p.wait()
    return _summary(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--length", type=int, default=300, help="tokens in the KV cache")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--only", choices=LAYOUTS)
    parser.add_argument("--child", choices=tuple(ENGINES), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.model, args.length, args.steps)
    result: dict[str, Any] = {"command": " ".join(sys.argv), "length": args.length}
    layouts: dict[str, Callable[[], dict[str, float]]] = {
        "separate_decoder_first": lambda: separate(
            args.model, ["decoder", "genai"], args.length, args.steps
        ),
        "separate_genai_first": lambda: separate(
            args.model, ["genai", "decoder"], args.length, args.steps
        ),
        "decoder_first": lambda: one_process(
            args.model, ["decoder", "genai"], args.length, args.steps
        ),
        "genai_first": lambda: one_process(
            args.model, ["genai", "decoder"], args.length, args.steps
        ),
    }
    for name, run in layouts.items():
        if args.only == name:
            result[name] = run()
        elif args.only is None:  # each layout in a fresh process: a process loads a model once
            argv = ["--model", str(args.model), "--length", str(args.length)]
            argv += ["--steps", str(args.steps), "--only", name]
            done = subprocess.run(
                [sys.executable, __file__, *argv], stdout=subprocess.PIPE, text=True, check=True
            )
            result[name] = json.loads(done.stdout)[name]
            print(name, json.dumps(result[name]), file=sys.stderr, flush=True)
    if all(name in result for name in LAYOUTS):
        # The engine loaded first steps slower, whichever it is: the orders' geometric mean.
        for where in ("separate_", ""):
            a = result[f"{where}decoder_first"]["paired_genai_over_decoder"]
            b = result[f"{where}genai_first"]["paired_genai_over_decoder"]
            result[f"{where or 'one_process_'}both_orders"] = (a * b) ** 0.5
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
