"""Event bodies exactly as Microsoft Graph writes them into Event Hubs.

Each body is a changeNotificationCollection; rich items carry `encryptedContent` made per
Graph's spec for the given certificate. The stream opens with Graph's validation event for
each subscription, batches up to a few items per event, sprinkles lifecycle events in, and
can inject faults (tampering, a wrong clientState, a retired certificate, a torn body, a
blob-stored payload) so that every path of the processor is exercised.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from graphtap.notifications.crypto import encrypt_content
from graphtap.notifications.keyring import thumbprint
from graphtap.simulation.tenant import Message, SyntheticTenant

DEFAULT_START = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
#: Teams chatMessage subscriptions live at most 4,320 minutes.
SUBSCRIPTION_LIFETIME = dt.timedelta(minutes=4320)
FAULTS = (
    "signature_mismatch",
    "client_state_mismatch",
    "unknown_certificate",
    "malformed_event",
    "payload_in_blob_storage",
)
LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")


@dataclass(frozen=True)
class SimulationSettings:
    count: int
    seed: int = 0
    sensitive_share: float = 0.2
    update_share: float = 0.15
    delete_share: float = 0.05
    max_batch: int = 3
    lifecycle_share: float = 0.002
    fault_share: float = 0.0
    users: int = 40
    start: dt.datetime = DEFAULT_START

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError("count must not be negative")
        for name in (
            "sensitive_share",
            "update_share",
            "delete_share",
            "lifecycle_share",
            "fault_share",
        ):
            share = getattr(self, name)
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {share}")
        if self.update_share + self.delete_share > 1.0:
            raise ValueError("update_share + delete_share must not exceed 1")
        if self.max_batch < 1:
            raise ValueError("max_batch must be at least 1")


@dataclass(frozen=True, slots=True)
class SimulatedEvent:
    """One event body and what the processor should make of it."""

    body: bytes
    changes: int = 0
    lifecycle: int = 0
    validation: int = 0
    faults: tuple[str, ...] = ()
    planted: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SimulatedSubscription:
    id: str
    resource: str
    expiration: dt.datetime


@dataclass
class NotificationEmitter:
    """Builds notification items for one certificate and one clientState."""

    rng: random.Random
    tenant_id: str
    public_key: rsa.RSAPublicKey
    certificate_id: str
    certificate_thumbprint: str
    client_state: str
    subscriptions: dict[str, SimulatedSubscription] = field(default_factory=dict)

    @classmethod
    def for_certificate(
        cls,
        rng: random.Random,
        *,
        tenant_id: str,
        certificate: x509.Certificate,
        certificate_id: str,
        client_state: str,
        start: dt.datetime,
    ) -> NotificationEmitter:
        public_key = certificate.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise ValueError("Graph encrypts to RSA certificates only")
        emitter = cls(
            rng, tenant_id, public_key, certificate_id, thumbprint(certificate), client_state
        )
        for resource in ("/teams/getAllMessages", "/chats/getAllMessages"):
            emitter.subscriptions[resource] = SimulatedSubscription(
                str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                resource,
                start + SUBSCRIPTION_LIFETIME,
            )
        return emitter

    def subscription_for(self, message: Message) -> SimulatedSubscription:
        key = (
            "/teams/getAllMessages" if message.conversation.is_channel else "/chats/getAllMessages"
        )
        return self.subscriptions[key]

    def change(self, message: Message, change_type: str) -> dict[str, Any]:
        subscription = self.subscription_for(message)
        item = change_item(
            message,
            change_type,
            subscription_id=subscription.id,
            expiration=subscription.expiration,
            client_state=self.client_state,
            tenant_id=self.tenant_id,
        )
        if change_type != "deleted":
            resource = json.dumps(message.to_graph(), separators=(",", ":")).encode()
            item["encryptedContent"] = encrypt_content(
                resource,
                self.public_key,
                certificate_id=self.certificate_id,
                certificate_thumbprint=self.certificate_thumbprint,
                symmetric_key=self.rng.randbytes(32),
            )
        return item

    def validation(self) -> dict[str, Any]:
        request_id = uuid.UUID(int=self.rng.getrandbits(128), version=4)
        return {
            "subscriptionId": "NA",
            "subscriptionExpirationDateTime": "NA",
            "changeType": "Validation: Testing client application reachability for "
            f"subscription Request-Id: {request_id}",
            "resource": "NA",
            "resourceData": {"@odata.type": "NA", "@odata.id": "NA", "id": "NA"},
            "clientState": "NA",
            "tenantId": "NA",
        }

    def lifecycle(self, subscription: SimulatedSubscription, event: str) -> dict[str, Any]:
        return {
            "subscriptionId": subscription.id,
            "subscriptionExpirationDateTime": _iso(subscription.expiration),
            "tenantId": self.tenant_id,
            "clientState": self.client_state,
            "lifecycleEvent": event,
        }


def change_item(
    message: Message,
    change_type: str,
    *,
    subscription_id: str,
    expiration: dt.datetime,
    client_state: str | None,
    tenant_id: str,
) -> dict[str, Any]:
    """A chatMessage change notification as Graph shapes it, before any encryptedContent."""
    return {
        "subscriptionId": subscription_id,
        "changeType": change_type,
        "clientState": client_state,
        "subscriptionExpirationDateTime": _iso(expiration),
        "resource": message.resource,
        "resourceData": {
            "id": message.id,
            "@odata.type": "#Microsoft.Graph.chatMessage",
            "@odata.id": message.resource,
        },
        "tenantId": tenant_id,
    }


def collection(items: list[dict[str, Any]]) -> bytes:
    return json.dumps({"value": items}, separators=(",", ":")).encode()


def simulate(
    settings: SimulationSettings,
    *,
    certificate: x509.Certificate,
    certificate_id: str,
    client_state: str,
) -> Iterator[SimulatedEvent]:
    """The event stream of a synthetic tenant: `settings.count` changes plus Graph's extras."""
    rng = random.Random(settings.seed)
    tenant = SyntheticTenant.create(rng, start=settings.start, users=settings.users)
    emitter = NotificationEmitter.for_certificate(
        rng,
        tenant_id=tenant.tenant_id,
        certificate=certificate,
        certificate_id=certificate_id,
        client_state=client_state,
        start=settings.start,
    )
    for _ in emitter.subscriptions:
        yield SimulatedEvent(collection([emitter.validation()]), validation=1)

    pending: list[dict[str, Any]] = []
    planted: list[str] = []
    remaining = settings.count
    while remaining:
        if rng.random() < settings.lifecycle_share:
            subscription = rng.choice(list(emitter.subscriptions.values()))
            yield SimulatedEvent(
                collection([emitter.lifecycle(subscription, rng.choice(LIFECYCLE_EVENTS))]),
                lifecycle=1,
            )
        message, change_type = _next_change(tenant, rng, settings)
        remaining -= 1
        item = emitter.change(message, change_type)
        if settings.fault_share and rng.random() < settings.fault_share:
            fault = rng.choice(FAULTS)
            yield _faulty(rng, item, fault)
            continue
        pending.append(item)
        if change_type != "deleted":
            planted.extend(message.planted)
        if len(pending) >= rng.randint(1, settings.max_batch):
            yield SimulatedEvent(collection(pending), changes=len(pending), planted=tuple(planted))
            pending, planted = [], []
    if pending:
        yield SimulatedEvent(collection(pending), changes=len(pending), planted=tuple(planted))


