"""The processor on the embedded local hub, as a long-running service for `graphtap serve`.

The synchronous `Processor` runs in a thread, following the hub; the stores and the hub are
opened in that thread (SQLite connections stay on the thread that made them). The web app
reads a snapshot of the summary taken after each committed batch and samples the hub's
checkpoints for lag and throughput.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from graphtap.hosts.findings import FindingRow, latest
from graphtap.localhub import LocalHub
from graphtap.processing import compose
from graphtap.processing.endpoints import Endpoint
from graphtap.processing.partitions import PartitionMeter, PartitionStatus
from graphtap.processing.pipeline import PipelineSettings
from graphtap.processing.runner import ProcessorOptions
from graphtap.processing.sources.localhub import LocalHubSource
from graphtap.processing.summary import Summary

log = logging.getLogger(__name__)

SAMPLE_SECONDS = 2.0


@dataclass(frozen=True)
class LocalServiceSettings:
    hub: Path
    consumer_group: str
    sink: Endpoint
    dead_letters: Endpoint | None
    lifecycle_queue: Path
    pipeline: PipelineSettings
    options: ProcessorOptions = field(default_factory=ProcessorOptions)
    poll_interval: float = 0.2
    #: `--payload-store local:DIR`: where Graph's payloads over 1 MB are read from.
    payload_store: str | None = None


class LocalHubService:
    mode = "local hub"

    def __init__(self, settings: LocalServiceSettings) -> None:
        self.settings = settings
        self.meter = PartitionMeter()
        self._hub = LocalHub(settings.hub, create=False)  # fails fast on a missing hub
        self._summary = Summary()
        self._lock = threading.Lock()
        self._running = threading.Event()

    def summary(self) -> Summary:
        with self._lock:
            return self._summary

    def ready(self) -> bool:
        return self._running.is_set()

    def failed_batches(self) -> int:
        """A failing store stops the local processor (it is then not ready); none are retried."""
        return 0

    def latest_findings(self, limit: int) -> Sequence[FindingRow]:
        """The newest findings in the verdict store, read-only (the status page's table)."""
        return latest(self.settings.sink.scheme, self.settings.sink.path, limit)

    def partitions(self) -> list[PartitionStatus]:
        self._sample()
        return self.meter.snapshot()

    def _sample(self) -> None:
        for state in self._hub.partitions(self.settings.consumer_group):
            self.meter.observe(
                str(state.partition),
                last_sequence=state.checkpoint,
                last_enqueued=state.last_sequence,
            )

    async def run(self, stop: asyncio.Event) -> None:
        halt = threading.Event()
        worker = asyncio.create_task(asyncio.to_thread(self._process, halt))
        try:
            while not worker.done() and not stop.is_set():
                self._sample()
                waiting = asyncio.create_task(stop.wait())
                await asyncio.wait({worker, waiting}, timeout=SAMPLE_SECONDS)
                waiting.cancel()
        finally:
            halt.set()
            await worker  # the batch in hand is committed and checkpointed before it returns
            self._hub.close()
            log.info(
                "processor stopped", extra={"state": "stopped", "events": self.summary().events}
            )

    def _process(self, halt: threading.Event) -> None:
        s = self.settings
        source = LocalHubSource(
            s.hub,
            consumer_group=s.consumer_group,
            follow=True,
            poll_interval=s.poll_interval,
            stop=halt,
        )
        run = compose.LocalRun.open(
            source, s.sink, s.dead_letters, s.lifecycle_queue, consumer_group=s.consumer_group
        )
        processor = run.processor(
            s.pipeline,
            s.options,
            on_progress=self._snapshot,
            fetcher=compose.payload_fetcher(s.pipeline, s.payload_store),
        )
        self._running.set()
        log.info("processing the local hub", extra={"state": "running"})
        try:
            processor.run()
        finally:
            self._running.clear()
            run.close()

    def _snapshot(self, summary: Summary, events: int) -> None:
        copied = copy.deepcopy(summary)
        with self._lock:
            self._summary = copied
