"""One verdict per change notification, keyed so a replay adds nothing.

Graph repeats notifications (retries, replays after outages) and Event Hubs consumers are
at-least-once, so the sink deduplicates on a key built from what identifies one version of
one message: tenant, resource, message id, change type and the etag (else the last
modification time).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from graphtap.processing.actions import Action
from graphtap.processing.records import pickled_as_fields

#: What the verdict could say about the content.
INSPECTED = "inspected"  # decrypted and run through the detectors
DELETED = "deleted"  # a deletion: there is no content to inspect
NOT_INCLUDED = "not_included"  # a basic notification: Graph sent no resource data
GONE = "gone"  # an Outlook message deleted (or moved out of reach) before it could be read


def verdict_key(
    tenant_id: str, resource: str, message_id: str, change_type: str, version: str | None
) -> str:
    """Stable identity of one notified change; equal for replays of the same change."""
    material = "\x1f".join((tenant_id, resource, message_id, change_type, version or ""))
    return hashlib.sha256(material.encode()).hexdigest()


def mail_verdict_key(tenant_id: str, message_id: str, *, deleted: bool, version: str | None) -> str:
    """The key of one version of one Outlook message, equal whichever path saw it.

    Graph notifies a new message as `created` and often `updated` too, and a folder's delta
    query says neither: the etag alone names the version, so the change type is reduced to
    changed or deleted. The mailbox is left out: Graph writes it as `{id}@{tenant}` in
    notifications and as the declared id or UPN elsewhere, while an Outlook message id already
    names its mailbox's store. A deletion carries no version on every path, so it has none."""
    change = "deleted" if deleted else "changed"
    return verdict_key(
        tenant_id, f"messages/{message_id}", message_id, change, None if deleted else version
    )


@pickled_as_fields
@dataclass(slots=True)
class Verdict:
    """One per change notification. Not frozen: one is built for every notification, and a
    frozen dataclass's constructor costs several times more; nothing changes it once issued."""

    key: str
    tenant_id: str
    subscription_id: str
    change_type: str
    resource: str
    message_id: str
    conversation_id: str | None
    version: str | None
    sender_id: str | None
    content: str
    severity: str
    findings: tuple[dict[str, Any], ...]
    certificate_id: str | None
    partition: str
    offset: int
    processed_at: float
    #: Findings or positions left out of `findings` so the verdict stays one event's size
    #: (see `graphtap.inspection.MAX_FINDINGS`); counts still include them.
    findings_truncated: bool = False
    findings_omitted: int = 0  # findings not listed
    #: What the policy does about it in Teams (None: report only); see `actions`.
    action: Action | None = None

    @property
    def finding_total(self) -> int:
        """Every finding the message had, listed or not."""
        return len(self.findings) + self.findings_omitted

    def to_dict(self) -> dict[str, Any]:
        """The record sinks write: no message content, findings already masked and hashed."""
        return {
            "verdict_key": self.key,
            "tenant_id": self.tenant_id,
            "subscription_id": self.subscription_id,
            "change_type": self.change_type,
            "resource": self.resource,
            "message_id": self.message_id,
            "conversation_id": self.conversation_id,
            "version": self.version,
            "sender_id": self.sender_id,
            "content": self.content,
            "severity": self.severity,
            "findings": list(self.findings),
            "findings_truncated": self.findings_truncated,
            "finding_total": self.finding_total,
            "certificate_id": self.certificate_id,
            "source": {"partition": self.partition, "offset": self.offset},
            "processed_at": self.processed_at,
            "action": self.action.to_dict() if self.action is not None else None,
        }
