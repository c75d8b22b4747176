"""Event bodies exactly as Microsoft Graph writes them into Event Hubs.

Each body is a changeNotificationCollection; rich items carry `encryptedContent` made per
Graph's spec for the given certificate. The stream opens with Graph's validation event for
each subscription, batches up to a few items per event, sprinkles lifecycle events in, and
can inject faults (tampering, a wrong clientState, a retired certificate, a torn body, a
blob-stored payload) so that every path of the processor is exercised. With `mail_share`, a
share of the changes are Outlook mail: basic notifications that name a message, whose
content each event carries apart (`SimulatedEvent.mail`) for a fake Graph to serve.
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
from graphtap.notifications.outlook import mail_change_item, mail_resource
from graphtap.simulation.tenant import Mail, Message, SyntheticTenant, User

DEFAULT_START = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
#: Teams chatMessage subscriptions live at most 4,320 minutes.
SUBSCRIPTION_LIFETIME = dt.timedelta(minutes=4320)
#: Basic Outlook subscriptions live at most 10,080 minutes.
MAIL_SUBSCRIPTION_LIFETIME = dt.timedelta(minutes=10080)
FAULTS = (
    "signature_mismatch",
    "client_state_mismatch",
    "unknown_certificate",
    "malformed_event",
    "payload_unavailable",
)
LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")
#: Event Hubs' event size limit: a rich notification whose payload would not fit has it
#: written to the subscription's `blobStoreUrl` account instead.
EVENT_LIMIT_BYTES = 1024 * 1024
#: A large message's HTML: enough that its encrypted content alone is over the limit.
LARGE_HTML_CHARS = 800_000
_FILLER = "<p>Agenda review: the team walked through the open items and agreed on owners.</p>"


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
    #: Share of new and edited messages over 1 MB, delivered as Graph does: the event carries
    #: `additionalPayloadStorageId`, the payload store the item's content (`payloads`).
    large_share: float = 0.0
    #: The share of changes that are Outlook mail, to the first `mailboxes` users.
    mail_share: float = 0.0
    mailboxes: int = 4
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
            "large_share",
            "mail_share",
        ):
            share = getattr(self, name)
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {share}")
        if self.update_share + self.delete_share > 1.0:
            raise ValueError("update_share + delete_share must not exceed 1")
        if self.max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if self.mail_share and not 1 <= self.mailboxes <= self.users:
            raise ValueError(f"mailboxes must be between 1 and users ({self.users})")


@dataclass(frozen=True, slots=True)
class MailContent:
    """What Graph holds for a notified message: a fake Graph serves it to the processor."""

    user_id: str
    message: dict[str, Any]
    attachments: tuple[dict[str, Any], ...]

    @classmethod
    def of(cls, mail: Mail) -> MailContent:
        return cls(mail.mailbox.id, mail.to_graph(), tuple(mail.attachment_list()))


@dataclass(frozen=True, slots=True)
class SimulatedEvent:
    """One event body and what the processor should make of it."""

    body: bytes
    changes: int = 0
    lifecycle: int = 0
    validation: int = 0
    faults: tuple[str, ...] = ()
    planted: tuple[str, ...] = ()
    #: (additionalPayloadStorageId, blob) for each item whose content Graph put in the
    #: payload store: a JSON object of its `resource`, `resourceData`, `encryptedContent`.
    payloads: tuple[tuple[str, bytes], ...] = ()
    #: The messages this event's mail notifications name, as Graph holds them.
    mail: tuple[MailContent, ...] = ()


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
        mailboxes: tuple[User, ...] = (),
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
        for user in mailboxes:
            resource = f"/users/{user.id}/messages"
            emitter.subscriptions[resource] = SimulatedSubscription(
                str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                resource,
                start + MAIL_SUBSCRIPTION_LIFETIME,
            )
        return emitter

    def mail_change(self, mail: Mail, change_type: str) -> dict[str, Any]:
        """Outlook's basic notification: it names the message, the content stays in Graph."""
        subscription = self.subscriptions[f"/users/{mail.mailbox.id}/messages"]
        return mail_change_item(
            subscription_id=subscription.id,
            expiration=_iso(subscription.expiration),
            change_type=change_type,
            client_state=self.client_state,
            tenant_id=self.tenant_id,
            resource=mail_resource(mail.mailbox.id, self.tenant_id, mail.id),
            message_id=mail.id,
            etag=mail.etag,
        )

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
    mailboxes = tenant.users[: settings.mailboxes] if settings.mail_share else ()
    emitter = NotificationEmitter.for_certificate(
        rng,
        tenant_id=tenant.tenant_id,
        certificate=certificate,
        certificate_id=certificate_id,
        client_state=client_state,
        start=settings.start,
        mailboxes=mailboxes,
    )
    for _ in emitter.subscriptions:
        yield SimulatedEvent(collection([emitter.validation()]), validation=1)

    pending: list[dict[str, Any]] = []
    planted: list[str] = []
    mail: list[MailContent] = []
    remaining = settings.count
    while remaining:
        if rng.random() < settings.lifecycle_share:
            subscription = rng.choice(list(emitter.subscriptions.values()))
            yield SimulatedEvent(
                collection([emitter.lifecycle(subscription, rng.choice(LIFECYCLE_EVENTS))]),
                lifecycle=1,
            )
        if settings.mail_share and rng.random() < settings.mail_share:
            remaining -= 1
            received, mail_change = _next_mail(tenant, rng, settings, mailboxes)
            pending.append(emitter.mail_change(received, mail_change))
            planted.extend(received.planted)
            mail.append(MailContent.of(received))
            if len(pending) >= rng.randint(1, settings.max_batch):
                yield SimulatedEvent(
                    collection(pending), len(pending), planted=tuple(planted), mail=tuple(mail)
                )
                pending, planted, mail = [], [], []
            continue
        message, change_type = _next_change(tenant, rng, settings)
        remaining -= 1
        if (
            change_type != "deleted"
            and settings.large_share
            and rng.random() < settings.large_share
        ):
            yield _large(rng, emitter, message, change_type)
            continue
        item = emitter.change(message, change_type)
        if settings.fault_share and rng.random() < settings.fault_share:
            fault = rng.choice(FAULTS)
            yield _faulty(rng, item, fault)
            continue
        pending.append(item)
        if change_type != "deleted":
            planted.extend(message.planted)
        if len(pending) >= rng.randint(1, settings.max_batch):
            yield SimulatedEvent(
                collection(pending), len(pending), planted=tuple(planted), mail=tuple(mail)
            )
            pending, planted, mail = [], [], []
    if pending:
        yield SimulatedEvent(
            collection(pending), len(pending), planted=tuple(planted), mail=tuple(mail)
        )


