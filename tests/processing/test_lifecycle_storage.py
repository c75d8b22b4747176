"""The shared lifecycle queue: an Azure Storage queue over Azurite, with the prod stack's grants.

Processors on two hosts enqueue, the leader drains, and an event that keeps failing lands in
the poison queue. The runtime identity reaches the queues only through the roles the stack
assigns (`Authority`, in the authorizing transport). Where Azurite differs from Azure: it
hides a received message on its own wall clock, so the retry test waits for real (1 s).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.queue.aio import QueueClient

from graphtap.processing.lifecycle import LifecycleEvent, PoisonedEvent
from graphtap.processing.lifecycle_storage import StorageLifecycleQueue
from tests.fakes.authorization import RUNTIME, Authority, Estate
from tests.fakes.azurite import Azurite, AzuriteStorage
from tests.stacks.conftest import SynthesizedStack, prod, synthesized  # noqa: F401

QUEUE, POISON = "lifecycle", "lifecycle-poison"


def event(name: str, index: int) -> LifecycleEvent:
    item = {"subscriptionId": f"sub-{index}", "lifecycleEvent": name, "clientState": "secret"}
    return LifecycleEvent.from_item(item, body=b"{}", index=index, received_at=float(index))


@pytest.fixture
def estate(prod: SynthesizedStack) -> Estate:  # noqa: F811
    return Estate.from_stack(prod.document)


def account(azurite: Azurite, estate: Estate) -> AzuriteStorage:
    """The prod stack's storage account, served by Azurite, with the queues it creates."""
    (body,) = [  # the runtime's own account (the payload account is Graph's)
        a
        for a in estate.resources("azurerm_storage_account").values()
        if a["name"] != estate.outputs().get("payload_account")
    ]
    storage = AzuriteStorage(
        azurite,
        account=body["name"],
        authority=Authority(estate),
        resource_id=estate.id_of("azurerm_storage_account", name=body["name"]),
    )
    storage.reset()
    for queue in (QUEUE, POISON):
        storage.create_queue(queue)
    return storage


def host(storage: AzuriteStorage, estate: Estate, **options: Any) -> StorageLifecycleQueue:
    """One host's queue client, as the runtime identity (facts from the stack's outputs)."""
    outputs = estate.outputs()
    assert outputs["lifecycle_queue"] == QUEUE
    assert outputs["lifecycle_poison_queue"] == POISON
    assert outputs["lifecycle_queue_account_url"] == storage.queue_url
    assert storage.authority is not None
    return StorageLifecycleQueue(
        outputs["lifecycle_queue_account_url"],
        QUEUE,
        POISON,
        storage.authority.credential(RUNTIME),
        transport=storage.transport(),
        **options,
    )


def test_processors_on_two_hosts_enqueue_and_the_leader_drains(
    azurite: Azurite, estate: Estate
) -> None:
    storage = account(azurite, estate)

    async def scenario() -> tuple[list[LifecycleEvent], list[LifecycleEvent]]:
        web, function, leader = (host(storage, estate) for _ in range(3))
        try:
            assert await web.put([event("missed", 1), event("reauthorizationRequired", 2)]) == 2
            assert await function.put([event("subscriptionRemoved", 3)]) == 1
            drained = await leader.pending()
            for each in drained:
                await leader.complete(each)
            return drained, await leader.pending()
        finally:
            for queue in (web, function, leader):
                await queue.close()

    drained, left = asyncio.run(scenario())
    assert sorted(e.event for e in drained) == [
        "missed",
        "reauthorizationRequired",
        "subscriptionRemoved",
    ]
    assert all("clientState" not in e.item for e in drained)  # the secret never reaches storage
    assert left == []
    assert storage.authority is not None
    assert storage.authority.denied == []


def test_an_event_that_fails_n_times_moves_to_the_poison_queue(
    azurite: Azurite, estate: Estate
) -> None:
    storage = account(azurite, estate)

    async def scenario() -> tuple[list[PoisonedEvent], list[LifecycleEvent]]:
        leader = host(storage, estate, max_attempts=3, visibility=2)
        try:
            await leader.put([event("reauthorizationRequired", 1)])
            for attempt in range(1, 4):
                (failing,) = await leader.pending()
                await leader.retry_later(failing, f"Graph said 403 ({attempt})")
                if attempt < 3:
                    assert await leader.pending() == []  # hidden until it times out
                    await asyncio.sleep(2.2)
            return await leader.poisoned(), await leader.pending()
        finally:
            await leader.close()

    started = time.monotonic()
    poisoned, left = asyncio.run(scenario())
    assert poisoned == [PoisonedEvent("reauthorizationRequired", "sub-1", 3, "Graph said 403 (3)")]
    assert left == []
    assert time.monotonic() - started < 30


