"""Each mailbox folder's delta link outlives the process that stored it, in either store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from graphtap.subscriptions.deltalinks import BlobDeltaLinks, DeltaLinkStore, SqliteDeltaLinks
from graphtap.transactions import StoreError
from tests.fakes.azure_transport import TokenCredential
from tests.fakes.azurite import AzuriteStorage

CONTAINER = "checkpoints"
FOLDER = "AAMkADk0ZmUyNTEzLWM5ZmEtNGQ3Ny1hN2FmLTJmNTVhNjZhNmU3NwAuAAAAAAB/x+y=="
LINK = "https://graph.microsoft.com/v1.0/users/u1/mailFolders/f/messages/delta?$deltatoken=abc"

Factory = Callable[[], DeltaLinkStore]


@pytest.fixture(params=["sqlite", "blob"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    """Opens the same store again, as a restarted process does."""
    if request.param == "sqlite":
        return lambda: SqliteDeltaLinks(tmp_path / "mail-delta.sqlite")
    storage: AzuriteStorage = request.getfixturevalue("azurite_storage")
    storage.create_container(CONTAINER)
    return lambda: BlobDeltaLinks(
        storage.account_url, CONTAINER, credential=TokenCredential(), transport=storage.transport()
    )


def test_a_link_is_kept_per_mailbox_and_folder_across_a_restart(stores: Factory) -> None:
    async def scenario() -> None:
        first = stores()
        assert await first.get("alice@contoso.com", FOLDER) is None
        await first.put("alice@contoso.com", FOLDER, LINK)
        await first.put("alice@contoso.com", FOLDER, LINK + "def")  # the newer link wins
        await first.put("bob@contoso.com", FOLDER, "other")
        await first.close()
        again = stores()
        assert await again.get("alice@contoso.com", FOLDER) == LINK + "def"
        assert await again.get("bob@contoso.com", FOLDER) == "other"
        await again.drop("alice@contoso.com", FOLDER)
        await again.drop("alice@contoso.com", FOLDER)  # dropping what is gone is no error
        assert await again.get("alice@contoso.com", FOLDER) is None
        await again.close()

    asyncio.run(scenario())


def test_a_damaged_local_store_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "mail-delta.sqlite"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match=r"mail-delta\.sqlite"):
        SqliteDeltaLinks(path)
