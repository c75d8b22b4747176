"""`graphtap serve` on Azure, assembled as in production: Key Vault, Event Hubs, Graph faked.

Identity, Key Vault, Graph and Event Hubs are the fakes, and the checkpoint account (Event
Hubs checkpoints and resync cursors) is Azurite; everything between them is the code App
Service runs: the processor and the control plane in one app, sharing the credential and
the lifecycle queue, the status page listing the subscriptions the control plane made.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from graphtap.deployment import Deployment
from graphtap.hosts.commands import serve as serve_command
from graphtap.inspection import Policy
from graphtap.processing.sinks.eventhubs import records
from graphtap.simulation.emitter import SimulationSettings, simulate
from graphtap.subscriptions.blobcursor import BlobCursorStore
from graphtap.subscriptions.clock import SystemClock
from graphtap.subscriptions.control_plane import ControlPlane
from graphtap.subscriptions.keyvault import KeyVault
from tests.eventhubs.conftest import wait_for
from tests.fakes.azurite import Azurite, AzuriteStorage
from tests.fakes.eventhubs import FakeNamespace, checkpoint_store, install
from tests.fakes.graph import FakeGraph
from tests.fakes.keyvault import FakeKeyVault
from tests.hosts.test_azure_service import TokenCredential
from tests.subscriptions.conftest import desired_state

CERTIFICATE = "graph-notifications"
SETTINGS = {
    "GRAPHTAP_ENV": "dev",
    "GRAPHTAP_TENANT_ID": "11111111-2222-3333-4444-555555555555",
    "GRAPHTAP_TENANT_DOMAIN": "contoso.onmicrosoft.com",
    "GRAPHTAP_EVENTHUB_NAMESPACE": "graphtap-dev.servicebus.windows.net",
    "GRAPHTAP_NOTIFICATIONS_HUB": "notifications",
    "GRAPHTAP_FINDINGS_HUB": "findings",
    "GRAPHTAP_CONSUMER_GROUP": "graphtap-processor",
    "GRAPHTAP_KEY_VAULT_URI": "https://graphtap-dev.vault.azure.net",
    "GRAPHTAP_CERTIFICATE_NAME": CERTIFICATE,
    "AZURE_CLIENT_ID": "00000000-0000-0000-0000-00000000abcd",
    "GRAPHTAP_CHECKPOINT_ACCOUNT_URL": "https://graphtapdev.blob.core.windows.net",
    "GRAPHTAP_CHECKPOINT_CONTAINER": "checkpoints",
}


def checkpoint_storage(azurite: Azurite, deployment: Deployment) -> AzuriteStorage:
    """The deployment's checkpoint account, empty but for its container."""
    storage = AzuriteStorage(
        azurite, account=urlsplit(deployment.checkpoint_account_url).netloc.split(".")[0]
    )
    storage.reset()
    assert storage.account_url == deployment.checkpoint_account_url
    storage.create_container(deployment.checkpoint_container)
    return storage


def patch_azure_services(
    mocker: Any,
    deployment: Deployment,
    vault: FakeKeyVault,
    graph: FakeGraph,
    storage: AzuriteStorage,
) -> None:
    """Point the host's Key Vault and control plane at the fakes, and its resync cursor store
    at the checkpoint account in `storage`, as one app on Azure wires them."""
    mocker.patch(
        "graphtap.hosts.azure.KeyVault",
        lambda url, cred, **_: KeyVault(url, cred, transport=vault.transport()),
    )
    # Resync cursors live in the checkpoint container.
    mocker.patch(
        "graphtap.hosts.azure.BlobCursorStore",
        lambda url, container, credential, **_: BlobCursorStore(
            url, container, credential=credential, transport=storage.transport()
        ),
    )
    from_deployment = ControlPlane.from_deployment

    def control_plane(deployment: Deployment, credential: Any, **options: Any) -> ControlPlane:
        options.update(
            desired=desired_state(),
            graph_transport=graph,
            keyvault_options={"transport": vault.transport()},
        )
        return from_deployment(deployment, credential, **options)

    mocker.patch.object(ControlPlane, "from_deployment", control_plane)


