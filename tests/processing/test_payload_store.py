"""Graph's payloads over 1 MB, read from the prod stack's payload account: Azurite behind the
stack's grants (`Authority`, in the authorizing transport), through the real azure-storage-blob
client. The runtime identity reads Graph's container and nothing else there: a write, or a
read of another container, is Azure's 403."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from typing import Any

import orjson
import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob.aio import ContainerClient

from graphtap.deployment import Deployment
from graphtap.hosts.azure import AzureServiceOptions, open_content_fetcher
from graphtap.inspection import Policy
from graphtap.notifications.errors import Reason
from graphtap.processing import compose
from graphtap.processing.fetch import FetchError, FetchRetry
from graphtap.processing.fetch.payloads import PAYLOAD_CONTAINER, BlobPayloadStore
from graphtap.processing.fetched import Payload, Unavailable
from graphtap.processing.sources import SourceEvent
from graphtap.subscriptions.payloadstore import connection_string
from tests.fakes.authorization import RUNTIME, Authority, Estate
from tests.fakes.azurite import Azurite, AzuriteStorage
from tests.stacks.conftest import SynthesizedStack, prod, synthesized  # noqa: F401

STATE = "payload-store-client-state"
QUICK = FetchRetry(attempts=2, initial_delay=0.001, max_delay=0.001)
KEY = base64.b64encode(b"the payload account's key, 64 bytes long, for the tests here!!!!").decode()


@pytest.fixture
def estate(prod: SynthesizedStack) -> Estate:  # noqa: F811
    return Estate.from_stack(prod.document)


@pytest.fixture
def account(azurite: Azurite, estate: Estate) -> AzuriteStorage:
    """The prod stack's payload account, served by Azurite, with Graph's container."""
    name = estate.outputs()["payload_account"]
    storage = AzuriteStorage(
        azurite,
        account=name,
        authority=Authority(estate),
        resource_id=estate.id_of("azurerm_storage_account", name=name),
    )
    storage.reset()
    storage.create_container(PAYLOAD_CONTAINER)
    storage.shared_key = KEY  # the account allows shared keys: Graph writes with one
    return storage


def upload(
    account: AzuriteStorage,
    name: str,
    data: bytes,
    container: str = PAYLOAD_CONTAINER,
    *,
    key: str | None = None,
) -> None:
    """As Graph writes a payload: with the connection string (the account key)."""
    connection = connection_string(account.account, key or KEY, "core.windows.net")

    async def put() -> None:
        client = ContainerClient.from_connection_string(
            connection, container, transport=account.transport()
        )
        async with client:
            await client.upload_blob(name, data, overwrite=True)

    asyncio.run(put())


def store(account: AzuriteStorage, estate: Estate) -> BlobPayloadStore:
    assert account.authority is not None
    return BlobPayloadStore(
        estate.outputs()["payload_account_url"],
        account.authority.credential(RUNTIME),
        transport=account.transport(),
    )


def read(account: AzuriteStorage, estate: Estate, storage_id: str) -> bytes:
    async def go() -> bytes:
        payloads = store(account, estate)
        try:
            return await payloads.read(storage_id)
        finally:
            await payloads.close()

    return asyncio.run(go())


def test_the_runtime_reads_a_payload_graph_wrote(account: AzuriteStorage, estate: Estate) -> None:
    blob = orjson.dumps({"resource": "r", "resourceData": {}, "encryptedContent": {}}) * 40_000
    assert len(blob) > 1024 * 1024
    upload(account, "2a6e2a04-7a26-4f6b-9b56-0f3b3a4b5c6d", blob)
    assert read(account, estate, "2a6e2a04-7a26-4f6b-9b56-0f3b3a4b5c6d") == blob
    assert account.refused == []


def test_a_missing_payload_is_named(account: AzuriteStorage, estate: Estate) -> None:
    with pytest.raises(FetchError, match="no payload 'not-there' in https://stpl"):
        read(account, estate, "not-there")


@pytest.mark.parametrize("storage_id", ["../checkpoints/x", "a//b", "", "x" * 1025])
def test_an_id_that_could_name_another_blob_is_refused(
    account: AzuriteStorage, estate: Estate, storage_id: str
) -> None:
    with pytest.raises(FetchError, match="not a payload id"):
        read(account, estate, storage_id)


def test_the_runtime_may_not_write_there_nor_read_another_container(
    account: AzuriteStorage, estate: Estate
) -> None:
    account.create_container("elsewhere")
    upload(account, "secret.json", b"{}", container="elsewhere")
    assert account.authority is not None
    credential = account.authority.credential(RUNTIME)
    url = estate.outputs()["payload_account_url"]

    async def write() -> None:
        client = ContainerClient(url, PAYLOAD_CONTAINER, credential, transport=account.transport())
        async with client:
            await client.upload_blob("forged", b"{}")

    async def read_elsewhere() -> None:
        client = ContainerClient(url, "elsewhere", credential, transport=account.transport())
        async with client:
            await (await client.download_blob("secret.json")).readall()

    for attempt in (write, read_elsewhere):
        with pytest.raises(HttpResponseError) as refused:
            asyncio.run(attempt())
        assert refused.value.status_code == 403
        assert refused.value.error_code == "AuthorizationPermissionMismatch"
    assert "forged" not in account.blobs(PAYLOAD_CONTAINER)


def _event(storage_id: str) -> SourceEvent:
    item = {
        "subscriptionId": "s",
        "changeType": "created",
        "tenantId": "t",
        "clientState": STATE,
        "additionalPayloadStorageId": storage_id,
    }
    return SourceEvent("0", 0, orjson.dumps({"value": [item]}))


def test_the_azure_hosts_fetcher_reads_the_deployments_payload_account(
    account: AzuriteStorage, estate: Estate
) -> None:
    """`open_content_fetcher` as both Azure hosts compose it: payloads from the account the
    stack's outputs name; one that stays missing is `payload_unavailable`, never dropped."""
    deployment = Deployment.from_outputs(estate.outputs(), source="prod outputs")
    assert deployment.payload_account_url == account.account_url
    upload(account, "present", orjson.dumps({"resource": "r"}))
    pipeline = compose.pipeline_settings(key_paths=(), client_states=(STATE,), hash_key=b"k" * 32)
    assert account.authority is not None
    options = AzureServiceOptions(
        policy=Policy.default(), payload_options={"transport": account.transport(shared=True)}
    )

    async def fill(*events: SourceEvent) -> None:
        fetcher = open_content_fetcher(
            deployment, account.authority.credential(RUNTIME), options, pipeline
        )
        fetcher = dataclasses.replace(fetcher, retry=QUICK)
        try:
            await fetcher.fill(events)
        finally:
            await fetcher.close()
            await options.payload_options["transport"].aclose()

    present, missing = _event("present"), _event("missing")
    asyncio.run(fill(present, missing))
    assert present.fetched == {0: Payload({"resource": "r"})}
    assert missing.fetched is not None
    unavailable = missing.fetched[0]
    assert isinstance(unavailable, Unavailable)
    assert unavailable.reason is Reason.PAYLOAD_UNAVAILABLE
    assert "'missing'" in unavailable.problem


