#!/usr/bin/env python
"""Measure the onnx mind's `genai` engine (swarm.minds.onnx: ORT GenAI's generator, slots taking
turns) on one model, as ratios from one run. `bench_mind.py` measures the `batch` engine.

    python scripts/bench_genai.py                    # the tiny model, built on demand
    python scripts/bench_genai.py --size small       # compute-bound, Phi-3's vocabulary
    python scripts/bench_genai.py --model DIR        # e.g. a pulled Phi-3-mini, or --size mini

Prints, for the same prompts on the same model:
- decode tokens/s without and with JSON-schema guidance (bare ORT GenAI loops);
- time to first token for a task, cold (purpose + task) and with the purpose in the KV
  cache, for a work step and a synthesis step; and the mind's own cold vs warm figures;
- a cold prompt prefilled in the mind's chunks (see onnx.CHUNK_S) vs in one native call;
- the mind's step vs a bare guided ORT GenAI loop on the identical prompt;
- aggregate generated tokens/s with 1, 2 and 4 slots calling the mind at once, and the
  process memory each added slot costs.
The random-weight models write gibberish, which does not matter for speed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from swarm.minds import prompts  # noqa: E402
from swarm.minds.onnx import (  # noqa: E402
    ALL_ACTIONS,
    CHUNK_S,
    OnnxMind,
    _append_chunked,
    _Pacer,
    guided_schema,
    make_onnx_mind,
)
from swarm.protocol import ActionKind, Limits, ThinkRequest  # noqa: E402
from swarm.task import Kind, State, Task  # noqa: E402

# About 600 tokens of purpose for Phi-3's tokenizer, as in the issue's measurements.
PURPOSE = " ".join(
    [
        "Estimate, with sources and a stated uncertainty, how much fresh water the city of",
        "Lyon uses in a year, broken down by households, industry, agriculture and leaks,",
        "and compare each share with the French average. Say which figures are measured",
        "and which are modelled, and which source each one comes from.",
    ]
    * 2
)
# Bounds a random model's answers fit in (it fills every string to its limit), so a step
# runs once and the figures measure one attempt each; the bench reports any retry.
LIMITS = Limits(
    max_children=3, max_title=30, max_detail=60, max_answer=200, max_reason=40, max_code=200,
    max_tags=1, max_tag=12,
)  # fmt: skip


def task(i: int) -> Task:
    return Task(
        id=f"0.{i}",
        parent="0",
        depth=1,
        kind=Kind.WORK,
        title=f"Household use, district {i}",
        detail="Find the yearly household consumption of this district and its source.",
    )


def work_step(i: int, allowed: frozenset[ActionKind] = ALL_ACTIONS) -> ThinkRequest:
    root = Task(id="0", parent="", depth=0, kind=Kind.WORK, title="Lyon's water")
    return ThinkRequest(
        purpose=PURPOSE, task=task(i), allowed=allowed, limits=LIMITS, ancestry=(root,)
    )


def synthesis_step(i: int) -> ThinkRequest:
    kids = tuple(
        Task(id=f"0.{i}.{k}", parent=f"0.{i}", depth=2, kind=Kind.WORK, title=f"Street {k}",
             state=State.DONE, result=f"About {k * 1000} cubic metres a year (city report).",
             confidence="medium")
        for k in range(1, 5)
    )  # fmt: skip
    synth = Task(id=f"0.{i}", parent="0", depth=1, kind=Kind.SYNTHESIZE, title=task(i).title)
    return ThinkRequest(
        purpose=PURPOSE, task=synth, allowed=frozenset({ActionKind.ANSWER}), limits=LIMITS,
        children=kids,
    )  # fmt: skip


@dataclass
class Bare:
    """A plain ORT GenAI generation loop: what the mind's loop is measured against."""

    mind: OnnxMind

    @property
    def rt(self) -> Any:
        return self.mind._runtime

    def prompt_ids(self, step: ThinkRequest) -> tuple[Any, Any]:
        system = prompts.system_prompt(step.purpose, step.purpose_title)
        prefix, suffix = self.rt.chat(system)
        body = prompts.task_prompt(step)
        return self.rt.encode(prefix), self.rt.encode(body + suffix, continuation=True)

    def generator(self, guided: bool) -> Any:
        og = self.rt.og
        params = og.GeneratorParams(self.rt.model)
        params.set_search_options(max_length=self.mind.context)
        if guided:
            params.set_guidance("json_schema", guided_schema(LIMITS))
        return og.Generator(self.rt.model, params)

    def decode_rate(self, step: ThinkRequest, tokens: int, guided: bool) -> float:
        prefix, body = self.prompt_ids(step)
        gen = self.generator(guided)
        gen.append_tokens(self.rt.np.concatenate([prefix, body]))
        n, started = 0, time.perf_counter()
        while n < tokens and not gen.is_done():
            gen.generate_next_token()
            gen.get_next_tokens()
            n += 1
        return n / (time.perf_counter() - started)

    def first_token_s(self, step: ThinkRequest, *, cached: bool) -> float:
        prefix, body = self.prompt_ids(step)
        gen = self.generator(guided=True)
        if cached:
            gen.append_tokens(prefix)
            base = gen.token_count()
        started = time.perf_counter()
        gen.append_tokens(body if cached else self.rt.np.concatenate([prefix, body]))
        gen.generate_next_token()
        elapsed = time.perf_counter() - started
        if cached:
            gen.rewind_to(base)
        return elapsed

    def prefill_s(self, step: ThinkRequest, *, chunked: bool) -> tuple[float, float]:
        """A cold prompt (purpose and task) in one native call, or in the mind's chunks:
        seconds of wall time and of this process's CPU time."""
        prefix, body = self.prompt_ids(step)
        ids = self.rt.np.concatenate([prefix, body])
        gen = self.generator(guided=True)
        wall, cpu = time.perf_counter(), time.process_time()
        if chunked:
            _append_chunked(gen, ids, _Pacer(CHUNK_S))
        else:
            gen.append_tokens(ids)
        return time.perf_counter() - wall, time.process_time() - cpu

    def step_s(self, step: ThinkRequest, budget: int) -> tuple[float, int]:
        """A whole guided step, the way the mind runs it, as a bare loop: seconds, tokens."""
        prefix, body = self.prompt_ids(step)
        gen = self.generator(guided=True)
        gen.append_tokens(prefix)
        base = gen.token_count()
        started = time.perf_counter()
        gen.append_tokens(body)
        n = 0
        while n < budget and not gen.is_done():
            gen.generate_next_token()
            gen.get_next_tokens()
            n += 1
        elapsed = time.perf_counter() - started
        gen.rewind_to(base)
        return elapsed, n


