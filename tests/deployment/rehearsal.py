"""A first deployment of one environment, rehearsed against fakes that take the stack's grants.

The fakes are built from the synthesized `cdk.tf.json` as `cdktf deploy` would leave Azure:
the vault, the storage account and its containers, the namespace with its hubs and consumer
groups, and Microsoft Graph, each refusing any call the stack does not grant. Then the
operators' and the platform's steps run in the order a platform team meets them, each as
the identity that performs it in Azure:

1. deploy: Terraform creates the encryption certificate in Key Vault (the deploying identity);
2. the web app starts before its secrets exist and waits;
3. `graphtap bootstrap` checks the deployment and creates the secrets (the deploying identity);
4. a second web app instance and the Function App start (the runtime identity); their control
   planes create the subscriptions in Graph; Graph's Change Tracking principal sends the
   validation events, the tenant's changes and lifecycle events into the notifications hub;
5. mid-stream, `graphtap keys rotate` issues a new certificate version (the deploying
   identity); the control planes hand its key to the processors and re-key the subscriptions.

What each host runs is the code App Service and the Functions host run (`open_azure_host`,
`build_app`, `open_handler`); only the Functions host itself is modelled (`FunctionsHost`).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from azure.eventhub.exceptions import ConnectionLostError
from azure.keyvault.certificates import CertificatePolicy
from azure.keyvault.certificates.aio import CertificateClient
from azure.storage.blob.aio import BlobServiceClient

from graphtap.deployment import Deployment
from graphtap.hosts.azure import AzureServiceOptions, environment_policy, open_azure_host
from graphtap.hosts.commands.serve import build_app
from graphtap.hosts.function import FunctionHandler, open_handler
from graphtap.processing.sources import eventhubs as eventhubs_source
from graphtap.simulation.tenant import SyntheticTenant
from graphtap.subscriptions.bootstrap import BootstrapResult, bootstrap
from graphtap.subscriptions.clock import SystemClock
from graphtap.subscriptions.control_plane import ControlPlane, ControlPlaneSettings
from graphtap.subscriptions.keyvault import KeyVault
from tests.fakes.authorization import CHANGE_TRACKING, DEPLOYER, RUNTIME, Authority, Estate
from tests.fakes.blobs import FakeBlobService
from tests.fakes.eventhub_mgmt import FakeEventHubManagement
from tests.fakes.eventhub_mgmt import FakeNamespace as ManagedNamespace
from tests.fakes.eventhubs import FakeNamespace, install
from tests.fakes.graph import FakeGraph
from tests.fakes.keyvault import FakeKeyVault

EVENTHUBS_SCOPE = "https://eventhubs.azure.net/.default"
NOTIFICATION_URL = re.compile(r"EventHub:https://([^/]+)/eventhubname/([^?]+)\?tenantId=.+")
#: Control-plane loops at test speed; the order of events is the production one.
FAST = ControlPlaneSettings(
    renewal_check=0.5, reconcile_interval=1.0, lifecycle_poll=0.1, rotation_check=0.2, jitter=0.1
)


class Refused(AssertionError):
    """The rehearsal could not complete: the calls the fakes denied say why."""


@dataclass
class Azure:
    """The environment's Azure and Graph, as the stack would create them, fakes all."""

    estate: Estate
    authority: Authority
    vault: FakeKeyVault
    blobs: FakeBlobService
    namespace: FakeNamespace
    management: FakeEventHubManagement
    graph: FakeGraph
    outputs: dict[str, Any]
    mocker: Any
    undelivered: list[str] = field(default_factory=list)

    @classmethod
    def deploy(cls, estate: Estate, mocker: Any) -> Azure:
        authority = Authority(estate)
        outputs = estate.outputs()
        (vault,) = estate.resources("azurerm_key_vault").values()
        (account,) = estate.resources("azurerm_storage_account").values()
        (namespace_config,) = estate.resources("azurerm_eventhub_namespace").values()
        keyvault = FakeKeyVault(
            vault_url=outputs["key_vault_uri"].rstrip("/"),
            authority=authority,
            resource_id=estate.id_of("azurerm_key_vault", name=vault["name"]),
        )
        account_id = estate.id_of("azurerm_storage_account", name=account["name"])
        blobs = FakeBlobService(
            account_url=outputs["checkpoint_account_url"],
            authority=authority,
            resource_id=account_id,
        )
        for container in estate.resources("azurerm_storage_container").values():
            blobs.create_container(container["name"])
        namespace = FakeNamespace(
            outputs["eventhub_namespace_host"],
            authority=authority,
            resource_id=estate.id_of("azurerm_eventhub_namespace", name=namespace_config["name"]),
        )
        hubs = {
            hub["name"]: hub["partition_count"]
            for hub in estate.resources("azurerm_eventhub").values()
        }
        for hub, partitions in hubs.items():
            namespace.create_hub(hub, partitions)
            namespace.consumer_groups[hub] = {"$Default"}
        for group in estate.resources("azurerm_eventhub_consumer_group").values():
            namespace.consumer_groups[group["eventhub_name"]].add(group["name"])
        install(mocker, namespace, account_ids={outputs["checkpoint_account_url"]: account_id})
        management = FakeEventHubManagement(
            {
                (estate.subscription_id, outputs["resource_group"], namespace_config["name"]): (
                    ManagedNamespace(
                        tier=namespace_config["sku"],
                        disable_local_auth=not namespace_config["local_authentication_enabled"],
                        public_network_access=(
                            "Enabled"
                            if namespace_config.get("public_network_access_enabled", True)
                            else "Disabled"
                        ),
                        hubs=dict(hubs),
                    )
                )
            },
            authority=authority,
        )
        azure = cls(
            estate,
            authority,
            keyvault,
            blobs,
            namespace,
            management,
            FakeGraph(SystemClock(), authority=authority, tenant_id=estate.tenant_id),
            outputs,
            mocker,
        )
        azure.graph.deliver = azure.deliver
        # Graph keeps encrypting to the old certificate for a while after a re-key.
        azure.graph.certificate_lag = 1.0
        return azure

    def deliver(self, url: str, body: bytes) -> bool:
        """Graph's Change Tracking principal sends to the hub the notificationUrl names."""
        match = NOTIFICATION_URL.fullmatch(url)
        if match is None or match.group(1) != self.namespace.host:
            self.undelivered.append(url)
            return False
        try:
            self.namespace.publish(
                match.group(2), [body], token=self.authority.issue(CHANGE_TRACKING, EVENTHUBS_SCOPE)
            )
        except ConnectionLostError:
            self.undelivered.append(url)
            return False
        return True

    def credential(self, principal: str) -> Any:
        return self.authority.credential(principal)

    def transports(self) -> dict[str, Any]:
        return {"transport": self.vault.transport()}


