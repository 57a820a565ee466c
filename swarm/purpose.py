"""purpose.md -> Purpose: front matter, text, root tasks, and validation with clear messages.

A purpose file is optional YAML front matter between `---` lines, then markdown. The title is
the first `# Heading`; an optional `## Tasks` list seeds the root's children. Every problem is
a `PurposeError` whose one-line message names the file and, where it helps, the line.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn, TypeVar

import yaml

from swarm.check import Check, CheckError, CheckKind, find_fenced, parse_check
from swarm.pheromone import decay_rate
from swarm.protocol import Limits
from swarm.requirements import MAX_STRENGTH, InvalidStrength, Requirements, check_strength

DEFAULT_LEASE_S = 60.0  # a lease, when neither the purpose nor the swarm names one
EVENTS_MAX = 10_000  # events a swarm's stream keeps


@dataclass(frozen=True)
class Budgets:
    """Hard limits the blackboard enforces atomically, so every swarm terminates
    (docs/architecture.md section 10)."""

    max_tasks: int = 200
    max_depth: int = 3
    max_tokens: int = 500_000
    deadline_s: float = 3600.0
    max_attempts: int = 3
    max_children: int = 5
    lease_s: float = DEFAULT_LEASE_S
    # A task whose requirements no live worker meets dies after this long (section 6a), so
    # work nobody can do does not hold the swarm back from its answer.
    unmet_s: float = 300.0


@dataclass(frozen=True)
class Tuning:
    """Pheromone and claim-rule parameters (docs/architecture.md sections 5 and 6)."""

    half_life_s: float = 120.0
    initial: float = 1.0  # deposit on every new task
    q: float = 1.0  # success deposit, times the answer's confidence
    rho_fail: float = 0.5  # a failed or reaped task keeps this fraction of its pheromone
    alpha: float = 1.0  # weight of pheromone in the claim rule
    beta: float = 1.0  # weight of the heuristic (synthesis, priority, skills, age)
    epsilon: float = 0.05  # chance of a uniform pick over all open tasks
    candidates: int = 16  # K: how many of the top open tasks the claim rule weighs
    synth_bonus: float = 4.0  # eta bonus of synthesize tasks, so branches close
    # Division of labour (section 6a): the weight of the worker classes' trails in the claim
    # rule. 0 switches learning off: no trails read or written, no escalation.
    learning: float = 1.0


def settings(budgets: Budgets | None = None, tuning: Tuning | None = None) -> dict[str, float]:
    """The numbers a swarm's meta holds for its budgets and tuning, as the scripts read them.

    With the defaults, they are also what a script assumes for a meta field that is missing
    (`DEFAULTS` in the Lua prelude, swarm/scripts.py): one source, so the two never differ.
    """
    b, t = budgets or Budgets(), tuning or Tuning()
    return {
        "max_tasks": b.max_tasks,
        "max_depth": b.max_depth,
        "max_tokens": b.max_tokens,
        "max_attempts": b.max_attempts,
        "max_children": b.max_children,
        "lease_ms": int(b.lease_s * 1000),
        "deadline_s": b.deadline_s,
        "unmet_s": b.unmet_s,
        "half_life_s": t.half_life_s,
        "lambda": decay_rate(t.half_life_s),
        "initial": t.initial,
        "q": t.q,
        "rho_fail": t.rho_fail,
        "alpha": t.alpha,
        "beta": t.beta,
        "epsilon": t.epsilon,
        "candidates": t.candidates,
        "synth_bonus": t.synth_bonus,
        "learning": t.learning,
        "events_max": EVENTS_MAX,
    }


# What a script assumes for a missing budget or tuning field, and the claim decoder too.
DEFAULT_SETTINGS: Mapping[str, float] = MappingProxyType(settings())


@dataclass(frozen=True)
class RootTask:
    title: str
    detail: str = ""
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Purpose:
    title: str
    text: str
    name: str = ""
    budgets: Budgets = field(default_factory=Budgets)
    tuning: Tuning = field(default_factory=Tuning)
    sandbox: str = "auto"  # auto | local | e2b | none
    tasks: tuple[RootTask, ...] = ()
    # What every task of the swarm needs of its worker (the root's requirements, which each
    # task made under it inherits as a floor: section 6a).
    requires: Requirements = field(default_factory=Requirements)
    check: Check | None = None  # how the root's answer is checked (swarm/check.py)


class PurposeError(ValueError):
    """A purpose that cannot be used; the message names the file and, where it helps, the line."""


MAX_BYTES = 256 * 1024
MAX_TITLE = 120
SANDBOXES = ("auto", "local", "e2b", "none")
TOP_KEYS = ("name", "sandbox", "budgets", "pheromone", "requires", "check")
REQUIRES_KEYS = ("min_strength", "needs_code")

# Root tasks become task hashes like any split's children, so they obey a mind's tag bounds.
_LIMITS = Limits()

_Numbers = TypeVar("_Numbers", Budgets, Tuning)


@dataclass(frozen=True)
class _Range:
    """Allowed interval of one numeric setting; `lo_open` makes the lower bound exclusive."""

    lo: float
    hi: float = math.inf
    lo_open: bool = False

    def admits(self, value: float) -> bool:
        above = value > self.lo if self.lo_open else value >= self.lo
        return above and value <= self.hi

    def describe(self) -> str:
        if self.hi == math.inf:
            return f"must be {'>' if self.lo_open else '>='} {_num(self.lo)}"
        if self.lo_open:
            return f"must be > {_num(self.lo)} and <= {_num(self.hi)}"
        return f"must be between {_num(self.lo)} and {_num(self.hi)}"


# Every setting has an upper bound too: the blackboard turns them into milliseconds, decay
# rates and log-space scores, where a huge value overflows (inf, then NaN) part-way through
# writing a swarm. Within these bounds the decay exponent stays far from overflow (lambda is
# at most ln 2 / 0.1 s, for at most 1e7 s) and the claim rule's weights stay finite.
_BUDGET_RANGES = {
    "max_tasks": _Range(1, 1_000_000),
    "max_depth": _Range(0, 16),
    "max_tokens": _Range(1, 1e12),
    "deadline_s": _Range(0, 1e7, lo_open=True),
    "max_attempts": _Range(1, 100),
    "max_children": _Range(1, 32),
    "lease_s": _Range(5, 86_400),
    "unmet_s": _Range(0, 1e7),
}
_TUNING_RANGES = {
    "half_life_s": _Range(0.1, 1e9),
    "initial": _Range(0, 1e6, lo_open=True),
    "q": _Range(0, 1e6),
    "rho_fail": _Range(0, 1, lo_open=True),
    "alpha": _Range(0, 10),
    "beta": _Range(0, 10),
    "epsilon": _Range(0, 1),
    "candidates": _Range(1, 256),
    "synth_bonus": _Range(0, 1e6),
    "learning": _Range(0, 10),
}

# Front matter is a small, flat mapping: YAML beyond this is refused before it is built.
MAX_YAML_DEPTH = 4  # the document, `budgets`, a value, and one level a wrong value may hold
MAX_YAML_NODES = 2_000
MAX_FRONT_MATTER = 16 * 1024  # characters
MAX_SHOWN = 60  # characters of a value quoted back in an error message

# Indented two or more, a marker starts a nested list, which stays part of its parent item.
_LIST_ITEM = re.compile(r"^ ?(?:[-*+]|\d{1,9}[.)])(?:\s+(.*))?$")
_TAGS_OPEN = re.compile(r"\[tags:", re.IGNORECASE)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # markdown's three line endings
_SECTION_END = re.compile(r"^#{1,2}(?:\s|$)")
_HEADING = re.compile(r"^ {0,3}#{1,6}(?:\s|$)")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else repr(float(x))


def _fail(source: str, message: str, line: int | None = None) -> NoReturn:
    where = f"{source}:{line}" if line is not None else source
    raise PurposeError(f"{where}: {message}")


def load_purpose(path: str | Path) -> Purpose:
    """Read and parse a purpose file; every problem is a PurposeError naming the file."""
    source = str(path)
    return parse_purpose(_decode(_read_bytes(Path(path), source), source), source)


def _read_bytes(path: Path, source: str) -> bytes:
    try:
        if path.is_dir():
            _fail(source, "is a directory, not a purpose file")
        if path.exists() and not path.is_file():
            _fail(source, "is not a regular file")
        with path.open("rb") as f:
            # One byte over the cap is enough to tell, without reading a huge file whole.
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        _fail(source, "no such file")
    except PermissionError:
        _fail(source, "not readable (permission denied)")
    except OSError as e:
        _fail(source, f"cannot read: {e.strerror or e}")
    if len(data) > MAX_BYTES:
        _fail(source, f"larger than {MAX_BYTES // 1024} KiB; a purpose should be a short brief")
    return data


def _decode(data: bytes, source: str) -> str:
    nul = data.find(b"\0")
    if nul >= 0:
        _fail(source, f"binary file (NUL byte at byte offset {nul}), expected markdown")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        _fail(source, f"not UTF-8 (invalid byte 0x{data[e.start]:02x} at byte offset {e.start})")


def parse_purpose(text: str, source: str = "<purpose>") -> Purpose:
    """Parse the text of a purpose file; `source` names it in error messages."""
    _check_raw(text, source)
    lines = _LINE_BREAK.split(text.removeprefix("\ufeff"))
    meta, body_start = _front_matter(lines, source)
    body = lines[body_start:]
    settings = _settings(meta, source)
    body, check = _fenced_check(body, body_start, settings.check, source)
    # The check block's lines are blanked, not removed, so later line numbers stay right;
    # the text the minds see has neither the block nor the gap it leaves.
    text_out = re.sub(r"\n{3,}", "\n\n", "\n".join(body)).strip()
    if not re.search(r"\w", text_out):
        _fail(source, "empty purpose: no text says what the swarm should achieve")
    tasks = _tasks(body, body_start, settings.budgets, source)
    if check is not None and check.kind is CheckKind.PYTHON and settings.sandbox == "none":
        # it could never run: the swarm would end with every answer's check an error
        _fail(source, "a python check runs in the sandbox, and this purpose has sandbox: none")
    return replace(settings, title=_title(body), text=text_out, tasks=tasks, check=check)


def _fenced_check(
    body: list[str], offset: int, front: Check | None, source: str
) -> tuple[list[str], Check | None]:
    """The body with its ```check block blanked, and the purpose's check (front matter's or
    the block's; never both). The block is YAML like the front matter's `check:` value."""
    try:
        found = find_fenced(body)
    except CheckError as exc:
        _fail(source, str(exc), None if exc.index is None else offset + exc.index + 1)
    if found is None:
        return body, front
    start, end = found
    line = offset + start + 1
    if front is not None:
        _fail(source, "a check in the front matter and a ```check block: keep one", line)
    block = "\n".join(body[start + 1 : end])
    if len(block) > MAX_FRONT_MATTER:
        _fail(source, f"the ```check block is over {MAX_FRONT_MATTER // 1024} KiB", line)
    try:
        _node, value = _load_yaml(block, source)
    except yaml.YAMLError as e:
        problem = _cut(getattr(e, "problem", None) or str(e).splitlines()[0], 200)
        _fail(source, f"the ```check block is not valid YAML: {problem}", line)
    except PurposeError:
        raise
    except (ValueError, OverflowError, RecursionError) as e:
        _fail(source, f"the ```check block has a value that cannot be read: {_cut(str(e))}", line)
    try:
        check = parse_check(value)
    except CheckError as exc:
        _fail(source, str(exc), line)
    return [*body[:start], *([""] * (end - start + 1)), *body[end + 1 :]], check


