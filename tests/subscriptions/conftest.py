"""The control plane's test bench: fake Graph and Key Vault behind the real SDK clients."""

from __future__ import annotations

import datetime as dt
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken, AccessTokenInfo

from graphtap.deployment import Deployment
from graphtap.inspection import InspectionSettings, Inspector, Policy
from graphtap.localhub import LocalHub
from graphtap.notifications.keyring import KeyRing
from graphtap.processing.committer import BatchCommitter, BlockingDeadLetters, BlockingVerdicts
from graphtap.processing.fetch import ContentFetcher
from graphtap.processing.lifecycle import LifecycleQueue
from graphtap.processing.pipeline import EventResult, Pipeline
from graphtap.processing.sinks.sqlite import SqliteStore
from graphtap.processing.sources import SourceEvent
from graphtap.processing.sources.localhub import LocalHubSource
from graphtap.processing.summary import Summary
from graphtap.simulation.tenant import SyntheticTenant
from graphtap.subscriptions.clock import VirtualClock
from graphtap.subscriptions.control_plane import ControlPlane, ControlPlaneSettings
from graphtap.subscriptions.desired import DesiredState, parse_desired
from graphtap.subscriptions.graph import GraphSubscriptions, build_client
from graphtap.subscriptions.keyvault import KeyVault
from graphtap.subscriptions.reconcile import Reconciler
from graphtap.subscriptions.resync import ProcessingSubmitter, ResyncSink
from graphtap.subscriptions.throttle import WriteThrottle
from tests.fakes.graph import FakeGraph
from tests.fakes.keyvault import FakeKeyVault

START = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
NOTIFICATION_URL = (
    "EventHub:https://graphtap-dev.servicebus.windows.net/eventhubname/notifications"
    "?tenantId=contoso.onmicrosoft.com"
)
CERTIFICATE = "graph-notifications"


class FakeCredential:
    """An async token credential: the fakes only check that a bearer token is sent."""

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("token", 4_000_000_000)

    async def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo("token", 4_000_000_000)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> FakeCredential:
        return self

    async def __aexit__(self, *args: Any) -> None:
        return None


#: The subscriptions `desired_state` declares unless told otherwise.
SUBSCRIPTIONS: tuple[dict[str, Any], ...] = (
    {"resource": "/teams/getAllMessages", "lifetime_minutes": 4320},
    {"resource": "/chats/getAllMessages", "lifetime_minutes": 4320},
    {
        "resource": "/users/{id}/messages",
        "for_each": "mailboxes",
        "rich": False,
        "lifetime_minutes": 10080,
    },
)


def desired_state(**overrides: Any) -> DesiredState:
    document: dict[str, Any] = {
        "permissions": ["ChannelMessage.Read.All", "Chat.Read.All", "Mail.Read"],
        "defaults": {"rich": True, "renew_at": 0.5},
        "subscription": list(SUBSCRIPTIONS),
        "lists": {"mailboxes": ["alice@contoso.com", "bob@contoso.com"]},
    }
    document.update(overrides)
    return parse_desired(document, environment="test")


def deployment() -> Deployment:
    return Deployment(
        environment="test",
        tenant_id="11111111-2222-3333-4444-555555555555",
        tenant_domain="contoso.onmicrosoft.com",
        eventhub_namespace_host="graphtap-dev.servicebus.windows.net",
        notifications_hub="notifications",
        findings_hub="findings",
        consumer_group="graphtap-processor",
        notification_url=NOTIFICATION_URL,
        key_vault_uri="https://graphtap-dev.vault.azure.net",
        certificate_name=CERTIFICATE,
        runtime_client_id="00000000-0000-0000-0000-00000000abcd",
        checkpoint_account_url="https://graphtapdev.blob.core.windows.net",
        checkpoint_container="checkpoints",
        subscription_id="sub",
        resource_group="rg",
        eventhub_namespace_name="graphtap-dev",
        notification_partitions=4,
    )


