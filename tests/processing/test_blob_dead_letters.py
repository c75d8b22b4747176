"""Dead letters in Blob Storage, through the real azure-storage-blob client and Azurite.

Azurite serves the Blob rules the store relies on (conditional create, missing container);
the bearer-token check is the authorizing transport's (`tests.fakes.azurite`), since Azurite
takes no Entra ID tokens over plain HTTP.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.storage.blob.aio import BlobClient, ContainerClient

from graphtap.notifications.errors import NotificationError, Reason
from graphtap.processing.deadletters import DeadLetter
from graphtap.processing.sinks.blob import (
    BlobDeadLetters,
    DeadLettersUnavailable,
    blob_name,
    event_blob_name,
)
from tests.fakes.azure_transport import TokenCredential
from tests.fakes.azurite import AzuriteStorage

CONTAINER = "dead-letters"
NOV_26_2026 = 1_795_700_000.0  # 2026-11-26 10:13:20 UTC


def letter(
    body: bytes, index: int | None = None, reason: Reason = Reason.MALFORMED_EVENT
) -> DeadLetter:
    return DeadLetter.from_error(
        NotificationError(reason, "why it failed"),
        body=body,
        item_index=index,
        partition="2",
        offset=41,
        occurred_at=NOV_26_2026,
    )


def store(service: AzuriteStorage, **options: Any) -> BlobDeadLetters:
    return BlobDeadLetters(
        service.account_url,
        CONTAINER,
        credential=TokenCredential(),
        transport=service.transport(),
        **options,
    )


def write(service: AzuriteStorage, letters: list[DeadLetter], **options: Any) -> int:
    async def scenario() -> int:
        blobs = store(service, **options)
        try:
            return await blobs.write_dead_letters(letters)
        finally:
            await blobs.close()

    return asyncio.run(scenario())


def test_each_dead_letter_lands_as_one_json_blob_named_by_reason_and_key(
    azurite_storage: AzuriteStorage,
) -> None:
    service = azurite_storage
    service.create_container(CONTAINER)
    letters = [
        letter(b"not json"),
        letter(b'{"value": [1]}', index=0, reason=Reason.MALFORMED_NOTIFICATION),
    ]
    assert write(service, letters) == 2
    stored = service.blobs(CONTAINER)
    digest = letters[1].event.key
    assert f"malformed_notification/{digest}-malformed_notification.json" in stored
    assert f"events/{digest}.json" in stored
    assert set(stored) == {blob_name(x) for x in letters} | {
        event_blob_name(x.event) for x in letters
    }
    for x in letters:
        assert json.loads(stored[blob_name(x)]) == x.to_dict()
        assert json.loads(stored[blob_name(x)])["event_key"] == x.event.key
        assert json.loads(stored[event_blob_name(x.event)]) == x.event.to_dict()  # kept once
    assert {service.blob_properties(CONTAINER, n)["Content-Type"] for n in stored} == {
        "application/json"
    }


def test_a_replayed_batch_adds_no_blob_and_keeps_the_first(azurite_storage: AzuriteStorage) -> None:
    service = azurite_storage
    service.create_container(CONTAINER)
    letters = [letter(b"one"), letter(b"two"), letter(b"one")]  # a key twice in one batch
    assert write(service, letters) == 2
    first = dict(service.blobs(CONTAINER))
    assert write(service, [*letters, letter(b"three")]) == 1
    stored = service.blobs(CONTAINER)
    assert len(stored) == 6  # three event bodies, three letters
    assert {name: stored[name] for name in first} == first
    # refused by the service, not skipped: two bodies and two letters
    assert service.refused.count("BlobAlreadyExists") == 4


def test_a_missing_container_raises_and_names_it(azurite_storage: AzuriteStorage) -> None:
    service = azurite_storage
    with pytest.raises(DeadLettersUnavailable, match=f"2 of 2 .*/{CONTAINER}: ResourceNotFound"):
        write(service, [letter(b"one"), letter(b"two")])
    assert service.containers() == []  # the runtime never creates its container


def test_a_partly_failed_batch_raises_after_the_other_writes_finish(
    azurite_storage: AzuriteStorage,
) -> None:
    service = azurite_storage
    service.create_container(CONTAINER)
    poisoned = blob_name(letter(b"refused"))
    service.fault = lambda request: (
        (403, "AuthorizationPermissionMismatch") if request.url.endswith(poisoned) else None
    )
    letters = [letter(b"ok-1"), letter(b"refused"), letter(b"ok-2")]
    with pytest.raises(DeadLettersUnavailable, match="1 of 3"):
        write(service, letters)
    assert set(service.blobs(CONTAINER)) == {blob_name(letters[0]), blob_name(letters[2])} | {
        event_blob_name(x.event) for x in letters
    }
    service.fault = None
    assert write(service, letters) == 1  # the replay stores only what was missing


def test_writes_run_concurrently_up_to_the_bound(azurite_storage: AzuriteStorage) -> None:
    service = azurite_storage
    service.create_container(CONTAINER)
    in_flight = peak = 0
    transport = service.transport()
    send = transport.send

    async def slow_send(request: Any, **kwargs: Any) -> Any:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        try:
            return await send(request, **kwargs)
        finally:
            in_flight -= 1

    transport.send = slow_send  # type: ignore[method-assign]
    letters = [letter(f"body-{n}".encode()) for n in range(20)]

    async def scenario() -> int:
        blobs = BlobDeadLetters(
            service.account_url,
            CONTAINER,
            credential=TokenCredential(),
            transport=transport,
            concurrent_writes=4,
        )
        try:
            return await blobs.write_dead_letters(letters)
        finally:
            await blobs.close()

    assert asyncio.run(scenario()) == 20
    assert peak == 4


def test_the_service_enforces_the_rules_the_store_relies_on(
    azurite_storage: AzuriteStorage,
) -> None:
    service = azurite_storage

    async def scenario() -> None:
        def blob(name: str, credential: Any = None) -> BlobClient:
            return BlobClient(
                service.account_url,
                CONTAINER,
                name,
                credential=credential,
                transport=service.transport(),
            )

        def stored(name: str) -> bytes:
            return service.blobs(CONTAINER)[name]

        async with blob("a.json", TokenCredential()) as client:
            with pytest.raises(ResourceNotFoundError):
                await client.upload_blob(b"{}")
            async with ContainerClient(
                service.account_url,
                CONTAINER,
                credential=TokenCredential(),
                transport=service.transport(),
            ) as container:
                await container.create_container()
                with pytest.raises(ResourceExistsError):
                    await container.create_container()
            await client.upload_blob(b"first")
            with pytest.raises(ResourceExistsError):
                await client.upload_blob(b"second", overwrite=False)
            assert stored("a.json") == b"first"
            await client.upload_blob(b"third", overwrite=True)
            assert stored("a.json") == b"third"
        async with blob("b.json") as anonymous:
            with pytest.raises(ClientAuthenticationError):
                await anonymous.upload_blob(b"{}")
        assert "b.json" not in service.blobs(CONTAINER)

    asyncio.run(scenario())


def test_a_replay_on_another_day_adds_nothing(azurite_storage: AzuriteStorage) -> None:
    """The name carries no date: a batch redelivered after midnight is still a no-op."""
    service = azurite_storage
    service.create_container(CONTAINER)
    first = letter(b"not json")
    later = dataclasses.replace(first, occurred_at=first.occurred_at + 3 * 86_400)
    assert write(service, [first]) == 1
    assert write(service, [later]) == 0
    assert len(service.blobs(CONTAINER)) == 2  # the event body and the letter
