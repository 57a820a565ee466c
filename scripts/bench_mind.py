#!/usr/bin/env python
"""Measure the onnx mind on one model, as ratios from one run.

    python scripts/bench_mind.py --model /work/models/mini --out bench/results/bench_mind_mini.json
    python scripts/bench_mind.py --size small       # a random model built on demand

Prints, for the same prompts on the same model:
- time to first token, cold (purpose + task read) and with the purpose cached (the row's
  own, and copied from another row);
- the mind's step vs a bare ORT GenAI guided loop on the identical prompt (tokens/s);
- aggregate generated tokens/s with 1, 2, 4 and 8 slots calling the mind at once, and
  the resident memory each added slot costs against its KV cache;
- (--tasks) the time for 5 steps through one process with 4 slots vs 4 processes of 1;
- (--pss N) PSS of N processes holding the model at once: do they share its weights?
The random-weight models write gibberish, which does not matter for speed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from swarm import memory  # noqa: E402
from swarm.minds import prompts  # noqa: E402
from swarm.minds.batched import BatchedMind, _Runtime, make_batched_mind  # noqa: E402
from swarm.minds.onnx import _NOTE_ROOM, guided_schema  # noqa: E402
from swarm.protocol import ActionKind, Limits, ThinkRequest  # noqa: E402
from swarm.task import Kind, Task  # noqa: E402

MB = memory.MB
# About 600 words of purpose; 811 tokens with the system prompt on Phi-3's tokenizer.
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
ANSWER = frozenset({ActionKind.ANSWER})


def work_step(i: int, limits: Limits | None = None) -> ThinkRequest:
    root = Task(id="0", parent="", depth=0, kind=Kind.WORK, title="Lyon's water")
    task = Task(
        id=f"0.{i}", parent="0", depth=1, kind=Kind.WORK, title=f"Household use, district {i}",
        detail="Find the yearly household consumption of this district and its source.",
    )  # fmt: skip
    limits = limits or LIMITS
    return ThinkRequest(purpose=PURPOSE, task=task, allowed=ANSWER, limits=limits, ancestry=(root,))


def force_answer_chars(chars: int) -> None:
    """Make every answer exactly `chars` characters long (the guidance schema's answer string
    gets that minLength), here and in the bare loop. The random models close their strings
    after a few characters (answers of about 16 tokens on the mini shapes), so their steps
    are nearly all prompt reading, where a real model writes hundreds of tokens: this gives
    the steps a real model's share of writing, through the mind's own path."""
    from swarm.minds import batched

    def forced(limits: Limits, **kwargs: Any) -> str:
        schema = json.loads(guided_schema(limits, **kwargs))
        answer = schema.get("properties", {}).get("answer")
        if answer is not None:
            answer["minLength"] = answer["maxLength"] = chars
        return json.dumps(schema)

    setattr(batched, "guided_schema", forced)  # noqa: B010  (the mind's own step, reshaped)
    global LIMITS, forced_schema
    LIMITS = replace(LIMITS, max_answer=max(LIMITS.max_answer, chars))
    forced_schema = forced


forced_schema = guided_schema


class Bare:
    """A plain ORT GenAI guided loop, the purpose appended once: what the mind is measured
    against. It runs in a process of its own (`BareProcess`): one process holding two
    copies of the model made the copy loaded second about 9% faster per decode step,
    whichever engine it was (measured on the mini shapes, steps alternated), which is not
    a difference between the engines."""

    def __init__(self, model: Path, context: int, max_new_tokens: int) -> None:
        import onnxruntime_genai as og

        self.og, self.context, self.max_new_tokens = og, context, max_new_tokens
        self.rt = _Runtime(model)  # the mind's tokenizer and chat format
        self.model = og.Model(og.Config(str(model)))
        self.gen: Any = None
        self.base = 0

    def step(self, step: ThinkRequest) -> tuple[float, float, int]:
        """One step the way the mind runs it (its prompt and guidance): seconds reading the
        task, seconds writing, tokens written."""
        rt = self.rt
        # The mind's system prompt (BatchedMind._attempt): the purpose fitted to half the row.
        purpose = prompts.fit_text(step.purpose, self.context // 2, rt.count)
        prefix, suffix = rt.chat(prompts.system_prompt(purpose, step.purpose_title))
        if self.gen is None:  # the purpose is read once, then rewound to, as the mind does
            params = self.og.GeneratorParams(self.model)
            params.set_search_options(max_length=self.context)
            schema = forced_schema(step.limits, allowed=step.allowed)
            params.set_guidance("json_schema", schema)
            self.gen = self.og.Generator(self.model, params)
            self.gen.append_tokens(rt.encode(prefix))
            self.base = self.gen.token_count()
        # The mind's room for the task (BatchedMind._attempt), so the prompts are the same.
        room = self.context - self.base - self.max_new_tokens - _NOTE_ROOM - rt.count(suffix)
        body = rt.encode(prompts.task_prompt(step, room, rt.count) + suffix, continuation=True)
        started = time.perf_counter()
        self.gen.append_tokens(body)
        read = time.perf_counter()
        n = 0
        while n < self.max_new_tokens and not self.gen.is_done():
            self.gen.generate_next_token()
            n += 1
        ended = time.perf_counter()
        self.gen.rewind_to(self.base)
        return read - started, ended - read, n


def bare_child(model: Path, context: int, max_new_tokens: int, chars: int) -> int:
    """`--bare-child`: run `Bare` steps named on stdin (work step numbers), one JSON reply
    line each ([read_s, write_s, tokens])."""
    if chars:
        force_answer_chars(chars)
    bare = Bare(model, context, max_new_tokens)
    print("READY", flush=True)
    for line in sys.stdin:
        print(json.dumps(bare.step(work_step(int(line)))), flush=True)
    return 0


class BareProcess:
    """The bare loop in a child process, one step at a time."""

    def __init__(self, model: Path, context: int, max_new_tokens: int, chars: int) -> None:
        args = [str(model), str(context), str(max_new_tokens), str(chars)]
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--bare-child", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if self._line() != "READY":
            raise RuntimeError("the bare GenAI loop did not start")

    def _line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def step(self, i: int) -> tuple[float, float, int]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{i}\n")
        self.proc.stdin.flush()
        read_s, write_s, tokens = json.loads(self._line())
        return float(read_s), float(write_s), int(tokens)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def slots_rate(mind: BatchedMind, slots: int, steps_per_slot: int, limits: Limits | None) -> float:
    """Aggregate generated tokens/s with `slots` threads thinking at once."""
    before = mind.usage.generated_tokens
    errors: list[BaseException] = []

    def run(slot: int) -> None:
        try:
            for k in range(steps_per_slot):
                mind.think(work_step(1000 + 100 * slot + k, limits))
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


def compare_steps(sides: dict[str, list[tuple[float, float, int]]]) -> dict[str, Any]:
    """Medians of each side's steps (seconds reading the task, seconds writing, tokens
    written), and the ratios: a step's tokens/s, and writing and reading apart (a step's
    tokens/s also depends on how many tokens it wrote, which the two sides' guidance may
    end differently)."""
    out: dict[str, Any] = {}
    for side, steps in sides.items():
        out[side] = statistics.median(n / (r + w) for r, w, n in steps)
        out[f"{side}_detail"] = {
            "read_s": statistics.median(r for r, _, _ in steps),
            "write_s": statistics.median(w for _, w, _ in steps),
            "tokens": statistics.median(n for _, _, n in steps),
            # The first token comes from the read; each later one from a decode call.
            "ms_per_decode": statistics.median(1000 * w / max(n - 1, 1) for _, w, n in steps),
        }
    # Each round's ratio (its two steps ran one after the other), then their median.
    out["rounds"] = sides
    out["paired_step_time_ratio"] = statistics.median(
        (br + bw) / (mr + mw)
        for (mr, mw, _), (br, bw, _) in zip(sides["mind"], sides["bare_genai"], strict=True)
    )
    mind, bare = out["mind_detail"], out["bare_genai_detail"]
    out["ratio"] = out["mind"] / out["bare_genai"]
    # Same prompt, same answer (the bare loop also runs the model for the end-of-sequence
    # token the mind does not need once its grammar is complete): whole steps' time.
    out["step_time_ratio"] = (bare["read_s"] + bare["write_s"]) / (mind["read_s"] + mind["write_s"])
    out["decode_ratio"] = bare["ms_per_decode"] / mind["ms_per_decode"]
    out["read_ratio"] = bare["read_s"] / mind["read_s"]
    return out


def measure(args: argparse.Namespace, model: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"model": str(model), "max_new_tokens": args.max_new_tokens}
    counts = [int(c) for c in args.slots.split(",")]
    base_rss = memory.rss_bytes()
    mind = make_batched_mind(
        model, max_new_tokens=args.max_new_tokens, slots=max(counts), context=args.context
    )
    plan = mind.memory
    out["plan"] = {
        "model_mb": plan.model_bytes / MB,
        "kv_kb_per_token": plan.kv_bytes_per_token / 1024,
        "context": plan.context,
        "kv_mb_per_slot": plan.slot_bytes / MB,
        "describe": plan.describe(),
    }
    out["memory_mb"] = {"model_loaded": (memory.rss_bytes() - base_rss) / MB}
    rt = mind._runtime
    # The purpose as the mind holds it in a row: fitted to half the context.
    fitted = prompts.fit_text(PURPOSE, mind.context // 2, rt.count)
    prefix = rt.encode(rt.chat(prompts.system_prompt(fitted, ""))[0])
    out["purpose_tokens"] = len(prefix)

    # Time to first token: the first step reads the purpose, the next ones reuse it.
    mind.think(work_step(0))
    cold = mind.last.prefill_s
    out["task_tokens"] = mind.last.prefilled_tokens - len(prefix)
    warm = []
    for i in range(1, 1 + args.rounds):
        mind.think(work_step(i))
        warm.append(mind.last.prefill_s)
    out["first_token"] = {
        "cold_s": cold,
        "cached_s": statistics.median(warm),
        "speedup": cold / statistics.median(warm),
    }
    out["memory_mb"]["one_slot_running"] = (memory.rss_bytes() - base_rss) / MB
    print(json.dumps(out["first_token"]), file=sys.stderr, flush=True)

    # The mind's step vs a bare GenAI loop on the same prompt and guidance, alternated.
    if not args.no_bare:
        bare = BareProcess(model, mind.context, args.max_new_tokens, args.answer_chars)
        bare.step(0)  # reads the purpose, warms its session up
        sides: dict[str, list[tuple[float, float, int]]] = {"mind": [], "bare_genai": []}
        for k, i in enumerate(range(10, 10 + args.rounds)):
            # Alternate who goes first, so a load that drifts over a round hits both alike.
            for side in ("mind", "bare_genai") if k % 2 == 0 else ("bare_genai", "mind"):
                if side == "mind":
                    mind.think(work_step(i))
                    think = mind.last
                    sides[side].append((think.prefill_s, think.decode_s, think.generated_tokens))
                else:
                    sides[side].append(bare.step(i))
        bare.close()
        out["step_tokens_per_s"] = compare_steps(sides)
        print(json.dumps(out["step_tokens_per_s"]), file=sys.stderr, flush=True)

    # Slots: every count thinks `steps` steps per slot at once; memory after each count.
    decoder = mind._batcher.decoder
    rates: dict[int, list[float]] = {c: [] for c in counts}
    rss: dict[int, float] = {}
    for r in range(args.slot_rounds):
        for c in counts:
            rates[c].append(slots_rate(mind, c, args.steps, None))
            rss.setdefault(c, memory.rss_bytes() / MB)
            print(f"slots {c} round {r}: {rates[c][-1]:.2f} tok/s", file=sys.stderr, flush=True)
    slots: dict[str, Any] = {str(c): statistics.median(v) for c, v in rates.items()}
    for c in counts[1:]:
        slots[f"ratio_{c}_vs_{counts[0]}"] = slots[str(c)] / slots[str(counts[0])]
    slots["rows_per_decode_call"] = decoder.rows_stepped / max(decoder.steps, 1)
    slots["longest_native_call_s"] = decoder.longest_call_s
    out["slots_tokens_per_s"] = slots
    used = max(decoder.lengths) * plan.kv_bytes_per_token / MB  # the longest row's KV
    first, last = counts[0], counts[-1]
    per_slot = (rss[last] - rss[first]) / (last - first) if last > first else 0.0
    out["memory_mb"].update(
        {
            "rss_by_slots": {str(c): v - base_rss / MB for c, v in rss.items()},
            "per_added_slot": per_slot,
            "kv_used_per_slot": used,
            "per_added_slot_vs_kv_used": per_slot / used if used else None,
            "per_added_slot_vs_kv_reserved": per_slot / (plan.slot_bytes / MB),
        }
    )
    out["retries"] = mind.usage.retries
    mind.close()
    return out


# The 5-step comparison and the PSS measurement run minds in child processes.
_CHILD = r"""
import json, sys, threading, time
sys.path.insert(0, sys.argv[1])
from scripts.bench_mind import work_step, LIMITS
from swarm import memory
from swarm.minds.batched import make_batched_mind
model, slots, steps = sys.argv[2], int(sys.argv[3]), [int(s) for s in sys.argv[4].split(",") if s]
context, new_tokens = int(sys.argv[5]), int(sys.argv[6])
mind = make_batched_mind(model, slots=slots, context=context, max_new_tokens=new_tokens)
print("LOADED", flush=True)
sys.stdin.readline()
started = time.perf_counter()
todo = list(steps)
lock = threading.Lock()
def run():
    while True:
        with lock:
            if not todo:
                return
            i = todo.pop(0)
        mind.think(work_step(i, LIMITS))
