"""End-to-end rate through the Event Hubs adapters next to the local-hub rate, and sizing.

The same simulated rich notifications (RSA-2048) go through both paths in one run, in
seven interleaved rounds, each path first in every other round (the median rate of each path
is reported, and the median of the rounds' own Event Hubs to local-hub shares):

- local hub: `LocalHubSource` -> pipeline -> SQLite, the synchronous runner;
- Event Hubs: the SDK's `EventHubConsumerClient` (load balancer, partition contexts, blob
  checkpoints) -> pipeline -> the findings hub through `EventHubProducerClient`, with the
  in-memory namespace of `tests/fakes/eventhubs.py` standing in for the network and the
  SDK's `BlobCheckpointStore` keeping checkpoints in Azurite (`tests/fakes/azurite.py`).

Both rates are steady state, by one definition: from the first batch read (the local
runner, its hub open) or received (the consumer, connected and owning its partitions) to the
last commit; the load balancer runs at its production interval, so ownership renewals are not
part of the figures. A run is long enough (12,000 notifications, about 5 s with two workers)
that its first and last batches, when not every worker has work, weigh little: at 4,000 a
run lasted 2 s and the shares of single rounds spread over 0.78-1.07. With one worker and
with one worker per core (the consumer's single worker is a process of its own on a machine
with a spare core, see `PipelineExecutor`). The measured per-instance rate and the measured
bytes per notification and per verdict give the sizing table (throughput units, partitions,
instances) for a few target notification rates.
"""

from __future__ import annotations

import asyncio
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

from rich.console import Console
from rich.table import Table

from graphtap.processing.committer import BatchCommitter, BlockingDeadLetters
from graphtap.processing.executor import PipelineExecutor
from graphtap.processing.handler import BatchHandler
from graphtap.processing.lifecycle import LifecycleQueue
from graphtap.processing.pipeline import PipelineSettings
from graphtap.processing.sinks.eventhubs import EventHubsVerdictSink, records
from graphtap.processing.sinks.sqlite import SqliteStore
from graphtap.processing.sources import SourceEvent
from graphtap.processing.sources.eventhubs import (
    EventHubsSource,
    EventHubsSourceSettings,
    Handler,
)
from graphtap.processing.summary import Summary

from .processing import fill_local_hub, process_local_hub

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.fakes.azure_transport import TokenCredential  # noqa: E402
from tests.fakes.azurite import AzuriteStorage, running  # noqa: E402
from tests.fakes.eventhubs import FakeNamespace, checkpoint_store, install  # noqa: E402

NOTIFICATIONS = 12_000
ROUNDS = 7
PARTITIONS = 4
NAMESPACE = "bench.servicebus.windows.net"
CHECKPOINTS = "checkpoints"

#: Event Hubs Standard, per throughput unit (namespace-wide).
TU_INGRESS_BYTES = 1_000_000
TU_INGRESS_EVENTS = 1_000
TU_EGRESS_BYTES = 2_000_000
TU_EGRESS_EVENTS = 4_096
STANDARD_MAX_TU = 40
STANDARD_MAX_PARTITIONS = 32
#: Plan instances for this share of their measured rate, leaving room for bursts and replays.
INSTANCE_UTILISATION = 0.6
TARGET_RATES = (500, 2_000, 5_000, 10_000, 20_000)


