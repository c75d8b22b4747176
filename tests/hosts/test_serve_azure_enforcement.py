"""The web app on Azure with a policy that enforces: the actor runs beside the processor,
applies the verdict's action in Teams through Graph as the runtime identity, and the
`updated` notification of its own PATCH is not acted on again."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from graphtap.deployment import Deployment
from graphtap.hosts import azure as azure_host
from graphtap.hosts.commands import serve as serve_command
from graphtap.inspection import load_policy
from graphtap.processing.sinks.eventhubs import records
from graphtap.simulation.tenant import Message
from graphtap.subscriptions.clock import SystemClock
from tests.enforcement.conftest import ALICE, CARD, CHAT, ENFORCING, policy_file
from tests.eventhubs.conftest import wait_for
from tests.fakes.azurite import Azurite
from tests.fakes.eventhubs import FakeNamespace, checkpoint_store, install
from tests.fakes.graph import FakeGraph
from tests.fakes.keyvault import FakeKeyVault
from tests.hosts.test_azure_service import TokenCredential
from tests.hosts.test_serve_azure import (
    CERTIFICATE,
    SETTINGS,
    checkpoint_storage,
    patch_azure_services,
)


def test_the_web_app_applies_actions_once(
    mocker: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, azurite: Azurite
) -> None:
    monkeypatch.setenv("GRAPHTAP_STATE_DIR", str(tmp_path / "state"))
    deployment = Deployment.from_app_settings(SETTINGS)
    namespace = FakeNamespace(deployment.eventhub_namespace_host)
    namespace.create_hub("notifications", 2)
    namespace.create_hub("findings", 2)
    storage = checkpoint_storage(azurite, deployment)
    install(mocker, namespace, checkpoint_store=checkpoint_store(storage))
    vault = FakeKeyVault(vault_url=deployment.key_vault_uri)
    vault.add_certificate_version(CERTIFICATE)
    vault.secrets["graph-client-state"] = [("v1", "state-from-bootstrap", None)]
    graph = FakeGraph(SystemClock())
    graph.permissions |= {"Chat.UpdatePolicyViolation.All"}

    def deliver(_url: str, body: bytes) -> bool:  # Graph's Change Tracking principal
        namespace.publish("notifications", [body])
        return True

    graph.deliver = deliver
    mocker.patch("azure.identity.aio.DefaultAzureCredential", return_value=TokenCredential())
    patch_azure_services(mocker, deployment, vault, graph, storage)
    opened = azure_host.open_azure_host

    async def open_with_graph(*args: Any, **options: Any) -> Any:
        return await opened(*args, **options, graph_transport=graph)

    mocker.patch("graphtap.hosts.azure.open_azure_host", open_with_graph)
    policy = load_policy(policy_file(tmp_path, ENFORCING))
    assert policy is not None

    async def scenario() -> None:
        service, plane, close = await serve_command._azure_service(
            deployment, policy, b"h" * 32, 1, 64, "earliest", ()
        )
        assert plane is not None
        assert close is not None
        app = serve_command.build_app(service, plane)
        async with app.router.lifespan_context(app):
            await wait_for(
                lambda: (
                    all(s.state == "active" for s in plane.status().subscriptions)
                    and len(plane.status().subscriptions) == 4
                ),
                what="the subscriptions",
            )
            now = dt.datetime.now(dt.UTC)
            message = Message("1772438400123", CHAT, ALICE, now, now, CARD, (), ())
            graph.publish(message)
            await wait_for(lambda: graph.violations_set != [], what="the action applied")
            # The PATCH's own `updated` notification is processed too, and not acted on.
            await wait_for(lambda: service.summary().verdicts >= 2, what="its notification")
            await asyncio.sleep(0.5)
        await close()

    asyncio.run(scenario())
    assert graph.violations_set == [("1772438400123", "blockaccess")]
    verdicts = [r for b in namespace.bodies("findings") for r in records(b)]
    states = sorted(v["action"]["state"] for v in verdicts if v.get("action"))
    assert states == ["already_applied", "pending"]