def _check_raw(text: str, source: str) -> None:
    if "\0" in text:
        _fail(source, "binary content (NUL character), expected markdown")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as e:
        # Redis would refuse the text later, far from the cause.
        _fail(source, f"not valid Unicode (unpaired surrogate at character {e.start})")
    if size > MAX_BYTES:
        _fail(source, f"larger than {MAX_BYTES // 1024} KiB; a purpose should be a short brief")


# ---------------------------------------------------------------- front matter


@dataclass(frozen=True)
class _Meta:
    """The front matter's mapping, with the file line of every key for error messages."""

    values: Mapping[Any, Any]
    lines: Mapping[tuple[str, ...], int]


def _front_matter(lines: list[str], source: str) -> tuple[_Meta, int]:
    """Return the front matter and the index of the first body line."""
    empty = _Meta({}, {})
    if not lines or lines[0].rstrip() != "---":
        return empty, 0
    close = next((i for i in range(1, len(lines)) if lines[i].rstrip() == "---"), None)
    if close is None:
        _fail(source, "front matter opened with '---' but never closed by a '---' line", 1)
    yaml_text = "\n".join(lines[1:close])
    if len(yaml_text) > MAX_FRONT_MATTER:
        # a few settings; a bound on it bounds the YAML scanner's cost too
        _fail(
            source,
            f"front matter is over {MAX_FRONT_MATTER // 1024} KiB; it holds a few settings",
            2,
        )
    try:
        node, values = _load_yaml(yaml_text, source)
    except yaml.YAMLError as e:
        _yaml_error(e, source)
    except PurposeError:
        raise
    except (ValueError, OverflowError, RecursionError) as e:
        # a value the YAML resolver cannot build: a 5,000-digit integer, a 13th month...
        _fail(source, f"front matter has a value that cannot be read: {_cut(str(e))}", 2)
    if values is None:
        return empty, close + 1
    if not isinstance(values, dict) or not isinstance(node, yaml.MappingNode):
        _fail(source, f"front matter must be a mapping of keys, got {_kind(values)}", 2)
    return _Meta(values, _key_lines(node, source)), close + 1


