"""How a purpose's answer is checked: an expected value, a pattern, or a Python function.

A purpose may carry one `check` (front matter `check:`, or a fenced ```check block in its
body, which is removed from the text the minds see). Exactly one of:

- `expected: VALUE`: the answer, normalised (`normalise`), equals VALUE normalised; a
  number (YAML int or float) is compared as a number, within `tolerance` (default 0 for a
  whole number, one part in a billion for a decimal), after thousands separators and an
  optional `unit` are removed.
- `pattern: REGEX` (Python `re`, at most MAX_PATTERN characters, no nested quantifiers):
  `match: fullmatch` (default) over the whole normalised answer, or `match: search` for
  anywhere in it; `ignore_case: true` to ignore case.
- `python: SOURCE` defining `check(answer) -> bool | (bool, str)`: run in the sandbox
  like model code (never in the worker's process), with the answer as a string.

Options: `retries` (how many times a failing root answer goes back, default
DEFAULT_RETRIES), `hint` (one line shown to the mind with a failure), `timeout_s` (python).

Parsing is bounded and every problem is one `CheckError` line. Python's `re` has no
timeout, so patterns that can backtrack exponentially (a quantified group holding another
quantifier) are refused, and the text they run on is bounded (an answer is at most
`Limits.max_answer` characters; MAX_INPUT here).
"""

from __future__ import annotations

import ast
import json
import math
import re
import secrets
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from swarm.protocol import ExecOutput

MAX_EXPECTED = 2000  # characters of an expected value (an answer is at most 2000)
MAX_PATTERN = 200
MAX_PYTHON = 4000  # like a mind's code action
MAX_HINT = 300
MAX_INPUT = 4000  # characters of an answer a pattern or comparison reads
MAX_OUTPUT = 500  # characters of a checker's message kept (shown to the mind, in the trace)
MAX_RETRIES = 10
DEFAULT_RETRIES = 2
DEFAULT_TIMEOUT_S = 10.0
MAX_TIMEOUT_S = 60.0
KEYS = (
    "expected", "tolerance", "unit", "pattern", "match", "ignore_case", "python", "retries",
    "hint", "timeout_s",
)  # fmt: skip
KINDS = ("expected", "pattern", "python")
MATCHES = ("fullmatch", "search")


class CheckError(ValueError):
    """A check that cannot be used; a one-line message without the file (the caller adds it).
    `index`: the body line (0-based) it is about, where one is known."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class CheckKind(str, Enum):
    EXPECTED = "expected"
    PATTERN = "pattern"
    PYTHON = "python"


class Verdict(str, Enum):
    PASS = "pass"
    FAIL = "fail"  # the answer is wrong: a root answer goes back with the output as feedback
    ERROR = "error"  # the check could not run (no sandbox, a crash): recorded, not sent back


@dataclass(frozen=True)
class Check:
    kind: CheckKind
    expected: str = ""
    number: bool = False  # compare `expected` as a number
    tolerance: float = 0.0
    unit: str = ""
    pattern: str = ""
    search: bool = False  # pattern anywhere instead of the whole answer
    ignore_case: bool = False
    python: str = ""
    retries: int = DEFAULT_RETRIES
    hint: str = ""
    timeout_s: float = DEFAULT_TIMEOUT_S

    def to_json(self) -> str:
        """What the swarm's meta holds; `from_json` reads it back through the same bounds."""
        raw: dict[str, Any] = {"retries": self.retries}
        if self.hint:
            raw["hint"] = self.hint
        if self.kind is CheckKind.EXPECTED:
            raw["expected"] = _stored_number(self.expected) if self.number else self.expected
            raw["unit"] = self.unit
            if self.number:
                raw["tolerance"] = self.tolerance
        elif self.kind is CheckKind.PATTERN:
            raw["pattern"], raw["ignore_case"] = self.pattern, self.ignore_case
            raw["match"] = "search" if self.search else "fullmatch"
        else:
            raw["python"], raw["timeout_s"] = self.python, self.timeout_s
        return json.dumps(raw, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Check:
        """A check read back from Redis (anyone may write there): the same bounds as a file."""
        if len(text) > 4 * MAX_PYTHON:
            raise CheckError("stored check is too long")
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError):
            raise CheckError("stored check is not JSON") from None
        return parse_check(raw)

    def describe(self) -> str:
        """One line for people (watch, export): the kind, never the expected value itself."""
        if self.kind is CheckKind.EXPECTED:
            return "expected number" if self.number else "expected value"
        if self.kind is CheckKind.PATTERN:
            return f"pattern ({'search' if self.search else 'fullmatch'})"
        return "python check()"