def _next_change(
    tenant: SyntheticTenant, rng: random.Random, settings: SimulationSettings
) -> tuple[Message, str]:
    sensitive = rng.random() < settings.sensitive_share
    roll = rng.random()
    if roll < settings.delete_share and (message := tenant.delete()) is not None:
        return message, "deleted"
    if (
        roll < settings.delete_share + settings.update_share
        and (message := tenant.edit(sensitive=sensitive)) is not None
    ):
        return message, "updated"
    return tenant.post(sensitive=sensitive), "created"


def _faulty(rng: random.Random, item: dict[str, Any], fault: str) -> SimulatedEvent:
    if fault == "malformed_event":
        body = collection([item])
        return SimulatedEvent(body[: rng.randint(1, len(body) - 1)], faults=(fault,))
    if fault == "client_state_mismatch":
        item["clientState"] = "not-the-" + item["clientState"]
    elif fault == "payload_in_blob_storage":
        for key in ("resource", "resourceData", "encryptedContent"):
            item.pop(key, None)
        item["additionalPayloadStorageId"] = f"{uuid.UUID(int=rng.getrandbits(128))}"
    elif "encryptedContent" not in item:
        # A deletion carries no content to tamper with: break its clientState instead.
        item["clientState"] = "not-the-" + item["clientState"]
        fault = "client_state_mismatch"
    elif fault == "signature_mismatch":
        content = item["encryptedContent"]
        data = content["data"]
        position = rng.randrange(0, len(data) - 4)
        replacement = "A" if data[position] != "A" else "B"
        content["data"] = data[:position] + replacement + data[position + 1 :]
    elif fault == "unknown_certificate":
        content = item["encryptedContent"]
        content["encryptionCertificateId"] = "retired-certificate"
        content["encryptionCertificateThumbprint"] = "0" * 40
    return SimulatedEvent(collection([item]), faults=(fault,))


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
