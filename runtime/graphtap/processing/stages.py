"""The stages a change notification passes through, in order, each with one job.

A stage looks at the item's context and either returns an outcome, which ends the chain
for that item, or returns None to pass it on (setting what it learnt on the context).
A stage that finds a problem raises `NotificationError`; the pipeline turns that into a
dead letter with the stage's reason code.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from graphtap.notifications.authenticity import ClientStateCheck
from graphtap.notifications.binding import binding_problem, mail_message
from graphtap.notifications.crypto import (
    Envelope,
    open_envelope,
    open_sealed,
    resource_object,
    unwrap_key,
)
from graphtap.notifications.errors import NotificationError, Reason
from graphtap.notifications.keyring import KeyEntry, KeyRing
from graphtap.notifications.model import ChangeNotification, MalformedItem, parse_item
from graphtap.processing.actions import decide
from graphtap.processing.fetched import Fetched, Gone, MailMessage, Payload, Unavailable
from graphtap.processing.lifecycle import LifecycleEvent
from graphtap.processing.verdicts import (
    DELETED,
    GONE,
    INSPECTED,
    NOT_INCLUDED,
    Verdict,
    mail_verdict_key,
    verdict_key,
)

if TYPE_CHECKING:
    from graphtap.inspection import InspectionResult, Inspector, Policy

log = logging.getLogger(__name__)

CHANGE_TYPES = frozenset({"created", "updated", "deleted"})


@dataclass(slots=True)
class ItemContext:
    """What the stages know about one item of one event."""

    notification: ChangeNotification
    body: bytes
    partition: str
    offset: int
    received_at: float
    key_entry: KeyEntry | None = field(default=None, repr=False)
    envelope: Envelope | None = None
    content_key: bytes | None = field(default=None, repr=False)
    resource: dict[str, Any] | None = None
    certificate_id: str | None = None
    inspection: InspectionResult | None = None
    #: What the host fetched for this item (a large payload, an Outlook message).
    fetched: Fetched | None = field(default=None, repr=False)
    gone: bool = False  # the message no longer existed when it was fetched


@dataclass(frozen=True, slots=True)
class Skipped:
    """Graph's reachability test: counted, not a change."""

    why: str


Outcome = Skipped | LifecycleEvent | Verdict


class Stage(Protocol):
    def __call__(self, ctx: ItemContext) -> Outcome | None: ...


class SkipValidationEvents:
    """Graph writes a validation message into the hub after each subscription is created."""

    def __call__(self, ctx: ItemContext) -> Outcome | None:
        return Skipped("validation") if ctx.notification.is_validation else None


class RouteLifecycleEvents:
    """Lifecycle items go to the control plane's queue, once their clientState is verified."""

    def __init__(self, client_state: ClientStateCheck) -> None:
        self._client_state = client_state
        self._digest: tuple[bytes, str] | None = None  # the last body's: events of many items

    def __call__(self, ctx: ItemContext) -> Outcome | None:
        if not ctx.notification.is_lifecycle:
            return None
        self._client_state.verify(ctx.notification.client_state)
        item = {k: v for k, v in ctx.notification.raw.items() if k != "clientState"}
        if self._client_state.appears_in(orjson.dumps(item)):
            # The queue keeps the item: the secret must not ride in with another field.
            raise NotificationError(
                Reason.MALFORMED_NOTIFICATION,
                "lifecycle notification repeats its clientState in another field",
            )
        if self._digest is None or self._digest[0] is not ctx.body:
            self._digest = (ctx.body, hashlib.sha256(ctx.body).hexdigest())
        return LifecycleEvent.from_item(
            ctx.notification.raw,
            body=ctx.body,
            index=ctx.notification.index,
            received_at=ctx.received_at,
            digest=self._digest[1],
        )


class CheckClientState:
    """The secret set on the subscription must come back on every notification."""

    def __init__(self, client_state: ClientStateCheck) -> None:
        self._client_state = client_state

    def __call__(self, ctx: ItemContext) -> Outcome | None:
        self._client_state.verify(ctx.notification.client_state)
        return None


class RequireChangeFields:
    """A change needs what its verdict is keyed on."""

    def __call__(self, ctx: ItemContext) -> Outcome | None:
        n = ctx.notification
        if n.change_type not in CHANGE_TYPES:
            raise NotificationError(
                Reason.MALFORMED_NOTIFICATION,
                f"changeType {n.change_type[:80]!r} is not created, updated or deleted",
            )
        if not n.tenant_id:
            raise NotificationError(Reason.MALFORMED_NOTIFICATION, "notification has no tenantId")
        if not n.resource:
            raise NotificationError(Reason.MALFORMED_NOTIFICATION, "notification has no resource")
        return None


