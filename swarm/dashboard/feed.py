"""One reader per swarm, however many browsers watch it.

A `Feed` runs while it has subscribers: once a period it reads its swarm (in a thread, the
Redis client being a blocking one) and wakes every subscriber with the same encoded tick.
The `Hub` keeps the feeds, making one on the first subscriber and dropping it after the last
leaves, so Redis sees one frame's reads per swarm per period, not one per open page.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

Read = Callable[[], bytes]


class Feed:
    def __init__(
        self,
        read: Read,
        period_s: float,
        on_idle: Callable[[Feed], None],
        on_read: Callable[[], None] = lambda: None,
    ) -> None:
        self._read = read
        self._on_read = on_read
        self.period_s = period_s
        self._on_idle = on_idle
        self.version = 0
        self.latest = b""
        self.subscribers = 0
        self.reads = 0  # ticks read since the feed started (the test of sharing counts them)
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def subscribe(self) -> None:
        self.subscribers += 1
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def unsubscribe(self) -> None:
        self.subscribers -= 1

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.subscribers > 0:
                started = loop.time()
                self.latest = await asyncio.to_thread(self._read)
                self.reads += 1
                self._on_read()
                self.version += 1
                changed, self._changed = self._changed, asyncio.Event()
                changed.set()
                await asyncio.sleep(max(self.period_s - (loop.time() - started), 0.05))
        finally:
            self._task = None
            if self.subscribers <= 0:
                self._on_idle(self)

    async def next(self, seen: int) -> tuple[int, bytes]:
        """The first tick newer than `seen` (waits for it)."""
        while self.version <= seen:
            await self._changed.wait()
        return self.version, self.latest


class Hub:
    def __init__(self, make_read: Callable[[str], Read], period_s: float = 1.0) -> None:
        self._make_read = make_read
        self.period_s = period_s
        self.feeds: dict[str, Feed] = {}
        self.reads = 0  # ticks read by all feeds, ever

    def _count_read(self) -> None:
        self.reads += 1

    def _drop(self, swarm_id: str, feed: Feed) -> None:
        if self.feeds.get(swarm_id) is feed and feed.subscribers <= 0:
            del self.feeds[swarm_id]

    @asynccontextmanager
    async def watch(self, swarm_id: str) -> AsyncIterator[Feed]:
        feed = self.feeds.get(swarm_id)
        if feed is None:
            feed = Feed(
                self._make_read(swarm_id),
                self.period_s,
                lambda f: self._drop(swarm_id, f),
                self._count_read,
            )
            self.feeds[swarm_id] = feed
        feed.subscribe()
        try:
            yield feed
        finally:
            feed.unsubscribe()

    @property
    def subscribers(self) -> int:
        return sum(f.subscribers for f in self.feeds.values())