async def create_certificate(azure: Azure) -> None:
    """What `azurerm_key_vault_certificate` does at deploy, as the deploying identity."""
    (certificate,) = azure.estate.resources("azurerm_key_vault_certificate").values()
    client = CertificateClient(
        azure.outputs["key_vault_uri"], azure.credential(DEPLOYER), **azure.transports()
    )
    async with client:
        poller = await client.create_certificate(
            certificate["name"], CertificatePolicy.get_default()
        )
        assert poller is not None


class FunctionsHost:
    """What the Azure Functions host does around `function_app.py`, as the runtime identity:
    it reads the deployment package, keeps its host lock and keys in AzureWebJobsStorage,
    and runs the Event Hubs trigger in the app's consumer group with its checkpoints in the
    `azure-webjobs-eventhub` container, invoking the handler once per batch."""

    def __init__(self, azure: Azure, settings: dict[str, str], handler: FunctionHandler) -> None:
        self._azure = azure
        self._settings = settings
        self._handler = handler
        self.invocations = 0

    async def start(self, package: bytes) -> None:
        account = (
            f"https://{self._settings['AzureWebJobsStorage__accountName']}.blob.core.windows.net"
        )
        service = BlobServiceClient(
            account, self._azure.credential(RUNTIME), transport=self._azure.blobs.transport()
        )
        async with service:
            deployment = service.get_container_client("function-package")
            await deployment.upload_blob("released-package.zip", package, overwrite=True)
            assert (
                await (await deployment.download_blob("released-package.zip")).readall() == package
            )
            hosts = service.get_container_client("azure-webjobs-hosts")
            await hosts.upload_blob("locks/host", b"", overwrite=True)
            secrets = service.get_container_client("azure-webjobs-secrets")
            await secrets.upload_blob("host.json", b'{"keys": []}', overwrite=True)

    async def run(self, stop: asyncio.Event) -> None:
        settings = self._settings
        store = eventhubs_source.BlobCheckpointStore(
            f"https://{settings['AzureWebJobsStorage__accountName']}.blob.core.windows.net",
            "azure-webjobs-eventhub",
            credential=self._azure.credential(RUNTIME),
        )
        client = eventhubs_source.EventHubConsumerClient(
            settings["NotificationsHub__fullyQualifiedNamespace"],
            settings["GRAPHTAP_NOTIFICATIONS_HUB"],
            settings["GRAPHTAP_CONSUMER_GROUP"],
            self._azure.credential(RUNTIME),
            checkpoint_store=store,
            load_balancing_interval=0.2,
        )

        async def on_batch(context: Any, events: list[Any]) -> None:
            if not events:
                return
            self.invocations += 1
            await self._handler.handle([TriggerEvent.of(context.partition_id, e) for e in events])
            await context.update_checkpoint(events[-1])

        async with client:
            receiving = asyncio.create_task(
                client.receive_batch(
                    on_batch, max_batch_size=64, max_wait_time=0.1, starting_position="-1"
                )
            )
            await stop.wait()
            receiving.cancel()
            await asyncio.gather(receiving, return_exceptions=True)