class LoadLargePayload:
    """Payloads over 1 MB: Graph sends the id of a blob holding the item's `resource`,
    `resourceData` and `encryptedContent`; the host read it before the pipeline ran."""

    def __call__(self, ctx: ItemContext) -> Outcome | None:
        n = ctx.notification
        storage_id = n.additional_payload_storage_id
        if storage_id is None:
            return None
        fetched = ctx.fetched
        if isinstance(fetched, Unavailable):
            raise NotificationError(fetched.reason, fetched.problem)
        if not isinstance(fetched, Payload):
            raise NotificationError(
                Reason.PAYLOAD_UNAVAILABLE, f"payload {storage_id[:200]!r} was not fetched"
            )
        properties = {k: fetched.properties.get(k) for k in _PAYLOAD_PROPERTIES}
        item = {k: v for k, v in n.raw.items() if k != "additionalPayloadStorageId"}
        item.update({k: v for k, v in properties.items() if v is not None})
        loaded = parse_item(n.index, item)
        if isinstance(loaded, MalformedItem):
            raise NotificationError(
                Reason.MALFORMED_NOTIFICATION, f"payload {storage_id[:200]!r}: {loaded.problem}"
            )
        if loaded.resource is None or loaded.encrypted_content is None:
            raise NotificationError(
                Reason.MALFORMED_NOTIFICATION,
                f"payload {storage_id[:200]!r} has no resource or encryptedContent",
            )
        ctx.notification = loaded
        return None


_PAYLOAD_PROPERTIES = ("resource", "resourceData", "encryptedContent")


class OpenEnvelope:
    """Rich notifications: the key the notification names, and its `encryptedContent`
    decoded; what cannot be Graph's fails here, before any RSA work."""

    def __init__(self, keys: KeyRing) -> None:
        self._keys = keys

    def __call__(self, ctx: ItemContext) -> Outcome | None:
        content = ctx.notification.encrypted_content
        if content is None:
            return None
        ctx.key_entry = self._keys.key_for(content)
        ctx.certificate_id = ctx.key_entry.certificate_id
        ctx.envelope = open_envelope(content)
        return None


class UnwrapKey:
    """The RSA unwrap of the content key: nothing else, so a batch's RSA runs back to back
    and the stages after it find the CPU's caches as they left them."""

    def __call__(self, ctx: ItemContext) -> Outcome | None:
        if ctx.envelope is not None and ctx.key_entry is not None:
            ctx.content_key = unwrap_key(ctx.envelope, ctx.key_entry.private_key)
        return None


class DecryptContent:
    """Verify the content's HMAC, then decrypt it to the resource JSON object."""

    def __call__(self, ctx: ItemContext) -> Outcome | None:
        if ctx.envelope is None or ctx.content_key is None:
            return None
        ctx.resource = resource_object(open_sealed(ctx.envelope, ctx.content_key))
        ctx.envelope = ctx.content_key = ctx.key_entry = None  # done with the keys
        return None


class UseFetchedMessage:
    """Outlook messages: the body cannot ride in a notification, so the host read the message
    from Graph; one deleted before that has nothing left to inspect. A message nothing read
    (no Graph client where it was processed) is a `fetch_failed` letter, not a verdict: a
    verdict would stand for the change without its content ever having been inspected. That
    holds for a rich notification too: it carries the `$select`ed properties, never the
    body."""

    def __call__(self, ctx: ItemContext) -> Outcome | None:
        fetched = ctx.fetched
        n = ctx.notification
        if isinstance(fetched, MailMessage):
            ctx.resource = fetched.message
        elif isinstance(fetched, Gone):
            ctx.gone = True
        elif isinstance(fetched, Unavailable) and n.additional_payload_storage_id is None:
            raise NotificationError(fetched.reason, fetched.problem)
        elif n.change_type != "deleted" and mail_message(n.resource, n.tenant_id) is not None:
            raise NotificationError(
                Reason.FETCH_FAILED,
                "the Outlook message was not read: no Graph client is configured here "
                "(replay with --graph-endpoint)",
            )
        return None


