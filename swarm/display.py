"""Untrusted text made safe to show: every human-facing output passes strings through here.

Titles, details, answers, reasons, worker names, event fields and even swarm ids come from
people, models and anything else that can write to Redis. A terminal acts on escape
sequences (OSC 52 writes the clipboard, CSI 2J clears the screen, C1 controls are the same
in eight bits) and reorders text around bidi overrides, and Rich reads `[...]` as markup.
So such a string is never formatted into markup (callers wrap it in `rich.text.Text` or
print it with markup off) and its invisible or acting characters are shown as escapes like
`\\x1b` or `\\u202e`: the text stays readable, literal, and inert. JSON outputs are exact
and do not come here (JSON escapes control characters itself).
"""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, C1 controls (NEL and CSI among them), the bidi
# embeddings, overrides, isolates and marks, zero-width space, word joiner and the other
# invisible operators, line and paragraph separators, the BOM, interlinear annotation marks,
# and the Unicode "tag" block (invisible ASCII look-alikes used to smuggle instructions).
# ZWJ and ZWNJ (U+200C/D) stay: scripts and emoji need them and they move no cursor.
_UNSAFE = (
    "\x00-\x08\x0b-\x1f\x7f-\x9f"
    "\u00ad\u061c\u180e\u200b\u200e\u200f\u2028-\u202e\u2060-\u206f"
    "\ufeff\ufff9-\ufffb\U000e0000-\U000e007f"
)
_UNSAFE_RE = re.compile(f"[{_UNSAFE}]")
_UNSAFE_LINE_RE = re.compile(f"[{_UNSAFE}\t\n]")
_BREAKS = re.compile(r"[ \t]*[\t\n][ \t\n]*")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def safe_text(text: object) -> str:
    """Text with its control and invisible characters shown as escapes; tabs and newlines
    stay (a CRLF becomes a newline; a lone CR, which would overwrite the line, is shown)."""
    return _UNSAFE_RE.sub(_visible, str(text).replace("\r\n", "\n"))


def safe_line(text: object) -> str:
    """`safe_text` on one line: a tab or line break, with the blanks around it, is a space."""
    return _UNSAFE_RE.sub(_visible, _BREAKS.sub(" ", str(text).replace("\r\n", "\n")))


def is_safe_line(text: str) -> bool:
    """True when `safe_line` would leave the text as it is, bar spacing."""
    return _UNSAFE_LINE_RE.search(text) is None


# -- markdown ------------------------------------------------------------------------------

# Every ASCII punctuation character may be backslash-escaped in CommonMark; escaping those
# that can start inline markup (emphasis, links, images, code, HTML, entities, closing
# heading marks, table cells, strikethrough, math) leaves a string literal inside a line.
# Inline text never starts a line here, so list and heading markers need no escape.
_MD_PUNCT = re.compile(r"([\\`*_\[\]()<>#!|~&$])")


def md_inline(text: object) -> str:
    """One line of untrusted text as literal markdown (no emphasis, links, HTML, cells)."""
    return _MD_PUNCT.sub(r"\\\1", safe_line(text))


def md_block(text: object, indent: str = "") -> list[str]:
    """Untrusted multi-line text as a fenced code block, every line indented by `indent`.

    The fence is longer than any run of backticks in the text, so nothing inside can close
    it, and every line carries the indent, so the block stays inside its list item.
    """
    body = safe_text(text)
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    lines = [f"{indent}{fence}text"]
    lines += [f"{indent}{line}" for line in body.split("\n")]
    lines.append(f"{indent}{fence}")
    return lines


# -- JSON ----------------------------------------------------------------------------------


def _json_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def json_safe(document: str) -> str:
    """A JSON document (from json.dumps) with the characters a terminal would act on escaped.

    json.dumps escapes C0 controls but, without ensure_ascii, leaves C1 controls and bidi
    overrides raw; those can only sit inside strings, where `\\uXXXX` means the same
    character, so the document decodes to exactly the same data.
    """
    return _UNSAFE_RE.sub(_json_escape, document)