@dataclass
class Bench:
    clock: VirtualClock
    graph: FakeGraph
    vault: FakeKeyVault
    hub: LocalHub

    def reconciler(self) -> Reconciler:
        client = build_client(FakeCredential(), transport=self.graph)
        return Reconciler(GraphSubscriptions(client), WriteThrottle(self.clock), self.clock)

    def keyvault(self) -> KeyVault:
        return KeyVault(self.vault.vault_url, FakeCredential(), transport=self.vault.transport())

    def control_plane(
        self,
        desired: DesiredState | None = None,
        *,
        settings: ControlPlaneSettings | None = None,
        lifecycle_queue: LifecycleQueue | None = None,
        resync_sink: ResyncSink | None = None,
    ) -> ControlPlane:
        plane = ControlPlane.from_deployment(
            deployment(),
            FakeCredential(),
            desired=desired or desired_state(),
            clock=self.clock,
            settings=settings or ControlPlaneSettings(),
            lifecycle_queue=lifecycle_queue,
            resync_sink=resync_sink,
            graph_transport=self.graph,
            keyvault_options={"transport": self.vault.transport()},
        )
        plane._rng = random.Random(7)  # reproducible jitter
        return plane


def bootstrapped_vault() -> FakeKeyVault:
    """The Key Vault as `graphtap bootstrap` leaves it before the control plane first runs:
    the notification certificate and the clientState secret, which the plane only reads."""
    vault = FakeKeyVault()
    vault.add_certificate_version(CERTIFICATE)
    vault.secrets["graph-client-state"] = [("v1", secrets.token_urlsafe(48), None)]
    return vault


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    clock = VirtualClock(START)
    hub = LocalHub(tmp_path / "hub", partitions=2)
    return Bench(clock, FakeGraph(clock, hub=hub), bootstrapped_vault(), hub)


@dataclass
class Processing:
    """The processor's path over the local hub, with one long-lived pipeline (no restarts)."""

    hub_dir: Path
    pipeline: Pipeline
    store: SqliteStore
    queue: LifecycleQueue
    summary: Summary
    #: Reads what notifications point at (Outlook messages), as the hosts do before a batch.
    fetcher: ContentFetcher | None = None

    @classmethod
    def start(cls, hub_dir: Path, keys_dir: Path, client_state: str, db: Path) -> Processing:
        ring = KeyRing.load([keys_dir])
        ring.refresh_interval = 0.0
        pipeline = Pipeline.build(
            keys=ring,
            client_states=[client_state],
            inspector=Inspector(InspectionSettings(hash_key=b"h" * 32, policy=Policy.default())),
        )
        return cls(hub_dir, pipeline, SqliteStore(db), LifecycleQueue(db), Summary())

    @property
    def keys(self) -> KeyRing:
        ring = self.pipeline._keys
        assert ring is not None
        return ring

    async def drain(self) -> Summary:
        """Everything in the hub through the pipeline and the one commit step."""
        committer = BatchCommitter(
            sink=BlockingVerdicts(self.store),
            dead_letters=BlockingDeadLetters(self.store),
            lifecycle=self.queue,
            summary=self.summary,
        )
        source = LocalHubSource(self.hub_dir)
        try:
            for batch in source.batches(256):

                async def checkpoint(batch: list[SourceEvent] = batch) -> None:
                    source.checkpoint(batch)

                if self.fetcher is not None:
                    await self.fetcher.fill(batch)
                results = self.pipeline.process_batch(batch)
                await committer.commit(results, events=len(batch), checkpoint=checkpoint)
        finally:
            source.close()
        return self.summary

    def resync_submitter(self) -> ProcessingSubmitter:
        """Gap resync into this pipeline and verdict store."""

        async def process(events: Sequence[SourceEvent]) -> list[EventResult]:
            return self.pipeline.process_batch(events)

        committer = BatchCommitter(
            sink=BlockingVerdicts(self.store),
            dead_letters=BlockingDeadLetters(self.store),
            lifecycle=self.queue,
            summary=self.summary,
        )
        return ProcessingSubmitter(process, committer, fetcher=self.fetcher)

    def verdict_count(self) -> int:
        rows = self.store._db.execute("SELECT COUNT(*) FROM verdicts").fetchone()
        return int(rows[0])


def client_state_of(vault: FakeKeyVault) -> str:
    return vault.secrets["graph-client-state"][-1][1]


def tenant_for(graph: FakeGraph, seed: int = 3) -> SyntheticTenant:
    tenant = SyntheticTenant.create(random.Random(seed), start=START, users=6)
    graph.users = [u.id for u in tenant.users]
    graph.teams = sorted({c.team_id for c in tenant.conversations if c.team_id})
    return tenant
