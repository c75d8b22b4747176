"""The processor loop: read a batch, run it through the pipeline, make it durable, checkpoint.

The order is the whole guarantee, and `BatchCommitter.commit` alone keeps it: verdicts,
dead letters and lifecycle events of a batch are written (each store durable on return)
before the source checkpoints the batch, so a crash at any point replays at most the
unfinished batches, and the keyed stores absorb the replay: every notification ends with
exactly one verdict. This loop is synchronous; it runs the commit step on one event loop it
keeps for the whole run (a few microseconds a batch).

Decryption is CPU-bound (an RSA unwrap per notification), so with `workers > 1` the
pipeline runs in worker processes while this process reads, writes and checkpoints;
batches are committed strictly in order.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

from graphtap.processing.committer import BatchCommitter, BlockingDeadLetters, BlockingVerdicts
from graphtap.processing.fetch import ContentFetcher
from graphtap.processing.heap import settle_for_throughput
from graphtap.processing.lifecycle import LifecycleQueue
from graphtap.processing.outbox import ActionOutbox, ActionSink
from graphtap.processing.pipeline import EventResult, Pipeline, PipelineSettings
from graphtap.processing.sinks import DeadLetterStore, VerdictSink
from graphtap.processing.sources import EventSource, SourceEvent
from graphtap.processing.summary import Summary

DEFAULT_BATCH_SIZE = 256


@dataclass(frozen=True)
class ProcessorOptions:
    workers: int = 1
    batch_size: int = DEFAULT_BATCH_SIZE

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {self.batch_size}")


ProgressCallback = Callable[[Summary, int], None]


class Processor:
    def __init__(
        self,
        *,
        source: EventSource,
        sink: VerdictSink,
        dead_letters: DeadLetterStore,
        lifecycle: LifecycleQueue,
        settings: PipelineSettings,
        options: ProcessorOptions = ProcessorOptions(),
        on_progress: ProgressCallback | None = None,
        outbox: ActionOutbox | ActionSink | None = None,
        fetcher: ContentFetcher | None = None,
    ) -> None:
        self._source = source
        self._fetcher = fetcher
        self._settings = settings
        self._options = options
        self._on_progress = on_progress
        self.summary = Summary()
        self._committer = BatchCommitter(
            sink=BlockingVerdicts(sink),
            dead_letters=BlockingDeadLetters(dead_letters),
            lifecycle=lifecycle,
            summary=self.summary,
            outbox=outbox,
        )
        self._loop: asyncio.Runner | None = None

    def run(self) -> Summary:
        """Process until the source is drained (or stopped); return what was done."""
        with asyncio.Runner() as self._loop:
            try:
                return self._run()
            finally:
                if self._fetcher is not None:  # its clients live on this loop
                    self._loop.run(self._fetcher.close())
                self._loop = None

    def _run(self) -> Summary:
        if self._options.workers == 1:
            pipeline = load_pipeline(self._settings)
            started = time.perf_counter()
            for batch in self._source.batches(self._options.batch_size):
                self._fetch(batch)
                self._commit(batch, pipeline.process_batch(batch))
                self.summary.seconds = time.perf_counter() - started
            return self.summary
        with ProcessPoolExecutor(
            self._options.workers, initializer=start_worker, initargs=(self._settings,)
        ) as pool:
            # Start every worker (and load its keys) before the clock starts.
            list(pool.map(worker_ready, range(self._options.workers)))
            started = time.perf_counter()
            in_flight: deque[tuple[list[SourceEvent], list[Future[list[EventResult]]]]] = deque()
            for batch in self._source.batches(self._options.batch_size):
                # Each batch is split across the workers, so the last batch of a run (or of
                # a burst) keeps every core busy too; batches still in flight behind it keep
                # the workers fed while batches commit strictly in order.
                self._fetch(batch)
                parts = split(batch, self._options.workers)
                in_flight.append((batch, [pool.submit(process_in_worker, p) for p in parts]))
                while len(in_flight) > 2 * self._options.workers:
                    self._commit_futures(*in_flight.popleft())
                    self.summary.seconds = time.perf_counter() - started
            while in_flight:
                self._commit_futures(*in_flight.popleft())
                self.summary.seconds = time.perf_counter() - started
        return self.summary

    def _fetch(self, batch: list[SourceEvent]) -> None:
        """What the batch's items point at (large payloads, Outlook messages), read first."""
        if self._fetcher is not None:
            assert self._loop is not None
            self._loop.run(self._fetcher.fill(batch))

    def _commit_futures(
        self, batch: list[SourceEvent], parts: list[Future[list[EventResult]]]
    ) -> None:
        self._commit(batch, [result for part in parts for result in part.result()])

    def _commit(self, batch: Sequence[SourceEvent], results: Sequence[EventResult]) -> None:
        async def checkpoint() -> None:
            self._source.checkpoint(batch)

        assert self._loop is not None
        self._loop.run(self._committer.commit(results, events=len(batch), checkpoint=checkpoint))
        if self._on_progress is not None:
            self._on_progress(self.summary, len(batch))


def load_pipeline(settings: PipelineSettings) -> Pipeline:
    """The pipeline for a process (or thread) that will spend its life running it."""
    pipeline = Pipeline.from_settings(settings)
    settle_for_throughput()
    return pipeline


# Worker-process side, shared by every host that runs the pipeline in a process pool.

_worker_pipeline: Pipeline | None = None


def start_worker(settings: PipelineSettings) -> None:
    global _worker_pipeline
    _worker_pipeline = load_pipeline(settings)


def worker_ready(_: int) -> bool:
    return _worker_pipeline is not None


def split(events: Sequence[SourceEvent], workers: int) -> list[list[SourceEvent]]:
    """`events` in at most `workers` runs of consecutive events, as even as they come."""
    size = -(-len(events) // workers)
    return [list(events[i : i + size]) for i in range(0, len(events), size)]


def process_in_worker(events: list[SourceEvent]) -> list[EventResult]:
    assert _worker_pipeline is not None, "worker started without a pipeline"
    return _worker_pipeline.process_batch(events)
