"""The pipeline off the event loop: decryption and inspection are CPU-bound.

The pipeline runs in worker processes, each batch split across them as the synchronous
runner does. A single worker, too, runs in a process of its own when the machine has a core
to spare: the event loop's own work (the SDK's receive, the AMQP encoding of every verdict
sent, checkpoint round trips) then runs beside the pipeline instead of taking turns with it
for the GIL, which a thread would. On one core it runs in a thread (it releases the loop).
A semaphore bounds the batches in flight, so a fast source cannot queue unbounded work.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

from graphtap.processing.pipeline import EventResult, Pipeline, PipelineSettings
from graphtap.processing.runner import (
    load_pipeline,
    process_in_worker,
    split,
    start_worker,
    worker_ready,
)
from graphtap.processing.sources import SourceEvent


class PipelineExecutor:
    def __init__(self, settings: PipelineSettings, *, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        self._settings = settings
        self._pipeline, self._executor = self._start()
        self._in_flight = asyncio.Semaphore(2 * workers)

    def _start(self) -> tuple[Pipeline | None, Executor]:
        if self.workers == 1 and len(os.sched_getaffinity(0)) == 1:
            pipeline = load_pipeline(self._settings)
            return pipeline, ThreadPoolExecutor(1, thread_name_prefix="graphtap-pipeline")
        pool = ProcessPoolExecutor(
            self.workers, initializer=start_worker, initargs=(self._settings,)
        )
        list(pool.map(worker_ready, range(self.workers)))  # keys loaded before the first batch
        return None, pool

    async def reload(self) -> None:
        """Rebuild the pipeline, e.g. once a new key is in its key folder.

        Batches already submitted finish on the old pipeline; new ones use the new one.
        """
        pipeline, executor = await asyncio.to_thread(self._start)
        old = self._executor
        self._pipeline, self._executor = pipeline, executor
        await asyncio.to_thread(old.shutdown, True)

    async def process(self, events: Sequence[SourceEvent]) -> list[EventResult]:
        loop = asyncio.get_running_loop()
        async with self._in_flight:
            pipeline, executor = self._pipeline, self._executor  # one generation per batch
            if pipeline is not None:
                return await loop.run_in_executor(executor, pipeline.process_batch, events)
            parts = await asyncio.gather(
                *(
                    loop.run_in_executor(executor, process_in_worker, part)
                    for part in split(events, self.workers)
                )
            )
            return [result for part in parts for result in part]

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
