"""Pacing Graph calls below a published limit, and obeying Retry-After.

Graph allows 500 subscription writes per 20 seconds per app and tenant. A token bucket
refilling at `rate` with `burst` tokens never exceeds `burst + rate * 20` in any 20-second
window, so the defaults (24/s, burst 20) stay at 500 while keeping the write rate near the
25/s ceiling. The export APIs a resync reads get their own bucket (`EXPORT_READS`): 200
requests in any second and 83 % of that sustained. A 429 or 503 pauses every caller of the
same throttle until its Retry-After has passed. Both are measured on the clock's monotonic
reading: a wall clock stepped back would otherwise drain the bucket (or stretch a pause) by
the size of the step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from graphtap.subscriptions.clock import Clock
from graphtap.subscriptions.rules import (
    EXPORT_REQUESTS_PER_SECOND,
    EXPORT_SUSTAINED_SHARE,
    LISTS_PER_WINDOW,
    WINDOW_SECONDS,
    WRITES_PER_WINDOW,
)

T = TypeVar("T")
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class RetryableError(Exception):
    """A response worth retrying: throttled (429), unavailable (503) or a transient 5xx."""

    def __init__(self, status: int, retry_after: float | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class ThrottleSettings:
    rate: float = 24.0
    burst: int = 20
    concurrency: int = 16
    max_attempts: int = 8
    default_retry_after: float = 5.0
    max_backoff: float = 120.0
    #: The limit the bucket must respect: `limit` calls in any `window` seconds, and, when
    #: set, `per_second` calls in any one second.
    limit: float = WRITES_PER_WINDOW
    window: float = WINDOW_SECONDS
    per_second: float | None = None
    what: str = "writes"

    def __post_init__(self) -> None:
        if self.burst + self.rate * self.window > self.limit:
            raise ValueError(
                f"burst {self.burst} + rate {self.rate}/s x {self.window:g} s exceeds Graph's "
                f"{self.limit:g} {self.what} per {self.window:g} s"
            )
        if self.per_second is not None and self.burst + self.rate > self.per_second:
            raise ValueError(
                f"burst {self.burst} + rate {self.rate}/s exceeds Graph's "
                f"{self.per_second:g} {self.what} per second"
            )
        if self.rate <= 0 or self.burst < 1 or self.concurrency < 1 or self.max_attempts < 1:
            raise ValueError("rate, burst, concurrency and max_attempts must be positive")


#: Export reads: at most 200 in any second (40 + 160) and 3,240 in any 20 s, under the
#: sustained 83 % (3,320); the concurrency bound is the resync's, in units.
EXPORT_READS = ThrottleSettings(
    rate=160.0,
    burst=40,
    concurrency=64,
    limit=EXPORT_REQUESTS_PER_SECOND * EXPORT_SUSTAINED_SHARE * WINDOW_SECONDS,
    per_second=EXPORT_REQUESTS_PER_SECOND,
    what="export requests",
)


#: Listing subscriptions: each page is one of the 25 list requests Graph allows per app and
#: tenant in any 20 s (5 + 1/s x 20 s), so a tenant's thousands of subscriptions page within
#: it instead of being refused from page 26 on.
SUBSCRIPTION_LISTS = ThrottleSettings(
    rate=1.0,
    burst=5,
    concurrency=1,
    limit=LISTS_PER_WINDOW,
    what="subscription list requests",
)


#: Outlook allows 10,000 requests per 10 minutes per app and mailbox, 4 at a time: one
#: throttle per mailbox keeps a resync's reads to 4 + 15/s x 600 s = 9,004 in any 10 minutes,
#: leaving the live path's fetches room in the same budget.
MAIL_READS = ThrottleSettings(
    rate=15.0,
    burst=4,
    concurrency=4,
    limit=10_000,
    window=600.0,
    what="Outlook requests per mailbox",
)


@dataclass
class ThrottleStats:
    writes: int = 0
    retries: int = 0
    throttled: int = 0


class WriteThrottle:
    """A paced, bounded, Retry-After-aware gate for Graph writes."""

    def __init__(self, clock: Clock, settings: ThrottleSettings = ThrottleSettings()) -> None:
        self._clock = clock
        self.settings = settings
        self._tokens = float(settings.burst)
        self._updated = clock.monotonic()
        self._paused_until = 0.0
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._bucket = asyncio.Lock()
        self.stats = ThrottleStats()

    async def run(self, operation: Callable[[], Awaitable[T]], *, write: bool = True) -> T:
        """Run `operation` (a Graph call) paced, retrying retryable failures after a wait."""
        attempt = 0
        while True:
            attempt += 1
            backoff = 0.0
            async with self._slots:
                await self._wait_pause()
                if write:
                    await self._take()
                try:
                    return await operation()
                except RetryableError as error:
                    if attempt >= self.settings.max_attempts:
                        raise
                    self.stats.retries += 1
                    wait = error.retry_after
                    if wait is None:
                        wait = min(
                            self.settings.default_retry_after * 2 ** (attempt - 1),
                            self.settings.max_backoff,
                        )
                    if error.status in (429, 503):
                        # The service is throttling the app: every writer waits.
                        self.stats.throttled += 1
                        self._paused_until = max(self._paused_until, self._clock.monotonic() + wait)
                    else:
                        backoff = wait
            if backoff:
                await self._clock.sleep(backoff)

    async def _wait_pause(self) -> None:
        while (remaining := self._paused_until - self._clock.monotonic()) > 0:
            await self._clock.sleep(remaining)

    async def _take(self) -> None:
        async with self._bucket:
            while True:
                now = self._clock.monotonic()
                self._tokens = min(
                    float(self.settings.burst),
                    self._tokens + (now - self._updated) * self.settings.rate,
                )
                self._updated = now
                if self._tokens >= 1.0 - 1e-9:  # tolerate float rounding in the refill
                    self._tokens = max(0.0, self._tokens - 1.0)
                    self.stats.writes += 1
                    return
                await self._clock.sleep(max((1.0 - self._tokens) / self.settings.rate, 1e-3))
