"""OutputCapture: keeps the head and tail of a byte stream within a cap, counting what it drops.

A program may print gigabytes; the mind needs the first lines (what happened) and the last
ones (the traceback), so both ends are kept and the middle is replaced by a visible marker.
"""

from __future__ import annotations


def truncation_marker(dropped: int) -> str:
    return f"\n…[truncated {dropped} bytes]…\n"


class OutputCapture:
    """Feed it chunks as they arrive; memory stays O(cap) whatever the stream's length."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._tail_cap = cap // 4
        self._head_cap = cap - self._tail_cap
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self._head_cap - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self._tail += chunk
            # Trimmed in batches so a stream of small writes is not O(n * tail) copying.
            if len(self._tail) > 2 * max(self._tail_cap, 4096):
                del self._tail[: len(self._tail) - self._tail_cap]

    @property
    def dropped(self) -> int:
        return max(0, self.total - self.cap)

    def text(self) -> str:
        if not self.dropped:
            data = bytes(self._head + self._tail)
            return data.decode("utf-8", "replace")
        tail = self._tail[len(self._tail) - self._tail_cap :] if self._tail_cap else b""
        head = self._head.decode("utf-8", "replace")
        return head + truncation_marker(self.dropped) + bytes(tail).decode("utf-8", "replace")


def clip(text: str, cap: int) -> str:
    """The same head-and-tail cut, for text already in memory (E2B logs, a client's re-check)."""
    data = text.encode("utf-8", "replace")
    if len(data) <= cap:
        return text
    capture = OutputCapture(cap)
    capture.feed(data)
    return capture.text()
