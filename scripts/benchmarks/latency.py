"""Latency from enqueue to durable verdict, at half of the measured capacity, on both paths.

First each path's capacity is measured as the other areas measure it: one worker draining
12,000 simulated rich notifications (RSA-2048). Then a producer feeds the same events at
half that rate, each at its due time, and every event's enqueue time (the hub's own) is
paired with the moment the commit step returned for the batch that held it (verdicts, dead
letters and lifecycle events durable, checkpoint written). The figure is per verdict: an
event of three notifications counts three times.

- local hub: a producer thread appends to the hub file while `LocalHubSource(follow=True)`
  and the synchronous runner (what `graphtap process --follow` and `serve --source local`
  run) consume it; the durable moment is the runner's progress callback, after each commit.
- Event Hubs: a producer task publishes into the fake namespace while the SDK's consumer
  client, the batch handler and the findings hub (as in the `eventhubs` area, checkpoints in
  Azurite) consume it; the durable moment is when the handler returned.

A batch flushes by size or by a maximum wait, whichever comes first, so p99 stays under 1 s.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from graphtap.localhub import LocalHub
from graphtap.processing import compose
from graphtap.processing.endpoints import Endpoint
from graphtap.processing.pipeline import PipelineSettings
from graphtap.processing.runner import ProcessorOptions
from graphtap.processing.sources import SourceEvent
from graphtap.processing.sources.eventhubs import Handler
from graphtap.processing.sources.localhub import LocalHubSource
from graphtap.processing.summary import Summary

from .eventhubs import PARTITIONS, ROOT, _eventhubs, consumer, fake_azure
from .processing import fill_local_hub, process_local_hub

sys.path.insert(0, str(ROOT))

from tests.fakes.azurite import AzuriteStorage, running

NOTIFICATIONS = 12_000
FEED_SECONDS = 6.0
TARGET_P99_SECONDS = 1.0
#: Enough for a backlog to clear; past it the run fails rather than report a partial figure.
DRAIN_TIMEOUT = 120.0

Key = tuple[str, int]  # (partition, sequence number)


@dataclass(frozen=True)
class Due:
    body: bytes
    notifications: int
    at: float  # seconds after the feed starts


@dataclass(frozen=True)
class Latency:
    capacity: float  # notifications per second, one worker, draining
    offered: float  # notifications per second the producer achieved
    verdicts: int
    p50: float  # seconds
    p99: float
    max: float


def run(console: Console) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="graphtap-bench-latency-") as scratch,
        running(Path(scratch)) as azurite,
    ):
        root = Path(scratch)
        storage = AzuriteStorage(azurite, account="bench")
        bodies, settings = fill_local_hub(
            root, console, count=NOTIFICATIONS, seed=4, partitions=PARTITIONS
        )
        capacity = {
            "local": process_local_hub(
                root, settings, workers=1, run="capacity"
            ).notifications_per_second,
            "eventhubs": _eventhubs(bodies, settings, 1, storage)[0].notifications_per_second,
        }
        measured: dict[str, Latency] = {}
        for path, measure in (("local", _local), ("eventhubs", _eventhubs_path)):
            feed = list(schedule(bodies, rate=capacity[path] / 2, seconds=FEED_SECONDS))
            console.print(
                f"{path}: capacity {capacity[path]:,.0f}/s, feeding "
                f"{sum(d.notifications for d in feed):,} notifications at half of it"
            )
            enqueued, durable = measure(root, settings, feed, storage)
            measured[path] = summarize(capacity[path], feed, enqueued, durable)
    figures = {
        path: {
            "capacity_notifications_per_second": round(m.capacity, 1),
            "offered_notifications_per_second": round(m.offered, 1),
            "verdicts": m.verdicts,
            "p50_seconds": round(m.p50, 4),
            "p99_seconds": round(m.p99, 4),
            "max_seconds": round(m.max, 4),
        }
        for path, m in measured.items()
    }
    figures["targets"] = {"p99_seconds": TARGET_P99_SECONDS}
    console.print(_table(measured))
    return figures


def schedule(bodies: Sequence[bytes], *, rate: float, seconds: float) -> Iterator[Due]:
    """The events, each due once the ones before it make `rate` notifications per second,
    for `seconds` (or until the events run out: each is fed once, so no verdict repeats)."""
    sent = 0
    for body in bodies:
        at = sent / rate
        if at > seconds:
            return
        count = len(json.loads(body)["value"])
        yield Due(body, count, at)
        sent += count


def summarize(
    capacity: float, feed: list[Due], enqueued: dict[Key, float], durable: dict[Key, float]
) -> Latency:
    weights = {key: due.notifications for key, due in zip(enqueued, feed, strict=True)}
    samples = sorted(
        latency
        for key, at in enqueued.items()
        for latency in [durable[key] - at] * weights[key]
        if weights[key]
    )
    span = max(enqueued.values()) - min(enqueued.values())
    offered = sum(weights.values()) / span if span else 0.0
    centiles = statistics.quantiles(samples, n=100, method="inclusive")
    return Latency(capacity, offered, len(samples), centiles[49], centiles[98], samples[-1])


# The local hub, followed by the synchronous runner.


class _Observed:
    """The local hub source, noting when each commit made its events durable."""

    def __init__(
        self, source: LocalHubSource, reading: threading.Event, durable: dict[Key, float]
    ) -> None:
        self._source = source
        self._reading = reading
        self.durable = durable
        self._checkpointed: Sequence[SourceEvent] = ()

    def batches(self, max_events: int) -> Iterator[list[SourceEvent]]:
        self._reading.set()  # the runner asks once its pipeline is loaded
        return self._source.batches(max_events)

    def checkpoint(self, events: Sequence[SourceEvent]) -> None:
        self._source.checkpoint(events)
        self._checkpointed = events

    def committed(self, _: Summary, __: int) -> None:
        """The runner's progress callback: the commit step has returned."""
        now = time.time()
        for event in self._checkpointed:
            self.durable[(event.partition, event.offset)] = now

    def stop(self) -> None:
        self._source.stop()

    def close(self) -> None:
        self._source.close()