@dataclass(frozen=True)
class TriggerEvent:
    """`azure.functions.EventHubEvent` as the trigger hands it to the function."""

    body: bytes
    sequence_number: int
    metadata: dict[str, Any]

    @classmethod
    def of(cls, partition: str, event: Any) -> TriggerEvent:
        return cls(
            b"".join(event.body),
            event.sequence_number,
            {"PartitionContext": {"PartitionId": partition}},
        )

    def get_body(self) -> bytes:
        return self.body


@dataclass
class WebApp:
    """One App Service instance running `graphtap serve`."""

    control_plane: ControlPlane
    client: httpx.AsyncClient
    service: Any
    stop: Callable[[], Any]


@dataclass(frozen=True)
class Outcome:
    bootstrap: BootstrapResult
    changes: int  # notifications Graph sent for the tenant's changes
    anonymous: list[int]  # status of /, /status.json, /metrics, /healthz without sign-in
    findings: list[dict[str, Any]]  # every event on the findings hub
    live_subscriptions: dict[str, float]  # resource -> expiry, in Graph at the end
    declared: set[str]
    dead_letters: dict[str, int]  # by reason, across the web apps


async def rehearse(
    estate: Estate, mocker: Any, state: Path, *, seed: int = 11, traffic: int = 40
) -> tuple[Azure, Outcome]:
    """Deploy, bootstrap, serve and rotate as the module says; `Refused` names what was
    denied when any step fails."""
    azure = Azure.deploy(estate, mocker)
    try:
        return await _rehearse(azure, state, seed=seed, traffic=traffic)
    except Refused:
        raise
    except Exception as error:
        raise Refused(f"{type(error).__name__}: {error}; denied: {_denied(azure)}") from error


