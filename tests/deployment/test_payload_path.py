"""A message over 1 MB on `prod` as synthesized, every call made as the identity Azure would
see and allowed only by the stack's grants: `graphtap bootstrap` (the deploying identity)
writes the payload account's connection string into Key Vault; the control plane (the
runtime identity) creates the subscriptions with `blobStoreUrl`; Graph's Change Tracking
principal reads that secret and writes the payload into the payload account on Azurite with
the account key; the Function App's handler (the runtime identity) reads it back and its
verdict, with the message's findings, reaches the findings hub. Without any one of the three
grants this path adds, the call it covers is refused."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from graphtap.deployment import Deployment
from graphtap.hosts.azure import AzureServiceOptions, deployed_policy
from graphtap.hosts.function import open_handler
from graphtap.processing.fetch.payloads import PAYLOAD_CONTAINER
from graphtap.processing.sinks.eventhubs import records
from graphtap.simulation.emitter import EVENT_LIMIT_BYTES, oversized_html
from graphtap.simulation.tenant import SyntheticTenant
from graphtap.subscriptions.bootstrap import bootstrap
from graphtap.subscriptions.control_plane import ControlPlane
from tests.deployment.rehearsal import (
    Azure,
    TriggerEvent,
    _graph_offloads,
    _without_telemetry,
    create_certificate,
)
from tests.fakes.authorization import DEPLOYER, RUNTIME, Estate, Grant
from tests.fakes.azurite import Azurite
from tests.stacks.conftest import SynthesizedStack

SECRET = "graph-payload-storage"


@pytest.fixture(scope="module")
def estate(prod: SynthesizedStack) -> Estate:
    return Estate.from_stack(prod.document)


async def deliver_large_message(azure: Azure, state: Path) -> tuple[str, list[dict[str, Any]]]:
    """Bootstrap, subscribe, let Graph deliver one message over 1 MB, run the Function App's
    handler on the event; the message id and every verdict on the findings hub."""
    deployment = Deployment.from_outputs(azure.outputs, source="stack outputs")
    await create_certificate(azure)
    await bootstrap(
        deployment,
        azure.credential(DEPLOYER),
        keyvault_options=azure.transports(),
        management_options={"transport": azure.management.transport()},
        storage_management_options={"transport": azure.storage_management.transport()},
    )
    plane = ControlPlane.from_deployment(
        deployment,
        azure.credential(RUNTIME),
        graph_transport=azure.graph,
        keyvault_options=azure.transports(),
    )
    await plane.reconcile()
    tenant = SyntheticTenant.create(
        random.Random(5), start=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5), users=8
    )
    message = tenant.post(sensitive=True)
    message.html = oversized_html(message.html)
    azure.graph.publish(message, damage=lambda item: _graph_offloads(azure, item))
    events = [
        body
        for body in azure.namespace.bodies(deployment.notifications_hub)
        if b"additionalPayloadStorageId" in body
    ]
    settings = _without_telemetry(
        azure.estate.app_settings("azurerm_function_app_flex_consumption")
    )
    assert azure.payloads is not None
    storage = azure.blobs.transport(shared=True)
    payloads = azure.payloads.transport(shared=True)
    try:
        handler = await open_handler(
            settings,
            credential=azure.credential(RUNTIME),
            options=AzureServiceOptions(
                policy=deployed_policy(settings, deployment.environment),
                state_dir=state,
                keyvault_options=azure.transports(),
                blob_options={"transport": storage},
                ingestion_options={"transport": azure.logs.transport()},
                payload_options={"transport": payloads},
                graph_transport=azure.graph,
            ),
        )
        await handler.handle(
            [
                TriggerEvent(body, index, {"PartitionContext": {"PartitionId": "0"}})
                for index, body in enumerate(events)
            ]
        )
    finally:
        await storage.aclose()
        await payloads.aclose()
    findings = [r for b in azure.namespace.bodies(deployment.findings_hub) for r in records(b)]
    return message.id, findings


def test_a_message_over_1_mb_reaches_its_verdict_through_the_payload_account(
    estate: Estate, mocker: Any, azurite: Azurite, tmp_path: Path
) -> None:
    azure = Azure.deploy(estate, mocker, azurite)
    message_id, findings = asyncio.run(deliver_large_message(azure, tmp_path))
    assert azure.authority.denied == []
    assert azure.undelivered == []
    assert azure.payloads is not None
    (blob,) = azure.payloads.blobs(PAYLOAD_CONTAINER).values()
    assert len(json.loads(blob)["encryptedContent"]["data"]) > EVENT_LIMIT_BYTES
    (verdict,) = [v for v in findings if v["message_id"] == message_id]
    assert verdict["content"] == "inspected"
    assert verdict["findings"]
    assert all("value" not in finding for finding in verdict["findings"])
    # Graph sent the subscriptions the secret bootstrap wrote, and no other.
    urls = {s.blob_store_url for s in azure.graph.active()}
    assert urls == {
        # in the vault Graph can reach, not the main vault behind its firewall
        f"{azure.outputs['payload_vault_uri'].rstrip('/')}/secrets/{SECRET}"
        "?tenantId=contoso.onmicrosoft.com"
    }


def _payload_grants(estate: Estate) -> list[Grant]:
    return [
        g
        for g in estate.grants
        if g.scope.endswith(f"/secrets/{SECRET}") or g.scope.endswith(f"/{PAYLOAD_CONTAINER}")
    ]


def test_the_path_adds_exactly_three_grants(estate: Estate) -> None:
    assert sorted((g.principal, g.role) for g in _payload_grants(estate)) == [
        ("change_tracking", "Key Vault Secrets User"),
        ("deployer", "Key Vault Secrets Officer"),
        ("runtime", "Storage Blob Data Reader"),
    ]


@pytest.mark.parametrize("principal", ["deployer", "change_tracking", "runtime"])
def test_without_its_grant_the_call_it_covers_is_refused(
    estate: Estate, principal: str, mocker: Any, azurite: Azurite, tmp_path: Path
) -> None:
    (removed,) = [g for g in _payload_grants(estate) if g.principal == principal]
    azure = Azure.deploy(estate.without(removed.key), mocker, azurite)
    if principal == "deployer":  # bootstrap could not write Graph's secret
        with pytest.raises(HttpResponseError) as refused:
            asyncio.run(deliver_large_message(azure, tmp_path))
        assert refused.value.status_code == 403
    else:  # Graph could not write the payload, or the runtime could not read it
        message_id, findings = asyncio.run(deliver_large_message(azure, tmp_path))
        assert [v for v in findings if v["message_id"] == message_id] == []
    denials = [str(d) for d in azure.authority.denied]
    assert denials, "nothing was refused"
    assert all(d.startswith(f"{principal}:") for d in denials), denials
    assert removed.scope.rsplit("/", 1)[-1] in denials[0]