class CheckResourceBinding:
    """The decrypted message must be the one the notification names: Graph's HMAC covers the
    ciphertext alone, so content moved under another message's `resource` would otherwise
    yield a verdict pairing one message's resource with another's id."""

    def __call__(self, ctx: ItemContext) -> Outcome | None:
        if ctx.resource is not None:
            n = ctx.notification
            problem = binding_problem(n.resource, n.resource_data, ctx.resource)
            if problem is not None:
                raise NotificationError(Reason.RESOURCE_MISMATCH, problem)
        return None


class InspectContent:
    """HTML to text, then the detectors: the DLP engine's whole job on one message."""

    def __init__(self, inspector: Inspector) -> None:
        self._inspector = inspector

    def __call__(self, ctx: ItemContext) -> Outcome | None:
        if ctx.resource is not None and ctx.notification.change_type != "deleted":
            try:
                ctx.inspection = self._inspector.inspect_message(ctx.resource)
            except TypeError as exc:  # the inspector's word for a resource of the wrong shape
                raise NotificationError(Reason.MALFORMED_RESOURCE, str(exc)) from None
        return None


class IssueVerdict:
    """The end of every change's chain: exactly one verdict, with the action the policy
    takes in Teams decided here, from the findings and the message as it now is."""

    def __init__(self, policy: Policy | None = None) -> None:
        self._policy = policy

    def __call__(self, ctx: ItemContext) -> Outcome | None:
        n = ctx.notification
        resource = ctx.resource or {}
        resource_data = n.resource_data or {}
        message_id = str(resource.get("id") or resource_data.get("id") or n.resource)
        version = resource.get("etag") or resource.get("lastModifiedDateTime")
        if version is None:
            version = resource_data.get("@odata.etag")
        if version is not None:
            version = str(version)  # the key and the stores see the same text
        tenant_id = n.tenant_id or ""
        resource_path = n.resource or ""
        if n.change_type == "deleted":
            content = DELETED
        elif ctx.gone:
            content = GONE
        elif ctx.resource is not None:
            content = INSPECTED
        else:
            content = NOT_INCLUDED
        inspection = ctx.inspection
        mailbox = mail_message(n.resource, n.tenant_id)
        if mailbox is None:
            key = verdict_key(tenant_id, resource_path, message_id, n.change_type, version)
        else:
            # The version notified, whatever the fetch found: resync must meet the same key.
            notified = resource_data.get("@odata.etag")
            version = str(notified) if notified is not None else version
            key = mail_verdict_key(
                tenant_id,
                mailbox[1],
                deleted=n.change_type == "deleted",
                version=version,
            )
        findings = tuple([f.to_dict() for f in inspection.findings]) if inspection else ()
        action = None
        if self._policy is not None and self._policy.enforcement.acts:
            policy = self._policy
            action = decide(
                policy.enforcement,
                verdict_key=key,
                change_type=n.change_type,
                message=ctx.resource if content == INSPECTED else None,
                findings=findings,
                severity_of=lambda kind: policy.for_type(kind).severity,
                now=ctx.received_at,
            )
        return Verdict(
            key=key,
            tenant_id=tenant_id,
            subscription_id=n.subscription_id,
            change_type=n.change_type,
            resource=resource_path,
            message_id=message_id,
            conversation_id=_conversation_id(resource),
            version=version,
            sender_id=_sender_id(resource),
            content=content,
            severity=inspection.severity if inspection is not None else "none",
            findings=findings,
            certificate_id=ctx.certificate_id,
            partition=ctx.partition,
            offset=ctx.offset,
            processed_at=ctx.received_at,
            findings_truncated=inspection.truncated if inspection else False,
            findings_omitted=inspection.omitted if inspection else 0,
            action=action,
        )


def _conversation_id(resource: dict[str, Any]) -> str | None:
    """The chat, or team/channel, a message belongs to: the unit whose order matters."""
    chat_id = resource.get("chatId")
    if isinstance(chat_id, str):
        return chat_id
    channel = resource.get("channelIdentity")
    if isinstance(channel, dict) and channel.get("channelId"):
        return f"{channel.get('teamId')}/{channel.get('channelId')}"
    return None


def _sender_id(resource: dict[str, Any]) -> str | None:
    sender = resource.get("from")
    if isinstance(sender, dict):
        for kind in ("user", "application", "device"):
            identity = sender.get(kind)
            if isinstance(identity, dict) and isinstance(identity.get("id"), str):
                return str(identity["id"])
    return None
