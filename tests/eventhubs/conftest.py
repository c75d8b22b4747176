"""Event Hubs adapters against the in-memory namespace: simulated Graph traffic, real pipeline.

Checkpoints and ownership live in Azurite, kept by the SDK's own `BlobCheckpointStore`. Where
the emulator differs from Azure in what these tests lean on:
- Ownership claims are Set Blob Metadata with If-Match on the listed etag, or, for a
  partition never claimed, with If-None-Match: * (then Put Blob with it if there is no
  blob). Azurite enforces If-Match and Put Blob's wildcard as Azure does (412
  ConditionNotMet, 409 BlobAlreadyExists) but performs Set Blob Metadata's wildcard on a
  blob that exists; the Azurite transport refuses that one as Azure does (412), so two
  instances race for a partition under Azure's rules.
- Azurite answers on loopback in milliseconds where Azure takes tens of them, which is what
  lets these tests balance every 0.1 s with a 2 s ownership expiration (the runtime uses
  10 s and 60 s). Last-Modified, which the load balancer ages ownership by, is whole seconds
  on both.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from graphtap.processing import compose
from graphtap.processing.committer import BatchCommitter, BlockingDeadLetters
from graphtap.processing.executor import PipelineExecutor
from graphtap.processing.handler import BatchHandler
from graphtap.processing.lifecycle import LifecycleQueue
from graphtap.processing.pipeline import Pipeline, PipelineSettings
from graphtap.processing.sinks import AsyncDeadLetterStore
from graphtap.processing.sinks.eventhubs import EventHubsVerdictSink, RetryPolicy
from graphtap.processing.sinks.sqlite import SqliteStore
from graphtap.processing.sources import SourceEvent
from graphtap.processing.sources.eventhubs import EventHubsSource, EventHubsSourceSettings
from graphtap.processing.summary import Summary
from graphtap.simulation.emitter import SimulatedEvent, SimulationSettings, simulate
from graphtap.subscriptions.certificates import (
    CertificateFiles,
    create_certificate,
    load_certificate,
)
from tests.fakes.azure_transport import TokenCredential
from tests.fakes.azurite import AzuriteStorage
from tests.fakes.eventhubs import (
    AzuriteCheckpoints,
    FakeNamespace,
    Installed,
    checkpoint_store,
    install,
)

NAMESPACE = "fake.servicebus.windows.net"
NOTIFICATIONS = "notifications"
FINDINGS = "findings"
#: The checkpoint account: the `azurite_storage` fixture's.
ACCOUNT = "https://graphtaptest.blob.core.windows.net"
CONTAINER = "checkpoints"
CONSUMER_GROUP = "graphtap-processor"
FAST_RETRY = RetryPolicy(attempts=2, initial_delay=0.01, max_delay=0.02)


class FakeCredential(TokenCredential):
    """A bearer token for any scope: the checkpoint store presents it to Azurite's transport
    (no authority here, so any bearer token passes); the Event Hubs fakes ask for none."""


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    return create_certificate(tmp_path_factory.mktemp("keys"), certificate_id="eh-test")


@pytest.fixture(scope="session")
def client_state() -> str:
    return secrets.token_urlsafe(24)


@pytest.fixture(scope="session")
def pipeline_settings(certificate: CertificateFiles, client_state: str) -> PipelineSettings:
    return compose.pipeline_settings(
        key_paths=(certificate.key_path.parent,), client_states=(client_state,), hash_key=b"k" * 32
    )


@pytest.fixture(scope="session")
def traffic(certificate: CertificateFiles, client_state: str) -> list[SimulatedEvent]:
    """Graph's stream for a small tenant, with a few faulty events and lifecycle events."""
    return list(
        simulate(
            SimulationSettings(count=160, seed=11, fault_share=0.05, lifecycle_share=0.02),
            certificate=load_certificate(certificate.certificate_path),
            certificate_id=certificate.certificate_id,
            client_state=client_state,
        )
    )


@dataclass(frozen=True)
class Expected:
    verdict_keys: frozenset[str]
    dead_letters: int


@pytest.fixture(scope="session")
def expected(traffic: list[SimulatedEvent], pipeline_settings: PipelineSettings) -> Expected:
    """What the pipeline makes of the traffic, computed without any hub."""
    pipeline = Pipeline.from_settings(pipeline_settings)
    keys: set[str] = set()
    dead = 0
    for offset, event in enumerate(traffic):
        result = pipeline.process(SourceEvent("0", offset, event.body))
        keys.update(v.key for v in result.verdicts)
        dead += sum(letter.item_count for letter in result.dead_letters)
    return Expected(frozenset(keys), dead)


@pytest.fixture
def hubs(mocker: Any, azurite_storage: AzuriteStorage) -> Installed:
    """The namespace with its two hubs, checkpoints in Azurite's `checkpoints` container."""
    assert azurite_storage.account_url == ACCOUNT
    namespace = FakeNamespace(NAMESPACE)
    namespace.create_hub(NOTIFICATIONS, 4)
    namespace.create_hub(FINDINGS, 2)
    azurite_storage.create_container(CONTAINER)
    # No retries: the storage SDK's default backs a 503 off for 15 s and more, and the
    # source's answer to a failed checkpoint is the SDK's own (redeliver from the last one).
    return install(
        mocker, namespace, checkpoint_store=checkpoint_store(azurite_storage, retry_total=0)
    )