def test_without_a_payload_account_the_fetcher_says_none_is_configured(estate: Estate) -> None:
    outputs: dict[str, Any] = {**estate.outputs(), "payload_account_url": None}
    deployment = Deployment.from_outputs(outputs, source="outputs")
    pipeline = compose.pipeline_settings(key_paths=(), client_states=(STATE,), hash_key=b"k" * 32)
    fetcher = open_content_fetcher(
        deployment,
        object(),
        AzureServiceOptions(policy=Policy.default()),
        pipeline,  # type: ignore[arg-type]
    )
    event = _event("any")
    asyncio.run(fetcher.fill([event]))
    assert event.fetched is not None
    assert "none is configured" in event.fetched[0].problem  # type: ignore[union-attr]


def test_only_the_accounts_own_key_writes_and_only_where_keys_are_allowed(
    account: AzuriteStorage, azurite: Azurite
) -> None:
    """Graph's write is an account-key request: the payload account takes its own key and
    no other, and an account that disallows keys (every other one of the stack) takes none."""
    wrong = base64.b64encode(bytes(64)).decode()
    with pytest.raises(HttpResponseError) as refused:
        upload(account, "forged", b"{}", key=wrong)
    assert refused.value.status_code == 403
    assert refused.value.error_code == "AuthenticationFailed"
    keyless = AzuriteStorage(azurite, account=account.account, authority=account.authority)
    with pytest.raises(HttpResponseError) as refused:
        upload(keyless, "forged", b"{}")
    assert refused.value.error_code == "KeyBasedAuthenticationNotPermitted"
    assert "forged" not in account.blobs(PAYLOAD_CONTAINER)
