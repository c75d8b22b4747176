"""Several verdict destinations as one sink: each verdict goes once to each of them.

A batch is durable only when every destination accepted it, so the checkpoint waits for the
slowest and any failure holds it; the batch then comes again, and each destination's own
dedupe (keys it wrote recently, `VerdictKey` downstream) absorbs what it already had.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from graphtap.processing.sinks import gather_all
from graphtap.processing.verdicts import Verdict


class Destination(Protocol):
    """An async verdict sink (`committer.AsyncVerdictSink`, which this package must not
    import: the committer imports the sinks)."""

    async def write_verdicts(self, verdicts: Sequence[Verdict]) -> int: ...

    async def close(self) -> None: ...


class FanOutVerdicts:
    def __init__(self, destinations: Sequence[Destination]) -> None:
        if not destinations:
            raise ValueError("a fan-out needs at least one destination")
        self.destinations = tuple(destinations)

    async def write_verdicts(self, verdicts: Sequence[Verdict]) -> int:
        """Write to every destination at once; return the most any of them found new."""
        written = await gather_all(sink.write_verdicts(verdicts) for sink in self.destinations)
        return max(written)

    async def close(self) -> None:
        """Close every destination, even when one fails to close; then raise the first."""
        await gather_all(sink.close() for sink in self.destinations)