async def _rehearse(azure: Azure, state: Path, *, seed: int, traffic: int) -> tuple[Azure, Outcome]:
    web_settings = _without_telemetry(azure.estate.app_settings("azurerm_linux_web_app"))
    # What App Service puts in the web app's environment (the gate reads its roles there).
    azure.mocker.patch.dict(
        os.environ, {k: v for k, v in web_settings.items() if k.endswith("_ROLE")}
    )
    await create_certificate(azure)
    deployment = Deployment.from_outputs(azure.outputs, source="stack outputs")
    function_kinds = azure.estate.resources("azurerm_function_app_flex_consumption")
    options: dict[str, Any] = {
        "keyvault_options": azure.transports(),
        "blob_options": {"transport": azure.blobs.transport()},
        "secret_poll_seconds": 0.05,
        "certificate_check_seconds": 0.2,
        "max_batch_size": 64,
    }

    async def start_web_app(name: str) -> WebApp:
        app_deployment = Deployment.from_app_settings(web_settings)
        service, plane = await open_azure_host(
            app_deployment,
            azure.credential(RUNTIME),
            AzureServiceOptions(
                policy=environment_policy(app_deployment.environment),
                state_dir=state / name,
                **options,
            ),
            process_notifications=web_settings["GRAPHTAP_PROCESS_NOTIFICATIONS"] == "true",
            control_plane_settings=FAST,
            graph_transport=azure.graph,
        )
        app = build_app(service, plane)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app")

        async def stop() -> None:
            await client.aclose()
            await lifespan.__aexit__(None, None, None)

        return WebApp(plane, client, service, stop)

    stops: list[Callable[[], Any]] = []
    try:
        # 2. The web app is up before anyone ran bootstrap: it waits for its secrets.
        first = asyncio.create_task(start_web_app("web-1"))
        await _until(
            lambda: "graph-client-state" in azure.vault.secret_reads or first.done(),
            "web-1 to ask for its secrets",
            azure,
        )
        if first.done():
            await first  # it failed to start: its error (and the denial) surfaces here
        # 3. The operator runs `make bootstrap` as the deploying identity.
        result = await bootstrap(
            deployment,
            azure.credential(DEPLOYER),
            keyvault_options=azure.transports(),
            management_options={"transport": azure.management.transport()},
        )
        if not result.ok:
            raise Refused(f"bootstrap failed: {result}; denied: {_denied(azure)}")
        webs = [await asyncio.wait_for(first, 10)]
        stops.append(webs[0].stop)
        webs.append(await start_web_app("web-2"))
        stops.append(webs[1].stop)
        functions: FunctionsHost | None = None
        if function_kinds:
            function_settings = _without_telemetry(
                azure.estate.app_settings("azurerm_function_app_flex_consumption")
            )
            handler = await open_handler(
                function_settings,
                credential=azure.credential(RUNTIME),
                options=AzureServiceOptions(
                    policy=environment_policy(deployment.environment),
                    state_dir=state / "function",
                    **options,
                ),
            )
            functions = FunctionsHost(azure, function_settings, handler)
            await functions.start(b"PK\x05\x06" + bytes(18))
            stop_functions = asyncio.Event()
            running = asyncio.create_task(functions.run(stop_functions))

            async def stop_host() -> None:
                stop_functions.set()
                await running

            stops.append(stop_host)

        # 4. The control planes create the subscriptions as the runtime identity.
        declared = {s.resource for s in webs[0].control_plane.desired.subscriptions}
        await _until(
            lambda: {s.resource for s in azure.graph.active()} >= declared,
            "the control planes to create every declared subscription",
            azure,
        )
        tenant = SyntheticTenant.create(
            random.Random(seed), start=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20), users=8
        )
        azure.graph.users = [u.id for u in tenant.users]
        azure.graph.teams = sorted({c.team_id for c in tenant.conversations if c.team_id})
        changes = _traffic(azure, tenant, traffic)
        # 5. Mid-stream, the operator rotates the certificate (`graphtap keys rotate`).
        operator = KeyVault(
            azure.outputs["key_vault_uri"], azure.credential(DEPLOYER), **azure.transports()
        )
        try:
            rotated = await operator.rotate(deployment.certificate_name)
        finally:
            await operator.close()
        await _until(
            lambda: all(s.certificate_id == rotated.certificate_id for s in azure.graph.active()),
            "every subscription to move to the new certificate",
            azure,
        )
        await asyncio.sleep(azure.graph.certificate_lag)
        changes += _traffic(azure, tenant, traffic)
        changes += _traffic(azure, tenant, traffic // 2)
        # A damaged event: its signature no longer matches its content. It becomes a dead
        # letter in the stack's container; the change itself comes back through the resync.
        damaged = azure.graph.publish(tenant.post(sensitive=True), damage=_break_signature)
        changes += damaged
        # Lifecycle events: Graph asks for reauthorization and reports missed notifications.
        for subscription in azure.graph.active():
            azure.graph.reauthorization_required(subscription.id)
            azure.graph.missed(subscription.id)
        await _until(
            lambda: len(set(_verdict_keys(azure))) >= changes,
            "every change to reach the findings hub",
            azure,
            timeout=60,
        )
        await _until(
            lambda: len(azure.blobs.containers[deployment.dead_letter_container or ""]) >= damaged,
            "the damaged event's dead letter",
            azure,
        )
        await _until(
            lambda: sum(w.control_plane.status().resyncs for w in webs) >= 1,
            "the missed notifications to be resynced",
            azure,
        )
        # The status page as App Service serves it: Easy Auth in front (the principal header
        # for a reader holding the app role), the app checking the role itself.
        anonymous = [
            (await w.client.get(path)).status_code
            for w in webs
            for path in ("/", "/status.json", "/metrics", "/healthz")
        ]
        reader = {"X-MS-CLIENT-PRINCIPAL": _principal(web_settings["GRAPHTAP_STATUS_ROLE"])}
        statuses = [(await w.client.get("/status.json", headers=reader)).json() for w in webs]
        dead_letters: dict[str, int] = {}
        for status in statuses:
            for reason, count in status["summary"]["dead_letters_by_reason"].items():
                dead_letters[reason] = dead_letters.get(reason, 0) + count
    finally:
        for stop in reversed(stops):
            await stop()
    findings = [json.loads(b) for b in azure.namespace.bodies(deployment.findings_hub)]
    return azure, Outcome(
        result,
        changes,
        anonymous,
        findings,
        {s.resource: s.expiration for s in azure.graph.active()},
        declared,
        dead_letters,
    )


def _principal(role: str) -> str:
    """`X-MS-CLIENT-PRINCIPAL` as Easy Auth sends it for a signed-in holder of `role`."""
    claims = {"auth_typ": "aad", "claims": [{"typ": "roles", "val": role}], "role_typ": "roles"}
    return base64.b64encode(json.dumps(claims).encode()).decode()


def _break_signature(item: dict[str, Any]) -> None:
    item["encryptedContent"]["dataSignature"] = base64.b64encode(bytes(32)).decode()


def _without_telemetry(settings: dict[str, str]) -> dict[str, str]:
    """App settings less Application Insights: its exporter would reach Azure Monitor."""
    return {k: v for k, v in settings.items() if k != "APPLICATIONINSIGHTS_CONNECTION_STRING"}


def _traffic(azure: Azure, tenant: SyntheticTenant, count: int) -> int:
    """The tenant posts, edits and deletes; Graph notifies each live subscription once."""
    sent = 0
    rng = tenant.rng
    for _ in range(count):
        roll = rng.random()
        if roll < 0.15 and (edited := tenant.edit(sensitive=rng.random() < 0.3)) is not None:
            sent += azure.graph.publish(edited, "updated")
        elif roll < 0.2 and (deleted := tenant.delete()) is not None:
            sent += azure.graph.publish(deleted, "deleted")
        else:
            sent += azure.graph.publish(tenant.post(sensitive=rng.random() < 0.3))
    return sent


def _verdict_keys(azure: Azure) -> list[str]:
    findings = azure.outputs["findings_hub"]
    return [json.loads(body)["verdict_key"] for body in azure.namespace.bodies(findings)]


def _denied(azure: Azure) -> str:
    return "; ".join(str(d) for d in azure.authority.denied) or "none"


async def _until(
    condition: Callable[[], bool], what: str, azure: Azure | None = None, *, timeout: float = 20
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if azure is not None and azure.authority.denied:
            raise Refused(f"{what}: refused: {_denied(azure)}")
        if time.monotonic() > deadline:
            raise Refused(
                f"timed out waiting for {what}; denied: {_denied(azure) if azure else '?'}"
            )
        await asyncio.sleep(0.05)
