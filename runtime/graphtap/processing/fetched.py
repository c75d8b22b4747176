"""What the host fetched for a notification that points at its content instead of carrying it.

Set on `SourceEvent.fetched` by item index before the pipeline runs (see `processing.fetch`),
so the pipeline itself stays free of I/O; the stages read it as if Graph had sent it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graphtap.notifications.errors import Reason


@dataclass(frozen=True, slots=True)
class Payload:
    """A large rich notification's `resource`, `resourceData` and `encryptedContent`, read
    from the blob its `additionalPayloadStorageId` names, or handed over beside the event."""

    properties: dict[str, Any]
    #: Handed over beside the event (gap resync) and kept nowhere else: a dead letter of the
    #: event keeps it, so a replay has what the payload store cannot give back.
    handed_over: bool = False


@dataclass(frozen=True, slots=True)
class MailMessage:
    """An Outlook message as Graph serves it: subject, body, sender, attachment names."""

    message: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Gone:
    """The message was deleted (or moved out of reach) before it could be read."""


@dataclass(frozen=True, slots=True)
class Unavailable:
    """Fetching failed for good (after retries): the item is dead-lettered with `reason`."""

    reason: Reason
    problem: str


Fetched = Payload | MailMessage | Gone | Unavailable


def handed_over(fetched: Mapping[int, Fetched] | None) -> dict[int, dict[str, Any]] | None:
    """The properties of the payloads an event came with that no store can give back, by
    item index; None when there are none."""
    if not fetched:
        return None
    kept = {
        index: found.properties
        for index, found in fetched.items()
        if isinstance(found, Payload) and found.handed_over
    }
    return kept or None
