"""One batch handler for every host that is handed batches of events: the web app's Event
Hubs consumer and the Function App's trigger. Span, fetch, process, commit, log, in that order;
the checkpoint is the host's (the consumer's blob checkpoint, or the Functions host's own
once the invocation returns), and moves only inside the commit step.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from graphtap.processing.committer import BatchCommitter, Checkpoint
from graphtap.processing.executor import PipelineExecutor
from graphtap.processing.fetch import ContentFetcher
from graphtap.processing.pipeline import EventResult
from graphtap.processing.sources import SourceEvent
from graphtap.telemetry import tracer

log = logging.getLogger(__name__)


class BatchHandler:
    def __init__(
        self,
        executor: PipelineExecutor,
        committer: BatchCommitter,
        *,
        before_batch: Callable[[], Awaitable[None]] | None = None,
        fetcher: ContentFetcher | None = None,
    ) -> None:
        self.executor = executor
        self.committer = committer
        self.fetcher = fetcher
        self._before_batch = before_batch

    async def handle(
        self, batch: Sequence[SourceEvent], *, checkpoint: Checkpoint
    ) -> list[EventResult]:
        """Run one partition's batch through the pipeline and make it durable; raises (and
        the checkpoint stays) if any store refuses it."""
        if not batch:
            return []
        if self._before_batch is not None:
            await self._before_batch()
        partition = batch[0].partition
        with tracer.start_as_current_span(
            "graphtap.batch",
            attributes={
                "messaging.destination.partition.id": partition,
                "messaging.batch.message_count": len(batch),
            },
        ):
            if self.fetcher is not None:
                await self.fetcher.fill(batch)
            results = await self.executor.process(batch)
            await self.committer.commit(results, events=len(batch), checkpoint=checkpoint)
        log.info(
            "batch committed",
            extra={
                "partition": partition,
                "sequence_number": batch[-1].offset,
                "events": len(batch),
                "dead_letters": sum(d.item_count for r in results for d in r.dead_letters),
            },
        )
        return results
