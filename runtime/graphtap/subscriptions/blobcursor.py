"""Resync cursors in Blob Storage: the runtime's checkpoint container, which it already holds
Storage Blob Data Contributor on, so a job outlives the instance that started it.

Each job is two blobs under `resync/<job id>/`: `job.json`, its window and work list,
written once; and `cursor.json`, its progress and claim, replaced on every update under
`If-Match` on the ETag last read. A write that loses the race (another instance touched
the cursor) reads it again, merges (finished units only accumulate) and tries again.
Updates that arrive while a write is in flight share the next write, so units that finish
together cost one round trip, and each `record` returns only once its update is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from azure.core import MatchConditions
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import ContentSettings
from azure.storage.blob.aio import ContainerClient

from graphtap.subscriptions.cursor import (
    CURSOR_STORE,
    Cursor,
    CursorStoreError,
    ResyncJob,
    UnitUpdate,
)

PREFIX = "resync/"
JSON = ContentSettings(content_type="application/json")
#: Conditional writes tried before a contended cursor is reported.
MAX_ATTEMPTS = 8


@dataclass
class _Held:
    """A job this instance runs: its cursor as last written, and the updates to write."""

    job: ResyncJob
    cursor: Cursor
    etag: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    queued: list[UnitUpdate] = field(default_factory=list)
    sequenced: int = 0
    written: int = 0


class BlobCursorStore:
    def __init__(
        self,
        account_url: str,
        container: str,
        *,
        credential: AsyncTokenCredential,
        **client_options: Any,
    ) -> None:
        """`client_options` go to the `ContainerClient` (a transport, retry settings)."""
        self._container = ContainerClient(
            account_url, container, credential=credential, **client_options
        )
        self.location = f"{account_url.rstrip('/')}/{container}/{PREFIX}"
        self._held: dict[str, _Held] = {}

    async def add(self, job: ResyncJob, *, owner: str, until: float) -> None:
        cursor = Cursor(owner=owner, claimed_until=until)
        await self._container.get_blob_client(_job_blob(job.id)).upload_blob(
            _dump(job.to_dict()), overwrite=False, content_settings=JSON
        )
        etag = await self._upload(_cursor_blob(job.id), cursor, None)
        self._held[job.id] = _Held(job, cursor, etag)

    async def claim(
        self, *, owner: str, now: float, until: float
    ) -> list[tuple[ResyncJob, Cursor]]:
        jobs: dict[str, set[str]] = {}
        async for blob in self._container.list_blobs(name_starts_with=PREFIX):
            job_id, _, leaf = blob.name.removeprefix(PREFIX).partition("/")
            jobs.setdefault(job_id, set()).add(leaf)
        claimed: list[tuple[ResyncJob, Cursor]] = []
        for job_id, leaves in sorted(jobs.items()):
            if "job.json" not in leaves:  # a finish interrupted between its two deletes
                await self._delete(_cursor_blob(job_id))
                continue
            job = _job_from(await self._read(_job_blob(job_id)), _job_blob(job_id))
            held = await self._take(job, owner=owner, now=now, until=until)
            if held is not None:
                self._held[job.id] = held
                claimed.append((job, held.cursor.copy()))
        return claimed

    async def record(self, job_id: str, update: UnitUpdate, *, until: float) -> None:
        held = self._held[job_id]
        sequence = held.sequenced
        held.sequenced += 1
        held.queued.append(update)
        async with held.lock:
            if held.written > sequence:
                return  # an earlier write carried it
            batch, held.queued = held.queued, []
            try:
                await self._write(held, batch, until)
            except BaseException:
                held.queued[:0] = batch  # not stored: the next writer tries them again
                raise
            held.written += len(batch)

    async def finish(self, job_id: str) -> None:
        await self._delete(_job_blob(job_id))
        await self._delete(_cursor_blob(job_id))
        self._held.pop(job_id, None)

    async def close(self) -> None:
        await self._container.close()

    # -- blobs ------------------------------------------------------------------------------

    async def _take(self, job: ResyncJob, *, owner: str, now: float, until: float) -> _Held | None:
        """Claim the job unless another owner's claim is live; None when it is (or when
        another instance claimed it a moment ago)."""
        name = _cursor_blob(job.id)
        try:
            data, etag = await self._read_tagged(name)
        except ResourceNotFoundError:
            data, etag = None, None
        cursor = Cursor() if data is None else _cursor_from(data, job, self._url(name))
        if cursor.owner not in (None, owner) and cursor.claimed_until > now:
            return None
        cursor.owner, cursor.claimed_until = owner, until
        try:
            written = await self._upload(name, cursor, etag)
        except (ResourceModifiedError, ResourceExistsError):
            return None
        return _Held(job, cursor, written)

    async def _write(self, held: _Held, batch: list[UnitUpdate], until: float) -> None:
        name = _cursor_blob(held.job.id)
        cursor = held.cursor.copy()
        for _ in range(MAX_ATTEMPTS):
            for update in batch:
                cursor.apply(update)
            cursor.claimed_until = until
            try:
                held.etag = await self._upload(name, cursor, held.etag)
            except ResourceModifiedError:
                data, etag = await self._read_tagged(name)
                cursor = _merge(_cursor_from(data, held.job, self._url(name)), cursor)
                held.etag = etag
                continue
            held.cursor = cursor
            return
        raise CursorStoreError(
            f"{CURSOR_STORE} {self._url(name)}: changed under every one of {MAX_ATTEMPTS} "
            "writes; another instance is writing the same job"
        )

    async def _upload(self, name: str, cursor: Cursor, etag: str | None) -> str:
        body = _dump(cursor.to_dict())
        blob = self._container.get_blob_client(name)
        if etag is None:
            written = await blob.upload_blob(body, overwrite=False, content_settings=JSON)
        else:
            written = await blob.upload_blob(
                body,
                overwrite=True,
                content_settings=JSON,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        return str(written["etag"])

    async def _read(self, name: str) -> dict[str, Any]:
        return (await self._read_tagged(name))[0]

    async def _read_tagged(self, name: str) -> tuple[dict[str, Any], str]:
        download = await self._container.download_blob(name)
        content = await download.readall()
        try:
            data = json.loads(content)
        except ValueError as exc:
            raise _damaged(self._url(name), exc) from None
        if not isinstance(data, dict):
            raise _damaged(self._url(name), ValueError("not a JSON object"))
        return data, str(download.properties.etag)

    async def _delete(self, name: str) -> None:
        with contextlib.suppress(ResourceNotFoundError):  # already gone: it is idempotent
            await self._container.delete_blob(name)

    def _url(self, name: str) -> str:
        return f"{self.location}{name.removeprefix(PREFIX)}"


def _job_from(data: dict[str, Any], where: str) -> ResyncJob:
    try:
        return ResyncJob.from_dict(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise _damaged(where, exc) from None


def _cursor_from(data: dict[str, Any], job: ResyncJob, where: str) -> Cursor:
    try:
        return Cursor.from_dict(data, len(job.units))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _damaged(where, exc) from None


def _merge(theirs: Cursor, ours: Cursor) -> Cursor:
    """Finished units only accumulate; a page link of a unit finished on either side goes."""
    merged = Cursor(
        theirs.done | ours.done,
        {**theirs.failed, **ours.failed},
        {**theirs.pages, **ours.pages},
        ours.owner,
        max(theirs.claimed_until, ours.claimed_until),
    )
    merged.pages = {u: link for u, link in merged.pages.items() if not merged.finished(u)}
    return merged


def _damaged(where: str, exc: BaseException) -> CursorStoreError:
    return CursorStoreError(
        f"{CURSOR_STORE} {where} cannot be read ({type(exc).__name__}: {exc}); delete the "
        "job's blobs: its resync starts over when its gap is seen again"
    )


def _job_blob(job_id: str) -> str:
    return f"{PREFIX}{job_id}/job.json"


def _cursor_blob(job_id: str) -> str:
    return f"{PREFIX}{job_id}/cursor.json"


def _dump(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()
