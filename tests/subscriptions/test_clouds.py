"""The runtime follows the deployment's cloud: Resource Manager, Graph, Entra ID sign-in."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import httpx
import pytest

from graphtap.clouds import CLOUDS, PUBLIC, US_GOVERNMENT, Cloud
from graphtap.deployment import Deployment, DeploymentError
from graphtap.hosts.commands import azure as azure_commands
from graphtap.subscriptions.control_plane import ControlPlane
from graphtap.subscriptions.graph import GraphSubscriptions, build_client
from graphtap.subscriptions.preflight import check_deployment
from tests.fakes.eventhub_mgmt import FakeEventHubManagement, FakeNamespace
from tests.subscriptions.conftest import Bench, FakeCredential, deployment, desired_state


class ScopeRecorder(FakeCredential):
    """A credential that remembers every scope a token was asked for."""

    def __init__(self) -> None:
        self.scopes: list[str] = []

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        self.scopes.extend(scopes)
        return await super().get_token(*scopes, **kwargs)

    async def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        self.scopes.extend(scopes)
        return await super().get_token_info(*scopes, options=options)


def in_cloud(cloud: Cloud) -> Deployment:
    return dataclasses.replace(deployment(), cloud=cloud.name, graph_endpoint=cloud.graph_endpoint)


@pytest.mark.parametrize("cloud", list(CLOUDS.values()), ids=list(CLOUDS))
def test_doctor_reads_the_namespace_from_the_clouds_resource_manager(cloud: Cloud) -> None:
    arm = FakeEventHubManagement(
        {("sub", "rg", "graphtap-dev"): FakeNamespace(hubs={"notifications": 4})}
    )
    transport = arm.transport()
    credential = ScopeRecorder()
    checks = asyncio.run(check_deployment(in_cloud(cloud), credential, transport=transport))
    assert all(check.ok for check in checks), checks
    urls = [url for _, url in transport.requests]
    assert len(urls) == 2
    assert all(url.startswith(f"{cloud.resource_manager}/subscriptions/sub/") for url in urls)
    assert set(credential.scopes) == {cloud.resource_manager_scope}


class GraphHost(httpx.AsyncBaseTransport):
    """Graph's `/subscriptions`, empty, answering on any host: it records who was asked what."""

    def __init__(self, next_link: str | None = None) -> None:
        self.next_link = next_link
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        body: dict[str, Any] = {"value": []}
        if self.next_link and len(self.requests) == 1:
            body["@odata.nextLink"] = self.next_link
        return httpx.Response(200, json=body)


@pytest.mark.parametrize(
    "endpoint",
    [service.endpoint for cloud in CLOUDS.values() for service in cloud.graph],
)
def test_the_graph_client_talks_to_its_endpoint_with_a_token_for_it(endpoint: str) -> None:
    graph, credential = GraphHost(), ScopeRecorder()
    client = build_client(credential, endpoint=endpoint, transport=graph)
    assert asyncio.run(GraphSubscriptions(client).list_all()) == []
    [request] = graph.requests
    assert str(request.url) == f"{endpoint}/v1.0/subscriptions"
    assert request.headers["Authorization"] == "Bearer token"
    assert credential.scopes == [f"{endpoint}/.default"]


def test_no_token_goes_to_another_clouds_graph() -> None:
    # a next page on the public Graph, handed to a US Government client
    graph = GraphHost(next_link=f"{PUBLIC.graph_endpoint}/v1.0/subscriptions?$skiptoken=2")
    client = build_client(ScopeRecorder(), endpoint=US_GOVERNMENT.graph_endpoint, transport=graph)
    asyncio.run(GraphSubscriptions(client).list_all())
    first, second = graph.requests
    assert first.url.host == "graph.microsoft.us"
    assert first.headers["Authorization"] == "Bearer token"
    assert second.url.host == "graph.microsoft.com"
    assert "Authorization" not in second.headers


def test_the_control_plane_calls_the_deployments_graph(bench: Bench) -> None:
    graph = GraphHost()
    plane = ControlPlane.from_deployment(
        in_cloud(US_GOVERNMENT),
        FakeCredential(),
        desired=desired_state(),
        clock=bench.clock,
        graph_transport=graph,
        keyvault_options={"transport": bench.vault.transport()},
    )
    asyncio.run(plane.reconcile())
    assert graph.requests
    assert {request.url.host for request in graph.requests} == {"graph.microsoft.us"}


