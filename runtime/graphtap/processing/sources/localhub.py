"""The embedded local hub as an event source, resuming after the consumer group's checkpoints."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from graphtap.localhub import DEFAULT_CONSUMER_GROUP, LocalHub
from graphtap.processing.sources import SourceEvent


class LocalHubSource:
    """Reads every partition round-robin, one batch per partition per turn.

    With `follow`, it keeps polling for new events until `stop` is set; otherwise it ends
    once a full round finds no new events (the hub is drained).
    """

    def __init__(
        self,
        directory: Path,
        *,
        consumer_group: str = DEFAULT_CONSUMER_GROUP,
        follow: bool = False,
        poll_interval: float = 0.5,
        stop: threading.Event | None = None,
    ) -> None:
        self._hub = LocalHub(directory, create=False)
        self._group = consumer_group
        self._follow = follow
        self._poll_interval = poll_interval
        self._stop = stop or threading.Event()

    @property
    def hub(self) -> LocalHub:
        return self._hub

    def batches(self, max_events: int) -> Iterator[list[SourceEvent]]:
        positions = {
            p: self._hub.checkpoint_of(self._group, p) for p in range(self._hub.partition_count)
        }
        while not self._stop.is_set():
            found = False
            for partition, after in positions.items():
                events = self._hub.receive(partition, after=after, max_count=max_events)
                if not events:
                    continue
                found = True
                positions[partition] = events[-1].sequence
                yield [SourceEvent(str(partition), e.sequence, e.body) for e in events]
            if not found:
                if not self._follow:
                    return
                self._stop.wait(self._poll_interval)

    def checkpoint(self, events: Sequence[SourceEvent]) -> None:
        last: dict[int, int] = {}
        for event in events:
            partition = int(event.partition)
            last[partition] = max(last.get(partition, -1), event.offset)
        for partition, sequence in last.items():
            self._hub.checkpoint(self._group, partition, sequence)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._hub.close()
