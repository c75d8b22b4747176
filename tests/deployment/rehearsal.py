"""A first deployment of one environment, rehearsed against fakes that take the stack's grants.

The fakes are built from the synthesized `cdk.tf.json` as `cdktf deploy` would leave Azure:
the vault, the storage account and its containers, the namespace with its hubs and consumer
groups, and Microsoft Graph, each refusing any call the stack does not grant. The storage
account is Azurite behind the same authorization (`tests.fakes.azurite`); where it differs
from Azure: it takes no Entra ID token (the transport checks it), it has one account (emptied
at each deploy), and leases run on its wall clock. Then the
operators' and the platform's steps run in the order a platform team meets them, each as
the identity that performs it in Azure:

1. deploy: Terraform creates the encryption certificate in Key Vault (the deploying identity);
2. the web app starts before its secrets exist and waits;
3. `graphtap bootstrap` checks the deployment and creates the secrets (the deploying identity);
4. a second web app instance and the Function App start (the runtime identity); their control
   planes create the subscriptions in Graph; Graph's Change Tracking principal sends the
   validation events, the tenant's changes and lifecycle events into the notifications hub;
5. mid-stream, `graphtap keys rotate` issues a new certificate version (the deploying
   identity); the control planes hand its key to the processors and re-key the subscriptions;
6. a message over 1 MB: Graph's Change Tracking principal reads the payload account's
   connection string from the secret bootstrap wrote, writes the content into the payload
   account with the key, and the processors read it back as the runtime identity.

Each web app instance is `graphtap serve` in a process of its own, as App Service runs it
(`tests.deployment.serve_process`), calling the fakes this process serves it
(`tests.fakes.remote`) as the runtime identity, and read over loopback HTTP as App Service's
front end reads it. The Function App runs its handler (`open_handler`) in this process; only
the Functions host around it is modelled (`FunctionsHost`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import inspect
import json
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from azure.core.rest import HttpRequest
from azure.eventhub.exceptions import ConnectionLostError
from azure.keyvault.certificates import CertificatePolicy
from azure.keyvault.certificates.aio import CertificateClient
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from graphtap.deployment import Deployment
from graphtap.hosts.azure import AzureServiceOptions, deployed_policy
from graphtap.hosts.function import FunctionHandler, open_handler
from graphtap.processing.fetch.payloads import PAYLOAD_CONTAINER
from graphtap.processing.sinks.eventhubs import records
from graphtap.processing.sinks.loganalytics import VERDICT_TABLE
from graphtap.processing.sources import eventhubs as eventhubs_source
from graphtap.simulation.emitter import oversized_html
from graphtap.simulation.tenant import SyntheticTenant
from graphtap.subscriptions.bootstrap import BootstrapResult, bootstrap
from graphtap.subscriptions.clock import SystemClock
from graphtap.subscriptions.desired import load_desired
from graphtap.subscriptions.keyvault import KeyVault
from tests.deployment.instances import ServeInstance
from tests.deployment.serve_process import POLLS
from tests.fakes.authorization import CHANGE_TRACKING, DEPLOYER, RUNTIME, Authority, Estate
from tests.fakes.azure_transport import FakeAsyncTransport
from tests.fakes.azurite import Azurite, AzuriteStorage
from tests.fakes.eventhub_mgmt import FakeEventHubManagement
from tests.fakes.eventhub_mgmt import FakeNamespace as ManagedNamespace
from tests.fakes.eventhubs import FakeNamespace, Installed, checkpoint_store, install
from tests.fakes.graph import FakeGraph
from tests.fakes.keyvault import FakeKeyVault
from tests.fakes.logs_ingestion import FakeLogsIngestion
from tests.fakes.remote import Exposed, FakesServer
from tests.fakes.storage_mgmt import FakeAccount, FakeStorageManagement

EVENTHUBS_SCOPE = "https://eventhubs.azure.net/.default"
NOTIFICATION_URL = re.compile(r"EventHub:https://([^/]+)/eventhubname/([^?]+)\?tenantId=.+")


class Refused(AssertionError):
    """The rehearsal could not complete: the calls the fakes denied say why."""


@dataclass
class Azure:
    """The environment's Azure and Graph, as the stack would create them, fakes all."""

    estate: Estate
    authority: Authority
    vault: FakeKeyVault
    #: The storage account, served by Azurite behind the stack's authorization.
    blobs: AzuriteStorage
    namespace: FakeNamespace
    management: FakeEventHubManagement
    graph: FakeGraph
    outputs: dict[str, Any]
    mocker: Any
    #: The Event Hubs clients `install` patched in, bound to `namespace`.
    eventhubs: Installed | None = None
    undelivered: list[str] = field(default_factory=list)
    #: The Logs Ingestion API with the stack's rule and verdict table (none without them).
    logs: FakeLogsIngestion = field(default_factory=FakeLogsIngestion)
    #: The payload account Graph writes rich payloads over 1 MB into (Azurite, allowing the
    #: account key), and Resource Manager's view of its keys; None without a payload store.
    payloads: AzuriteStorage | None = None
    #: The vault of the payload account's connection string (`blobStoreUrl`), Graph's to read.
    payload_vault: FakeKeyVault | None = None
    storage_management: FakeStorageManagement = field(default_factory=FakeStorageManagement)

    @classmethod
    def deploy(cls, estate: Estate, mocker: Any, azurite: Azurite) -> Azure:
        authority = Authority(estate)
        outputs = estate.outputs()
        payload_vault_uri = outputs.get("payload_vault_uri")
        (vault,) = [
            v
            for v in estate.resources("azurerm_key_vault").values()
            if not payload_vault_uri or v["name"] not in payload_vault_uri
        ]
        payload_account = outputs.get("payload_account")
        (account,) = [
            a
            for a in estate.resources("azurerm_storage_account").values()
            if a["name"] != payload_account
        ]
        (namespace_config,) = estate.resources("azurerm_eventhub_namespace").values()
        keyvault = FakeKeyVault(
            vault_url=outputs["key_vault_uri"].rstrip("/"),
            authority=authority,
            resource_id=estate.id_of("azurerm_key_vault", name=vault["name"]),
        )
        account_id = estate.id_of("azurerm_storage_account", name=account["name"])
        blobs = AzuriteStorage(
            azurite, account=account["name"], authority=authority, resource_id=account_id
        )
        blobs.reset()  # the session's one emulator account, emptied for this deployment
        for container in estate.resources("azurerm_storage_container").values():
            blobs.create_container(container["name"])
        for queue in estate.resources("azurerm_storage_queue").values():
            blobs.create_queue(queue["name"])
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
        eventhubs = install(mocker, namespace, checkpoint_store=checkpoint_store(blobs))
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
        azure.eventhubs = eventhubs
        azure.logs = FakeLogsIngestion.from_estate(estate, authority)
        azure.storage_management = FakeStorageManagement(authority=authority)
        if payload_vault_uri:
            (payload_vault,) = [
                v
                for v in estate.resources("azurerm_key_vault").values()
                if v["name"] != vault["name"]
            ]
            azure.payload_vault = FakeKeyVault(
                vault_url=payload_vault_uri.rstrip("/"),
                authority=authority,
                resource_id=estate.id_of("azurerm_key_vault", name=payload_vault["name"]),
            )
        if payload_account:  # its container is in the emulator's one account, created above
            keys = FakeAccount()
            where = (outputs["subscription_id"], outputs["resource_group"], payload_account)
            azure.storage_management.accounts[where] = keys
            azure.payloads = AzuriteStorage(
                azurite,
                account=payload_account,
                authority=authority,
                resource_id=estate.id_of("azurerm_storage_account", name=payload_account),
                shared_key=keys.keys["key1"],
            )
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
        """Key Vault clients' transport: each request to the vault its URL names."""
        return {
            "transport": FakeAsyncTransport(
                lambda request: self.vault_at(request.url).handle(request)
            )
        }

    def vault_at(self, url: str) -> FakeKeyVault:
        host = urlsplit(url).netloc
        for vault in (self.vault, self.payload_vault):
            if vault is not None and urlsplit(vault.vault_url).netloc == host:
                return vault
        raise AssertionError(f"no vault of the stack at {host}")


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

        async with store, client:  # the store closes its own transport
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


