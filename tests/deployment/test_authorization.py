"""The fakes refuse what the stack does not grant, through the real SDK clients, in the shapes
the services send: the runtime's error handling meets what Azure answers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.eventhub import EventData
from azure.eventhub.exceptions import ConnectionLostError
from azure.keyvault.secrets.aio import SecretClient
from azure.storage.blob.aio import BlobServiceClient

from graphtap.processing.fetch import FetchError
from graphtap.processing.fetch.mail import GraphMailReader
from graphtap.processing.sinks import eventhubs as eventhubs_sink
from graphtap.processing.sources import eventhubs as eventhubs_source
from graphtap.subscriptions.graph import GraphError, GraphExports, build_client
from tests.deployment.rehearsal import Azure, create_certificate
from tests.fakes.authorization import (
    CHANGE_TRACKING,
    DEPLOYER,
    RUNTIME,
    Authority,
    Estate,
    PrincipalCredential,
)
from tests.fakes.azurite import Azurite
from tests.stacks.conftest import SynthesizedStack

SECRET_ACTION = "Microsoft.KeyVault/vaults/secrets/getSecret/action"


@pytest.fixture
def azure(prod: SynthesizedStack, mocker: Any, azurite: Azurite) -> Azure:
    return Azure.deploy(Estate.from_stack(prod.document), mocker, azurite)


def secret(azure: Azure, principal: str, name: str) -> str | None:
    async def read() -> str | None:
        client = SecretClient(
            azure.outputs["key_vault_uri"], azure.credential(principal), **azure.transports()
        )
        async with client:
            return (await client.get_secret(name)).value

    return asyncio.run(read())


def test_key_vault_refuses_an_ungranted_secret_as_an_rbac_vault_does(azure: Azure) -> None:
    azure.vault.secrets["unrelated"] = [("v1", "value", None)]
    with pytest.raises(HttpResponseError) as refused:
        secret(azure, RUNTIME, "unrelated")
    assert refused.value.status_code == 403
    body = json.loads(refused.value.response.text())
    assert body["error"]["code"] == "Forbidden"
    assert body["error"]["innererror"]["code"] == "ForbiddenByRbac"
    assert SECRET_ACTION in body["error"]["message"]
    assert "/secrets/unrelated" in body["error"]["message"]
    # the secret the stack grants is readable by the same identity
    azure.vault.secrets["graph-client-state"] = [("v1", "state", None)]
    assert secret(azure, RUNTIME, "graph-client-state") == "state"


def test_the_deploying_identity_cannot_read_the_certificates_private_key(azure: Azure) -> None:
    """Certificates Officer on the certificate covers `certificates/...`, not the PKCS#12 kept
    as the secret of the same name (a different path, a data action the role lacks)."""
    asyncio.run(create_certificate(azure))
    with pytest.raises(HttpResponseError) as refused:
        secret(azure, DEPLOYER, "graphtap-notifications")
    assert refused.value.status_code == 403
    assert secret(azure, RUNTIME, "graphtap-notifications")  # the runtime decrypts with it


def test_blob_storage_refuses_an_ungranted_container(azure: Azure) -> None:
    azure.blobs.create_container("tfstate")

    async def write(container: str) -> None:
        service = BlobServiceClient(
            azure.outputs["checkpoint_account_url"],
            azure.credential(RUNTIME),
            transport=azure.blobs.transport(),
        )
        async with service:
            await service.get_blob_client(container, "probe").upload_blob(b"x", overwrite=True)

    with pytest.raises(HttpResponseError) as refused:
        asyncio.run(write("tfstate"))
    assert refused.value.status_code == 403
    assert refused.value.error_code == "AuthorizationPermissionMismatch"
    asyncio.run(write("dead-letters"))  # granted
    assert azure.blobs.blobs("dead-letters") == {"probe": b"x"}


def test_event_hubs_detaches_a_link_without_the_claim(azure: Azure) -> None:
    namespace = azure.outputs["eventhub_namespace_host"]

    async def send(principal: str, hub: str) -> None:
        producer = eventhubs_sink.EventHubProducerClient(
            namespace, hub, azure.credential(principal)
        )
        async with producer:
            batch = await producer.create_batch()
            batch.add(EventData(b"{}"))
            await producer.send_batch(batch)

    # the runtime sends verdicts to the findings hub, never into the notifications hub
    with pytest.raises(ConnectionLostError, match="amqp:unauthorized-access") as refused:
        asyncio.run(send(RUNTIME, "notifications"))
    assert "'Send' claim(s) are required" in str(refused.value)
    asyncio.run(send(RUNTIME, "findings"))
    # Graph's principal may send notifications but read nothing
    asyncio.run(send(CHANGE_TRACKING, "notifications"))

    async def partitions(principal: str) -> list[str]:
        client = eventhubs_source.EventHubConsumerClient(
            namespace, "notifications", "graphtap-processor", azure.credential(principal)
        )
        async with client:
            return list(await client.get_partition_ids())

    with pytest.raises(ConnectionLostError, match="'Listen' claim"):
        asyncio.run(partitions(CHANGE_TRACKING))
    assert len(asyncio.run(partitions(RUNTIME))) == 16


def test_graph_decides_by_the_tokens_roles(
    prod: SynthesizedStack, mocker: Any, azurite: Azurite
) -> None:
    estate = Estate.from_stack(prod.document)
    (user_read,) = [g.key for g in estate.app_roles if g.permission == "User.Read.All"]
    for principal, granted in ((RUNTIME, estate), (RUNTIME, estate.without(user_read))):
        azure = Azure.deploy(granted, mocker, azurite)
        azure.graph.users = ["u1"]
        exports = GraphExports(build_client(azure.credential(principal), transport=azure.graph))
        if granted is estate:
            assert asyncio.run(exports.user_ids()) == ["u1"]
            continue
        with pytest.raises(GraphError) as refused:
            asyncio.run(exports.user_ids())
        assert refused.value.status == 403
        assert refused.value.code == "Authorization_RequestDenied"
        assert [str(d) for d in azure.authority.denied] == [
            "runtime: Microsoft Graph GET /users needs User.Read.All or User.ReadWrite.All or "
            "Directory.Read.All on tenant"
        ]


def test_the_runtime_reads_mail_with_prods_mail_read_and_is_refused_without_it(
    prod: SynthesizedStack, mocker: Any, azurite: Azurite
) -> None:
    estate = Estate.from_stack(prod.document)
    (mail_read,) = [g.key for g in estate.app_roles if g.permission == "Mail.Read"]
    for granted in (estate, estate.without(mail_read)):
        azure = Azure.deploy(granted, mocker, azurite)
        stored = azure.graph.mailboxes.deliver("u1", {"subject": "numbers"})
        reader = GraphMailReader(build_client(azure.credential(RUNTIME), transport=azure.graph))
        if granted is estate:
            message = asyncio.run(reader.read("u1", stored.id))
            assert message is not None
            assert message["subject"] == "numbers"
            assert azure.authority.denied == []
            continue
        with pytest.raises(FetchError, match="403 ErrorAccessDenied"):
            asyncio.run(reader.read("u1", stored.id))
        assert [str(d) for d in azure.authority.denied] == [
            f"runtime: Microsoft Graph GET /users/u1/messages/{stored.id} needs Mail.Read or "
            "Mail.ReadWrite on tenant"
        ]


def test_scopes_inherit_down_to_children_at_path_segment_boundaries(
    prod: SynthesizedStack,
) -> None:
    estate = Estate.from_stack(prod.document)
    authority = Authority(estate)
    token = asyncio.run(
        PrincipalCredential(authority, RUNTIME).get_token("https://vault.azure.net/.default")
    ).token
    vault = estate.id_of("azurerm_key_vault", name="kv-gtap-prod-weu")

    def allowed(resource: str) -> bool:
        return (
            authority.check(
                token, service="test", call="GET", resource=resource, data_action=SECRET_ACTION
            )
            is None
        )

    assert allowed(f"{vault}/secrets/graph-client-state")
    assert allowed(f"{vault}/SECRETS/Graph-Client-State".lower().replace("kv-gtap", "KV-gtap"))
    assert not allowed(f"{vault}/secrets/graph-client-state-2")  # not a child of the scope
    assert not allowed(f"{vault}/secrets/graph")
    # A forged token (another signing key) is nobody.
    other = Authority(estate)
    forged = asyncio.run(
        PrincipalCredential(other, RUNTIME).get_token("https://vault.azure.net/.default")
    ).token
    denial = authority.check(
        forged,
        service="test",
        call="GET",
        resource=f"{vault}/secrets/graph-client-state",
        data_action=SECRET_ACTION,
    )
    assert denial is not None
    assert denial.principal == "anonymous"
