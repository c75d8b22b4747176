"""Dead letters in Azure Blob Storage: durable beyond the instance that wrote them.

One blob per event body, `events/<event key>.json` (`DeadEvent.to_dict()`), written before
the letters that refer to it; one blob per dead letter, `<reason>/<key>.json`, holding
`DeadLetter.to_dict()` (which names the event and says when it happened). A name is the
record's identity and nothing else, and blobs are created with `overwrite=False`: writing a
record again (a batch replayed after a failed checkpoint, on any day) is refused by the
service and counted as already stored.

A batch's blobs are written concurrently, with a bound, the bodies first. If any write
fails, the call raises once the others have finished, so the committer does not checkpoint
and the batch is delivered again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import ContentSettings
from azure.storage.blob.aio import ContainerClient

from graphtap.processing.deadletters import DeadEvent, DeadLetter
from graphtap.processing.sinks import gather_storage

JSON = ContentSettings(content_type="application/json")


class DeadLettersUnavailable(RuntimeError):
    """Blob Storage refused dead letters; the batch must not be checkpointed."""


def blob_name(letter: DeadLetter) -> str:
    return f"{letter.reason}/{letter.key.replace(':', '-')}.json"


def event_blob_name(event: DeadEvent) -> str:
    return f"events/{event.key}.json"


class BlobDeadLetters:
    def __init__(
        self,
        account_url: str,
        container: str,
        *,
        credential: AsyncTokenCredential,
        concurrent_writes: int = 16,
        **client_options: Any,
    ) -> None:
        """`client_options` go to the `ContainerClient` (a transport, retry settings)."""
        if concurrent_writes < 1:
            raise ValueError(f"concurrent_writes must be at least 1, got {concurrent_writes}")
        self._container = ContainerClient(
            account_url, container, credential=credential, **client_options
        )
        self.location = f"{account_url.rstrip('/')}/{container}"
        self._writing = asyncio.Semaphore(concurrent_writes)

    async def write_dead_letters(self, letters: Sequence[DeadLetter]) -> int:
        """Store each letter not stored before; return how many were new."""
        unique = {letter.key: letter for letter in letters}
        if not unique:
            return 0
        events = {letter.event.key: letter.event for letter in unique.values()}
        await self._write_all(
            "event bodies", {event_blob_name(e): e.to_dict() for e in events.values()}
        )
        return await self._write_all(
            "dead letters", {blob_name(letter): letter.to_dict() for letter in unique.values()}
        )

    async def _write_all(self, what: str, blobs: dict[str, dict[str, Any]]) -> int:
        """Create each blob not created before; return how many were new."""
        outcomes = await gather_storage(
            [self._write(name, record) for name, record in blobs.items()],
            unavailable=DeadLettersUnavailable,
            describe=lambda failed, total: (
                f"{failed} of {total} {what} not stored in {self.location}"
            ),
        )
        return sum(1 for outcome in outcomes if outcome is True)

    async def _write(self, name: str, record: dict[str, Any]) -> bool:
        async with self._writing:
            try:
                await self._container.upload_blob(
                    name, orjson.dumps(record), overwrite=False, content_settings=JSON
                )
            except ResourceExistsError:
                return False
        return True

    async def close(self) -> None:
        await self._container.close()