def _local(
    root: Path, settings: PipelineSettings, feed: list[Due], _: AzuriteStorage
) -> tuple[dict[Key, float], dict[Key, float]]:
    hub = root / "live-hub"
    LocalHub(hub, partitions=PARTITIONS).close()
    stop, reading = threading.Event(), threading.Event()
    durable: dict[Key, float] = {}

    def consume() -> None:
        """The consumer's thread: SQLite connections stay in the thread that opened them."""
        source = _Observed(
            LocalHubSource(hub, consumer_group="latency", follow=True, stop=stop), reading, durable
        )
        local = compose.LocalRun.open(
            source,
            Endpoint("sqlite", root / "live-verdicts.sqlite"),
            None,
            root / "live-lifecycle.sqlite",
            consumer_group="latency",
        )
        try:
            options = ProcessorOptions(workers=1)
            local.processor(settings, options, on_progress=source.committed).run()
        finally:
            local.close()

    enqueued: dict[Key, float] = {}
    with ThreadPoolExecutor(1, thread_name_prefix="latency-consumer") as thread:
        consuming = thread.submit(consume)
        try:
            _wait(lambda: reading.is_set() or consuming.done())
            with LocalHub(hub) as producer:
                started = time.perf_counter()
                for due in feed:
                    _sleep_until(started + due.at)
                    [event] = producer.send([due.body])
                    enqueued[(str(event.partition), event.sequence)] = event.enqueued_at
            _wait(lambda: consuming.done() or enqueued.keys() <= durable.keys())
        finally:
            stop.set()
            consuming.result()  # the consumer's failure, if it failed, raised here
    return enqueued, durable


def _sleep_until(moment: float) -> None:
    delay = moment - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


def _wait(condition: Callable[[], object]) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"verdicts not durable within {DRAIN_TIMEOUT:.0f} s")
        time.sleep(0.005)


# Event Hubs: the SDK's consumer client on the fake namespace.


class _ObservedHandler:
    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.durable: dict[Key, float] = {}

    async def handle(
        self, batch: Sequence[SourceEvent], *, checkpoint: Callable[[], Awaitable[None]]
    ) -> object:
        result = await self._handler.handle(batch, checkpoint=checkpoint)
        now = time.time()
        for event in batch:
            self.durable[(event.partition, event.offset)] = now
        return result


def _eventhubs_path(
    _: Path, settings: PipelineSettings, feed: list[Due], storage: AzuriteStorage
) -> tuple[dict[Key, float], dict[Key, float]]:
    with fake_azure(storage) as namespace, tempfile.TemporaryDirectory() as scratch:
        return asyncio.run(_feed_eventhubs(namespace, settings, feed, Path(scratch)))


async def _feed_eventhubs(
    namespace: Any, settings: PipelineSettings, feed: list[Due], scratch: Path
) -> tuple[dict[Key, float], dict[Key, float]]:
    observed: list[_ObservedHandler] = []

    def wrap(handler: Handler) -> Handler:
        observed.append(_ObservedHandler(handler))
        return observed[0]

    enqueued: dict[Key, float] = {}
    async with consumer(settings, 1, scratch, wrap=wrap) as (source, _):
        stop = asyncio.Event()
        task = asyncio.create_task(source.run(stop))
        try:
            # Every partition claimed before the first event: start-up is not latency.
            await _until(lambda: sum(s.owned for s in source.meter.snapshot()) == PARTITIONS)
            partitions = namespace.partitions("notifications")
            started = time.perf_counter()
            for due in feed:
                delay = started + due.at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                index = namespace.sends % PARTITIONS  # where the next key-less event goes
                namespace.publish("notifications", [due.body])
                event = partitions[index].events[-1]
                enqueued[(str(index), event.sequence_number)] = event.enqueued_at
            await _until(lambda: task.done() or enqueued.keys() <= observed[0].durable.keys())
        finally:
            stop.set()
            await task
    return enqueued, observed[0].durable


async def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done within {DRAIN_TIMEOUT:.0f} s")
        await asyncio.sleep(0.002)


def _table(measured: dict[str, Latency]) -> Table:
    table = Table(title="enqueue to durable verdict, one worker, at half of the measured capacity")
    for column in ("path", "capacity/s", "offered/s", "verdicts", "p50", "p99", "max"):
        table.add_column(column, justify="left" if column == "path" else "right")
    labels = {"local": "local hub (follow)", "eventhubs": "Event Hubs adapters"}
    for path, m in measured.items():
        table.add_row(
            labels[path],
            f"{m.capacity:,.0f}",
            f"{m.offered:,.0f}",
            f"{m.verdicts:,}",
            f"{m.p50 * 1000:,.0f} ms",
            f"[bold]{m.p99 * 1000:,.0f} ms",
            f"{m.max * 1000:,.0f} ms",
        )
    table.add_section()
    table.add_row("target", "", "", "", "", f"<= {TARGET_P99_SECONDS * 1000:.0f} ms", "")
    return table
