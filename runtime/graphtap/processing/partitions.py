"""Per-partition progress for the status page and /metrics: position, lag and throughput.

Throughput is the checkpoint's movement over a sliding window, so the same meter serves
a source that reports each batch (Event Hubs) and one that is only sampled (the local hub).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

WINDOW_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class PartitionStatus:
    partition: str
    owned: bool
    last_sequence: int | None  # the last sequence number committed (checkpointed)
    last_enqueued: int | None  # the newest sequence number in the partition, when known
    events_per_second: float

    @property
    def lag(self) -> int | None:
        """Events enqueued after the last committed one (None while the head is unknown)."""
        if self.last_enqueued is None:
            return None
        return max(
            0, self.last_enqueued - (-1 if self.last_sequence is None else self.last_sequence)
        )


@dataclass
class _Partition:
    owned: bool = False
    last_sequence: int | None = None
    last_enqueued: int | None = None
    samples: deque[tuple[float, int]] | None = None


class PartitionMeter:
    """Thread-safe: a processor thread may observe while the web app reads."""

    def __init__(self, window: float = WINDOW_SECONDS) -> None:
        self._window = window
        self._partitions: dict[str, _Partition] = {}
        self._lock = threading.Lock()

    def observe(
        self,
        partition: str,
        *,
        last_sequence: int | None,
        last_enqueued: int | None = None,
        owned: bool = True,
        now: float | None = None,
    ) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            state = self._partitions.setdefault(partition, _Partition(samples=deque()))
            state.owned = owned
            if last_enqueued is not None:
                state.last_enqueued = last_enqueued
            if last_sequence is None:
                return
            state.last_sequence = last_sequence
            assert state.samples is not None
            state.samples.append((now, last_sequence))
            while len(state.samples) > 2 and state.samples[0][0] < now - self._window:
                state.samples.popleft()

    def release(self, partition: str) -> None:
        """The partition went to another instance: keep its figures, mark it not owned."""
        with self._lock:
            if partition in self._partitions:
                self._partitions[partition].owned = False

    def snapshot(self) -> list[PartitionStatus]:
        with self._lock:
            return [
                PartitionStatus(
                    partition,
                    state.owned,
                    state.last_sequence,
                    state.last_enqueued,
                    _rate(state.samples),
                )
                for partition, state in sorted(self._partitions.items(), key=_partition_order)
            ]


def lag_observations(
    partitions: Iterable[PartitionStatus],
) -> Iterator[tuple[str, float, Mapping[str, str]]]:
    """Each owned partition's lag, for `telemetry.observe_metrics`: a partition released to
    another instance keeps stale figures here, and that instance reports it instead."""
    for status in partitions:
        if status.owned and status.lag is not None:
            yield "partition.lag", status.lag, {"partition": status.partition}


def _rate(samples: deque[tuple[float, int]] | None) -> float:
    if not samples or len(samples) < 2:
        return 0.0
    (t0, s0), (t1, s1) = samples[0], samples[-1]
    return (s1 - s0) / (t1 - t0) if t1 > t0 else 0.0


def _partition_order(item: tuple[str, _Partition]) -> tuple[int, str]:
    name = item[0]
    return (int(name), name) if name.isdigit() else (1 << 30, name)
