"""Where each mailbox folder's delta query stands, kept durably so mail resync resumes.

The value is the whole link Graph handed out last for the folder: an `@odata.nextLink` while
a sync is under way (a restart goes on from that page), or the `@odata.deltaLink` once the
folder is caught up (the next sync reads only what changed since). Graph's token is opaque
and carries the original query, so the link is stored and used exactly as given.

`SqliteDeltaLinks` keeps them in the instance's state folder; on Azure, `BlobDeltaLinks`
keeps one small blob per folder in the checkpoint container, where resync cursors live.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any, Protocol

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContentSettings
from azure.storage.blob.aio import ContainerClient

from graphtap.transactions import open_store, store_error, write_transaction

DELTA_LINK_STORE = "mail delta link store"
PREFIX = "mail-delta/"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mail_delta_links (
    mailbox TEXT NOT NULL,
    folder TEXT NOT NULL,
    link TEXT NOT NULL,
    PRIMARY KEY (mailbox, folder)
);
"""


class DeltaLinkStore(Protocol):
    async def get(self, mailbox: str, folder: str) -> str | None: ...

    async def put(self, mailbox: str, folder: str, link: str) -> None:
        """Durable on return: the pages before `link` were committed first."""
        ...

    async def drop(self, mailbox: str, folder: str) -> None:
        """Forget a link Graph no longer honours; the folder is read again from the gap."""
        ...

    async def close(self) -> None: ...


class MemoryDeltaLinks:
    """For a process that keeps no state (tests, a one-off run)."""

    def __init__(self) -> None:
        self.links: dict[tuple[str, str], str] = {}

    async def get(self, mailbox: str, folder: str) -> str | None:
        return self.links.get((mailbox, folder))

    async def put(self, mailbox: str, folder: str, link: str) -> None:
        self.links[(mailbox, folder)] = link

    async def drop(self, mailbox: str, folder: str) -> None:
        self.links.pop((mailbox, folder), None)

    async def close(self) -> None:
        return None


class SqliteDeltaLinks:
    def __init__(self, path: Path) -> None:
        """Open (or create) the store; a damaged or unwritable file is a `StoreError`."""
        self.path = path
        self._db = open_store(path, DELTA_LINK_STORE, schema=_SCHEMA)

    async def get(self, mailbox: str, folder: str) -> str | None:
        try:
            row = self._db.execute(
                "SELECT link FROM mail_delta_links WHERE mailbox = ? AND folder = ?",
                (mailbox, folder),
            ).fetchone()
        except sqlite3.Error as exc:
            raise store_error(self.path, DELTA_LINK_STORE, exc) from None
        return str(row[0]) if row else None

    async def put(self, mailbox: str, folder: str, link: str) -> None:
        self._write(
            "INSERT INTO mail_delta_links (mailbox, folder, link) VALUES (?, ?, ?) "
            "ON CONFLICT (mailbox, folder) DO UPDATE SET link = excluded.link",
            (mailbox, folder, link),
        )

    async def drop(self, mailbox: str, folder: str) -> None:
        self._write(
            "DELETE FROM mail_delta_links WHERE mailbox = ? AND folder = ?", (mailbox, folder)
        )

    def _write(self, sql: str, values: tuple[str, ...]) -> None:
        try:
            with write_transaction(self._db):
                self._db.execute(sql, values)
        except sqlite3.Error as exc:
            raise store_error(self.path, DELTA_LINK_STORE, exc) from None

    async def close(self) -> None:
        self._db.close()


class BlobDeltaLinks:
    """One blob per folder under `mail-delta/`, named by a hash of mailbox and folder (folder
    ids are long and may hold `/`); only the leader writes them."""

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

    async def get(self, mailbox: str, folder: str) -> str | None:
        blob = self._container.get_blob_client(_blob_name(mailbox, folder))
        try:
            data = await (await blob.download_blob()).readall()
        except ResourceNotFoundError:
            return None
        record = json.loads(data)
        link = record.get("link") if isinstance(record, dict) else None
        return link if isinstance(link, str) else None

    async def put(self, mailbox: str, folder: str, link: str) -> None:
        record = {"mailbox": mailbox, "folder": folder, "link": link}
        await self._container.get_blob_client(_blob_name(mailbox, folder)).upload_blob(
            json.dumps(record).encode(),
            overwrite=True,
            content_settings=ContentSettings(content_type="application/json"),
        )

    async def drop(self, mailbox: str, folder: str) -> None:
        try:
            await self._container.get_blob_client(_blob_name(mailbox, folder)).delete_blob()
        except ResourceNotFoundError:
            return

    async def close(self) -> None:
        await self._container.close()


def _blob_name(mailbox: str, folder: str) -> str:
    digest = hashlib.sha256(f"{mailbox}\x1f{folder}".encode()).hexdigest()
    return f"{PREFIX}{digest}.json"
