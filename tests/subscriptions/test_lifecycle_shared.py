"""The leader drains the shared lifecycle queue (Azurite) that another host's processor fills.

Graph and Key Vault are the fakes on the simulated clock; the queue is Azurite's, whose
message visibility runs on the wall clock (the retry waits 1 s for real).
"""

from __future__ import annotations

import asyncio

import pytest

from graphtap.processing.lifecycle import LifecycleEvent
from graphtap.processing.lifecycle_storage import StorageLifecycleQueue
from graphtap.subscriptions.leadership import NotLeader
from tests.fakes.azure_transport import TokenCredential
from tests.fakes.azurite import AzuriteStorage
from tests.subscriptions.conftest import Bench

QUEUE, POISON = "lifecycle", "lifecycle-poison"


def shared_queue(storage: AzuriteStorage, **options: int) -> StorageLifecycleQueue:
    return StorageLifecycleQueue(
        storage.queue_url,
        QUEUE,
        POISON,
        TokenCredential(),
        transport=storage.transport(),
        **options,
    )


def reauthorization(subscription_id: str) -> LifecycleEvent:
    item = {"subscriptionId": subscription_id, "lifecycleEvent": "reauthorizationRequired"}
    return LifecycleEvent.from_item(item, body=subscription_id.encode(), index=0, received_at=1.0)


def test_the_leader_renews_what_another_hosts_processor_queued(
    bench: Bench, azurite_storage: AzuriteStorage
) -> None:
    for queue in (QUEUE, POISON):
        azurite_storage.create_queue(queue)

    async def scenario() -> tuple[int, int]:
        processor, leader_queue = shared_queue(azurite_storage), shared_queue(azurite_storage)
        plane = bench.control_plane(lifecycle_queue=leader_queue)
        try:
            await plane.reconcile()
            teams = next(s for s in bench.graph.active() if s.resource == "/teams/getAllMessages")
            before = teams.expiration
            bench.clock.advance(3600)
            await processor.put([reauthorization(teams.id)])
            patches = sum(1 for r in bench.graph.requests if r[0] == "PATCH")
            await plane.drain_lifecycle()
            assert bench.graph.subscriptions[teams.id].expiration > before
            left = len(await leader_queue.pending())
            return sum(1 for r in bench.graph.requests if r[0] == "PATCH") - patches, left
        finally:
            await processor.close()
            await leader_queue.close()

    patches, left = asyncio.run(scenario())
    assert patches == 1
    assert left == 0


def test_an_event_graph_keeps_refusing_ends_on_the_status_page(
    bench: Bench, azurite_storage: AzuriteStorage
) -> None:
    for queue in (QUEUE, POISON):
        azurite_storage.create_queue(queue)

    async def scenario() -> tuple[str, ...]:
        queue = shared_queue(azurite_storage, max_attempts=2, visibility=1)
        plane = bench.control_plane(lifecycle_queue=queue)
        try:
            await plane.reconcile()
            teams = next(s for s in bench.graph.active() if s.resource == "/teams/getAllMessages")
            await queue.put([reauthorization(teams.id)])
            bench.graph.fault_rate = 1.0  # Graph fails every call, past every retry
            await plane.drain_lifecycle()
            await asyncio.sleep(1.2)  # the message reappears
            await plane.drain_lifecycle()
            status = plane.status()
            return tuple(
                f"{p.event}:{p.subscription_id}:{p.attempts}" for p in status.lifecycle_poisoned
            )
        finally:
            await queue.close()

    poisoned = asyncio.run(scenario())
    assert len(poisoned) == 1
    assert poisoned[0].startswith("reauthorizationRequired:")
    assert poisoned[0].endswith(":2")


def test_an_event_a_lost_lead_left_unsettled_is_handled_when_the_lead_comes_back(
    bench: Bench, azurite_storage: AzuriteStorage
) -> None:
    """The lease lapses mid-drain: the event is neither settled nor failed. When the same
    instance leads again, the event comes back once its visibility runs out, and is renewed
    (not set aside as never settled)."""
    for queue in (QUEUE, POISON):
        azurite_storage.create_queue(queue)

    async def scenario() -> tuple[bool, int]:
        queue = shared_queue(azurite_storage, max_attempts=2, visibility=1)
        plane = bench.control_plane(lifecycle_queue=queue)
        try:
            await plane.reconcile()
            teams = next(s for s in bench.graph.active() if s.resource == "/teams/getAllMessages")
            before = teams.expiration
            bench.clock.advance(3600)
            await queue.put([reauthorization(teams.id)])
            leading = False

            def fence(what: str) -> None:
                if not leading:
                    raise NotLeader(f"{what}: the lease lapsed")

            plane.reconciler.fence = fence
            with pytest.raises(NotLeader):
                await plane.drain_lifecycle()
            leading = True
            await asyncio.sleep(1.2)  # the message reappears
            await plane.drain_lifecycle()
            renewed = bench.graph.subscriptions[teams.id].expiration > before
            return renewed, len(await queue.poisoned())
        finally:
            await queue.close()

    assert asyncio.run(scenario()) == (True, 0)