class _YamlRefused(Exception):
    """Front matter refused while it is composed; `line` is its file line."""

    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(message)
        self.line = mark.line + 2 if mark is not None else 1


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader (its own parser: libyaml marks some errors a line late) that
    refuses anchors and aliases (an alias bomb expands to gigabytes), nesting deeper than
    MAX_YAML_DEPTH (the composer recurses) and more than MAX_YAML_NODES nodes, as it
    composes: in one pass, before anything big or deep is built."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise _YamlRefused(
                "uses YAML anchors or aliases ('&', '*'); write values out", event.start_mark
            )
        self._nodes += 1
        if self._nodes > MAX_YAML_NODES:
            raise _YamlRefused(f"has more than {MAX_YAML_NODES} YAML nodes", event.start_mark)
        collection = isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent)
        if collection and self._depth >= MAX_YAML_DEPTH:
            raise _YamlRefused(f"nests deeper than {MAX_YAML_DEPTH} levels", event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _flow_depth(yaml_text: str) -> int:
    """How deep `[` and `{` nest outside quotes and comments: one linear pass. PyYAML's
    scanner keeps every `[` of a line as a possible key and rescans them per token, so a
    deep flow line costs it quadratic time before the composer sees the first level."""
    depth = deepest = 0
    quote = ""
    previous = "\n"
    chars = iter(yaml_text)
    for ch in chars:
        if quote:
            if ch == "\\" and quote == '"':
                next(chars, "")
            elif ch == quote:
                quote = ""
        elif ch in "'\"" and previous in " \t\n[{,:":
            quote = ch
        elif ch == "#" and previous in " \t\n":
            for ch in chars:  # a comment runs to the end of its line
                if ch == "\n":
                    break
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(depth - 1, 0)
        previous = ch
    return deepest


def _load_yaml(yaml_text: str, source: str) -> tuple[Any, Any]:
    """The front matter's node tree and its values, from one bounded parse."""
    if _flow_depth(yaml_text) > MAX_YAML_DEPTH:
        _fail(source, f"front matter nests deeper than {MAX_YAML_DEPTH} levels", 2)
    loader = _BoundedLoader(yaml_text)
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    except _YamlRefused as e:
        _fail(source, f"front matter {e}", e.line)
    finally:
        loader.dispose()


def _cut(text: str, limit: int = MAX_SHOWN) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shown(value: object) -> str:
    """A value quoted in an error message: its repr, cut short (never megabytes)."""
    if isinstance(value, dict | list):
        return f"{_kind(value)} of {len(value)}"
    return _cut(repr(value))


def _yaml_error(e: yaml.YAMLError, source: str) -> NoReturn:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = _cut(getattr(e, "problem", None) or str(e).splitlines()[0], 200)
    # The YAML starts on file line 2, after the opening `---`; marks are 0-based.
    line = mark.line + 2 if mark is not None else 1
    _fail(source, f"front matter is not valid YAML: {problem}", line)


def _key_lines(node: yaml.MappingNode, source: str) -> dict[tuple[str, ...], int]:
    """Map each key path (one or two levels) to its file line, refusing duplicate keys."""
    found: dict[tuple[str, ...], int] = {}
    for path, key_node in _walk_keys(node, ()):
        line = key_node.start_mark.line + 2
        if path in found:
            dotted = ".".join(path)
            _fail(source, f"duplicate key '{dotted}' (first at line {found[path]})", line)
        found[path] = line
    return found


def _walk_keys(
    node: yaml.MappingNode, prefix: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], yaml.Node]]:
    for key_node, value_node in node.value:
        path = (*prefix, str(key_node.value))
        yield path, key_node
        if not prefix and isinstance(value_node, yaml.MappingNode):
            yield from _walk_keys(value_node, path)


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    kinds = {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
    }
    return kinds.get(type(value), f"a {type(value).__name__}")