@dataclass(frozen=True)
class Outcome:
    bootstrap: BootstrapResult
    changes: int  # notifications Graph sent for the tenant's changes
    anonymous: list[int]  # status of /, /status.json, /metrics, /healthz without sign-in
    findings: list[dict[str, Any]]  # every event on the findings hub
    live_subscriptions: dict[str, float]  # resource -> expiry, in Graph at the end
    declared: set[str]
    dead_letters: dict[str, int]  # by reason, across the web apps
    refused: str  # the subscription whose reauthorization Graph refused
    poisoned: list[dict[str, Any]]  # lifecycle events set aside, as the status page lists them
    #: Messages over 1 MB, whose content Graph wrote into the payload account.
    large: tuple[str, ...] = ()


async def rehearse(
    estate: Estate,
    mocker: Any,
    state: Path,
    azurite: Azurite,
    *,
    seed: int = 11,
    traffic: int = 40,
) -> tuple[Azure, Outcome]:
    """Deploy, bootstrap, serve and rotate as the module says; `Refused` names what was
    denied when any step fails, and quotes the end of each web app instance's log."""
    azure = Azure.deploy(estate, mocker, azurite)
    webs: list[ServeInstance] = []
    try:
        return await _rehearse(azure, state, webs, seed=seed, traffic=traffic)
    except Refused as refused:
        raise Refused(f"{refused}{_tails(webs)}") from refused
    except Exception as error:
        raise Refused(
            f"{type(error).__name__}: {error}; denied: {_denied(azure)}{_tails(webs)}"
        ) from error


