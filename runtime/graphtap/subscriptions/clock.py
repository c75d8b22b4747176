"""Time as a dependency: the control plane sleeps through a clock so tests run a week in seconds.

A clock has two readings. `time()` is the wall clock, for dates: a subscription's expiry,
the window a resync reads back. `monotonic()` never jumps, for every interval and deadline
inside the process (pacing, pauses, schedules): NTP stepping the wall clock back an hour must
not stall a schedule for that hour, nor a step forward fire it early.

`SystemClock` is the machine's. `VirtualClock` jumps straight to the next sleeper's wake-up
once the event loop has settled, so every task sees a consistent, fast-forwarded time; the
fake Graph enforces its rate limits on the same clock. `step_wall` moves its wall clock
alone, as NTP does.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Seconds since the epoch: for dates, never for intervals."""
        ...

    def monotonic(self) -> float:
        """Seconds that only ever increase: for intervals and deadlines."""
        ...

    async def sleep(self, seconds: float) -> None: ...


def utcnow(clock: Clock) -> dt.datetime:
    return dt.datetime.fromtimestamp(clock.time(), dt.UTC)


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class VirtualClock:
    """Simulated time for one event loop: sleeping never waits for real."""

    #: Loop turns to let ready tasks run before time moves on.
    SETTLE_TURNS = 50

    def __init__(self, start: float | dt.datetime = 1_767_225_600.0) -> None:
        self._now = start.timestamp() if isinstance(start, dt.datetime) else float(start)
        self._elapsed = 0.0  # the monotonic reading
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._driver: asyncio.Task[None] | None = None

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._elapsed

    def advance(self, seconds: float) -> None:
        """Move time forward without sleeping (e.g. to simulate downtime)."""
        self._now += max(0.0, seconds)
        self._elapsed += max(0.0, seconds)

    def step_wall(self, seconds: float) -> None:
        """Step the wall clock alone, either way, as NTP or an operator does."""
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._elapsed + seconds, next(self._order), future))
        if self._driver is None or self._driver.done():
            self._driver = asyncio.get_running_loop().create_task(self._drive())
        await future

    async def _drive(self) -> None:
        while self._sleepers:
            for _ in range(self.SETTLE_TURNS):
                await asyncio.sleep(0)
            if not self._sleepers:
                return
            wake, _, future = heapq.heappop(self._sleepers)
            if future.done():
                continue
            if wake > self._elapsed:
                self._now += wake - self._elapsed
                self._elapsed = wake
            future.set_result(None)
