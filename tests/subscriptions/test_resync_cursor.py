"""Resync cursor stores: SQLite in the state folder, Blob Storage in the checkpoint container
(served by Azurite, through the real azure-storage-blob client)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from azure.storage.blob.aio import ContainerClient

from graphtap.hosts.azure import RESYNC_CONCURRENCY_ENV, with_resync_concurrency
from graphtap.subscriptions.blobcursor import BlobCursorStore
from graphtap.subscriptions.control_plane import ControlPlaneSettings
from graphtap.subscriptions.cursor import (
    TEAM,
    USER,
    CursorStore,
    CursorStoreError,
    ResyncJob,
    SqliteCursorStore,
    Unit,
    UnitUpdate,
)
from graphtap.transactions import StoreError
from tests.fakes.azurite import AzuriteStorage
from tests.subscriptions.conftest import FakeCredential

NOW = 1_772_438_400.0
CLAIM = 600.0
CONTAINER = "checkpoints"

Factory = Callable[[], CursorStore]


def job(units: int = 6, job_id: str = "job-1") -> ResyncJob:
    start = dt.datetime(2026, 3, 2, 6, 0, tzinfo=dt.UTC)
    return ResyncJob(
        id=job_id,
        reason="missed notifications",
        start=start,
        end=start + dt.timedelta(hours=2),
        units=(*(Unit(USER, f"u{i}") for i in range(units - 1)), Unit(TEAM, "t0")),
        created=start + dt.timedelta(hours=2),
    )


@pytest.fixture
def service(azurite_storage: AzuriteStorage) -> AzuriteStorage:
    """The storage account with its checkpoint container."""
    azurite_storage.create_container(CONTAINER)
    return azurite_storage


def blob_store(service: AzuriteStorage) -> BlobCursorStore:
    return BlobCursorStore(
        service.account_url, CONTAINER, credential=FakeCredential(), transport=service.transport()
    )


@pytest.fixture(params=["sqlite", "blob"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    """Opens the same store again, as a restarted process does."""
    if request.param == "sqlite":
        return lambda: SqliteCursorStore(tmp_path / "resync.sqlite")
    service: AzuriteStorage = request.getfixturevalue("service")
    return lambda: blob_store(service)


def run(scenario: Callable[[], Awaitable[object]]) -> object:
    return asyncio.run(scenario())  # type: ignore[arg-type]


def test_a_reopened_store_resumes_each_job_where_it_stopped(stores: Factory) -> None:
    async def before_the_restart() -> None:
        store = stores()
        await store.add(job(), owner="web-1", until=NOW + CLAIM)
        await store.record("job-1", UnitUpdate(0, done=True), until=NOW + CLAIM)
        await store.record("job-1", UnitUpdate(2, page="https://graph/p2"), until=NOW + CLAIM)
        await store.record("job-1", UnitUpdate(1, done=True), until=NOW + CLAIM)
        await store.record("job-1", UnitUpdate(4, done=True, error="404 gone"), until=NOW + CLAIM)
        await store.record("job-1", UnitUpdate(2, page="https://graph/p3"), until=NOW + CLAIM)
        await store.close()

    async def after_it() -> None:
        store = stores()
        (claimed,) = await store.claim(owner="web-1", now=NOW + 5, until=NOW + 5 + CLAIM)
        resumed, cursor = claimed
        assert resumed == job()
        assert cursor.done == {0, 1}
        assert cursor.failed == {4: "404 gone"}
        assert cursor.pages == {2: "https://graph/p3"}
        # The unit with a saved page goes first; finished ones are not read again.
        assert cursor.pending(resumed) == [2, 3, 5]
        # A finished unit stays finished whatever arrives after.
        await store.record("job-1", UnitUpdate(0, page="https://graph/late"), until=NOW + CLAIM)
        await store.finish("job-1")
        assert await store.claim(owner="web-1", now=NOW + 6, until=NOW + 6 + CLAIM) == []
        await store.close()

    run(before_the_restart)
    run(after_it)


def test_a_job_another_instance_holds_is_left_to_it_until_its_claim_lapses(
    stores: Factory,
) -> None:
    async def scenario() -> None:
        first, second = stores(), stores()
        await first.add(job(), owner="web-1", until=NOW + CLAIM)
        await first.record("job-1", UnitUpdate(0, done=True), until=NOW + CLAIM)
        assert await second.claim(owner="web-2", now=NOW + 10, until=NOW + 10 + CLAIM) == []
        # web-1 went quiet: after its claim, web-2 takes the job over, with its progress.
        (taken,) = await second.claim(owner="web-2", now=NOW + CLAIM + 1, until=NOW + 2 * CLAIM)
        assert taken[1].done == {0}
        assert taken[1].owner == "web-2"
        await second.record("job-1", UnitUpdate(1, done=True), until=NOW + 2 * CLAIM)
        assert await first.claim(owner="web-1", now=NOW + CLAIM + 2, until=NOW + 3 * CLAIM) == []
        await first.close()
        await second.close()

    run(scenario)


def test_two_writers_of_one_blob_cursor_lose_no_finished_unit(service: AzuriteStorage) -> None:
    """Writes are conditional on the ETag read: the loser reads again and merges."""

    async def scenario() -> None:
        first, second = blob_store(service), blob_store(service)
        await first.add(job(), owner="web-1", until=NOW + CLAIM)
        # A takeover while web-1 still writes (its claim lapsed, it was only slow).
        await second.claim(owner="web-2", now=NOW + CLAIM + 1, until=NOW + 2 * CLAIM)
        await second.record("job-1", UnitUpdate(3, done=True), until=NOW + 2 * CLAIM)
        await first.record("job-1", UnitUpdate(0, done=True), until=NOW + CLAIM)
        await first.record("job-1", UnitUpdate(1, page="https://graph/p2"), until=NOW + CLAIM)
        await first.close()
        await second.close()
        third = blob_store(service)
        (claimed,) = await third.claim(owner="web-3", now=NOW + 3 * CLAIM, until=NOW + 4 * CLAIM)
        assert claimed[1].done == {0, 3}
        assert claimed[1].pages == {1: "https://graph/p2"}
        await third.close()

    run(scenario)
    assert "ConditionNotMet" in service.refused
    cursor = json.loads(service.blobs(CONTAINER)["resync/job-1/cursor.json"])
    assert cursor["done"] == [[0, 0], [3, 3]]
    assert set(service.blobs(CONTAINER)) == {"resync/job-1/job.json", "resync/job-1/cursor.json"}


def test_updates_that_finish_together_share_a_blob_write(service: AzuriteStorage) -> None:
    transport = service.transport()
    store = BlobCursorStore(
        service.account_url, CONTAINER, credential=FakeCredential(), transport=transport
    )

    def writes() -> list[str]:
        return [
            u for method, u in transport.requests if method == "PUT" and u.endswith("cursor.json")
        ]

    async def scenario() -> None:
        await store.add(job(units=50), owner="web-1", until=NOW + CLAIM)
        transport.requests.clear()
        await asyncio.gather(
            *(store.record("job-1", UnitUpdate(i, done=True), until=NOW + CLAIM) for i in range(50))
        )
        assert 1 <= len(writes()) <= 5  # the first update alone, then the rest together
        (claimed,) = await store.claim(owner="web-1", now=NOW, until=NOW + CLAIM)
        assert claimed[1].done == set(range(50))
        await store.close()

    run(scenario)


def test_a_damaged_sqlite_store_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "resync.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"resync cursor store .*resync\.sqlite.*not a SQLite"):
        SqliteCursorStore(path)


def test_an_unreadable_job_in_sqlite_is_refused_naming_file_and_job(tmp_path: Path) -> None:
    path = tmp_path / "resync.sqlite"

    async def add() -> None:
        store = SqliteCursorStore(path)
        await store.add(job(), owner="web-1", until=NOW)
        await store.close()

    run(add)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE resync_jobs SET job = ?", ('{"id": "job-1", "units": ["pet:1"]}',))

    async def claim() -> None:
        store = SqliteCursorStore(path)
        try:
            await store.claim(owner="web-1", now=NOW, until=NOW + CLAIM)
        finally:
            await store.close()

    with pytest.raises(CursorStoreError, match=r"resync\.sqlite: job job-1 cannot be read"):
        run(claim)


def test_an_unreadable_cursor_blob_is_refused_naming_the_blob(service: AzuriteStorage) -> None:
    async def scenario() -> None:
        store = blob_store(service)
        try:
            await store.add(job(), owner="web-1", until=NOW)
            async with ContainerClient(
                service.account_url,
                CONTAINER,
                credential=FakeCredential(),
                transport=service.transport(),
            ) as container:  # a unit past the job's last, written over the cursor
                await container.upload_blob(
                    "resync/job-1/cursor.json",
                    b'{"done": [[0, 99]], "failed": {}, "pages": {}}',
                    overwrite=True,
                )
            await store.claim(owner="web-1", now=NOW, until=NOW + CLAIM)
        finally:
            await store.close()

    with pytest.raises(CursorStoreError, match=r"checkpoints/resync/job-1/cursor\.json"):
        run(scenario)


def test_a_unit_that_names_no_user_or_team_is_refused() -> None:
    with pytest.raises(ValueError, match="expected user:ID or team:ID"):
        Unit.parse("group:1")


def test_the_resync_concurrency_comes_from_the_app_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(RESYNC_CONCURRENCY_ENV, raising=False)
    assert with_resync_concurrency(ControlPlaneSettings()).resync.concurrency == 4
    monkeypatch.setenv(RESYNC_CONCURRENCY_ENV, "8")
    assert with_resync_concurrency(ControlPlaneSettings()).resync.concurrency == 8
    for wrong in ("0", "65", "many"):
        monkeypatch.setenv(RESYNC_CONCURRENCY_ENV, wrong)
        with pytest.raises(ValueError, match=f"from 1 to 64, got '{wrong}'"):
            with_resync_concurrency(ControlPlaneSettings())


def test_a_window_stored_before_its_units_were_listed_reads_back_as_such() -> None:
    """A job record of an earlier release has no `listed`: it was listed."""
    planned = dataclasses.replace(job(), units=(), listed=False)
    assert ResyncJob.from_dict(planned.to_dict()) == planned
    record = job().to_dict()
    assert "listed" not in record
    assert ResyncJob.from_dict(record).listed