async def _rehearse(
    azure: Azure, state: Path, webs: list[ServeInstance], *, seed: int, traffic: int
) -> tuple[Azure, Outcome]:
    web_settings = _without_telemetry(azure.estate.app_settings("azurerm_linux_web_app"))
    await create_certificate(azure)
    deployment = Deployment.from_outputs(azure.outputs, source="stack outputs")
    function_kinds = azure.estate.resources("azurerm_function_app_flex_consumption")
    # One transport for every storage client of this process and of the web app's instances.
    storage = azure.blobs.transport(shared=True)
    options: dict[str, Any] = {
        "keyvault_options": azure.transports(),
        "blob_options": {"transport": storage},
        "ingestion_options": {"transport": azure.logs.transport()},
        **POLLS,  # the web app's instances poll as often (`serve_process`)
        "max_batch_size": 64,
    }
    payloads = azure.payloads.transport(shared=True) if azure.payloads else None
    if payloads is not None:
        options["payload_options"] = {"transport": payloads}

    # The web app's instances are processes of their own, lent every fake transport the hosts
    # here use, Microsoft Graph, the Event Hubs clients and the runtime identity's tokens.
    lent = {
        name: value["transport"]
        for name, value in options.items()
        if isinstance(value, dict) and "transport" in value
    }
    fakes = FakesServer(
        Exposed(azure.authority, RUNTIME, {**lent, "graph_transport": azure.graph}, azure.eventhubs)
    )

    def start_web_app(name: str) -> ServeInstance:
        webs.append(ServeInstance.start(name, web_settings, fakes.environment(), state))
        return webs[-1]

    async def stop_web_apps() -> None:
        await asyncio.gather(*(web.stop() for web in webs))

    stops: list[Callable[[], Awaitable[None]]] = [storage.aclose, fakes.close, stop_web_apps]
    if payloads is not None:
        stops.insert(0, payloads.aclose)
    await fakes.start()
    try:
        # 2. The web app is up before anyone ran bootstrap: it waits for its secrets.
        first = start_web_app("web-1")
        await _until(
            lambda: "graph-client-state" in azure.vault.secret_reads or first.exited,
            "web-1 to ask for its secrets",
            azure,
        )
        if first.exited:
            raise first.failure("exited before it asked for its secrets")
        # 3. The operator runs `make bootstrap` as the deploying identity.
        result = await bootstrap(
            deployment,
            azure.credential(DEPLOYER),
            keyvault_options=azure.transports(),
            management_options={"transport": azure.management.transport()},
            storage_management_options={"transport": azure.storage_management.transport()},
        )
        if not result.ok:
            raise Refused(f"bootstrap failed: {result}; denied: {_denied(azure)}")
        await first.ready()
        await start_web_app("web-2").ready()
        functions: FunctionsHost | None = None
        if function_kinds:
            function_settings = _without_telemetry(
                azure.estate.app_settings("azurerm_function_app_flex_consumption")
            )
            handler = await open_handler(
                function_settings,
                credential=azure.credential(RUNTIME),
                options=AzureServiceOptions(
                    policy=deployed_policy(function_settings, deployment.environment),
                    state_dir=state / "function",
                    graph_transport=azure.graph,
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
        declared = {s.resource for s in load_desired(deployment.environment).subscriptions}
        await _until(
            lambda: {s.resource for s in azure.graph.active()} >= declared,
            "the control planes to create every declared subscription",
            azure,
        )
        # The status page as App Service serves it: Easy Auth in front (the principal header
        # for a reader holding the app role), the app checking the role itself.
        reader = {"X-MS-CLIENT-PRINCIPAL": _principal(web_settings["GRAPHTAP_STATUS_ROLE"])}

        async def statuses_now() -> list[dict[str, Any]]:
            return [(await w.client.get("/status.json", headers=reader)).json() for w in webs]

        async def tracking() -> bool:
            """Each instance's control plane is past its first reconcile (so its rotation
            check runs): it tracks every declared subscription."""
            return all(
                {s["resource"] for s in status["subscriptions"]} >= declared
                for status in await statuses_now()
            )

        await _until(tracking, "each control plane to track every declared subscription", azure)
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
        changes += _mail(azure, tenant, max(2, traffic // 10))
        # A damaged event: its signature no longer matches its content. It becomes a dead
        # letter in the stack's container; the change itself comes back through the resync.
        damaged = azure.graph.publish(tenant.post(sensitive=True), damage=_break_signature)
        changes += damaged
        # Lifecycle events: Graph asks for reauthorization and reports missed notifications.
        # The app lost access to one subscription: its reauthorization keeps failing, and
        # the event is set aside in the poison queue for an operator.
        refused = azure.graph.active()[0].id
        azure.graph.lost_access.add(refused)
        for subscription in azure.graph.active():
            azure.graph.reauthorization_required(subscription.id)
            azure.graph.missed(subscription.id)
        await _until(
            lambda: len(set(_verdict_keys(azure))) >= changes,
            "every change to reach the findings hub",
            azure,
            timeout=60,
        )
        if azure.logs.rules:
            await _until(
                lambda: len({r["VerdictKey"] for r in azure.logs.rows(VERDICT_TABLE)}) >= changes,
                "every change to reach the Log Analytics table",
                azure,
            )
        await _until(
            lambda: len(azure.blobs.blobs(deployment.dead_letter_container or "")) >= damaged,
            "the damaged event's dead letter",
            azure,
        )

        async def resynced() -> bool:
            jobs = [job for status in await statuses_now() for job in status["resyncs"] or ()]
            return any(job["state"] == "finished" for job in jobs)

        await _until(resynced, "the missed notifications to be resynced", azure)

        async def poisoned() -> list[dict[str, Any]]:
            return [
                p
                for status in await statuses_now()
                for p in (status["control_plane"] or {}).get("lifecycle_poisoned", ())
            ]

        async def set_aside() -> bool:
            return bool(await poisoned())

        # After the resyncs the `missed` events started: the leader drains one event at a time.
        await _until(
            set_aside, "the refused reauthorization to reach the poison queue", azure, timeout=90
        )
        azure.graph.lost_access.clear()
        # 6. A message over 1 MB (after the resyncs, which read messages back inline): Graph
        # writes its content into the payload account, the event names the blob, and the
        # processors read it with their identity and inspect it like any other.
        large: tuple[str, ...] = ()
        if azure.payloads is not None:
            message = tenant.post(sensitive=True)
            message.html = oversized_html(message.html)
            changes += azure.graph.publish(
                message, damage=lambda item: _graph_offloads(azure, item)
            )
            large = (message.id,)
            await _until(
                lambda: len(set(_verdict_keys(azure))) >= changes,
                "the large message's verdict",
                azure,
                timeout=60,
            )
            if azure.logs.rules:
                await _until(
                    lambda: (
                        len({r["VerdictKey"] for r in azure.logs.rows(VERDICT_TABLE)}) >= changes
                    ),
                    "the large message's row in the Log Analytics table",
                    azure,
                )
        anonymous = [
            (await w.client.get(path)).status_code
            for w in webs
            for path in ("/", "/status.json", "/metrics", "/healthz")
        ]
        statuses = await statuses_now()
        poison = await poisoned()
        dead_letters: dict[str, int] = {}
        for status in statuses:
            for reason, count in status["summary"]["dead_letters_by_reason"].items():
                dead_letters[reason] = dead_letters.get(reason, 0) + count
    finally:
        await _stop_all(stops)
    findings = [r for b in azure.namespace.bodies(deployment.findings_hub) for r in records(b)]
    return azure, Outcome(
        result,
        changes,
        anonymous,
        findings,
        {s.resource: s.expiration for s in azure.graph.active()},
        declared,
        dead_letters,
        refused,
        poison,
        large,
    )


def _graph_offloads(azure: Azure, item: dict[str, Any]) -> None:
    """What Graph does with a rich notification over 1 MB, as its Change Tracking principal:
    reads the connection string the subscription's `blobStoreUrl` names, writes the item's
    `resource`, `resourceData` and `encryptedContent` into the payload container with the
    account key, and sends the blob's id in their place."""
    stored = azure.graph.subscriptions[item["subscriptionId"]]
    if stored.blob_store_url is None:
        azure.undelivered.append(f"{stored.resource}: over 1 MB without a blobStoreUrl")
        return
    secret = urlsplit(stored.blob_store_url)
    token = azure.authority.issue(CHANGE_TRACKING, "https://vault.azure.net/.default")
    read = HttpRequest(
        "GET",
        f"https://{secret.netloc}{secret.path}?api-version=7.5",
        headers={"Authorization": f"Bearer {token}"},
    )
    status, body, _ = azure.vault_at(read.url).handle(read)
    payload = {key: item.pop(key) for key in ("resource", "resourceData", "encryptedContent")}
    storage_id = str(uuid.uuid4())
    item["additionalPayloadStorageId"] = storage_id
    if status != 200:  # Graph could not write the payload: the id names nothing
        azure.undelivered.append(stored.blob_store_url)
        return
    data = json.dumps(payload, separators=(",", ":")).encode()
    with ThreadPoolExecutor(1) as graph:  # Graph's own client, beside the rehearsal's loop
        graph.submit(asyncio.run, _write_payload(azure, body["value"], storage_id, data)).result()


async def _write_payload(azure: Azure, connection: str, storage_id: str, data: bytes) -> None:
    assert azure.payloads is not None
    client = ContainerClient.from_connection_string(
        connection, PAYLOAD_CONTAINER, transport=azure.payloads.transport()
    )
    async with client:
        await client.upload_blob(storage_id, data)


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


def _mail(azure: Azure, tenant: SyntheticTenant, count: int) -> int:
    """Mail to the tenant's first users, notified as Outlook does: a basic notification that
    names the message, which each processor reads from Graph as the runtime identity (its
    Mail.Read). prod declares its mailbox subscriptions over a list an operator fills, so
    Graph notifies through a live subscription's channel and clientState."""
    channel = azure.graph.active()[0]
    sent = 0
    for _ in range(count):
        mail = tenant.receive(tenant.users[:2], sensitive=tenant.rng.random() < 0.5)
        stored = azure.graph.mailboxes.deliver(
            mail.mailbox.id, mail.to_graph(), attachments=mail.attachment_list()
        )
        sent += azure.graph.notify_mail(channel, mail.mailbox.id, stored, "created")
    return sent


def _verdict_keys(azure: Azure) -> list[str]:
    findings = azure.outputs["findings_hub"]
    return [r["verdict_key"] for body in azure.namespace.bodies(findings) for r in records(body)]


def _denied(azure: Azure) -> str:
    return "; ".join(str(d) for d in azure.authority.denied) or "none"


def _tails(webs: list[ServeInstance]) -> str:
    return "".join(web.tail() for web in webs)


async def _stop_all(stops: list[Callable[[], Awaitable[None]]]) -> None:
    """Run every stop, the last added first, even after one of them failed (then raise)."""
    async with contextlib.AsyncExitStack() as stack:
        for stop in stops:
            stack.push_async_callback(stop)


async def _until(
    condition: Callable[[], bool | Awaitable[bool]],
    what: str,
    azure: Azure | None = None,
    *,
    timeout: float = 20,
) -> None:
    """Wait for `condition` (checked every 50 ms; it may be a coroutine), failing at once on
    a denial."""
    deadline = time.monotonic() + timeout
    while not await _holds(condition):
        if azure is not None and azure.authority.denied:
            raise Refused(f"{what}: refused: {_denied(azure)}")
        if time.monotonic() > deadline:
            raise Refused(
                f"timed out waiting for {what}; denied: {_denied(azure) if azure else '?'}"
            )
        await asyncio.sleep(0.05)


async def _holds(condition: Callable[[], bool | Awaitable[bool]]) -> bool:
    outcome = condition()
    return await outcome if inspect.isawaitable(outcome) else outcome
