"""What the status page draws: a bounded time series sampled in the process, and the latest
findings.

Every `interval` seconds (10 by default) one sample records the notifications per second
since the previous sample, each partition's lag and the findings by type counted in
between; an hour's worth is kept (360 samples), then the oldest drop off. On Azure, where
verdicts leave for the findings hub, a bounded ring keeps the newest findings rows for the
page: masked previews and hashes only, as in every verdict.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from graphtap.hosts.findings import FindingRow, rows_of
from graphtap.processing.partitions import PartitionStatus
from graphtap.processing.summary import Summary
from graphtap.processing.verdicts import Verdict

DEFAULT_INTERVAL = 10.0
WINDOW_SECONDS = 3600.0
LATEST_FINDINGS = 20


@dataclass(frozen=True, slots=True)
class Sample:
    time: float  # epoch seconds
    notifications_per_second: float | None  # None in the first sample: a rate needs two
    lag: dict[str, int]  # partition -> events after the checkpoint (known ones only)
    findings: dict[str, int]  # type -> findings counted since the previous sample

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": round(self.time, 3),
            "notifications_per_second": (
                None
                if self.notifications_per_second is None
                else round(self.notifications_per_second, 2)
            ),
            "lag": dict(self.lag),
            "findings": dict(self.findings),
        }


@dataclass
class StatusHistory:
    """One sample per `interval` over the last `window` seconds; thread-safe to read."""

    interval: float = DEFAULT_INTERVAL
    window: float = WINDOW_SECONDS
    _samples: deque[Sample] = field(init=False)
    _previous: tuple[float, int, Counter[str]] | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        if self.interval <= 0 or self.window < self.interval:
            raise ValueError("the sample interval must be positive and within the window")
        self._samples = deque(maxlen=int(self.window // self.interval) + 1)

    def sample(
        self, summary: Summary, partitions: Sequence[PartitionStatus], *, now: float | None = None
    ) -> Sample:
        now = time.time() if now is None else now
        findings = Counter(summary.findings_by_type)
        rate: float | None = None
        added: Counter[str] = Counter()
        if self._previous is not None:
            then, notifications, counted = self._previous
            rate = max(0, summary.notifications - notifications) / max(now - then, 1e-3)
            added = findings - counted  # only increases: a counter never goes back
        self._previous = (now, summary.notifications, findings)
        sample = Sample(
            time=now,
            notifications_per_second=rate,
            lag={p.partition: p.lag for p in partitions if p.lag is not None},
            findings=dict(added),
        )
        with self._lock:
            self._samples.append(sample)
            while self._samples and self._samples[0].time < now - self.window:
                self._samples.popleft()
        return sample

    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)

    def to_dict(self) -> dict[str, Any]:
        return {
            "interval_seconds": self.interval,
            "window_seconds": self.window,
            "samples": [s.to_dict() for s in self.samples()],
        }

    async def run(
        self,
        summary: Callable[[], Summary],
        partitions: Callable[[], Sequence[PartitionStatus]],
        stop: asyncio.Event,
    ) -> None:
        """Sample now, then every `interval` seconds until `stop` is set."""
        while True:
            self.sample(summary(), partitions())
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.interval)
                return
            except TimeoutError:
                continue


class RecentFindings:
    """The newest findings rows of verdicts that had any, at most `size`; thread-safe.

    Fed with the verdicts a batch committed (after its checkpoint), so what it shows was
    delivered; a replayed verdict may appear twice, as it was processed twice."""

    def __init__(self, size: int = LATEST_FINDINGS) -> None:
        self._rows: deque[FindingRow] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, verdicts: Sequence[Verdict]) -> None:
        rows = [row for verdict in verdicts if verdict.findings for row in rows_of(verdict)]
        if rows:
            with self._lock:
                self._rows.extend(rows)

    def latest(self, limit: int) -> list[FindingRow]:
        with self._lock:
            rows = list(reversed(self._rows))  # the last added first among equal times
        rows.sort(key=lambda r: r.processed_at, reverse=True)
        return rows[:limit]
