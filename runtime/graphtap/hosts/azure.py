"""The processor on Azure: Event Hubs in, the findings hub out, keys from Key Vault.

Everything comes from the deployment (the `GRAPHTAP_*` app settings) and the managed
identity: the decryption key is the current version of the Key Vault certificate (and each
version the control plane rotates to, through `add_certificate`), the clientState the Key
Vault secret the control plane keeps. Private keys are written to a private, memory-backed
folder so worker processes can load them; they never touch the app's persistent storage.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import httpx
from azure.core.credentials_async import AsyncTokenCredential

from graphtap.deployment import FINDINGS_HUB, LOG_ANALYTICS, Deployment
from graphtap.enforcement.actor import Enforcer
from graphtap.enforcement.messages import TeamsMessages
from graphtap.inspection import Policy, load_policy
from graphtap.notifications.keyring import KEY_SUFFIX
from graphtap.processing import compose
from graphtap.processing.committer import BatchCommitter, BlockingDeadLetters
from graphtap.processing.executor import PipelineExecutor
from graphtap.processing.fetch import ContentFetcher, PayloadStore
from graphtap.processing.fetch.mail import GraphMailReader
from graphtap.processing.fetch.payloads import BlobPayloadStore
from graphtap.processing.handler import BatchHandler
from graphtap.processing.lifecycle import BlockingLifecycle, LifecycleQueue, SharedLifecycle
from graphtap.processing.lifecycle_storage import StorageLifecycleQueue
from graphtap.processing.outbox import ActionOutbox
from graphtap.processing.partitions import PartitionStatus
from graphtap.processing.pipeline import PipelineSettings
from graphtap.processing.sinks import AsyncDeadLetterStore, AsyncVerdictSink
from graphtap.processing.sinks.blob import BlobDeadLetters
from graphtap.processing.sinks.eventhubs import EventHubsVerdictSink
from graphtap.processing.sinks.fanout import FanOutVerdicts
from graphtap.processing.sinks.jsonl import JsonlDeadLetters
from graphtap.processing.sinks.ledger import BlobVerdictLedger, LedgeredSink
from graphtap.processing.sinks.loganalytics import (
    VERDICT_STREAM,
    LogAnalyticsVerdictSink,
    LogsIngestionTarget,
)
from graphtap.processing.sources.eventhubs import EventHubsSource, EventHubsSourceSettings
from graphtap.processing.summary import Summary
from graphtap.subscriptions.blobcursor import BlobCursorStore
from graphtap.subscriptions.certificates import write_private_key
from graphtap.subscriptions.clock import SystemClock
from graphtap.subscriptions.control_plane import ControlPlane, ControlPlaneSettings
from graphtap.subscriptions.cursor import CursorStore, SqliteCursorStore
from graphtap.subscriptions.deltalinks import BlobDeltaLinks, DeltaLinkStore, SqliteDeltaLinks
from graphtap.subscriptions.graph import build_client
from graphtap.subscriptions.keyvault import EncryptionCertificate, KeyVault, SecretMissing
from graphtap.subscriptions.leadership import BlobLease, Leadership
from graphtap.subscriptions.resync import ProcessingSubmitter

log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: `runtime/environments/`, deployed with the package (runtime/ is the deployed folder).
ENVIRONMENTS_DIR = Path(__file__).resolve().parents[2] / "environments"
STATE_DIR_ENV = "GRAPHTAP_STATE_DIR"


def default_state_dir() -> Path:
    """Where the lifecycle queue (and dead letters, when no dead-letter container is
    configured) live: $GRAPHTAP_STATE_DIR, else $HOME/data/graphtap/<instance>. App Service
    keeps /home across restarts but shares it between instances, so each instance writes its
    own files."""
    configured = os.environ.get(STATE_DIR_ENV)
    if configured:
        return Path(configured)
    return Path(os.environ.get("HOME", ".")) / "data" / "graphtap" / instance_name()


def instance_name() -> str:
    """This App Service instance (stable across its restarts), else the host name."""
    return (os.environ.get("WEBSITE_INSTANCE_ID") or socket.gethostname())[:64]


RESYNC_CONCURRENCY_ENV = "GRAPHTAP_RESYNC_CONCURRENCY"


def with_resync_concurrency(settings: ControlPlaneSettings) -> ControlPlaneSettings:
    """`$GRAPHTAP_RESYNC_CONCURRENCY`, when set: how many users or teams a resync reads at
    once (the export APIs' pacing holds whatever the number)."""
    value = os.environ.get(RESYNC_CONCURRENCY_ENV)
    if value is None:
        return settings
    limit = settings.resync.throttle.concurrency
    try:
        concurrency = int(value)
    except ValueError:
        concurrency = 0
    if not 1 <= concurrency <= limit:
        raise ValueError(
            f"{RESYNC_CONCURRENCY_ENV} must be a whole number from 1 to {limit}, got {value!r}"
        )
    return replace(settings, resync=replace(settings.resync, concurrency=concurrency))


def open_resync_store(
    deployment: Deployment, credential: AsyncTokenCredential, options: AzureServiceOptions
) -> CursorStore:
    """Resync cursors in the checkpoint container (the runtime's existing grant there), so
    another instance can finish a job; without one, in the instance's state folder."""
    if deployment.checkpoint_account_url and deployment.checkpoint_container:
        return BlobCursorStore(
            deployment.checkpoint_account_url,
            deployment.checkpoint_container,
            credential=credential,
            **options.blob_options,
        )
    return SqliteCursorStore(options.state_dir / "resync.sqlite")


def open_delta_links(
    deployment: Deployment, credential: AsyncTokenCredential, options: AzureServiceOptions
) -> DeltaLinkStore:
    """Mail folders' delta links beside the resync cursors, in the checkpoint container."""
    if deployment.checkpoint_account_url and deployment.checkpoint_container:
        return BlobDeltaLinks(
            deployment.checkpoint_account_url,
            deployment.checkpoint_container,
            credential=credential,
            **options.blob_options,
        )
    return SqliteDeltaLinks(options.state_dir / "mail-delta.sqlite")


def open_lifecycle(
    deployment: Deployment, credential: AsyncTokenCredential, options: AzureServiceOptions
) -> SharedLifecycle:
    """The Storage queue every host's processor fills and the leader drains; without one
    (deployments from before the stack created it), this instance's own SQLite queue."""
    if deployment.lifecycle_queue_account_url and deployment.lifecycle_queue:
        return StorageLifecycleQueue(
            deployment.lifecycle_queue_account_url,
            deployment.lifecycle_queue,
            deployment.lifecycle_poison_queue or f"{deployment.lifecycle_queue}-poison",
            credential,
            **options.lifecycle_options,
            **options.blob_options,
        )
    return BlockingLifecycle(LifecycleQueue(options.state_dir / "lifecycle.sqlite"))


def open_leadership(
    deployment: Deployment, credential: AsyncTokenCredential, options: AzureServiceOptions
) -> Leadership | None:
    """The leader lease in the control-plane container, so one web host at a time writes to
    Graph; None (every host leads) for deployments from before the stack created it."""
    if not deployment.control_plane_container:
        return None
    lease = BlobLease(
        deployment.checkpoint_account_url,
        deployment.control_plane_container,
        credential,
        **options.blob_options,
    )
    return Leadership(lease, SystemClock(), instance=instance_name())


@dataclass(frozen=True)
class AzureServiceOptions:
    policy: Policy
    #: None: the environment's key from Key Vault (`graphtap bootstrap` creates it).
    hash_key: bytes | None = None
    state_dir: Path = field(default_factory=default_state_dir)
    workers: int = 1
    start: str = "earliest"
    max_batch_size: int = 256
    #: Certificate versions whose keys are loaded at start: the current one and those Graph
    #: may still encrypt to shortly after a rotation.
    key_versions: int = 3
    #: How often a host without a control plane (the Function App) looks for a new version.
    certificate_check_seconds: float = 300.0
    #: How often a host that started before `make bootstrap` looks for its secrets again.
    secret_poll_seconds: float = 30.0
    extra_client_states: tuple[str, ...] = field(default=())
    #: Passed to the Key Vault clients (e.g. a transport), as the control plane allows.
    keyvault_options: dict[str, Any] = field(default_factory=dict)
    #: Passed to the storage account's clients (e.g. a transport): the dead-letter, ledger and
    #: cursor containers, the leader lease and the lifecycle queues.
    blob_options: dict[str, Any] = field(default_factory=dict)
    #: `StorageLifecycleQueue` settings (`max_attempts`, `visibility` in seconds).
    lifecycle_options: dict[str, int] = field(default_factory=dict)
    #: Passed to the Logs Ingestion client (e.g. a transport).
    ingestion_options: dict[str, Any] = field(default_factory=dict)
    #: Passed to the payload account's container client (e.g. a transport).
    payload_options: dict[str, Any] = field(default_factory=dict)
    #: Replaces the network under the Graph client that reads Outlook messages (tests).
    graph_transport: httpx.AsyncBaseTransport | None = None
    #: Monotonic seconds for the certificate check's interval, never the wall clock (a step
    #: back would delay a new key by the step); tests give their own.
    clock: Callable[[], float] = time.monotonic


async def write_key(
    keyvault: KeyVault, certificate: EncryptionCertificate, directory: Path
) -> Path:
    """Write a certificate version's private key as `ID.key.pem` (0600) for the key ring."""
    key, _ = await keyvault.private_key(certificate.name, certificate.version)
    path = directory / f"{certificate.certificate_id}{KEY_SUFFIX}"
    write_private_key(path, key)
    return path


async def until_present(read: Callable[[], Awaitable[_T]], *, poll: float) -> _T:
    """`read()` once the secret it reads exists: a host deployed before `make bootstrap`
    says so once and waits, instead of crashing into a restart loop."""
    announced = False
    while True:
        try:
            return await read()
        except SecretMissing as missing:
            if not announced:
                log.warning("%s; waiting for it (checking every %gs)", missing, poll)
                announced = True
        await asyncio.sleep(poll)


#: A policy file that overrides the environment's, for every host (`serve --policy` reads it).
POLICY_SETTING = "GRAPHTAP_POLICY"


def deployed_policy(settings: Mapping[str, str], environment: str) -> Policy:
    """The policy a host's app settings name, else the environment's: every host of one
    deployment must decide alike, or the verdict one of them sends for a change differs."""
    return load_policy(settings.get(POLICY_SETTING)) or environment_policy(environment)


def environment_policy(environment: str) -> Policy:
    """`environments/<env>/policy.toml` deployed beside the package, else the built-in one."""
    path = ENVIRONMENTS_DIR / environment / "policy.toml"
    return (load_policy(path) if path.is_file() else None) or Policy.default()


def open_dead_letters(
    deployment: Deployment, credential: AsyncTokenCredential, options: AzureServiceOptions
) -> AsyncDeadLetterStore:
    """The stack's dead-letter container when the deployment names one, else a local file.

    A Function App (Flex Consumption) instance's disk goes with the instance: a dead letter
    kept there can be lost after its batch was checkpointed.
    """
    if deployment.dead_letter_container:
        return BlobDeadLetters(
            deployment.checkpoint_account_url,
            deployment.dead_letter_container,
            credential=credential,
            **options.blob_options,
        )
    path = options.state_dir / "dead-letters.jsonl"
    log.warning(
        "no dead-letter container configured (GRAPHTAP_DEAD_LETTER_CONTAINER): dead letters "
        "are kept in %s, on this instance's disk only",
        path,
    )
    return BlockingDeadLetters(JsonlDeadLetters(path))


def open_verdict_sink(
    deployment: Deployment, credential: AsyncTokenCredential, options: AzureServiceOptions
) -> AsyncVerdictSink:
    """The environment's destinations, behind the stack's verdict ledger when the deployment
    names one: every host, consumer group and resync then agrees on one sender per verdict."""
    destinations = open_destinations(deployment, credential, options)
    if not deployment.verdict_ledger_container:
        log.warning(
            "no verdict ledger configured (GRAPHTAP_VERDICT_LEDGER_CONTAINER): a change "
            "processed by two hosts or resynced reaches the findings hub more than once"
        )
        return destinations
    ledger = BlobVerdictLedger(
        deployment.checkpoint_account_url,
        deployment.verdict_ledger_container,
        credential=credential,
        **options.blob_options,
    )
    return LedgeredSink(destinations, ledger)


def open_destinations(
    deployment: Deployment, credential: AsyncTokenCredential, options: AzureServiceOptions
) -> AsyncVerdictSink:
    """The findings hub, the Log Analytics table, or both (`findings_destinations`): with
    both, each verdict goes once to each, and a batch is durable when both accepted it."""
    sinks: list[AsyncVerdictSink] = []
    if FINDINGS_HUB in deployment.destinations:
        sinks.append(
            EventHubsVerdictSink(
                deployment.eventhub_namespace_host, deployment.findings_hub, credential=credential
            )
        )
    if LOG_ANALYTICS in deployment.destinations:
        assert deployment.logs_ingestion_endpoint, "checked when the deployment was read"
        assert deployment.logs_dcr_id, "checked when the deployment was read"
        target = LogsIngestionTarget(
            deployment.logs_ingestion_endpoint,
            deployment.logs_dcr_id,
            environment=deployment.environment,
            stream=deployment.logs_stream or VERDICT_STREAM,
            audience=deployment.profile.monitor_audience,
        )
        sinks.append(
            LogAnalyticsVerdictSink(target, credential=credential, **options.ingestion_options)
        )
    return sinks[0] if len(sinks) == 1 else FanOutVerdicts(sinks)


def open_content_fetcher(
    deployment: Deployment,
    credential: AsyncTokenCredential,
    options: AzureServiceOptions,
    pipeline: PipelineSettings,
) -> ContentFetcher:
    """What reads, before the pipeline, the content notifications point at: Graph's large
    payloads and Outlook messages. Only items carrying an accepted clientState are read."""
    return compose.content_fetcher(
        pipeline,
        payloads=open_payloads(deployment, credential, options),
        mail=open_mail(credential, deployment.graph_endpoint, options.graph_transport),
    )


def open_mail(
    credential: AsyncTokenCredential,
    graph_endpoint: str,
    transport: httpx.AsyncBaseTransport | None = None,
) -> GraphMailReader:
    """Outlook messages read from the deployment's Graph (its cloud's endpoint) as the
    runtime identity, which the stack grants Mail.Read when the environment declares
    mailboxes; each mailbox within Outlook's limits (`MailboxLimiter`)."""
    return GraphMailReader(build_client(credential, endpoint=graph_endpoint, transport=transport))


def open_payloads(
    deployment: Deployment, credential: AsyncTokenCredential, options: AzureServiceOptions
) -> PayloadStore | None:
    """Graph's container in the payload account, read with the runtime identity; None for
    a deployment without one (its large payloads are dead-lettered `payload_unavailable`)."""
    if not deployment.payload_account_url:
        return None
    return BlobPayloadStore(deployment.payload_account_url, credential, **options.payload_options)


def private_directory() -> Path:
    """A 0700 folder in memory when the host has one (/dev/shm), else in the temp dir."""
    base = "/dev/shm" if Path("/dev/shm").is_dir() else None  # noqa: S108 (tmpfs on purpose)
    return Path(tempfile.mkdtemp(prefix="graphtap-keys-", dir=base))


@dataclass
class AzureProcessing:
    """What both Azure hosts share: the pipeline (key and clientState from Key Vault), the
    findings-hub sink, the dead-letter store, the local lifecycle queue, and the committer."""

    pipeline: PipelineSettings
    keyvault: KeyVault
    certificate_name: str
    sink: AsyncVerdictSink
    dead_letters: AsyncDeadLetterStore
    lifecycle: SharedLifecycle
    executor: PipelineExecutor
    committer: BatchCommitter
    key_directory: Path
    certificate_check_seconds: float = 300.0
    _next_certificate_check: float = 0.0  # on `clock`
    clock: Callable[[], float] = time.monotonic
    #: Actions the policy enforces in Teams, beside the lifecycle queue, for the actor.
    outbox: ActionOutbox | None = None
    #: The actor that applies them (only where the policy says enforce).
    enforcer: Enforcer | None = None
    #: Reads what notifications point at (large payloads, Outlook messages) before a batch.
    fetcher: ContentFetcher | None = None

    @property
    def summary(self) -> Summary:
        return self.committer.summary

    async def act(self, stop: asyncio.Event) -> None:
        """Apply the outbox's actions until `stop`, beside the processor (where enforcing)."""
        if self.enforcer is not None:
            await self.enforcer.run(stop)

    @classmethod
    async def open(
        cls, deployment: Deployment, credential: AsyncTokenCredential, options: AzureServiceOptions
    ) -> AzureProcessing:
        keyvault = KeyVault(deployment.key_vault_uri, credential, **options.keyvault_options)
        directory = private_directory()
        try:
            certificates = await keyvault.recent_certificates(
                deployment.certificate_name, options.key_versions
            )
            for certificate in certificates:
                await write_key(keyvault, certificate, directory)
            client_state = await until_present(
                lambda: keyvault.client_state(deployment.client_state_secret),
                poll=options.secret_poll_seconds,
            )
            hash_key = options.hash_key
            if hash_key is None:
                hash_key = await until_present(
                    lambda: keyvault.finding_hash_key(deployment.finding_hash_key_secret),
                    poll=options.secret_poll_seconds,
                )
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            await keyvault.close()
            raise
        for certificate in certificates:
            log.info("decryption key loaded", extra={"state": certificate.certificate_id})
        pipeline = compose.pipeline_settings(
            key_paths=(directory,),
            client_states=(client_state, *options.extra_client_states),
            hash_key=hash_key,
            policy=options.policy,
        )
        options.state_dir.mkdir(parents=True, exist_ok=True)
        sink = open_verdict_sink(deployment, credential, options)
        dead_letters = open_dead_letters(deployment, credential, options)
        lifecycle = open_lifecycle(deployment, credential, options)
        outbox = ActionOutbox(options.state_dir / "lifecycle.sqlite")
        fetcher = open_content_fetcher(deployment, credential, options, pipeline)
        executor = PipelineExecutor(pipeline, workers=options.workers)
        committer = BatchCommitter(
            sink=sink,
            dead_letters=dead_letters,
            lifecycle=lifecycle,
            summary=Summary(),
            outbox=outbox,
        )
        return cls(
            pipeline,
            keyvault,
            deployment.certificate_name,
            sink,
            dead_letters,
            lifecycle,
            executor,
            committer,
            directory,
            options.certificate_check_seconds,
            options.clock() + options.certificate_check_seconds,
            options.clock,
            outbox,
            fetcher=fetcher,
        )

    def handler(self, *, watch_certificate: bool = False) -> BatchHandler:
        """The batch handler over this host's executor and committer; `watch_certificate`
        for hosts without a control plane to announce a rotation (the Function App)."""
        return BatchHandler(
            self.executor,
            self.committer,
            before_batch=self.check_certificate if watch_certificate else None,
            fetcher=self.fetcher,
        )

    async def add_certificate(self, certificate: EncryptionCertificate) -> None:
        """The control plane's hook: a new certificate version is about to be used by Graph.

        Its key joins the key folder and the pipeline is rebuilt, so notifications encrypted
        for it decrypt from the first one on, while the older keys stay for stragglers.
        """
        path = self.key_directory / f"{certificate.certificate_id}{KEY_SUFFIX}"
        if path.exists():
            return
        await write_key(self.keyvault, certificate, self.key_directory)
        await self.executor.reload()
        log.info("decryption key added", extra={"state": certificate.certificate_id})

    async def check_certificate(self) -> None:
        """For hosts without a control plane (the Function App): at most every few minutes,
        load the key of a certificate version Key Vault has newly issued (AutoRenew)."""
        now = self.clock()
        if now < self._next_certificate_check:
            return
        self._next_certificate_check = now + self.certificate_check_seconds
        await self.add_certificate(await self.keyvault.certificate(self.certificate_name))

    async def close(self) -> None:
        try:
            await self.sink.close()
            await self.keyvault.close()
        finally:
            try:
                await self.dead_letters.close()
            finally:
                self.executor.close()
                await self.lifecycle.close()
                if self.outbox is not None:
                    self.outbox.close()
                if self.enforcer is not None:
                    await self.enforcer.close()
                if self.fetcher is not None:
                    await self.fetcher.close()
                shutil.rmtree(self.key_directory, ignore_errors=True)


class ControlPlaneOnly:
    """The web app when the Function App processes notifications: it keeps the subscriptions
    (and resyncs gaps through its own pipeline) but reads nothing from the hub."""

    mode = "control plane only (the Function App processes notifications)"

    def __init__(self, processing: AzureProcessing) -> None:
        self.processing = processing

    @property
    def lifecycle(self) -> SharedLifecycle:
        return self.processing.lifecycle

    def summary(self) -> Summary:
        return self.processing.summary

    def ready(self) -> bool:
        return True

    def failed_batches(self) -> int:
        return 0

    def partitions(self) -> list[PartitionStatus]:
        return []

    async def run(self, stop: asyncio.Event) -> None:
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(stop.wait())
                tasks.create_task(self.processing.act(stop))
        finally:
            await self.processing.close()


class EventHubsService:
    mode = "Azure Event Hubs"

    def __init__(self, source: EventHubsSource, processing: AzureProcessing) -> None:
        self.source = source
        self.processing = processing

    @property
    def lifecycle(self) -> SharedLifecycle:
        return self.processing.lifecycle

    @classmethod
    async def open(
        cls,
        deployment: Deployment,
        credential: AsyncTokenCredential,
        options: AzureServiceOptions,
    ) -> EventHubsService:
        processing = await AzureProcessing.open(deployment, credential, options)
        source = EventHubsSource(
            EventHubsSourceSettings.from_deployment(
                deployment, start=options.start, max_batch_size=options.max_batch_size
            ),
            credential=credential,
            handler=processing.handler(),
        )
        return cls(source, processing)

    def summary(self) -> Summary:
        return self.processing.summary

    def ready(self) -> bool:
        return self.source.receiving

    def failed_batches(self) -> int:
        return self.source.errors

    def partitions(self) -> list[PartitionStatus]:
        return self.source.meter.snapshot()

    async def run(self, stop: asyncio.Event) -> None:
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.source.run(stop))
                tasks.create_task(self.processing.act(stop))
        finally:
            await self.processing.close()
            log.info(
                "processor stopped", extra={"state": "stopped", "events": self.summary().events}
            )