def _settings(meta: _Meta, source: str) -> Purpose:
    """Validate the front matter into a Purpose whose title, text and tasks are still empty."""
    _check_keys(meta, meta.values, TOP_KEYS, (), source)
    values = meta.values
    return Purpose(
        title="",
        text="",
        name=_name(meta, values.get("name", ""), source),
        sandbox=_sandbox(meta, values.get("sandbox", "auto"), source),
        budgets=_numbers(meta, "budgets", Budgets(), _BUDGET_RANGES, source),
        tuning=_numbers(meta, "pheromone", Tuning(), _TUNING_RANGES, source),
        requires=_requires(meta, source),
        check=_check(meta, source),
    )


def _requires(meta: _Meta, source: str) -> Requirements:
    """`requires: {min_strength: N, needs_code: true}`: what the swarm's workers must meet."""
    raw = meta.values.get("requires")
    if raw is None:
        return Requirements()
    if not isinstance(raw, dict):
        line = meta.lines.get(("requires",))
        _fail(source, f"'requires' must be a mapping, got {_kind(raw)}", line)
    _check_keys(meta, raw, REQUIRES_KEYS, ("requires",), source)
    code = raw.get("needs_code", False)
    if not isinstance(code, bool):
        line = meta.lines.get(("requires", "needs_code"))
        _fail(source, f"requires.needs_code must be true or false, got {_shown(code)}", line)
    strength = raw.get("min_strength", 0)
    line = meta.lines.get(("requires", "min_strength"))
    if isinstance(strength, bool) or not isinstance(strength, int):
        want = f"a whole number from 0 to {MAX_STRENGTH}"
        _fail(source, f"requires.min_strength must be {want}, got {_shown(strength)}", line)
    try:
        min_strength = check_strength(strength, "requires.min_strength")
    except InvalidStrength as exc:
        _fail(source, str(exc), line)
    return Requirements(min_strength=min_strength, needs_code=code)