def run(console: Console) -> dict[str, Any]:
    cores = len(os.sched_getaffinity(0))
    with (
        tempfile.TemporaryDirectory(prefix="graphtap-bench-eh-") as scratch,
        running(Path(scratch)) as azurite,
    ):
        root = Path(scratch)
        storage = AzuriteStorage(azurite, account="bench")
        bodies, settings = fill_local_hub(
            root, console, count=NOTIFICATIONS, seed=2, partitions=PARTITIONS
        )
        runs: dict[str, list[Summary]] = {}
        packs: list[tuple[int, int]] = []  # (bytes, verdicts) of each findings-hub event
        # Interleaved rounds, median per path: a busy machine slows both paths alike.
        for round_number in range(ROUNDS):
            for workers in sorted({1, cores}):
                # Each path goes first in every other round: neither always meets the
                # machine a run later.
                for path in ("local", "eventhubs")[:: 1 if round_number % 2 == 0 else -1]:
                    if path == "local":
                        summary = process_local_hub(
                            root, settings, workers=workers, run=f"eh-{workers}-{round_number}"
                        )
                    else:
                        summary, sent = _eventhubs(bodies, settings, workers, storage)
                        packs = packs or sent
                    runs.setdefault(f"{path}_{workers}", []).append(summary)
        measured = {
            name: sorted(summaries, key=lambda s: s.notifications_per_second)[ROUNDS // 2]
            for name, summaries in runs.items()
        }

    notifications = measured["local_1"].notifications
    body_bytes = sum(map(len, bodies))
    per_notification = body_bytes / notifications
    verdicts_sent = sum(count for _, count in packs)
    per_verdict = sum(size for size, _ in packs) / verdicts_sent
    per_event = notifications / len(bodies)
    rates = {name: round(s.notifications_per_second, 1) for name, s in measured.items()}
    # An instance runs with whichever worker count measured faster on this machine.
    instance_rate = max(rates[f"eventhubs_{w}"] for w in sorted({1, cores}))
    figures: dict[str, Any] = {
        "notifications": notifications,
        "events": len(bodies),
        "cores": cores,
        "notifications_per_second": rates,
        # Each round's share from its own side-by-side pair, the median of the rounds: a
        # shared machine's speed drifts between rounds, less within one.
        "eventhubs_share_of_local": {
            str(w): round(
                statistics.median(
                    e.notifications_per_second / local.notifications_per_second
                    for local, e in zip(runs[f"local_{w}"], runs[f"eventhubs_{w}"], strict=True)
                ),
                3,
            )
            for w in sorted({1, cores})
        },
        "eventhubs_share_of_local_rounds": {
            str(w): [
                round(e.notifications_per_second / local.notifications_per_second, 3)
                for local, e in zip(runs[f"local_{w}"], runs[f"eventhubs_{w}"], strict=True)
            ]
            for w in sorted({1, cores})
        },
        "instance_notifications_per_second": instance_rate,
        "bytes_per_notification": round(per_notification),
        "bytes_per_verdict": round(per_verdict),
        "verdicts_per_findings_event": round(verdicts_sent / len(packs), 2),
        "notifications_per_event": round(per_event, 2),
        "sizing": [
            sizing_row(target, instance_rate, per_notification, per_verdict)
            for target in TARGET_RATES
        ],
    }
    _print(console, figures)
    return figures


def sizing_row(
    target: int, instance_rate: float, bytes_per_notification: float, bytes_per_verdict: float
) -> dict[str, Any]:
    """Capacity for `target` notifications/s, one notification per event (Graph's worst case)
    and one verdict per findings-hub event (the sink's worst case: packs form only where a
    batch holds several verdicts of one conversation).

    Throughput units are namespace-wide: ingress carries the notifications and the verdicts,
    egress the processor's reads and one findings consumer's. A partition is read by one
    instance at a time and takes about 1 MB/s, so partitions bound both.
    """
    ingress_bytes = target * (bytes_per_notification + bytes_per_verdict)
    ingress_events = target * 2
    egress_bytes = ingress_bytes
    units = max(
        math.ceil(ingress_bytes / TU_INGRESS_BYTES),
        math.ceil(ingress_events / TU_INGRESS_EVENTS),
        math.ceil(egress_bytes / TU_EGRESS_BYTES),
        math.ceil(ingress_events / TU_EGRESS_EVENTS),
        1,
    )
    instances = max(1, math.ceil(target / (instance_rate * INSTANCE_UTILISATION)))
    per_partition = math.ceil(target * bytes_per_notification / TU_INGRESS_BYTES)
    partitions = max(4, instances, per_partition, math.ceil(target / TU_INGRESS_EVENTS))
    return {
        "notifications_per_second": target,
        "throughput_units": units,
        "tier": "Standard" if units <= STANDARD_MAX_TU else "Premium/Dedicated",
        "partitions": min(partitions, STANDARD_MAX_PARTITIONS)
        if units <= STANDARD_MAX_TU
        else partitions,
        "instances": instances,
    }


def sizing_markdown(figures: dict[str, Any]) -> str:
    rows = [
        "| notifications/s | throughput units | tier | partitions | instances |",
        "| ---: | ---: | --- | ---: | ---: |",
    ]
    for row in figures["sizing"]:
        rows.append(
            f"| {row['notifications_per_second']:,} | {row['throughput_units']} | {row['tier']}"
            f" | {row['partitions']} | {row['instances']} |"
        )
    return "\n".join(rows)


class _Patcher:
    """pytest-mock's `patch(target, new)`, for the fakes' `install` outside pytest."""

    def __init__(self) -> None:
        self._patches: list[Any] = []

    def patch(self, target: str, new: object) -> None:
        patcher = mock.patch(target, new)
        patcher.start()
        self._patches.append(patcher)

    def stop(self) -> None:
        for patcher in reversed(self._patches):
            patcher.stop()


@contextmanager
def fake_azure(storage: AzuriteStorage) -> Iterator[FakeNamespace]:
    namespace = FakeNamespace(NAMESPACE)
    namespace.create_hub("notifications", PARTITIONS)
    namespace.create_hub("findings", PARTITIONS)
    storage.reset()  # each run starts without checkpoints
    storage.create_container(CHECKPOINTS)
    patcher = _Patcher()
    install(patcher, namespace, checkpoint_store=checkpoint_store(storage))
    try:
        yield namespace
    finally:
        patcher.stop()


def _eventhubs(
    bodies: list[bytes], settings: PipelineSettings, workers: int, storage: AzuriteStorage
) -> tuple[Summary, list[tuple[int, int]]]:
    with fake_azure(storage) as namespace, tempfile.TemporaryDirectory() as scratch:
        namespace.publish("notifications", bodies)
        summary = asyncio.run(_consume(namespace, settings, workers, Path(scratch)))
        sent = [(len(body), len(records(body))) for body in namespace.bodies("findings")]
    return summary, sent


async def _consume(
    namespace: FakeNamespace, settings: PipelineSettings, workers: int, scratch: Path
) -> Summary:
    total = sum(len(p.events) for p in namespace.partitions("notifications"))
    clock = _FirstBatch()
    async with consumer(settings, workers, scratch, wrap=clock.wrap) as (source, summary):
        stop = asyncio.Event()
        task = asyncio.create_task(source.run(stop))
        await _until(lambda: summary.events >= total or task.done())
        # The local runner's clock starts at its first read, once its source is open: this one
        # at the first batch received, once the client is connected and owns its partitions.
        summary.seconds = time.perf_counter() - (clock.started or 0.0)
        stop.set()
        await task
    return summary


class _FirstBatch:
    """When the first batch reached the handler: where the steady-state clock starts."""

    def __init__(self) -> None:
        self.started: float | None = None

    def wrap(self, handler: Handler) -> Handler:
        outer = self

        class Clocked:
            async def handle(
                self, batch: Sequence[SourceEvent], *, checkpoint: Callable[[], Awaitable[None]]
            ) -> object:
                if outer.started is None:
                    outer.started = time.perf_counter()
                return await handler.handle(batch, checkpoint=checkpoint)

        return Clocked()


@asynccontextmanager
async def consumer(
    settings: PipelineSettings,
    workers: int,
    scratch: Path,
    *,
    wrap: Callable[[Handler], Handler] = lambda handler: handler,
) -> AsyncIterator[tuple[EventHubsSource, Summary]]:
    """The web app's consumer on the fake namespace (inside `fake_azure`): the SDK's
    clients, the one batch handler (`wrap` may observe it), the findings hub as the sink;
    its pipeline is loaded on entry, before any clock starts."""
    credential: Any = TokenCredential()  # Azurite's transport wants a bearer token, any
    store = SqliteStore(scratch / "dead-letters.sqlite")
    lifecycle = LifecycleQueue(scratch / "lifecycle.sqlite")
    sink = EventHubsVerdictSink(NAMESPACE, "findings", credential=credential)
    executor = PipelineExecutor(settings, workers=workers)
    summary = Summary()
    handler = BatchHandler(
        executor,
        BatchCommitter(
            sink=sink, dead_letters=BlockingDeadLetters(store), lifecycle=lifecycle, summary=summary
        ),
    )
    source = EventHubsSource(
        EventHubsSourceSettings(
            namespace=NAMESPACE,
            hub="notifications",
            consumer_group="bench",
            checkpoint_account_url="https://bench.blob.core.windows.net",
            checkpoint_container=CHECKPOINTS,
            max_batch_size=256,
            max_wait_time=0.5,
            # The load balancer at its production interval: the SDK's greedy strategy claims
            # every free partition on its first round, and renewals stay out of the figures.
        ),
        credential=credential,
        handler=wrap(handler),
    )
    try:
        yield source, summary
    finally:
        await sink.close()
        executor.close()
        store.close()
        lifecycle.close()


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.005)


