"""The changeNotificationCollection Graph writes into Event Hubs, parsed defensively.

Graph does not document whether an event carries one notification or several, so every
body is treated as a collection and each item is checked on its own: one malformed item
must not cost the verdicts of its neighbours.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import orjson

from graphtap.notifications.errors import NotificationError, Reason

#: Standard and Premium Event Hubs cap an event at 1 MB; anything larger is not from Graph.
DEFAULT_MAX_EVENT_BYTES = 1024 * 1024
#: Longest value accepted for an identifier-like field (ids, client state, change type).
MAX_FIELD_CHARS = 2048
#: Graph's marker for the reachability test it writes after a subscription is created.
VALIDATION_CHANGE_TYPE_PREFIX = "Validation:"
VALIDATION_SUBSCRIPTION_ID = "NA"

# The records built for every notification are plain slotted dataclasses, not frozen ones:
# a frozen dataclass's constructor costs several times more, on the path whose every
# microsecond counts. Nothing changes them once parsed.


@dataclass(slots=True)
class EncryptedContent:
    """`encryptedContent` of a rich notification: base64 fields as Graph sent them."""

    data: str
    data_key: str
    data_signature: str | None
    certificate_id: str | None
    certificate_thumbprint: str | None


@dataclass(slots=True)
class ChangeNotification:
    """One item of a collection's `value` array."""

    index: int
    subscription_id: str
    change_type: str
    tenant_id: str | None
    client_state: str | None
    resource: str | None
    resource_data: dict[str, Any] | None
    encrypted_content: EncryptedContent | None
    lifecycle_event: str | None
    additional_payload_storage_id: str | None
    subscription_expiration: str | None
    raw: dict[str, Any]

    @property
    def is_validation(self) -> bool:
        """Graph's Event Hubs reachability test, not a change."""
        return self.subscription_id == VALIDATION_SUBSCRIPTION_ID and self.change_type.startswith(
            VALIDATION_CHANGE_TYPE_PREFIX
        )

    @property
    def is_lifecycle(self) -> bool:
        return self.lifecycle_event is not None


@dataclass(frozen=True, slots=True)
class MalformedItem:
    """An item of `value` that is not a usable change notification; `problem` does not
    repeat the position, so an event of many alike items has one message."""

    index: int
    problem: str


@dataclass(frozen=True, slots=True)
class NotificationCollection:
    items: tuple[ChangeNotification | MalformedItem, ...]
    validation_tokens: tuple[str, ...] | None


def parse_collection(
    body: bytes | str, *, max_bytes: int = DEFAULT_MAX_EVENT_BYTES
) -> NotificationCollection:
    """Parse an Event Hubs event body; raise `NotificationError` if the whole event is unusable."""
    size = len(body)
    if size > max_bytes:
        raise NotificationError(
            Reason.OVERSIZED_EVENT, f"event body is {size} bytes, over the {max_bytes}-byte limit"
        )
    document = json_object(
        body, Reason.MALFORMED_EVENT, "event body", "a notification collection object"
    )
    value = document.get("value")
    if not isinstance(value, list) or not value:
        raise NotificationError(
            Reason.MALFORMED_EVENT, "event body has no non-empty 'value' array of notifications"
        )
    tokens = document.get("validationTokens")
    if tokens is not None and (
        not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens)
    ):
        raise NotificationError(
            Reason.MALFORMED_EVENT, "'validationTokens' is not an array of non-empty strings"
        )
    items = tuple(parse_item(index, item) for index, item in enumerate(value))
    return NotificationCollection(items, tuple(tokens) if tokens is not None else None)


def json_object(
    data: bytes | str, reason: Reason, what: str, kind: str = "an object"
) -> dict[str, Any]:
    """`data` decoded as a JSON object; anything else is a `NotificationError` for `reason`."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise NotificationError(reason, f"{what} is not UTF-8 JSON: {exc}") from None
    if not isinstance(document, dict):
        raise NotificationError(reason, f"{what} is a JSON {type(document).__name__}, not {kind}")
    return document


def parse_item(index: int, item: Any) -> ChangeNotification | MalformedItem:
    if not isinstance(item, dict):
        return MalformedItem(index, _not_an_object(type(item).__name__))
    try:
        lifecycle_event = _text(item, "lifecycleEvent")
        change_type = _text(item, "changeType")
        if change_type is None and lifecycle_event is None:
            raise ValueError("'changeType' is missing")
        subscription_id = _text(item, "subscriptionId")
        if subscription_id is None:
            raise ValueError("'subscriptionId' is missing")
        resource_data = item.get("resourceData")
        if resource_data is not None and not isinstance(resource_data, dict):
            raise ValueError("'resourceData' is not an object")
        return ChangeNotification(
            index=index,
            subscription_id=subscription_id,
            change_type=change_type or "",
            tenant_id=_text(item, "tenantId"),
            client_state=_text(item, "clientState"),
            resource=_text(item, "resource"),
            resource_data=resource_data,
            encrypted_content=_encrypted_content(item.get("encryptedContent")),
            lifecycle_event=lifecycle_event,
            additional_payload_storage_id=_text(item, "additionalPayloadStorageId"),
            subscription_expiration=_text(item, "subscriptionExpirationDateTime"),
            raw=item,
        )
    except ValueError as exc:
        return MalformedItem(index, str(exc))


@functools.lru_cache(maxsize=16)
def _not_an_object(kind: str) -> str:
    """One message object per JSON type: an event of many alike items shares it."""
    return f"item is a JSON {kind}, not an object"


def _encrypted_content(raw: Any) -> EncryptedContent | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError("'encryptedContent' is not an object")
    data = raw.get("data")
    data_key = raw.get("dataKey")
    if not isinstance(data, str) or not data:
        raise ValueError("'encryptedContent.data' is missing or not a string")
    if not isinstance(data_key, str) or not data_key:
        raise ValueError("'encryptedContent.dataKey' is missing or not a string")
    return EncryptedContent(
        data=data,
        data_key=data_key,
        data_signature=_text(raw, "dataSignature", "encryptedContent."),
        certificate_id=_text(raw, "encryptionCertificateId", "encryptedContent."),
        certificate_thumbprint=_text(raw, "encryptionCertificateThumbprint", "encryptedContent."),
    )


def _text(obj: dict[str, Any], key: str, where: str = "") -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"'{where}{key}' is a {type(value).__name__}, not a string")
    if len(value) > MAX_FIELD_CHARS and key != "data":
        raise ValueError(f"'{where}{key}' is {len(value)} characters, over {MAX_FIELD_CHARS}")
    return value