def test_copies_of_one_event_from_both_hosts_are_handled_once_and_settled_together(
    azurite: Azurite, estate: Estate
) -> None:
    """With `processor = "both"` the web app and the Function App enqueue every event."""
    storage = account(azurite, estate)

    async def scenario() -> tuple[list[int], list[PoisonedEvent], list[LifecycleEvent]]:
        web, function = host(storage, estate), host(storage, estate)
        leader = host(storage, estate, max_attempts=2, visibility=1)
        try:
            for processor in (web, function):
                await processor.put([event("reauthorizationRequired", 1), event("missed", 2)])
            offered = []
            for _ in range(2):
                received = await leader.pending()
                offered.append(len(received))
                for each in received:
                    if each.event == "missed":
                        await leader.complete(each)
                    else:
                        await leader.retry_later(each, "Graph said 403")
                await asyncio.sleep(1.2)
            return offered, await leader.poisoned(), await leader.pending()
        finally:
            for queue in (web, function, leader):
                await queue.close()

    offered, poisoned, left = asyncio.run(scenario())
    assert offered == [2, 1]  # each event once; the completed one with both its copies
    assert poisoned == [PoisonedEvent("reauthorizationRequired", "sub-1", 2, "Graph said 403")]
    assert left == []


def test_the_runtime_reaches_only_the_queues_the_stack_grants(
    azurite: Azurite, estate: Estate
) -> None:
    storage = account(azurite, estate)
    storage.create_queue("elsewhere")  # a queue of the account the stack grants nothing on

    async def scenario() -> None:
        assert storage.authority is not None
        other = StorageLifecycleQueue(
            storage.queue_url,
            "elsewhere",
            POISON,
            storage.authority.credential(RUNTIME),
            transport=storage.transport(),
        )
        try:
            with pytest.raises(HttpResponseError) as refused:
                await other.put([event("missed", 1)])
            assert refused.value.status_code == 403
            assert refused.value.error_code == "AuthorizationPermissionMismatch"
        finally:
            await other.close()

    asyncio.run(scenario())
    assert storage.authority is not None
    (denial,) = storage.authority.denied
    assert denial.principal == RUNTIME
    assert denial.needs.endswith("queues/messages/add/action")
    assert denial.resource.endswith("/queueServices/default/queues/elsewhere")


def test_without_the_sender_grant_a_processor_cannot_enqueue(
    azurite: Azurite, estate: Estate
) -> None:
    (sender,) = (
        g.key
        for g in estate.grants
        if g.key.startswith("azurerm_role_assignment.runtime_lifecycle_send_")
    )
    storage = account(azurite, estate.without(sender))

    async def scenario() -> None:
        processor = host(storage, estate)
        try:
            with pytest.raises(HttpResponseError, match="AuthorizationPermissionMismatch"):
                await processor.put([event("missed", 1)])
        finally:
            await processor.close()

    asyncio.run(scenario())


def test_a_message_that_is_no_event_is_set_aside_at_once(azurite: Azurite, estate: Estate) -> None:
    storage = account(azurite, estate)

    async def scenario() -> tuple[list[LifecycleEvent], list[PoisonedEvent]]:
        assert storage.authority is not None
        sender = QueueClient(
            storage.queue_url,
            QUEUE,
            credential=storage.authority.credential(RUNTIME),
            transport=storage.transport(),
        )
        leader = host(storage, estate)
        try:
            await sender.send_message("not json at all")
            await leader.put([event("missed", 1)])
            return await leader.pending(), await leader.poisoned()
        finally:
            await sender.close()
            await leader.close()

    pending, poisoned = asyncio.run(scenario())
    assert [e.event for e in pending] == ["missed"]  # the queue is not stuck behind it
    (bad,) = poisoned
    assert bad.event == "(not an event)"
    assert bad.last_error is not None