async def open_azure_host(
    deployment: Deployment,
    credential: AsyncTokenCredential,
    options: AzureServiceOptions,
    *,
    process_notifications: bool = True,
    control_plane_settings: ControlPlaneSettings | None = None,
    graph_transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[EventHubsService | ControlPlaneOnly, ControlPlane]:
    """The web app on Azure, as `graphtap serve` composes it: the processor (or only its
    pipeline, when the Function App processes) and the control plane that owns the
    subscriptions, all calling Azure and Graph as `credential` (the runtime identity)."""
    service: EventHubsService | ControlPlaneOnly
    if graph_transport is not None and options.graph_transport is None:
        options = replace(options, graph_transport=graph_transport)  # one Graph for the host
    if process_notifications:
        service = await EventHubsService.open(deployment, credential, options)
    else:
        service = ControlPlaneOnly(await AzureProcessing.open(deployment, credential, options))
    processing = service.processing
    if options.policy.enforcement.mode == "enforce" and processing.outbox is not None:
        # The actor applies what this instance's commits put in its outbox, through Graph.
        client = build_client(
            credential, endpoint=deployment.graph_endpoint, transport=graph_transport
        )
        # Instances that wrote the same action agree on one to apply it, in the verdict ledger.
        claims = (
            BlobVerdictLedger(
                deployment.checkpoint_account_url,
                deployment.verdict_ledger_container,
                credential=credential,
                **options.blob_options,
            )
            if deployment.verdict_ledger_container
            else None
        )
        processing.enforcer = Enforcer(
            processing.outbox, TeamsMessages(client), SystemClock(), claims=claims
        )
    control_plane = ControlPlane.from_deployment(
        deployment,
        credential,
        settings=with_resync_concurrency(control_plane_settings or ControlPlaneSettings()),
        lifecycle_queue=service.lifecycle,
        # Gaps (removals, `missed`, downtime) are read back from Graph and inspected once.
        resync_sink=ProcessingSubmitter(
            service.processing.executor.process,
            service.processing.committer,
            fetcher=service.processing.fetcher,
        ),
        delta_links=open_delta_links(deployment, credential, options),
        heartbeat=options.state_dir / "control-plane.heartbeat",
        resync_store=open_resync_store(deployment, credential, options),
        instance=instance_name(),
        leadership=open_leadership(deployment, credential, options),
        graph_transport=graph_transport,
        keyvault_options=options.keyvault_options,
    )
    # New certificate versions reach the processor before Graph encrypts to them.
    control_plane.on_certificate = service.processing.add_certificate
    return service, control_plane