def rss_mb() -> float:
    """Resident memory of this process now, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def slots_rate(mind: OnnxMind, slots: int, steps_per_slot: int) -> float:
    """Aggregate generated tokens/s with `slots` threads thinking at once."""
    before = mind.usage.generated_tokens
    errors: list[BaseException] = []

    def run(slot: int) -> None:
        try:
            for k in range(steps_per_slot):
                mind.think(work_step(100 * slot + k))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in range(slots)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return (mind.usage.generated_tokens - before) / elapsed


def median(values: list[float]) -> float:
    return statistics.median(values)


def measure(
    model: Path, decode_tokens: int, steps: int, max_new: int, rounds: int
) -> dict[str, Any]:
    """Each comparison alternates its two sides for `rounds` rounds and keeps the medians,
    so load from other processes on the machine falls on both sides alike."""
    base_rss = rss_mb()
    mind = make_onnx_mind(model, max_new_tokens=max_new)
    loaded_rss = rss_mb()
    bare = Bare(mind)
    out: dict[str, Any] = {"model": str(model), "max_new_tokens": max_new, "rounds": rounds}
    prefix, body = bare.prompt_ids(work_step(0))
    out["purpose_tokens"], out["task_tokens"] = len(prefix), len(body)
    out["synthesis_task_tokens"] = len(bare.prompt_ids(synthesis_step(0))[1])

    bare.decode_rate(work_step(0), 8, guided=True)  # warm up the sessions and caches
    unguided, guided = [], []
    for _ in range(rounds):
        unguided.append(bare.decode_rate(work_step(0), decode_tokens, guided=False))
        guided.append(bare.decode_rate(work_step(0), decode_tokens, guided=True))
    out["decode_tokens_per_s"] = {
        "unguided": median(unguided),
        "guided": median(guided),
        "ratio": median(guided) / median(unguided),
    }

    ttft: dict[str, Any] = {}
    for name, make in (("work", work_step), ("synthesis", synthesis_step)):
        cold, warm = [], []
        for i in range(rounds):
            cold.append(bare.first_token_s(make(i), cached=False))
            warm.append(bare.first_token_s(make(i), cached=True))
        ttft[name] = {"cold_s": median(cold), "cached_s": median(warm)}
        ttft[name]["speedup"] = ttft[name]["cold_s"] / ttft[name]["cached_s"]
    # The mind itself: its first step prefills the purpose, the next ones reuse it.
    mind.think(work_step(0))
    mind_cold = mind.last.prefill_s
    mind_warm = []
    for i in range(1, 1 + rounds):
        mind.think(work_step(i))
        mind_warm.append(mind.last.prefill_s)
    ttft["mind"] = {"cold_s": mind_cold, "cached_s": median(mind_warm)}
    ttft["mind"]["speedup"] = mind_cold / ttft["mind"]["cached_s"]
    out["first_token"] = ttft

    # Prefill in chunks of CHUNK_S (what keeps the heartbeat alive) vs one native call.
    sides: dict[str, list[tuple[float, float]]] = {"one_call": [], "chunked": []}
    for i in range(rounds):
        sides["one_call"].append(bare.prefill_s(work_step(i), chunked=False))
        sides["chunked"].append(bare.prefill_s(work_step(i), chunked=True))
    prefill: dict[str, Any] = {"chunk_s": CHUNK_S}
    for side, runs in sides.items():
        prefill[side] = {
            "wall_s": median([w for w, _ in runs]),
            "cpu_s": median([c for _, c in runs]),
        }
    prefill["wall_ratio"] = prefill["one_call"]["wall_s"] / prefill["chunked"]["wall_s"]
    prefill["cpu_ratio"] = prefill["one_call"]["cpu_s"] / prefill["chunked"]["cpu_s"]
    out["prefill_chunked"] = prefill

    # The mind's whole step vs the bare loop on the same prompt, same guidance, no steering.
    mind_rates, bare_rates = [], []
    for i in range(10, 10 + steps):
        mind.think(work_step(i))
        mind_rates.append(mind.last.generated_tokens / (mind.last.prefill_s + mind.last.decode_s))
        seconds, tokens = bare.step_s(work_step(i), max_new)
        bare_rates.append(tokens / seconds)
    out["step_tokens_per_s"] = {
        "mind": median(mind_rates),
        "bare": median(bare_rates),
        "ratio": median(mind_rates) / median(bare_rates),
    }
    # Steering (only some actions allowed) masks logits for the first few tokens.
    answer_only = frozenset({ActionKind.ANSWER})
    mind.think(work_step(0, answer_only))  # its masks are computed once, then cached
    steered = []
    for i in range(20, 20 + steps):
        mind.think(work_step(i, answer_only))
        steered.append(mind.last.generated_tokens / (mind.last.prefill_s + mind.last.decode_s))
    out["step_tokens_per_s"]["mind_answer_only"] = median(steered)

    rates: dict[int, list[float]] = {1: [], 2: [], 4: []}
    rates[1].append(slots_rate(mind, 1, 4))
    one_slot_rss = rss_mb()
    for r in range(rounds):
        for count in rates:
            if r or count > 1:
                rates[count].append(slots_rate(mind, count, max(1, 4 // count)))
    slots: dict[str, Any] = {str(k): median(v) for k, v in rates.items()}
    slots["ratio_4_vs_1"] = slots["4"] / slots["1"]
    out["slots_tokens_per_s"] = slots
    out["memory_mb"] = {
        "model_only": loaded_rss - base_rss,
        "with_one_slot": one_slot_rss - base_rss,
        "added_by_4_slots": rss_mb() - one_slot_rss,
    }
    out["retries"] = mind.usage.retries
    mind.close()
    return out


def report(r: dict[str, Any]) -> str:
    d, f, st = r["decode_tokens_per_s"], r["first_token"], r["step_tokens_per_s"]
    sl, mem = r["slots_tokens_per_s"], r["memory_mb"]
    lines = [
        f"model {r['model']}: purpose {r['purpose_tokens']} tokens, task {r['task_tokens']}, "
        f"synthesis task {r['synthesis_task_tokens']}; medians of {r['rounds']} rounds",
        f"decode tokens/s   unguided {d['unguided']:.1f}   guided {d['guided']:.1f}   "
        f"guided/unguided {d['ratio']:.2f}",
    ]
    for name in ("work", "synthesis", "mind"):
        x = f[name]
        lines.append(
            f"first token ({name:9}) cold {x['cold_s'] * 1000:9.1f} ms   purpose cached "
            f"{x['cached_s'] * 1000:8.1f} ms   speedup {x['speedup']:.1f}x"
        )
    p = r["prefill_chunked"]
    lines.append(
        f"cold prefill      one call {p['one_call']['wall_s']:.2f} s   in {p['chunk_s']} s "
        f"chunks {p['chunked']['wall_s']:.2f} s   speed kept {p['wall_ratio']:.2f} "
        f"(CPU time {p['cpu_ratio']:.2f})"
    )
    lines.append(
        f"step tokens/s     mind {st['mind']:.1f}   bare loop {st['bare']:.1f}   "
        f"mind/bare {st['ratio']:.2f}   (answer-only, steered: {st['mind_answer_only']:.1f})"
    )
    lines.append(
        "slots, aggregate  "
        + "   ".join(f"{k}: {sl[k]:.1f} tok/s" for k in ("1", "2", "4"))
        + f"   4 vs 1 {sl['ratio_4_vs_1']:.2f}"
    )
    lines.append(
        f"memory            model {mem['model_only']:.0f} MB, running one slot "
        f"{mem['with_one_slot']:.0f} MB; going to 4 slots added {mem['added_by_4_slots']:.0f} MB"
    )
    lines.append(f"retries           {r['retries']} (a retry would blur the step figures)")
    return "\n".join(lines)


def prefill_sweep(model: Path, sizes: list[int], rounds: int, tokens: int) -> dict[str, Any]:
    """CPU seconds to prefill the first `tokens` of the cold work prompt in one call and in
    chunks of each size, alternated for `rounds` rounds (medians): what one native call
    costs over its tokens. CPU time, not wall time, so other load on the machine falls out."""
    mind = make_onnx_mind(model)
    bare = Bare(mind)
    prefix, body = bare.prompt_ids(work_step(0))
    ids = bare.rt.np.concatenate([prefix, body])[:tokens]
    cpu: dict[int, list[float]] = {0: [], **{n: [] for n in sizes}}
    for _ in range(rounds):
        for n in cpu:
            gen = bare.generator(guided=True)
            began = time.process_time()
            for start in range(0, len(ids), n or len(ids)):
                gen.append_tokens(ids[start : start + (n or len(ids))])
            cpu[n].append(time.process_time() - began)
            del gen
    one = median(cpu[0])
    out: dict[str, Any] = {"model": str(model), "prompt_tokens": len(ids), "one_call_cpu_s": one}
    out["chunks"] = {
        str(n): {"cpu_s": median(cpu[n]), "ratio": one / median(cpu[n])} for n in sizes
    }
    mind.close()
    return out


def model_for(size: str) -> Path:
    spec = importlib.util.spec_from_file_location(
        "make_tiny_phi3", ROOT / "scripts" / "make_tiny_phi3.py"
    )
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = ROOT / ".models" / size
    if not script.is_built(out, size):
        print(f"building the {size} model into {out} ...", file=sys.stderr)
    return Path(script.build(size, out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="an ORT GenAI model folder")
    parser.add_argument("--size", default="tiny", help="random model to build when no --model")
    parser.add_argument("--decode-tokens", type=int, default=256, help="tokens per decode run")
    parser.add_argument("--steps", type=int, default=4, help="steps per comparison")
    parser.add_argument("--rounds", type=int, default=3, help="repeats of each comparison")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--prefill-sweep",
        metavar="N,N",
        help="only: CPU time of a cold prefill in one call vs in chunks of N tokens",
    )
    parser.add_argument("--prefill-tokens", type=int, default=256, help="for --prefill-sweep")
    args = parser.parse_args(argv)
    model = args.model or model_for(args.size)
    if args.prefill_sweep:
        sizes = [int(n) for n in args.prefill_sweep.split(",")]
        result = prefill_sweep(model, sizes, args.rounds, args.prefill_tokens)
        print(json.dumps(result, indent=2))
        return 0
    result = measure(model, args.decode_tokens, args.steps, args.max_new_tokens, args.rounds)
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
