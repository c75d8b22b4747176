"""Where large payloads are read from: Graph's container in the payload storage account on
Azure (`blob:https://ACCOUNT.blob.core.windows.net`), or a folder standing for it locally
(`local:DIR`), as `process`, `serve` and `deadletters replay` take it (`--payload-store`)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ResourceNotFoundError

from graphtap.processing.fetch import FetchError, PayloadStore

#: Graph's name for the container, and the one the stack creates.
PAYLOAD_CONTAINER = "microsoft-graph-change-notifications"
#: An id Graph could have written: no separators or parent references to climb out with.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=-]{0,1023}")
#: A blob name may hold `/` (Graph's layout is undocumented), never an empty or `..` segment.
_BLOB_SEGMENT = re.compile(r"[A-Za-z0-9._=-]+")
MAX_BLOB_NAME = 1024


class LocalPayloadStore:
    """A folder of files, each named by the `additionalPayloadStorageId` it stands for."""

    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            raise ValueError(f"payload store {folder} is not a folder")
        self.folder = folder

    async def read(self, storage_id: str) -> bytes:
        if _SAFE_ID.fullmatch(storage_id) is None:
            raise FetchError(f"{storage_id[:200]!r} is not a payload id this store can hold")
        path = self.folder / storage_id
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise FetchError(f"no payload {storage_id!r} in {self.folder}") from None

    async def close(self) -> None:
        return None


class BlobPayloadStore:
    """Graph's container in the payload account, read with the runtime's managed identity:
    Storage Blob Data Reader on that container is all it holds (Graph writes with the
    account key it reads from Key Vault; the runtime never sees that key)."""

    def __init__(
        self,
        account_url: str,
        credential: AsyncTokenCredential,
        *,
        container: str = PAYLOAD_CONTAINER,
        **client_options: Any,
    ) -> None:
        """`client_options` go to the `ContainerClient` (a transport, retry settings)."""
        # Imported here: the Storage SDK takes a third of a second to import, which every
        # `graphtap process` would pay at start-up without ever reading a blob.
        from azure.storage.blob.aio import ContainerClient

        self.location = f"{account_url.rstrip('/')}/{container}"
        self._container = ContainerClient(
            account_url, container, credential=credential, **client_options
        )

    async def read(self, storage_id: str) -> bytes:
        if not _is_blob_name(storage_id):
            raise FetchError(f"{storage_id[:200]!r} is not a payload id this store can hold")
        try:
            download = await self._container.download_blob(storage_id)
            return bytes(await download.readall())
        except ResourceNotFoundError:
            # Retried by the fetcher: Graph may still be writing it.
            raise FetchError(f"no payload {storage_id!r} in {self.location}") from None

    async def close(self) -> None:
        await self._container.close()


def _is_blob_name(storage_id: str) -> bool:
    if not 0 < len(storage_id) <= MAX_BLOB_NAME:
        return False
    segments = storage_id.split("/")
    return all(_BLOB_SEGMENT.fullmatch(s) and s not in (".", "..") for s in segments)


def parse_payload_store(spec: str) -> tuple[str, str]:
    """(scheme, where) of `local:DIR` or `blob:https://ACCOUNT.blob.core.windows.net`;
    raises ValueError naming what is wrong."""
    scheme, _, where = spec.partition(":")
    if scheme == "local" and where:
        if not Path(where).is_dir():
            raise ValueError(f"payload store {where} is not a folder")
        return scheme, where
    if scheme == "blob" and _is_account_url(where):
        return scheme, where
    raise ValueError(
        f"payload store {spec!r} is not local:DIR or blob:https://ACCOUNT.blob.core.windows.net"
    )


def open_payload_store(
    spec: str, *, credential: AsyncTokenCredential | None = None, **client_options: Any
) -> PayloadStore:
    """The store `spec` names (`parse_payload_store`); a blob store reads with `credential`."""
    scheme, where = parse_payload_store(spec)
    if scheme == "local":
        return LocalPayloadStore(Path(where))
    if credential is None:
        raise ValueError(f"payload store {spec!r} needs a credential to read with")
    return BlobPayloadStore(where, credential, **client_options)


def _is_account_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "https" and bool(parts.hostname) and parts.path in ("", "/")
