"""Commit a processed batch in the order that makes at-least-once safe, on the event loop.

Verdicts, then dead letters, then lifecycle events, each durable on return; only then the
checkpoint, and only then the bookkeeping (`Summary.record`). If any store fails, the
exception propagates, the checkpoint stays where it was, and the batch is delivered again;
the keyed stores absorb what had already been written.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from graphtap.processing.outputs import BatchOutputs
from graphtap.processing.pipeline import EventResult
from graphtap.processing.runner import Summary
from graphtap.processing.sinks import DeadLetterStore, VerdictSink
from graphtap.processing.verdicts import Verdict
from graphtap.subscriptions.lifecycle import LifecycleQueue


class AsyncVerdictSink(Protocol):
    async def write_verdicts(self, verdicts: Sequence[Verdict]) -> int:
        """Durably accept verdicts; return how many were new (by key) to this sink."""
        ...

    async def close(self) -> None: ...


class BlockingSink:
    """A local, synchronous sink (SQLite, JSONL) behind the async interface.

    Local stores hold a connection bound to the loop's thread and commit in milliseconds,
    so they are called in place rather than from a thread pool.
    """

    def __init__(self, sink: VerdictSink) -> None:
        self._sink = sink

    async def write_verdicts(self, verdicts: Sequence[Verdict]) -> int:
        return self._sink.write_verdicts(verdicts)

    async def close(self) -> None:
        self._sink.close()


Checkpoint = Callable[[], Awaitable[None]]


class BatchCommitter:
    def __init__(
        self,
        *,
        sink: AsyncVerdictSink,
        dead_letters: DeadLetterStore,
        lifecycle: LifecycleQueue,
        summary: Summary,
    ) -> None:
        self._sink = sink
        self._dead_letters = dead_letters
        self._lifecycle = lifecycle
        self.summary = summary

    async def commit(
        self, results: Sequence[EventResult], *, events: int, checkpoint: Checkpoint
    ) -> None:
        outputs = BatchOutputs.of(results)
        new_verdicts = await self._sink.write_verdicts(outputs.verdicts)
        self._dead_letters.write_dead_letters(outputs.dead_letters)
        self._lifecycle.put(outputs.lifecycle)
        await checkpoint()
        self.summary.record(results, events=events, new_verdicts=new_verdicts)
