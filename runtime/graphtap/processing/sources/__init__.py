"""Where event bodies come from: the local hub, a JSONL file, or Azure Event Hubs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from graphtap.processing.fetched import Fetched
from graphtap.processing.records import pickled_as_fields


@pickled_as_fields
@dataclass(slots=True)  # one per event: a frozen dataclass costs more to build
class SourceEvent:
    """One Event Hubs event: its body and where it sits, for checkpoints and dead letters.
    `fetched` holds, by item index, the content its items point at (see `processing.fetch`)."""

    partition: str
    offset: int
    body: bytes
    fetched: dict[int, Fetched] | None = None


class EventSource(Protocol):
    def batches(self, max_events: int) -> Iterator[list[SourceEvent]]:
        """Batches of events, each from one partition, oldest first; ends when drained."""
        ...

    def checkpoint(self, events: Sequence[SourceEvent]) -> None:
        """Mark `events` (and all before them in their partitions) as done."""
        ...

    def stop(self) -> None:
        """End `batches` after the batch in hand (safe to call from a signal handler)."""
        ...

    def close(self) -> None: ...