def _check(meta: _Meta, source: str) -> Check | None:
    if "check" not in meta.values:
        return None
    try:
        return parse_check(meta.values["check"])
    except CheckError as exc:
        _fail(source, str(exc), meta.lines.get(("check",)))


def _check_keys(
    meta: _Meta,
    mapping: Mapping[Any, Any],
    known: tuple[str, ...],
    prefix: tuple[str, ...],
    source: str,
) -> None:
    what = f"{prefix[0]} key" if prefix else "front matter key"
    for key in mapping:
        if isinstance(key, str) and key in known:
            continue
        # a typo is short; comparing a huge key letter by letter would only cost time
        guess = difflib.get_close_matches(str(key), known, n=1) if len(str(key)) < 40 else []
        hint = f"did you mean '{guess[0]}'?" if guess else f"known keys: {', '.join(known)}"
        line = meta.lines.get((*prefix, str(key)))
        _fail(source, f"unknown {what} {_shown(key)} ({hint})", line)


def _name(meta: _Meta, value: object, source: str) -> str:
    line = meta.lines.get(("name",))
    if not isinstance(value, str):
        _fail(source, f"'name' must be a string, got {_kind(value)}", line)
    if "\n" in value.strip() or len(value.strip()) > MAX_TITLE:
        _fail(source, f"'name' must be one line of at most {MAX_TITLE} characters", line)
    return value.strip()


def _sandbox(meta: _Meta, value: object, source: str) -> str:
    if value not in SANDBOXES:
        line = meta.lines.get(("sandbox",))
        _fail(source, f"'sandbox' must be one of {', '.join(SANDBOXES)}; got {_shown(value)}", line)
    return str(value)