@pytest.mark.parametrize(
    "processes", [True, False], ids=["web-app-processes", "function-processes"]
)
def test_serve_on_azure_runs_processor_and_control_plane_together(
    mocker: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    azurite: Azurite,
    processes: bool,
) -> None:
    monkeypatch.setenv("GRAPHTAP_STATE_DIR", str(tmp_path / "state"))
    # The stack sets "false" on the web app when only the Function App reads the hub.
    monkeypatch.setenv("GRAPHTAP_PROCESS_NOTIFICATIONS", str(processes).lower())
    deployment = Deployment.from_app_settings(SETTINGS)
    namespace = FakeNamespace(deployment.eventhub_namespace_host)
    namespace.create_hub("notifications", 4)
    namespace.create_hub("findings", 2)
    storage = checkpoint_storage(azurite, deployment)
    install(mocker, namespace, checkpoint_store=checkpoint_store(storage))
    vault = FakeKeyVault(vault_url=deployment.key_vault_uri)
    version = vault.add_certificate_version(CERTIFICATE)
    # `make bootstrap` created the clientState; the processor only reads it.
    vault.secrets["graph-client-state"] = [("v1", "state-from-bootstrap", None)]
    graph = FakeGraph(SystemClock())
    credentials: list[TokenCredential] = []

    def credential(**options: Any) -> TokenCredential:
        assert options == {
            "managed_identity_client_id": deployment.runtime_client_id,
            "authority": deployment.profile.authority_host,  # the deployment's cloud's
        }
        credentials.append(TokenCredential())
        return credentials[-1]

    mocker.patch("azure.identity.aio.DefaultAzureCredential", credential)
    patch_azure_services(mocker, deployment, vault, graph, storage)

    async def scenario() -> tuple[str, dict[str, Any]]:
        service, plane, close = await serve_command._azure_service(
            deployment, Policy.default(), b"h" * 32, 1, 64, "earliest", ()
        )
        assert plane is not None
        assert close is not None
        app = serve_command.build_app(service, plane)
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        ):
            await wait_for(
                lambda: (
                    len(plane.status().subscriptions) == 4  # Teams chats, channels, two mailboxes
                    and all(s.state == "active" for s in plane.status().subscriptions)
                ),
                what="the control plane to create the subscriptions",
            )
            # Graph now delivers, encrypted to the Key Vault certificate, with the secret state.
            [state] = [value for _, value, _ in vault.secrets["graph-client-state"]]
            traffic = list(
                simulate(
                    SimulationSettings(count=40, seed=4),
                    certificate=version.certificate,
                    certificate_id=f"{CERTIFICATE}-{version.version}",
                    client_state=state,
                )
            )
            namespace.publish("notifications", [e.body for e in traffic])
            if processes:
                await wait_for(
                    lambda: service.summary().events == len(traffic), what="the traffic processed"
                )
            else:
                await asyncio.sleep(0.5)
                assert service.summary().events == 0  # the Function App's job, not this app's
            page = (await client.get("/")).text
            status = (await client.get("/status.json")).json()
        await close()
        return page, status

    page, status = asyncio.run(scenario())
    assert "No control plane" not in page
    assert "/chats/getAllMessages" in page
    assert "/teams/getAllMessages" in page
    assert [s["state"] for s in status["subscriptions"]] == ["active"] * 4
    assert all(s["id"] and s["expiration"] for s in status["subscriptions"])
    assert status["summary"]["dead_letters_by_reason"] == {}
    verdicts = [r for b in namespace.bodies("findings") for r in records(b)]
    assert len(verdicts) == status["summary"]["verdicts"]
    assert (len(verdicts) > 0) is processes
    assert ("control plane only" in page) is not processes
    assert len(credentials) == 1  # one identity shared by the processor and the control plane
    assert (tmp_path / "state" / "lifecycle.sqlite").exists()
