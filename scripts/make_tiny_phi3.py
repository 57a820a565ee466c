#!/usr/bin/env python
"""Build a random-weight Phi-3 as an ONNX Runtime GenAI model folder, with no download.

    python scripts/make_tiny_phi3.py --size tiny --out .models/tiny

The model has the Phi-3 architecture (transformers `Phi3Config`) and random weights, so
it writes gibberish; what it exercises is the real ORT GenAI path: the chat template, the
tokenizer, JSON-schema guidance, the KV cache. The tokenizer is a byte-level BPE trained
here on the text below, so every string is encodable (guidance needs that to spell any
JSON), with Phi-3's special tokens and chat template.

`tiny` builds in seconds and is what tests use; `mini` has Phi-3-mini's dimensions
(3.8B parameters, int4) for benchmarks and takes minutes and about 15 GB of memory.
A folder that already holds a model built from the same recipe is reused as is.

Needs the builder's dependencies: pip install 'swarm-blackboard[tiny-model]' (torch CPU,
transformers, tokenizers, onnx, onnx-ir).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Bump when the build changes in a way the recipe below does not capture.
BUILD_VERSION = 1

RECIPE_FILE = "swarm_recipe.json"

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "max_position_embeddings": 4096,
        "bpe_vocab": 1024,
        "model_vocab": 1024,
        "precision": "fp32",
    },
    # Between the two: compute-bound like the real model (so slot and guidance costs show),
    # with Phi-3's vocabulary size, yet built in well under a minute.
    "small": {
        "hidden_size": 768,
        "intermediate_size": 2048,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "num_key_value_heads": 12,
        "max_position_embeddings": 4096,
        "bpe_vocab": 4096,
        "model_vocab": 32064,
        "precision": "int4",
    },
    # Phi-3-mini-4k-instruct's dimensions, so its speed is the real model's speed on this CPU.
    "mini": {
        "hidden_size": 3072,
        "intermediate_size": 8192,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "max_position_embeddings": 4096,
        "bpe_vocab": 4096,
        "model_vocab": 32064,
        "precision": "int4",
    },
}

# Phi-3's special tokens; the first ids of the vocabulary. `<|end|>` closes every turn and is
# the first end-of-sequence id, which is the one ORT GenAI guidance forces when the JSON is done.
SPECIAL_TOKENS = [
    "<unk>",
    "<s>",
    "</s>",
    "<|endoftext|>",
    "<|assistant|>",
    "<|end|>",
    "<|system|>",
    "<|user|>",
]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

# What the tokenizer is trained on: the kind of text a worker reads and writes (English
# prose, JSON actions, a little Python), so common words and JSON punctuation get merges.
CORPUS = """\
A swarm of identical small-model workers solves a purpose together with no coordinator.
The purpose is seeded as tasks on a blackboard; workers claim tasks, think, post results and
new subtasks, and leave decaying pheromone scores that steer which work the others pick next.
You are one worker. Read the task, its ancestry and what your siblings already found.
Answer the task directly when you can, split it into smaller subtasks when it is too big,
or write a short Python program when running code would settle the question.
Reply with one JSON object and nothing else.
{"action":"answer","answer":"The capital of France is Paris.","confidence":"high"}
{"action":"answer","answer":"Between 1 and 2 million.","confidence":"low"}
{"action":"split","subtasks":[{"title":"Collect the data","detail":"List the sources."},
{"title":"Compare the figures","detail":"Say which is best."}],"reason":"Two steps."}
{"action":"code","code":"import math\\nprint(math.sqrt(2))","why":"Compute the value exactly."}
def fibonacci(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a

print(sum(x * x for x in range(10)))
The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.
Synthesize the results of the children into one answer for the parent task, and say what is
missing when a child failed. Confidence is low, medium or high. Keep answers short and exact.
Task: Estimate how many piano tuners work in Chicago. Ancestry: root. Siblings found nothing.
Earlier code execution printed 42 and exited with status 0. The result was correct.
0 1 2 3 4 5 6 7 8 9 10 100 1000 2024 3.14159 -1 true false null [] {} () <> == != <= >= += ->
"""


def recipe(size: str) -> dict[str, Any]:
    """Everything the built folder depends on; its hash decides whether a cached build is reused."""
    return {
        "build_version": BUILD_VERSION,
        "size": size,
        **SIZES[size],
        "special_tokens": SPECIAL_TOKENS,
        "chat_template": CHAT_TEMPLATE,
        "corpus_sha256": hashlib.sha256(CORPUS.encode()).hexdigest(),
        "seed": 0,
    }


def recipe_hash(size: str) -> str:
    return hashlib.sha256(json.dumps(recipe(size), sort_keys=True).encode()).hexdigest()[:16]


def is_built(out: Path, size: str) -> bool:
    """True when `out` holds a complete model built from this size's current recipe."""
    try:
        stored = json.loads((out / RECIPE_FILE).read_text())
    except (OSError, ValueError):
        return False
    return stored.get("hash") == recipe_hash(size) and (out / "genai_config.json").is_file()


def _train_tokenizer(hf_dir: Path, vocab_size: int) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        # Every byte is a token, so any string (and any JSON) can be spelled.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([CORPUS] * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|assistant|>", "<|end|>", "<|system|>", "<|user|>"],
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
    )
    fast.save_pretrained(hf_dir)