def _numbers(
    meta: _Meta, section: str, defaults: _Numbers, ranges: Mapping[str, _Range], source: str
) -> _Numbers:
    raw = meta.values.get(section)
    if raw is None:
        return defaults
    if not isinstance(raw, dict):
        line = meta.lines.get((section,))
        _fail(source, f"'{section}' must be a mapping of settings, got {_kind(raw)}", line)
    _check_keys(meta, raw, tuple(ranges), (section,), source)
    types = {f.name: type(getattr(defaults, f.name)) for f in fields(defaults)}
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        line = meta.lines.get((section, key))
        number = _number(f"{section}.{key}", value, types[key], source, line)
        if not ranges[key].admits(number):
            got = _cut(_num(number))
            _fail(source, f"{section}.{key} {ranges[key].describe()}, got {got}", line)
        changes[key] = number
    return replace(defaults, **changes)


def _number(what: str, value: object, want: type, source: str, line: int | None) -> float:
    # bool is a subclass of int, but `max_depth: yes` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int | float):
        hint = " (remove the quotes)" if _looks_numeric(value) else ""
        _fail(source, f"{what} must be {_a(want)}, got {_kind(value)} {_shown(value)}{hint}", line)
    if want is int and not isinstance(value, int):
        _fail(source, f"{what} must be a whole number, got {_shown(value)}", line)
    if not math.isfinite(value):
        _fail(source, f"{what} must be a finite number, got {_shown(value)}", line)
    return value if want is int else float(value)


def check_ranges(purpose: Purpose, source: str = "<purpose>") -> None:
    """Every budget and tuning number in its range: what the blackboard checks again before
    it writes a swarm, whoever built the Purpose (a parsed file is checked already)."""
    for section, numbers, ranges in (
        ("budgets", purpose.budgets, _BUDGET_RANGES),
        ("pheromone", purpose.tuning, _TUNING_RANGES),
    ):
        for key, rule in ranges.items():
            value = getattr(numbers, key)
            if not isinstance(value, int | float) or not rule.admits(value):
                _fail(source, f"{section}.{key} {rule.describe()}, got {_cut(repr(value))}")


def _looks_numeric(value: object) -> bool:
    try:
        float(str(value))
    except ValueError:
        return False
    return isinstance(value, str)


def _a(want: type) -> str:
    return "a whole number" if want is int else "a number"


# ---------------------------------------------------------------- body


def _unfenced(body: list[str]) -> Iterator[tuple[int, str]]:
    """Yield (index, line) for lines outside fenced code blocks, where `#` is not a heading."""
    fence: str | None = None
    for i, line in enumerate(body):
        # most lines hold neither fence character: skip the regex for them
        opener = _FENCE.match(line) if "`" in line or "~" in line else None
        if opener and (fence is None or opener.group(1) == fence):
            fence = opener.group(1) if fence is None else None
            continue
        if fence is None:
            yield i, line


def _heading_text(line: str, marks: str) -> str | None:
    """The text of an ATX heading `marks text #...`, or None; linear (no regex backtracking
    on a long run of blanks)."""
    n = len(marks)
    if not line.startswith(marks) or not line[n : n + 1].isspace():
        return None
    text = line[n:].strip()
    closed = text.rstrip("#")
    if closed and closed != text and closed[-1].isspace():
        text = closed.rstrip()  # the optional closing sequence, as in `# Title #`
    return text


def _is_tasks_heading(line: str) -> bool:
    text = _heading_text(line, "##")
    return text is not None and text.rstrip("#").rstrip().lower() == "tasks"


def _title(body: list[str]) -> str:
    for _, line in _unfenced(body):
        heading = _heading_text(line, "#")
        if heading:
            return heading[:MAX_TITLE]
    # No `# Heading`: the first line with words, less any heading marks, names the purpose.
    candidates = itertools.chain(
        (line.strip(" \t#") for _, line in _unfenced(body)), (line.strip() for line in body)
    )  # lazily: the first line with words is usually near the top of a long file
    first = next(text for text in candidates if text and re.search(r"\w", text))
    return first[:MAX_TITLE].rstrip()


def _tasks(body: list[str], offset: int, budgets: Budgets, source: str) -> tuple[RootTask, ...]:
    found = _tasks_section(body, offset, source)
    if found is None:
        return ()
    heading, section = found
    items = _list_items(section)
    if not items:
        _fail(source, "'## Tasks' section has no list items (write '- Title: detail')", heading)
    _check_fit(len(items), budgets, heading, source)  # before building thousands of tasks
    tasks = [_root_task(text, line, source) for line, text in items]
    _check_unique(tasks, [line for line, _ in items], source)
    return tuple(tasks)