threads = [threading.Thread(target=run) for _ in range(slots)]
for t in threads: t.start()
for t in threads: t.join()
print("DONE", json.dumps({"s": time.perf_counter() - started, "rss": memory.rss_bytes(),
      "pss": memory.pss_bytes(), "tokens": mind.usage.generated_tokens}), flush=True)
"""


def _children(args: argparse.Namespace, model: Path, plans: list[tuple[int, str]]) -> list[Any]:
    """Start one child per (slots, steps) plan, wait until all have loaded, start them
    together; their DONE records (seconds, RSS, PSS, tokens)."""
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _CHILD,
                str(ROOT),
                str(model),
                str(slots),
                steps,
                str(args.context or 2048),
                str(args.max_new_tokens),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for slots, steps in plans
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().startswith("LOADED")
    started = time.perf_counter()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("\n")
        p.stdin.flush()
    done = []
    for p in procs:
        assert p.stdout is not None
        line = p.stdout.readline()
        done.append(json.loads(line.split(" ", 1)[1]))
        p.wait()
    wall = time.perf_counter() - started
    for d in done:
        d["wall_s"] = wall
    return done


def tasks(args: argparse.Namespace, model: Path) -> dict[str, Any]:
    """5 steps: one process of 4 slots vs 4 processes of 1 slot (steps dealt round-robin)."""
    steps = list(range(2000, 2005))
    one = _children(args, model, [(4, ",".join(map(str, steps)))])[0]
    dealt = [",".join(str(s) for s in steps[k::4]) for k in range(4)]
    four = _children(args, model, [(1, d) for d in dealt])
    wall_four = four[0]["wall_s"]
    return {
        "one_process_4_slots_s": one["wall_s"],
        "four_processes_1_slot_s": wall_four,
        "speedup": wall_four / one["wall_s"],
        "one_process_rss_mb": one["rss"] / MB,
        "four_processes_rss_mb": sum(d["rss"] for d in four) / MB,
        "four_processes_pss_mb": sum(d["pss"] for d in four) / MB,
    }


def pss(args: argparse.Namespace, model: Path) -> dict[str, Any]:
    """N processes holding the model at once (prepacked at load), measured while all are up."""
    done = _children(args, model, [(1, "")] * args.pss)  # loaded, no step: the weights alone
    return {
        "processes": args.pss,
        "rss_mb_each": [d["rss"] / MB for d in done],
        "pss_mb_each": [d["pss"] / MB for d in done],
        "pss_mb_total": sum(d["pss"] for d in done) / MB,
        "model_file_mb": sum(p.stat().st_size for p in model.glob("*.onnx*")) / MB,
    }


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
    parser.add_argument("--slots", default="1,2,4,8", help="slot counts to compare")
    parser.add_argument("--steps", type=int, default=1, help="steps per slot per slot count")
    parser.add_argument("--rounds", type=int, default=3, help="repeats of each comparison")
    parser.add_argument("--slot-rounds", type=int, default=1, help="repeats of the slot counts")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--context", type=int, help="KV cache per slot (default: the mind's)")
    parser.add_argument("--no-bare", action="store_true", help="skip the GenAI comparison")
    parser.add_argument("--tasks", action="store_true", help="5 steps: 4 slots vs 4 processes")
    parser.add_argument("--pss", type=int, default=0, help="PSS of this many processes")
    parser.add_argument("--only", choices=("tasks", "pss"), help="run only that part")
    parser.add_argument("--out", type=Path, help="also write the figures here (JSON)")
    parser.add_argument(
        "--answer-chars", type=int, default=0, help="make every answer this long (see --help)"
    )
    parser.add_argument("--bare-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare_child:
        model_dir, context, max_new_tokens, chars = args.bare_child
        return bare_child(Path(model_dir), int(context), int(max_new_tokens), int(chars))
    if args.answer_chars:
        force_answer_chars(args.answer_chars)
    model = args.model or model_for(args.size)
    result: dict[str, Any] = {"command": " ".join(sys.argv)}
    if args.only is None:
        result.update(measure(args, model))
    if args.tasks or args.only == "tasks":
        result["five_steps"] = tasks(args, model)
    if args.pss:
        result["pss"] = pss(args, model)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