def _stored_number(shown: str) -> int | float:
    return int(shown) if shown.lstrip("-").isdigit() else float(shown)


@dataclass(frozen=True)
class CheckResult:
    verdict: Verdict
    output: str = ""  # what the checker said: the feedback a failing answer goes back with

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.PASS


# ---------------------------------------------------------------- parsing


def parse_check(value: object) -> Check:
    """A check from its front-matter value: a mapping, or a bare scalar meaning `expected`."""
    if isinstance(value, bool) or value is None:
        raise CheckError(f"'check' must be a mapping or an expected value, got {_kind(value)}")
    if isinstance(value, str | int | float):
        value = {"expected": value}
    if not isinstance(value, Mapping):
        raise CheckError(f"'check' must be a mapping or an expected value, got {_kind(value)}")
    unknown = [k for k in value if not (isinstance(k, str) and k in KEYS)]
    if unknown:
        shown = _cut(repr(unknown[0]), 40)
        raise CheckError(f"unknown check key {shown} (known keys: {', '.join(KEYS)})")
    kinds = [k for k in KINDS if k in value]
    if len(kinds) != 1:
        raise CheckError(
            "a check needs exactly one of expected, pattern or python"
            + (f" (got {', '.join(kinds)})" if kinds else "")
        )
    common = {
        "retries": _int(value.get("retries", DEFAULT_RETRIES), "retries", 0, MAX_RETRIES),
        "hint": _line(value.get("hint", ""), "hint", MAX_HINT),
        "timeout_s": _float(value.get("timeout_s", DEFAULT_TIMEOUT_S), "timeout_s", 0.1, 60.0),
    }
    _only(value, kinds[0])
    if kinds[0] == "expected":
        return _expected(value, common)
    if kinds[0] == "pattern":
        return _pattern(value, common)
    return _python_check(value, common)


_OPTIONS = {
    "expected": ("tolerance", "unit"),
    "pattern": ("match", "ignore_case"),
    "python": ("timeout_s",),
}


def _only(value: Mapping[Any, Any], kind: str) -> None:
    for other, keys in _OPTIONS.items():
        if other == kind:
            continue
        for key in keys:
            if key in value and key not in _OPTIONS[kind]:
                raise CheckError(f"check key '{key}' belongs to a {other} check, not {kind}")


def _expected(value: Mapping[Any, Any], common: dict[str, Any]) -> Check:
    raw = value["expected"]
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise CheckError(f"check 'expected' must be text or a number, got {_kind(raw)}")
    unit = _line(value.get("unit", ""), "unit", 40)
    if isinstance(raw, str):
        if "tolerance" in value:
            raise CheckError("check 'tolerance' needs a numeric 'expected' (write it unquoted)")
        if len(raw) > MAX_EXPECTED:
            raise CheckError(f"check 'expected' is over {MAX_EXPECTED} characters")
        if not normalise(raw):
            raise CheckError("check 'expected' is empty once normalised")
        return Check(CheckKind.EXPECTED, expected=raw, unit=unit, **common)
    if not math.isfinite(raw) or abs(raw) > 1e300:
        raise CheckError("check 'expected' must be a finite number")
    default = 0.0 if isinstance(raw, int) else 1e-9 * max(1.0, abs(float(raw)))
    tolerance = _float(value.get("tolerance", default), "tolerance", 0.0, 1e300)
    shown = str(raw) if isinstance(raw, int) and abs(raw) < 10**18 else repr(float(raw))
    return Check(
        CheckKind.EXPECTED, expected=shown, number=True, tolerance=tolerance, unit=unit, **common
    )