OUTPUTS = {
    "environment": "gov",
    "tenant_id": "t",
    "tenant_domain": "contoso.onmicrosoft.us",
    "eventhub_namespace_host": "evhns-gtap-gov-ugva.servicebus.usgovcloudapi.net",
    "notifications_hub": "notifications",
    "findings_hub": "findings",
    "consumer_group": "graphtap-processor",
    "notification_url": "EventHub:https://evhns-gtap-gov-ugva.servicebus.usgovcloudapi.net/"
    "eventhubname/notifications?tenantId=contoso.onmicrosoft.us",
    "key_vault_uri": "https://kv-gtap-gov-ugva.vault.usgovcloudapi.net/",
    "certificate_name": "graphtap-notifications",
    "runtime_client_id": "c",
    "checkpoint_account_url": "https://stgtapgovugva.blob.core.usgovcloudapi.net",
    "checkpoint_container": "checkpoints",
}


def test_the_deployment_names_its_cloud_and_defaults_graph_from_it() -> None:
    loaded = Deployment.from_outputs({**OUTPUTS, "cloud": "usgov"}, source="outputs")
    assert loaded.profile is US_GOVERNMENT
    assert loaded.graph_endpoint == "https://graph.microsoft.us"
    # an explicit endpoint (the DoD Graph) is kept
    dod = Deployment.from_outputs(
        {**OUTPUTS, "cloud": "usgov", "graph_endpoint": "https://dod-graph.microsoft.us"},
        source="outputs",
    )
    assert dod.graph_endpoint == "https://dod-graph.microsoft.us"


def test_outputs_from_before_the_cloud_fact_are_public() -> None:
    loaded = Deployment.from_outputs(OUTPUTS, source="outputs")
    assert loaded.cloud == "public"
    assert loaded.graph_endpoint == PUBLIC.graph_endpoint


def test_an_unknown_cloud_is_a_deployment_error() -> None:
    with pytest.raises(DeploymentError, match="outputs: unknown cloud 'germany'"):
        Deployment.from_outputs({**OUTPUTS, "cloud": "germany"}, source="outputs")


GOV_SETTINGS = {
    "GRAPHTAP_ENV": "gov",
    "GRAPHTAP_CLOUD": "usgov",
    "GRAPHTAP_TENANT_ID": "t",
    "GRAPHTAP_TENANT_DOMAIN": "contoso.onmicrosoft.us",
    "GRAPHTAP_EVENTHUB_NAMESPACE": OUTPUTS["eventhub_namespace_host"],
    "GRAPHTAP_NOTIFICATIONS_HUB": "notifications",
    "GRAPHTAP_FINDINGS_HUB": "findings",
    "GRAPHTAP_CONSUMER_GROUP": "graphtap-processor",
    "GRAPHTAP_KEY_VAULT_URI": OUTPUTS["key_vault_uri"],
    "GRAPHTAP_CERTIFICATE_NAME": "graphtap-notifications",
    "AZURE_CLIENT_ID": "c",
    "GRAPHTAP_CHECKPOINT_ACCOUNT_URL": OUTPUTS["checkpoint_account_url"],
    "GRAPHTAP_CHECKPOINT_CONTAINER": "checkpoints",
}


def test_the_app_settings_carry_the_cloud() -> None:
    settings = dict(GOV_SETTINGS)
    loaded = Deployment.from_app_settings(settings)
    assert loaded.profile is US_GOVERNMENT
    assert loaded.graph_endpoint == "https://graph.microsoft.us"
    assert loaded.notification_url == OUTPUTS["notification_url"]


class CredentialRecorder:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


@pytest.mark.parametrize("cloud", list(CLOUDS.values()), ids=list(CLOUDS))
def test_operators_sign_in_to_the_deployments_cloud(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("azure.identity.aio.DefaultAzureCredential", CredentialRecorder)
    made = azure_commands.credential(None, in_cloud(cloud))
    assert made.kwargs == {"authority": cloud.authority_host}
    # --authority / AZURE_AUTHORITY_HOST still wins
    made = azure_commands.credential("login.example", in_cloud(cloud))
    assert made.kwargs == {"authority": "login.example"}


def test_doctor_takes_the_cloud_from_the_outputs(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".outputs").mkdir()
    (tmp_path / ".outputs" / "gov.json").write_text(json.dumps({**OUTPUTS, "cloud": "usgov"}))
    loaded = azure_commands.load_deployment("gov", None)
    assert loaded.profile is US_GOVERNMENT
    overridden = azure_commands.load_deployment("gov", "https://dod-graph.microsoft.us")
    assert overridden.graph_endpoint == "https://dod-graph.microsoft.us"


class _Stop(Exception):
    pass


def test_the_function_app_signs_in_to_the_deployments_cloud(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from graphtap.hosts.function import open_handler

    made: list[dict[str, Any]] = []

    def credential(**kwargs: Any) -> Any:
        made.append(kwargs)
        raise _Stop  # the rest of the start-up is the Function App tests' business

    monkeypatch.setattr("azure.identity.aio.DefaultAzureCredential", credential)
    settings = dict(GOV_SETTINGS)
    with pytest.raises(_Stop):
        asyncio.run(open_handler(settings))
    assert made == [{"managed_identity_client_id": "c", "authority": "login.microsoftonline.us"}]