@dataclass
class Instance:
    """One processor instance: source, findings-hub sink, dead letters (local unless given)
    and lifecycle."""

    source: EventHubsSource
    sink: EventHubsVerdictSink
    summary: Summary
    stores: SqliteStore
    lifecycle: LifecycleQueue
    executor: PipelineExecutor
    dead_letters: AsyncDeadLetterStore
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.source.run(self.stop))

    async def close(self) -> None:
        self.stop.set()
        if self.task is not None:
            await self.task
        await self.sink.close()
        await self.dead_letters.close()
        self.executor.close()
        self.stores.close()
        self.lifecycle.close()


InstanceFactory = Callable[..., Instance]


@pytest.fixture
def make_instance(
    tmp_path: Path, pipeline_settings: PipelineSettings, hubs: Installed
) -> InstanceFactory:
    counter = iter(range(1000))

    def make(
        *,
        start: str = "earliest",
        retry: RetryPolicy = FAST_RETRY,
        max_batch_size: int = 16,
        workers: int = 1,
        dead_letters: AsyncDeadLetterStore | None = None,
        ownership_expiration: float = 2.0,
    ) -> Instance:
        n = next(counter)
        settings = EventHubsSourceSettings(
            namespace=NAMESPACE,
            hub=NOTIFICATIONS,
            consumer_group=CONSUMER_GROUP,
            checkpoint_account_url=ACCOUNT,
            checkpoint_container=CONTAINER,
            start=start,
            max_batch_size=max_batch_size,
            max_wait_time=0.2,
            load_balancing_interval=0.1,
            ownership_expiration=ownership_expiration,
        )
        credential = FakeCredential()
        summary = Summary()
        stores = SqliteStore(tmp_path / f"instance-{n}.sqlite")
        lifecycle = LifecycleQueue(tmp_path / f"instance-{n}.sqlite")
        sink = EventHubsVerdictSink(NAMESPACE, FINDINGS, credential=credential, retry=retry)
        executor = PipelineExecutor(pipeline_settings, workers=workers)
        dead_letters = dead_letters or BlockingDeadLetters(stores)
        committer = BatchCommitter(
            sink=sink,
            dead_letters=dead_letters,
            lifecycle=lifecycle,
            summary=summary,
        )
        source = EventHubsSource(
            settings, credential=credential, handler=BatchHandler(executor, committer)
        )
        return Instance(source, sink, summary, stores, lifecycle, executor, dead_letters)

    return make


async def wait_for(condition: Callable[[], bool], *, timeout: float = 15.0, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)  # each poll is a blocking call to Azurite: keep them few


def refuse_checkpoint_writes(request: Any) -> tuple[int, str] | None:
    """An `AzuriteStorage.fault`: storage too busy for checkpoint writes (Set Blob Metadata or
    Put Blob on a checkpoint blob), answered as the service answers, 503 ServerBusy. Ownership
    claims and every read still go through."""
    if request.method == "PUT" and "/checkpoint/" in urlsplit(request.url).path:
        return 503, "ServerBusy"
    return None


def store(hubs: Installed) -> AzuriteCheckpoints:
    """The checkpoint store factory `hubs` installed, on Azurite."""
    factory = hubs.checkpoint_store
    if not isinstance(factory, AzuriteCheckpoints):
        raise TypeError(f"the hubs keep their checkpoints in {factory!r}, not in Azurite")
    return factory


def checkpoints(hubs: Installed) -> dict[str, int]:
    """Partition id -> the sequence number of its checkpoint, as the store wrote it."""
    records = store(hubs).records(CONTAINER, NAMESPACE, NOTIFICATIONS, CONSUMER_GROUP, "checkpoint")
    return {partition: int(record["sequencenumber"]) for partition, record in records.items()}


def drained(hubs: Installed, *sources: EventHubsSource) -> bool:
    """Every partition with events is checkpointed at its last event and, given the sources
    reading them, that batch's handling has returned. The checkpoint is written before the
    summary counts the batch, and Azurite's answer lands before the handler resumes: a test
    that reads a summary passes its sources."""
    done = checkpoints(hubs)
    handled: dict[str, int] = {}
    for source in sources:
        for status in source.meter.snapshot():
            if status.last_sequence is not None:
                handled[status.partition] = max(
                    handled.get(status.partition, -1), status.last_sequence
                )
    for index, partition in enumerate(hubs.namespace.partitions(NOTIFICATIONS)):
        if not partition.events:
            continue
        last = partition.events[-1].sequence_number
        if done.get(str(index)) != last or (sources and handled.get(str(index)) != last):
            return False
    return True


def owners(hubs: Installed) -> Counter[str]:
    """How many partitions each instance owns (a released partition's owner is empty)."""
    records = store(hubs).records(CONTAINER, NAMESPACE, NOTIFICATIONS, CONSUMER_GROUP, "ownership")
    return Counter(record["ownerid"] for record in records.values() if record["ownerid"])