def _next_mail(
    tenant: SyntheticTenant,
    rng: random.Random,
    settings: SimulationSettings,
    mailboxes: tuple[User, ...],
) -> tuple[Mail, str]:
    """New mail, or earlier mail read or flagged (Outlook notifies that as `updated`)."""
    if rng.random() < settings.update_share and (mail := tenant.reread()) is not None:
        return mail, "updated"
    return tenant.receive(mailboxes, sensitive=rng.random() < settings.sensitive_share), "created"


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


def oversized_html(html: str) -> str:
    """`html` with filler after it (nothing a detector reports): a message whose encrypted
    content alone is over Event Hubs' 1 MB."""
    return html + _FILLER * (LARGE_HTML_CHARS // len(_FILLER) + 1)


def _large(
    rng: random.Random, emitter: NotificationEmitter, message: Message, change_type: str
) -> SimulatedEvent:
    """A change whose encrypted payload is over 1 MB, in its own event, as Graph sends it:
    the item names the blob holding its `resource`, `resourceData` and `encryptedContent`."""
    message.html = oversized_html(message.html)
    item = emitter.change(message, change_type)
    payload = {key: item.pop(key) for key in ("resource", "resourceData", "encryptedContent")}
    storage_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    item["additionalPayloadStorageId"] = storage_id
    blob = json.dumps(payload, separators=(",", ":")).encode()
    assert len(json.dumps(payload["encryptedContent"])) > EVENT_LIMIT_BYTES
    return SimulatedEvent(
        collection([item]), changes=1, planted=message.planted, payloads=((storage_id, blob),)
    )


def _faulty(rng: random.Random, item: dict[str, Any], fault: str) -> SimulatedEvent:
    if fault == "malformed_event":
        body = collection([item])
        return SimulatedEvent(body[: rng.randint(1, len(body) - 1)], faults=(fault,))
    if fault == "client_state_mismatch":
        item["clientState"] = "not-the-" + item["clientState"]
    elif fault == "payload_unavailable":
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
