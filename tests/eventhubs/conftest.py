"""Event Hubs adapters against the in-memory namespace: simulated Graph traffic, real pipeline."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from tests.fakes.eventhubs import FakeNamespace, FakeStorage, Installed, install

NAMESPACE = "fake.servicebus.windows.net"
NOTIFICATIONS = "notifications"
FINDINGS = "findings"
ACCOUNT = "https://fakecheckpoints.blob.core.windows.net"
CONTAINER = "checkpoints"
CONSUMER_GROUP = "graphtap-processor"
FAST_RETRY = RetryPolicy(attempts=2, initial_delay=0.01, max_delay=0.02)


class FakeCredential:
    """The adapters never call it: the fakes stand in for the network."""

    async def __aenter__(self) -> FakeCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def get_token(self, *scopes: str, **_: Any) -> Any:
        raise AssertionError("no token may be requested in tests")

    async def close(self) -> None:
        return None


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
def hubs(mocker: Any) -> Installed:
    namespace = FakeNamespace(NAMESPACE)
    namespace.create_hub(NOTIFICATIONS, 4)
    namespace.create_hub(FINDINGS, 2)
    return install(mocker, namespace)


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
            ownership_expiration=2.0,
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
        await asyncio.sleep(0.02)


def storage(hubs: Installed) -> FakeStorage:
    return hubs.storage(ACCOUNT, CONTAINER)


def checkpoints(hubs: Installed) -> dict[str, int]:
    return {c["partition_id"]: c["sequence_number"] for c in storage(hubs).checkpoints.values()}


def drained(hubs: Installed) -> bool:
    """Every partition with events is checkpointed at its last event."""
    done = checkpoints(hubs)
    for index, partition in enumerate(hubs.namespace.partitions(NOTIFICATIONS)):
        if partition.events and done.get(str(index)) != partition.events[-1].sequence_number:
            return False
    return True


def owners(hubs: Installed) -> Counter[str]:
    return Counter(o["owner_id"] for o in storage(hubs).ownership.values() if o["owner_id"])