def _pattern(value: Mapping[Any, Any], common: dict[str, Any]) -> Check:
    pattern = value["pattern"]
    if not isinstance(pattern, str) or not pattern:
        raise CheckError(f"check 'pattern' must be non-empty text, got {_kind(pattern)}")
    if len(pattern) > MAX_PATTERN:
        raise CheckError(f"check 'pattern' is over {MAX_PATTERN} characters")
    match = value.get("match", "fullmatch")
    if match not in MATCHES:
        raise CheckError(f"check 'match' must be fullmatch or search, got {_cut(repr(match))}")
    ignore_case = value.get("ignore_case", False)
    if not isinstance(ignore_case, bool):
        raise CheckError(f"check 'ignore_case' must be true or false, got {_kind(ignore_case)}")
    _compile(pattern, ignore_case)
    return Check(
        CheckKind.PATTERN,
        pattern=pattern,
        search=match == "search",
        ignore_case=ignore_case,
        **common,
    )


def _compile(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    try:
        compiled = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except (re.error, RecursionError, OverflowError, ValueError) as exc:
        raise CheckError(f"check 'pattern' is not a valid regular expression: {exc}") from None
    if _nested_repeat(pattern):
        raise CheckError(
            "check 'pattern' repeats a group that itself repeats (like (a+)+): it can take "
            "exponential time; write it without the nesting"
        )
    return compiled


def _nested_repeat(pattern: str) -> bool:
    """Whether a repeated group contains another unbounded repeat: the shape that makes
    Python's backtracking matcher exponential. Read from `re`'s own parse of the pattern."""
    import re._parser as sre_parse  # the parser `re.compile` itself uses

    repeats = {sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT, sre_parse.POSSESSIVE_REPEAT}

    def walk(items: Any, inside: bool) -> bool:
        for op, arg in items:
            if op in repeats:
                _low, high, sub = arg
                unbounded = high == sre_parse.MAXREPEAT or high > 1
                found = (inside and unbounded) or walk(sub, inside or unbounded)
            elif op is sre_parse.SUBPATTERN:
                found = walk(arg[-1], inside)
            elif op is sre_parse.BRANCH:
                found = any(walk(branch, inside) for branch in arg[1])
            elif op in (sre_parse.ASSERT, sre_parse.ASSERT_NOT):
                found = walk(arg[1], inside)
            else:
                found = False
            if found:
                return True
        return False

    return walk(sre_parse.parse(pattern), False)


def _python_check(value: Mapping[Any, Any], common: dict[str, Any]) -> Check:
    return Check(CheckKind.PYTHON, python=_python(value["python"]), **common)


def _python(source: object) -> str:
    if not isinstance(source, str) or not source.strip():
        raise CheckError(f"check 'python' must be the source of a function, got {_kind(source)}")
    if len(source) > MAX_PYTHON:
        raise CheckError(f"check 'python' is over {MAX_PYTHON} characters")
    try:
        # Parsed, never run, in this process: the sandbox runs it.
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise CheckError(f"check 'python' has a syntax error on its line {exc.lineno}") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise CheckError(f"check 'python' cannot be parsed: {type(exc).__name__}") from None
    defined = any(isinstance(node, ast.FunctionDef) and node.name == "check" for node in tree.body)
    if not defined:
        raise CheckError("check 'python' must define a function `check(answer)`")
    return source


def _int(value: object, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise CheckError(f"check '{name}' must be a whole number from {lo} to {hi}")
    return value


def _float(value: object, name: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CheckError(f"check '{name}' must be a number, got {_kind(value)}")
    if not math.isfinite(value) or not lo <= value <= hi:
        raise CheckError(f"check '{name}' must be between {lo:g} and {hi:g}")
    return float(value)


def _line(value: object, name: str, limit: int) -> str:
    if not isinstance(value, str) or "\n" in value.strip() or len(value) > limit:
        raise CheckError(f"check '{name}' must be one line of at most {limit} characters")
    return value.strip()


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    return {dict: "a mapping", list: "a list", str: "text", int: "a number", float: "a number"}.get(
        type(value), f"a {type(value).__name__}"
    )


def _cut(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------- the fenced block


_FENCE_OPEN = re.compile(r"^ {0,3}(```|~~~)[ \t]*check[ \t]*$")
_ANY_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def find_fenced(lines: list[str]) -> tuple[int, int] | None:
    """Where the ```check block is: the indices of its opening and closing fence lines, or
    None. A check fence inside another fenced block is that block's text. CheckError for a
    second block or one never closed."""
    found: tuple[int, int] | None = None
    fence: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if "`" not in line and "~" not in line:  # most lines: no regex
            i += 1
            continue
        opener = _FENCE_OPEN.match(line) if fence is None else None
        if opener:
            close = _closing(lines, i + 1, opener.group(1))
            if close is None:
                raise CheckError("a ```check block is never closed", i)
            if found is not None:
                raise CheckError("a second ```check block (a purpose has one)", i)
            found = (i, close)
            i = close + 1
            continue
        plain = _ANY_FENCE.match(line)
        if plain:
            if fence is None:
                fence = plain.group(1)
            elif plain.group(1) == fence:
                fence = None
        i += 1
    return found


def _closing(lines: list[str], start: int, fence: str) -> int | None:
    for j in range(start, len(lines)):
        if lines[j].strip() == fence:
            return j
    return None


# ---------------------------------------------------------------- running a check


RunCode = Callable[[str, float], ExecOutput]

_PREFIX = re.compile(r"(?:final answer:|answer:|the answer is|result:)", re.IGNORECASE)
_WRAPPERS = " \t\r\n\"'`*_"


def normalise(text: str, *, fold: bool = True) -> str:
    """How answers and expected values are compared: NFKC, case folded (unless `fold` is
    false: patterns say themselves whether case matters), whitespace collapsed, quotes,
    backticks and emphasis stripped from the ends, a leading `answer:` (or `final answer:`,
    `the answer is`, `result:`) and a final full stop dropped."""
    text = unicodedata.normalize("NFKC", text[:MAX_INPUT]).strip(_WRAPPERS)
    prefix = _PREFIX.match(text)
    if prefix:
        text = text[prefix.end() :].strip(_WRAPPERS)
    text = " ".join(text.removesuffix(".").strip(_WRAPPERS).split())
    return text.casefold() if fold else text


_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?")
_GROUPED = re.compile(r"(?<=\d)[,_ ](?=\d{3}(?:\D|$))")


def as_number(text: str, unit: str = "") -> float | None:
    """The normalised answer as a number (`1,234.5`, `-3`, `2e3`, then `unit`), else None."""
    text = normalise(text)
    if unit:
        text = text.removesuffix(normalise(unit)).strip()
    text = _GROUPED.sub("", text)
    if not _NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def _failed(check: Check, message: str) -> CheckResult:
    text = message if not check.hint else f"{message} Hint: {check.hint}"
    return CheckResult(Verdict.FAIL, text[:MAX_OUTPUT])


def run_check(check: Check, answer: str, run_code: RunCode | None = None) -> CheckResult:
    """The verdict on `answer`. `run_code` runs a python check in a sandbox (the worker's
    code runner); without one a python check is an ERROR, never run here."""
    if check.kind is CheckKind.EXPECTED:
        return _run_expected(check, answer)
    if check.kind is CheckKind.PATTERN:
        return _run_pattern(check, answer)
    if run_code is None:
        return CheckResult(Verdict.ERROR, "no sandbox serves this swarm: the check cannot run")
    return _run_python(check, answer, run_code)


def _run_expected(check: Check, answer: str) -> CheckResult:
    if check.number:
        got = as_number(answer, check.unit)
        if got is None:
            return _failed(check, "The answer is not a single number.")
        if abs(got - float(check.expected)) <= check.tolerance:
            return CheckResult(Verdict.PASS, "the answer equals the expected number")
        return _failed(check, f"{_num(got)} is not the expected number.")
    if normalise(answer) == normalise(check.expected):
        return CheckResult(Verdict.PASS, "the answer equals the expected value")
    return _failed(check, "The answer is not the expected value.")


def _num(x: float) -> str:
    return str(int(x)) if x.is_integer() and abs(x) < 1e16 else repr(x)


def _run_pattern(check: Check, answer: str) -> CheckResult:
    compiled = _compile(check.pattern, check.ignore_case)
    text = answer[:MAX_INPUT] if check.search else normalise(answer, fold=False)
    found = compiled.search(text) if check.search else compiled.fullmatch(text)
    if found:
        return CheckResult(Verdict.PASS, "the answer matches the required pattern")
    where = "contain" if check.search else "have"
    return _failed(check, f"The answer does not {where} the required form.")


_PROGRAM = """\
import json as __swarm_json
ANSWER = {answer}
{source}

def __swarm_verdict():
    try:
        got = check(ANSWER)
    except Exception as exc:
        got = (False, "check() raised " + type(exc).__name__ + ": " + str(exc))
    if isinstance(got, tuple) and len(got) == 2 and isinstance(got[0], bool):
        ok, message = got
    elif isinstance(got, bool):
        ok, message = got, ""
    else:
        ok, message = None, "check() must return a bool or (bool, str), not " + repr(type(got))
    verdict = {{"pass": ok, "message": str(message)[:{cap}]}}
    print({nonce!r}, __swarm_json.dumps(verdict), flush=True)

__swarm_verdict()
"""


def python_program(check: Check, answer: str, nonce: str) -> str:
    """The program the sandbox runs: the answer as a string literal (data, never code), the
    check's source, and a call that prints the verdict after a nonce the answer cannot know."""
    return _PROGRAM.format(
        answer=repr(answer[:MAX_INPUT]), source=check.python, nonce=nonce, cap=MAX_OUTPUT
    )


def _run_python(check: Check, answer: str, run_code: RunCode) -> CheckResult:
    nonce = "SWARM-CHECK-" + secrets.token_hex(8)
    output = run_code(python_program(check, answer, nonce), check.timeout_s)
    verdict = _verdict_line(output.stdout, nonce)
    if verdict is None:
        why = output.error or "the check printed no verdict"
        tail = output.stderr.strip().splitlines()[-1:] if output.stderr else []
        detail = f"{why}: {tail[0]}" if tail else why
        return CheckResult(Verdict.ERROR, f"the check did not finish: {detail}"[:MAX_OUTPUT])
    ok, message = verdict
    if ok is None:
        return CheckResult(Verdict.ERROR, message[:MAX_OUTPUT])
    if ok:
        return CheckResult(Verdict.PASS, (message or "check() returned True")[:MAX_OUTPUT])
    return _failed(check, message or "check() returned False.")


def _verdict_line(stdout: str, nonce: str) -> tuple[bool | None, str] | None:
    """The last line after the nonce, as (pass, message); None when there is none or it is
    malformed."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(nonce + " ") and len(line) <= 4 * MAX_OUTPUT + 100:
            try:
                raw = json.loads(line[len(nonce) + 1 :])
            except ValueError:
                return None
            if not isinstance(raw, dict):
                return None
            ok, message = raw.get("pass"), raw.get("message", "")
            if ok is not None and not isinstance(ok, bool):
                return None
            return ok, str(message)
    return None