def _print(console: Console, figures: dict[str, Any]) -> None:
    rates = figures["notifications_per_second"]
    table = Table(
        title=f"{figures['notifications']:,} notifications, RSA-2048, end to end, "
        f"median of {ROUNDS}"
    )
    for column in ("path", "workers", "notifications/s", "share of local hub"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for name, rate in rates.items():
        path, workers = name.split("_")
        share = figures["eventhubs_share_of_local"][workers] if path == "eventhubs" else 1.0
        label = (
            "Event Hubs adapters (fakes for the network)" if path == "eventhubs" else ("local hub")
        )
        table.add_row(label, workers, f"{rate:,.0f}", f"{share:.2f}")
    console.print(table)
    for workers, shares in figures["eventhubs_share_of_local_rounds"].items():
        console.print(f"share of local hub, {workers} worker(s), by round: {shares}")
    console.print(
        f"bytes per notification {figures['bytes_per_notification']:,}, per verdict "
        f"{figures['bytes_per_verdict']:,}; {figures['notifications_per_event']} "
        "notifications per event in the simulation (sizing assumes 1); "
        f"{figures['verdicts_per_findings_event']} verdicts per findings-hub event (sizing "
        "assumes 1: a conversation's verdicts share an event only when one batch holds several)"
    )
    console.print(sizing_markdown(figures))