def _tasks_section(
    body: list[str], offset: int, source: str
) -> tuple[int, list[tuple[int, str]]] | None:
    """Return the file line of the `## Tasks` heading and the numbered lines under it."""
    heading: int | None = None
    inside = False
    section: list[tuple[int, str]] = []
    for i, line in _unfenced(body):
        lineno = offset + i + 1
        if not line.startswith("#"):
            if inside:
                section.append((lineno, line))
        elif _is_tasks_heading(line):
            if heading is not None:
                _fail(
                    source, f"a second '## Tasks' section (the first is at line {heading})", lineno
                )
            heading, inside = lineno, True
        elif _SECTION_END.match(line):
            inside = False
        elif inside:
            section.append((lineno, line))
    return None if heading is None else (heading, section)


def _list_items(section: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Top-level list items with their continuation lines joined, as (file line, text)."""
    items: list[tuple[int, list[str]]] = []  # parts joined once: linear in the section
    after_blank = False
    for lineno, line in section:
        if not line.strip() or _HEADING.match(line):
            after_blank = True  # a subheading, like a blank line, ends the item above
            continue
        item = _LIST_ITEM.match(line)
        if item:
            items.append((lineno, [(item.group(1) or "").strip()]))
        elif items and (not after_blank or line[:1] in (" ", "\t")):
            # Lazy or indented continuation, nested lists included, belongs to the item above.
            items[-1][1].append(line.strip())
        after_blank = False
    return [(first, " ".join(p for p in parts if p)) for first, parts in items]


def _root_task(text: str, line: int, source: str) -> RootTask:
    tags: tuple[str, ...] = ()
    marker = _tags_marker(text)
    if marker is not None:
        start, raw = marker
        tags = _parse_tags(raw, line, source)
        text = text[:start]
    title, _, detail = text.partition(": ")
    title, detail = title.strip(), detail.strip()
    if not title:
        _fail(source, "task has no title (write '- Title: detail')", line)
    if len(title) > MAX_TITLE:
        _fail(source, f"task title is {len(title)} characters, at most {MAX_TITLE} allowed", line)
    return RootTask(title=title, detail=detail, tags=tags)


def _tags_marker(text: str) -> tuple[int, str] | None:
    """Where a trailing `[tags: a, b]` starts and what it lists, or None; one linear scan
    (a regex search for it backtracked quadratically on a long line of `[tags:`)."""
    end = text.rstrip()
    if not end.endswith("]"):
        return None
    last = None
    for match in _TAGS_OPEN.finditer(end):
        last = match
    if last is None or "]" in end[last.end() : -1]:
        return None
    return last.start(), end[last.end() : -1]


def _parse_tags(raw: str, line: int, source: str) -> tuple[str, ...]:
    tags = tuple(dict.fromkeys(t.strip() for t in raw.split(",") if t.strip()))
    if not tags:
        _fail(source, "'[tags: ]' lists no tags", line)
    if len(tags) > _LIMITS.max_tags:
        _fail(source, f"{len(tags)} tags, at most {_LIMITS.max_tags} allowed", line)
    for tag in tags:
        if len(tag) > _LIMITS.max_tag:
            _fail(source, f"tag '{tag}' is longer than {_LIMITS.max_tag} characters", line)
    return tags


def _check_unique(tasks: list[RootTask], lines: list[int], source: str) -> None:
    seen: dict[str, int] = {}
    for task, line in zip(tasks, lines, strict=True):
        key = task.title.casefold()
        if key in seen:
            _fail(source, f"duplicate task title '{task.title}' (first at line {seen[key]})", line)
        seen[key] = line


def _check_fit(n: int, budgets: Budgets, line: int, source: str) -> None:
    """Root tasks are the root's children at depth 1, so they must fit the budgets."""
    if n > budgets.max_children:
        limit = budgets.max_children
        _fail(source, f"{n} tasks under '## Tasks' but budgets.max_children is {limit}", line)
    if budgets.max_depth < 1:
        _fail(source, "'## Tasks' needs budgets.max_depth >= 1 (root tasks sit at depth 1)", line)
    if n + 1 > budgets.max_tasks:
        limit = budgets.max_tasks
        _fail(source, f"{n} tasks plus the root exceed budgets.max_tasks ({limit})", line)
