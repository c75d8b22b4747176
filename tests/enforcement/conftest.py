"""Enforcement's bench: a Teams tenant on the fake Graph, whose notifications run through the
real pipeline and commit step into a verdict store and the action outbox, and the actor
applying the outbox through msgraph-sdk against the same fake."""

from __future__ import annotations

import datetime as dt
import secrets
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from graphtap.enforcement.actor import Enforcer
from graphtap.enforcement.messages import TeamsMessages
from graphtap.inspection import InspectionSettings, Inspector, Policy, load_policy
from graphtap.localhub import LocalHub
from graphtap.notifications.keyring import KeyRing
from graphtap.processing.committer import BatchCommitter, BlockingDeadLetters, BlockingVerdicts
from graphtap.processing.lifecycle import LifecycleQueue
from graphtap.processing.outbox import ActionOutbox
from graphtap.processing.pipeline import Pipeline
from graphtap.processing.sinks.sqlite import SqliteStore
from graphtap.processing.sources import SourceEvent
from graphtap.processing.sources.localhub import LocalHubSource
from graphtap.processing.summary import Summary
from graphtap.processing.verdicts import Verdict
from graphtap.simulation.tenant import Conversation, Message, User
from graphtap.subscriptions.certificates import create_certificate, load_certificate
from graphtap.subscriptions.clock import VirtualClock
from graphtap.subscriptions.graph import build_client
from graphtap.subscriptions.throttle import ThrottleSettings, WriteThrottle
from tests.fakes.graph import FakeGraph, StoredSubscription
from tests.subscriptions.conftest import FakeCredential

START = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
ALICE = User("aaaaaaaa-1111-4111-8111-000000000001", "Alice Example")
BOB = User("aaaaaaaa-1111-4111-8111-000000000002", "Bob Example")
CHAT = Conversation((ALICE, BOB), chat_id="19:alice-bob@unq.gbl.spaces")
CHANNEL = Conversation(
    (ALICE, BOB),
    team_id="bbbbbbbb-2222-4222-8222-000000000001",
    channel_id="19:finance@thread.tacv2",
)
CARD = "<p>my credit card number is 4111 1111 1111 1111, expires 09/29</p>"
CLEAN = "<p>lunch at noon?</p>"
TIP = "Card numbers never go in chat."
URL = "https://contoso.example/dlp/cards"

ENFORCING = f"""
[default]
min_confidence = 65

[types.credit_card_number]
severity = "high"

[enforcement]
mode = "enforce"
lift_on_fix = true
compliance_url = "https://contoso.example/dlp"

[[enforcement.rules]]
name = "payment cards"
action = "block"
types = ["credit_card_number"]
min_severity = "high"
min_confidence = 75
tip = "{TIP}"
compliance_url = "{URL}"
allow_override = true
"""


def policy_file(tmp_path: Path, text: str, name: str = "policy.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class Teams:
    """One tenant, one rich subscription per kind of conversation, one processing path."""

    tmp: Path
    clock: VirtualClock
    graph: FakeGraph
    policy: Policy
    client_state: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    verdicts: list[Verdict] = field(default_factory=list)
    _next_id: int = 1_772_438_400_000

    def __post_init__(self) -> None:
        keys = self.tmp / "keys"
        files = create_certificate(keys, certificate_id="graphtap-test", bits=2048)
        certificate = load_certificate(files.certificate_path)
        for resource in ("/chats/getAllMessages", "/teams/getAllMessages"):
            self.graph.subscriptions[resource] = StoredSubscription(
                id=resource,
                resource=resource,
                change_type="created,updated,deleted",
                notification_url="EventHub:https://x.servicebus.windows.net/eventhubname/n",
                lifecycle_notification_url=None,
                expiration=self.clock.time() + 3 * 86_400,
                client_state=self.client_state,
                include_resource_data=True,
                certificate=certificate,
                certificate_id=files.certificate_id,
            )
        self.pipeline = Pipeline.build(
            keys=KeyRing.load([keys]),
            client_states=[self.client_state],
            inspector=Inspector(InspectionSettings(hash_key=b"h" * 32, policy=self.policy)),
            policy=self.policy,
        )
        self.store = SqliteStore(self.tmp / "verdicts.sqlite")
        self.queue = LifecycleQueue(self.tmp / "verdicts.sqlite")
        self.outbox = ActionOutbox(self.tmp / "verdicts.sqlite")
        self.committer = BatchCommitter(
            sink=BlockingVerdicts(self.store),
            dead_letters=BlockingDeadLetters(self.store),
            lifecycle=self.queue,
            summary=Summary(),
            outbox=self.outbox,
        )
        self.committer.observers.append(self.verdicts.extend)

    def message(self, html: str, conversation: Conversation = CHAT) -> Message:
        self._next_id += 1000
        now = dt.datetime.fromtimestamp(self.clock.time(), dt.UTC)
        return Message(str(self._next_id), conversation, ALICE, now, now, html, (), ())

    def post(self, html: str, conversation: Conversation = CHAT) -> Message:
        message = self.message(html, conversation)
        self.graph.publish(message, "created")
        return message

    def edit(self, message: Message, html: str) -> None:
        message.html = html
        message.modified = message.modified + dt.timedelta(seconds=30)
        self.graph.publish(message, "updated")

    async def process(self) -> list[Verdict]:
        """Everything new in the hub through the pipeline and the commit step."""
        before = len(self.verdicts)
        source = LocalHubSource(self.tmp / "hub")
        try:
            for batch in source.batches(64):

                async def checkpoint(batch: Sequence[SourceEvent] = batch) -> None:
                    source.checkpoint(list(batch))

                results = self.pipeline.process_batch(batch)
                await self.committer.commit(results, events=len(batch), checkpoint=checkpoint)
        finally:
            source.close()
        return self.verdicts[before:]

    def enforcer(self, credential: Any = None) -> Enforcer:
        """The actor, signing in as `credential` (by default one the fake takes as is)."""
        client = build_client(credential or FakeCredential(), transport=self.graph)
        throttle = WriteThrottle(
            self.clock, ThrottleSettings(rate=5.0, burst=10, concurrency=4, max_attempts=4)
        )
        return Enforcer(self.outbox, TeamsMessages(client), self.clock, throttle)

    async def enforce(self) -> Counter[str]:
        return await self.enforcer().drain()

    def close(self) -> None:
        self.store.close()
        self.queue.close()
        self.outbox.close()


def teams_bench(tmp_path: Path, policy_text: str = ENFORCING, **graph: object) -> Teams:
    clock = VirtualClock(START)
    hub = LocalHub(tmp_path / "hub", partitions=1)
    fake = FakeGraph(
        clock,
        hub=hub,
        permissions={
            "Chat.Read.All",
            "ChannelMessage.Read.All",
            "Chat.UpdatePolicyViolation.All",
            "ChannelMessage.UpdatePolicyViolation.All",
        },
        **graph,  # type: ignore[arg-type]
    )
    policy = load_policy(policy_file(tmp_path, policy_text))
    assert policy is not None
    return Teams(tmp_path, clock, fake, policy)


@pytest.fixture
def teams(tmp_path: Path) -> Iterator[Teams]:
    bench = teams_bench(tmp_path)
    yield bench
    bench.close()
