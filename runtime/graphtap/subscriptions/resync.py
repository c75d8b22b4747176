"""Gap resync: read a window's messages back from Graph's export APIs and inspect them once.

Whenever notifications may have been lost (a removed subscription, a `missed` event,
downtime), the messages modified in the gap are read with the export APIs and turned into
the notifications Graph would have sent, encrypted to the current certificate. They go
through the same pipeline as live notifications, so their verdict keys equal the live ones
and a message already seen adds nothing.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric import rsa

from graphtap.notifications.crypto import encrypt_content
from graphtap.processing.committer import BatchCommitter
from graphtap.processing.pipeline import EventResult
from graphtap.processing.sources import SourceEvent
from graphtap.subscriptions.graph import GraphExports
from graphtap.subscriptions.keyvault import EncryptionCertificate
from graphtap.subscriptions.throttle import WriteThrottle

log = logging.getLogger(__name__)
RESYNC_PARTITION = "resync"
#: Notifications per synthesized event body.
BATCH = 50


class ResyncSink(Protocol):
    async def submit(self, bodies: Sequence[bytes]) -> int:
        """Hand event bodies to the processing path; returns the new verdicts."""
        ...


class ProcessingSubmitter:
    """Hands resynced event bodies to the processing path: process them, then the one commit
    step (with no checkpoint to move). Resynced notifications get the same verdict keys as
    live ones, so the sink sees each change once; rejected items land in the same
    dead-letter store."""

    def __init__(
        self,
        process: Callable[[Sequence[SourceEvent]], Awaitable[list[EventResult]]],
        committer: BatchCommitter,
    ) -> None:
        self._process = process
        self._committer = committer
        self._offsets = itertools.count(1)

    async def submit(self, bodies: Sequence[bytes]) -> int:
        events = [SourceEvent(RESYNC_PARTITION, next(self._offsets), body) for body in bodies]
        results = await self._process(events)
        before = self._committer.summary.verdicts
        await self._committer.commit(results, events=len(events), checkpoint=_no_checkpoint)
        return self._committer.summary.verdicts - before


async def _no_checkpoint() -> None:
    """Resync reads Graph, not a partition: there is nothing to checkpoint."""


@dataclass(frozen=True, slots=True)
class ResyncReport:
    start: dt.datetime
    end: dt.datetime
    messages: int
    new_verdicts: int


class Resync:
    def __init__(
        self,
        exports: GraphExports,
        throttle: WriteThrottle,
        sink: ResyncSink,
        *,
        tenant_id: str,
    ) -> None:
        self._exports = exports
        self._throttle = throttle
        self._sink = sink
        self._tenant_id = tenant_id

    async def window(
        self,
        start: dt.datetime,
        end: dt.datetime,
        *,
        certificate: EncryptionCertificate,
        client_state: str,
    ) -> ResyncReport:
        """Every chat and channel message modified in (start, end), inspected once."""
        messages: dict[tuple[str, str], dict[str, Any]] = {}
        users = await self._throttle.run(self._exports.user_ids, write=False)
        for user in users:
            read = partial(self._exports.chat_messages, user, start, end)
            for message in await self._throttle.run(read, write=False):
                messages[(str(message.get("id")), str(message.get("etag")))] = message
        teams = await self._throttle.run(self._exports.team_ids, write=False)
        for team in teams:
            read = partial(self._exports.channel_messages, team, start, end)
            for message in await self._throttle.run(read, write=False):
                messages[(str(message.get("id")), str(message.get("etag")))] = message
        items = [
            self._notification(m, certificate, client_state)
            for m in messages.values()
            if _resource(m) is not None
        ]
        bodies = [
            json.dumps({"value": items[i : i + BATCH]}, separators=(",", ":")).encode()
            for i in range(0, len(items), BATCH)
        ]
        new = await self._sink.submit(bodies) if bodies else 0
        return ResyncReport(start, end, len(items), new)

    def _notification(
        self, message: dict[str, Any], certificate: EncryptionCertificate, client_state: str
    ) -> dict[str, Any]:
        resource = _resource(message)
        change_type = _change_type(message)
        item: dict[str, Any] = {
            "subscriptionId": RESYNC_PARTITION,
            "changeType": change_type,
            "clientState": client_state,
            "resource": resource,
            "resourceData": {
                "id": message.get("id"),
                "@odata.type": "#Microsoft.Graph.chatMessage",
                "@odata.id": resource,
            },
            "tenantId": self._tenant_id,
        }
        if change_type != "deleted":
            public_key = certificate.certificate.public_key()
            if not isinstance(public_key, rsa.RSAPublicKey):
                raise ValueError("the encryption certificate is not RSA")
            item["encryptedContent"] = encrypt_content(
                json.dumps(message, separators=(",", ":")).encode(),
                public_key,
                certificate_id=certificate.certificate_id,
                certificate_thumbprint=certificate.thumbprint,
            )
        return item


def _change_type(message: dict[str, Any]) -> str:
    if message.get("deletedDateTime"):
        return "deleted"
    if message.get("lastModifiedDateTime") != message.get("createdDateTime"):
        return "updated"
    return "created"


def _resource(message: dict[str, Any]) -> str | None:
    """The notification `resource` Graph uses for this message."""
    message_id = message.get("id")
    if message.get("chatId"):
        return f"chats('{message['chatId']}')/messages('{message_id}')"
    channel = message.get("channelIdentity") or {}
    if channel.get("teamId") and channel.get("channelId"):
        return (
            f"teams('{channel['teamId']}')/channels('{channel['channelId']}')"
            f"/messages('{message_id}')"
        )
    return None