def _save_random_model(hf_dir: Path, spec: dict[str, Any]) -> None:
    import torch
    from transformers import Phi3Config, Phi3ForCausalLM

    ids = {name: SPECIAL_TOKENS.index(name) for name in SPECIAL_TOKENS}
    config = Phi3Config(
        vocab_size=spec["model_vocab"],
        hidden_size=spec["hidden_size"],
        intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["num_hidden_layers"],
        num_attention_heads=spec["num_attention_heads"],
        num_key_value_heads=spec["num_key_value_heads"],
        max_position_embeddings=spec["max_position_embeddings"],
        original_max_position_embeddings=spec["max_position_embeddings"],
        bos_token_id=ids["<s>"],
        # `<|end|>` first: ORT GenAI guidance forces eos_token_id[0] once the JSON is complete.
        eos_token_id=[ids["<|end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=False,
    )
    config.architectures = ["Phi3ForCausalLM"]
    torch.manual_seed(0)
    model = Phi3ForCausalLM(config)
    model.save_pretrained(hf_dir, safe_serialization=True)


def _convert(hf_dir: Path, out: Path, precision: str, cache: Path) -> None:
    from onnxruntime_genai.models import builder

    options = builder.parse_extra_options(
        None, str(hf_dir), str(out), precision, "cpu", str(cache), ["hf_token=false"]
    )
    builder.create_model(None, str(hf_dir), str(out), precision, "cpu", str(cache), **options)


def _build_here(size: str, out: Path) -> None:
    """The build itself, in this process; `build` runs it in a child process."""
    spec = SIZES[size]
    out.parent.mkdir(parents=True, exist_ok=True)
    # Built beside the target and renamed into place, so a reader (or a second test
    # session) never sees a half-written model, and an interrupted build leaves nothing.
    with tempfile.TemporaryDirectory(prefix=f".{out.name}-", dir=out.parent) as tmp:
        work = Path(tmp)
        hf_dir, onnx_dir = work / "hf", work / "onnx"
        started = time.monotonic()
        _train_tokenizer(hf_dir, spec["bpe_vocab"])
        _save_random_model(hf_dir, spec)
        _convert(hf_dir, onnx_dir, spec["precision"], work / "cache")
        stamp = {
            "hash": recipe_hash(size),
            "recipe": recipe(size),
            "built_s": round(time.monotonic() - started, 1),
        }
        (onnx_dir / RECIPE_FILE).write_text(json.dumps(stamp, indent=2))
        if out.exists():
            shutil.rmtree(out)
        os.replace(onnx_dir, out)


def build(size: str, out: Path, *, force: bool = False, quiet: bool = True) -> Path:
    """Build the model into `out` unless it already holds this recipe; return `out`."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
    out = Path(out)
    if not force and is_built(out, size):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # One build at a time per folder: a second caller (another test session) waits, then
    # finds the model built.
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not force and is_built(out, size):
            return out
        _spawn_build(size, out, quiet)
    return out


def _spawn_build(size: str, out: Path, quiet: bool) -> None:
    # A child process does the work: torch, transformers and the model builder (which
    # edits sys.path, configures logging and draws progress bars) stay out of the caller,
    # and `quiet` can capture everything they print.
    command = [sys.executable, __file__, "--size", size, "--out", str(out), "--here"]
    result = subprocess.run(command, capture_output=quiet, text=True, check=False)
    if result.returncode != 0:
        log = (result.stdout or "") + (result.stderr or "")
        raise RuntimeError(f"building the {size} model failed:\n{log[-3000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--out", type=Path, required=True, help="model folder to write")
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    parser.add_argument("--verbose", action="store_true", help="show the builder's output")
    parser.add_argument("--here", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.here:
        try:
            _build_here(args.size, args.out)
        except ImportError as exc:
            print(
                f"error: {exc.name or exc} is missing; install the builder's dependencies "
                "with pip install 'swarm-blackboard[tiny-model]'",
                file=sys.stderr,
            )
            return 1
        return 0
    if not args.force and is_built(args.out, args.size):
        print(f"{args.out}: already built ({args.size}, recipe {recipe_hash(args.size)})")
        return 0
    started = time.monotonic()
    try:
        build(args.size, args.out, force=True, quiet=not args.verbose)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.out}: built {args.size} in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
