"""The processor loop: read a batch, run it through the pipeline, make it durable, checkpoint.

The order is the whole guarantee. Verdicts, dead letters and lifecycle events of a batch
are written (each store durable on return) before the source checkpoints the batch, so a
crash at any point replays at most the unfinished batches, and the keyed stores absorb the
replay: every notification ends with exactly one verdict.

Decryption is CPU-bound (an RSA unwrap per notification), so with `workers > 1` the
pipeline runs in worker processes while this process reads, writes and checkpoints;
batches are committed strictly in order.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field

from graphtap.processing.heap import settle_for_throughput
from graphtap.processing.lifecycle import LifecycleQueue
from graphtap.processing.outputs import BatchOutputs
from graphtap.processing.pipeline import EventResult, Pipeline, PipelineSettings
from graphtap.processing.sinks import DeadLetterStore, VerdictSink
from graphtap.processing.sources import EventSource, SourceEvent

DEFAULT_BATCH_SIZE = 256


@dataclass
class Summary:
    """What a run did, for the CLI's summary, the status page and the benchmarks."""

    events: int = 0
    notifications: int = 0
    validation_skipped: int = 0
    lifecycle_queued: int = 0
    verdicts: int = 0
    duplicate_verdicts: int = 0
    findings_by_type: Counter[str] = field(default_factory=Counter)
    dead_letters_by_reason: Counter[str] = field(default_factory=Counter)
    certificates_used: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def dead_letters(self) -> int:
        return sum(self.dead_letters_by_reason.values())

    @property
    def notifications_per_second(self) -> float:
        return self.notifications / self.seconds if self.seconds else 0.0

    def record(self, results: Sequence[EventResult], *, events: int, new_verdicts: int) -> None:
        """Count a committed batch: `new_verdicts` of its verdicts were not in the sink before."""
        verdicts = [v for r in results for v in r.verdicts]
        self.events += events
        self.verdicts += new_verdicts
        self.duplicate_verdicts += len(verdicts) - new_verdicts
        now = time.time()
        for result in results:
            self.notifications += result.notifications
            self.validation_skipped += result.validation_skipped
            self.lifecycle_queued += len(result.lifecycle)
            for letter in result.dead_letters:  # items, however an event's are grouped
                self.dead_letters_by_reason[str(letter.reason)] += letter.item_count
        for verdict in verdicts:
            if verdict.certificate_id is not None:
                self.certificates_used[verdict.certificate_id] = now
            for finding in verdict.findings:
                self.findings_by_type[str(finding["type"])] += int(finding["count"])

    def observations(self) -> Iterator[tuple[str, float, Mapping[str, str]]]:
        """The running totals as (metric, value, attributes), for `telemetry.observe_counters`."""
        yield "events", self.events, {}
        yield "notifications", self.notifications, {}
        yield "verdicts", self.verdicts, {}
        for kind, count in self.findings_by_type.items():
            yield "findings", count, {"type": kind}
        for reason, count in self.dead_letters_by_reason.items():
            yield "dead_letters", count, {"reason": reason}

    def to_dict(self) -> dict[str, object]:
        return {
            "events": self.events,
            "notifications": self.notifications,
            "validation_skipped": self.validation_skipped,
            "lifecycle_queued": self.lifecycle_queued,
            "verdicts": self.verdicts,
            "duplicate_verdicts": self.duplicate_verdicts,
            "findings_by_type": dict(sorted(self.findings_by_type.items())),
            "dead_letters_by_reason": dict(sorted(self.dead_letters_by_reason.items())),
            "seconds": round(self.seconds, 3),
            "notifications_per_second": round(self.notifications_per_second, 1),
        }


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
    ) -> None:
        self._source = source
        self._sink = sink
        self._dead_letters = dead_letters
        self._lifecycle = lifecycle
        self._settings = settings
        self._options = options
        self._on_progress = on_progress
        self.summary = Summary()

    def run(self) -> Summary:
        """Process until the source is drained (or stopped); return what was done."""
        if self._options.workers == 1:
            pipeline = load_pipeline(self._settings)
            started = time.perf_counter()
            for batch in self._source.batches(self._options.batch_size):
                self._commit(batch, pipeline.process_batch(batch))
                self.summary.seconds = time.perf_counter() - started
            return self.summary
        with ProcessPoolExecutor(
            self._options.workers, initializer=start_worker, initargs=(self._settings,)
        ) as pool:
            # Start every worker (and load its keys) before the clock starts.
            list(pool.map(worker_ready, range(self._options.workers)))
            started = time.perf_counter()
            in_flight: deque[tuple[list[SourceEvent], Future[list[EventResult]]]] = deque()
            for batch in self._source.batches(self._options.batch_size):
                # A worker runs whole batches, as a single worker does; two per worker in
                # flight keep every worker busy while batches commit strictly in order.
                in_flight.append((batch, pool.submit(process_in_worker, batch)))
                while len(in_flight) > 2 * self._options.workers:
                    self._commit_future(*in_flight.popleft())
                    self.summary.seconds = time.perf_counter() - started
            while in_flight:
                self._commit_future(*in_flight.popleft())
                self.summary.seconds = time.perf_counter() - started
        return self.summary

    def _commit_future(self, batch: list[SourceEvent], future: Future[list[EventResult]]) -> None:
        self._commit(batch, future.result())

    def _commit(self, batch: Sequence[SourceEvent], results: Sequence[EventResult]) -> None:
        outputs = BatchOutputs.of(results)
        new_verdicts = self._sink.write_verdicts(outputs.verdicts)
        self._dead_letters.write_dead_letters(outputs.dead_letters)
        self._lifecycle.put(outputs.lifecycle)
        self._source.checkpoint(batch)
        self.summary.record(results, events=len(batch), new_verdicts=new_verdicts)
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


def process_in_worker(events: list[SourceEvent]) -> list[EventResult]:
    assert _worker_pipeline is not None, "worker started without a pipeline"
    return _worker_pipeline.process_batch(events)
