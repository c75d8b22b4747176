"""The one commit step: a processed batch made durable in the order that makes
at-least-once safe. Every path that produces verdicts commits through it: the local runner,
the Event Hubs consumer, the Function trigger and gap resync.

Verdicts, then dead letters, then lifecycle events, then the actions the policy enforces in
Teams (the outbox the actor drains), each durable on return; only then the checkpoint, and
only then the bookkeeping (`Summary.record`) and the per-batch log. If any store fails, the
exception propagates, the checkpoint stays where it was, and the batch is delivered again;
the keyed stores absorb what had already been written.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from graphtap.processing.deadletters import DeadLetter
from graphtap.processing.lifecycle import LifecycleQueue, SharedLifecycle, shared
from graphtap.processing.outbox import ActionOutbox, ActionSink, as_sink
from graphtap.processing.outputs import BatchOutputs
from graphtap.processing.pipeline import EventResult
from graphtap.processing.sinks import (
    AsyncDeadLetterStore,
    AsyncVerdictSink,
    DeadLetterStore,
    VerdictSink,
)
from graphtap.processing.summary import Summary
from graphtap.processing.verdicts import Verdict

log = logging.getLogger(__name__)


class BlockingVerdicts:
    """A local (SQLite or JSONL) verdict sink behind the async interface. Writes run on the
    event loop: a local append and fsync take milliseconds, and SQLite connections stay on
    the thread that opened them."""

    def __init__(self, store: VerdictSink) -> None:
        self.store = store

    async def write_verdicts(self, verdicts: Sequence[Verdict]) -> int:
        return self.store.write_verdicts(verdicts)

    async def close(self) -> None:
        self.store.close()


class BlockingDeadLetters:
    """A local (file or SQLite) dead-letter store behind the async interface."""

    def __init__(self, store: DeadLetterStore) -> None:
        self.store = store

    async def write_dead_letters(self, letters: Sequence[DeadLetter]) -> int:
        return self.store.write_dead_letters(letters)

    async def close(self) -> None:
        self.store.close()


Checkpoint = Callable[[], Awaitable[None]]


class BatchCommitter:
    def __init__(
        self,
        *,
        sink: AsyncVerdictSink,
        dead_letters: AsyncDeadLetterStore,
        lifecycle: LifecycleQueue | SharedLifecycle,
        summary: Summary,
        outbox: ActionOutbox | ActionSink | None = None,
    ) -> None:
        self._sink = sink
        self._dead_letters = dead_letters
        self._lifecycle = shared(lifecycle)
        #: Where actions to enforce go; None where the policy never enforces.
        self._outbox = as_sink(outbox) if outbox is not None else None
        self.summary = summary
        #: Called with each committed batch's verdicts, after its checkpoint (the status
        #: page's latest findings on Azure); an observer must not block or raise.
        self.observers: list[Callable[[Sequence[Verdict]], None]] = []

    async def commit(
        self, results: Sequence[EventResult], *, events: int, checkpoint: Checkpoint
    ) -> None:
        outputs = BatchOutputs.of(results)
        new_verdicts = await self._sink.write_verdicts(outputs.verdicts)
        await self._dead_letters.write_dead_letters(outputs.dead_letters)
        if outputs.lifecycle:
            await self._lifecycle.put(outputs.lifecycle)
        actions = [v.action for v in outputs.verdicts if v.action is not None and v.action.to_apply]
        if actions:
            if self._outbox is None:
                raise RuntimeError(
                    "the policy enforces actions but this host has no action outbox: "
                    "set [enforcement] mode to dry_run or report, or give the host an outbox"
                )
            await self._outbox.put(actions)
        await checkpoint()
        self.summary.record(results, events=events, new_verdicts=new_verdicts)
        _log_outcomes(outputs)
        for observe in self.observers:
            observe(outputs.verdicts)


def _log_outcomes(outputs: BatchOutputs) -> None:
    """Where findings and dead letters came from, for operators: ids and positions only."""
    if not log.isEnabledFor(logging.INFO):
        return  # every batch passes here: build no records nobody will see
    for verdict in outputs.verdicts:
        if verdict.findings:
            log.info(
                "verdict with findings",
                extra={
                    "subscription_id": verdict.subscription_id,
                    "partition": verdict.partition,
                    "sequence_number": verdict.offset,
                    "severity": verdict.severity,
                    "findings": len(verdict.findings),
                },
            )
    for letter in outputs.dead_letters:
        log.info(
            "notification dead-lettered",
            extra={
                "partition": letter.partition,
                "sequence_number": letter.offset,
                "reason": str(letter.reason),
            },
        )
