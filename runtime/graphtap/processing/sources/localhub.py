"""The embedded local hub as an event source, resuming after the consumer group's checkpoints."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from graphtap.localhub import DEFAULT_CONSUMER_GROUP, HubEvent, LocalHub
from graphtap.processing.sources import SourceEvent


class LocalHubSource:
    """Reads every partition round-robin, one batch per partition per turn.

    With `follow`, it keeps polling for new events until `stop` is set, and a partition's
    batch goes out once it is full or its oldest event has waited `max_wait` seconds,
    whichever comes first: a trickle is committed in batches of a few dozen events rather
    than one or two (each commit waits for the disk), and no event waits longer than
    `max_wait` for its batch. Without `follow` it hands over what it finds at once and ends
    once a full round finds no new events (the hub is drained).
    """

    def __init__(
        self,
        directory: Path,
        *,
        consumer_group: str = DEFAULT_CONSUMER_GROUP,
        follow: bool = False,
        poll_interval: float = 0.1,
        max_wait: float = 0.2,
        stop: threading.Event | None = None,
    ) -> None:
        if poll_interval <= 0 or max_wait < 0:
            raise ValueError(
                f"poll interval must be positive and max wait not negative, got {poll_interval}"
                f" and {max_wait}"
            )
        self._hub = LocalHub(directory, create=False)
        self._group = consumer_group
        self._follow = follow
        self._poll_interval = poll_interval
        self._max_wait = max_wait
        self._stop = stop or threading.Event()

    @property
    def hub(self) -> LocalHub:
        return self._hub

    def batches(self, max_events: int) -> Iterator[list[SourceEvent]]:
        positions = {
            p: self._hub.checkpoint_of(self._group, p) for p in range(self._hub.partition_count)
        }
        held: dict[int, list[HubEvent]] = {p: [] for p in positions}  # read, not yet handed over
        seen: dict[int, float] = {}  # when a partition's held events were first read
        while not self._stop.is_set():
            found = False
            due = time.time() + self._poll_interval  # when the next round should look again
            for partition, after in positions.items():
                events = held[partition]
                if len(events) < max_events:
                    last = events[-1].sequence if events else after
                    events += self._hub.receive(
                        partition, after=last, max_count=max_events - len(events)
                    )
                if not events:
                    continue
                if self._follow and len(events) < max_events:
                    # From the enqueue time, or the first read should the clocks disagree.
                    since = min(events[0].enqueued_at, seen.setdefault(partition, time.time()))
                    if since + self._max_wait > time.time():
                        due = min(due, since + self._max_wait)
                        continue
                found = True
                positions[partition] = events[-1].sequence
                held[partition] = []
                seen.pop(partition, None)
                yield [SourceEvent(str(partition), e.sequence, e.body) for e in events]
            if not found:
                if not self._follow:
                    return
                self._stop.wait(max(0.0, due - time.time()))

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
