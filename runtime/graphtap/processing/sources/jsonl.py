"""A JSONL file of event bodies (one per line) as a source: replays, tests, air-gapped runs.

A file has no consumer-group state: each run reads it whole. Replaying is safe because
verdicts and dead letters are deduplicated by key in the sink.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from graphtap.processing.sources import SourceEvent

PARTITION = "jsonl"


class JsonlSource:
    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such JSONL file of event bodies")
        self._file: BinaryIO = path.open("rb")
        self._stopped = False

    def batches(self, max_events: int) -> Iterator[list[SourceEvent]]:
        batch: list[SourceEvent] = []
        for number, line in enumerate(self._file, start=1):
            body = line.rstrip(b"\r\n")
            if not body.strip():
                continue
            batch.append(SourceEvent(PARTITION, number, body))
            if len(batch) >= max_events:
                yield batch
                batch = []
                if self._stopped:
                    return
        if batch:
            yield batch

    def checkpoint(self, events: Sequence[SourceEvent]) -> None:
        """Nothing to record: a file is replayed whole, and the sink absorbs repeats."""

    def stop(self) -> None:
        self._stopped = True

    def close(self) -> None:
        self._file.close()
