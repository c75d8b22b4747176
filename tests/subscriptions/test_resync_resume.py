"""Gap resync across thousands of users, killed half-way and resumed from its cursor."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from graphtap.simulation.tenant import SyntheticTenant
from graphtap.subscriptions.clock import utcnow
from graphtap.subscriptions.control_plane import ControlPlane, ControlPlaneSettings
from graphtap.subscriptions.cursor import SqliteCursorStore
from graphtap.subscriptions.graph import GraphError
from graphtap.subscriptions.resync import ResyncSettings
from graphtap.subscriptions.rotation import KeyFolderPublisher
from graphtap.subscriptions.throttle import EXPORT_READS
from tests.fakes.graph import FakeGraph
from tests.subscriptions.conftest import (
    CERTIFICATE,
    START,
    Bench,
    FakeCredential,
    Processing,
    client_state_of,
    deployment,
    desired_state,
)

USERS = 5000
MESSAGES = 400
CONCURRENCY = 4
#: The gap: the tenant's messages were all posted inside it.
GAP_START = START - dt.timedelta(hours=3)


class Dies(httpx.AsyncBaseTransport):
    """Graph's transport in a process that dies once `moment(request)` holds: that request
    reaches Graph but its answer never comes back, and nothing after it leaves the process."""

    def __init__(self, graph: FakeGraph, moment: Callable[[httpx.Request], bool]) -> None:
        self._graph = graph
        self._moment = moment
        self.dead = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.dead:
            raise asyncio.CancelledError
        response = await self._graph.handle_async_request(request)
        if self._moment(request):
            self.dead = True
            raise asyncio.CancelledError
        return response


def populate(bench: Bench, *, users: int, messages: int, seed: int = 5) -> set[str]:
    """A tenant of `users` people whose chats and channels carry `messages` changes, all
    inside the gap; returns the ids of the messages whose changes must get a verdict."""
    rng = random.Random(seed)
    tenant = SyntheticTenant.create(rng, start=GAP_START + dt.timedelta(minutes=5), users=users)
    bench.graph.users = [u.id for u in tenant.users]
    bench.graph.teams = sorted({c.team_id for c in tenant.conversations if c.team_id})
    for _ in range(messages):
        bench.graph.publish(tenant.post(sensitive=rng.random() < 0.2))
    assert tenant.clock < START
    return {m.id for m in tenant.messages}


async def plane_for(
    bench: Bench,
    tmp_path: Path,
    processing: Processing,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    settings: ResyncSettings | None = None,
) -> ControlPlane:
    """A control plane whose resyncs keep their cursor in the instance's state folder."""
    plane = ControlPlane.from_deployment(
        deployment(),
        FakeCredential(),
        desired=desired_state(),
        clock=bench.clock,
        settings=ControlPlaneSettings(resync=settings or ResyncSettings(concurrency=CONCURRENCY)),
        resync_sink=processing.resync_submitter(),
        graph_transport=transport or bench.graph,
        keyvault_options={"transport": bench.vault.transport()},
        resync_store=SqliteCursorStore(tmp_path / "state" / "resync.sqlite"),
        instance="web-1",
    )
    plane.on_certificate = KeyFolderPublisher(plane.keyvault, tmp_path / "keys")
    await plane.refresh_target()
    return plane


async def publish_key(bench: Bench, tmp_path: Path) -> None:
    """What the control plane hands the processor first: the certificate's private key."""
    keyvault = bench.keyvault()
    try:
        certificate = await keyvault.certificate(CERTIFICATE)
        await KeyFolderPublisher(keyvault, tmp_path / "keys")(certificate)
    finally:
        await keyvault.close()


def processing_for(bench: Bench, tmp_path: Path) -> Processing:
    return Processing.start(
        bench.hub.directory,
        tmp_path / "keys",
        client_state_of(bench.vault),
        tmp_path / "verdicts.sqlite",
    )


def verdicts_by_message(db: Path) -> Counter[str]:
    with sqlite3.connect(db) as connection:
        return Counter(row[0] for row in connection.execute("SELECT message_id FROM verdicts"))


def cursor_units(state: Path) -> dict[int, str]:
    with sqlite3.connect(state / "resync.sqlite") as connection:
        return dict(connection.execute("SELECT unit, state FROM resync_units").fetchall())


def test_a_resync_of_5000_users_killed_half_way_resumes_and_reads_no_user_twice(
    bench: Bench, tmp_path: Path
) -> None:
    messages = populate(bench, users=USERS, messages=MESSAGES)
    units = USERS + len(bench.graph.teams)
    reads = bench.graph.unit_reads
    killer = Dies(bench.graph, lambda _: sum(reads.values()) >= units // 2)

    async def first_run() -> None:
        await publish_key(bench, tmp_path)
        processing = processing_for(bench, tmp_path)
        plane = await plane_for(bench, tmp_path, processing, transport=killer)
        task = asyncio.create_task(plane.resync_downtime(GAP_START))
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled(), "the resync finished before it was killed"
        assert plane.resync is not None
        assert plane.resync.progress()[0].state == "interrupted"
        await plane.resync.store.close()
        processing.store.close()
        processing.queue.close()

    asyncio.run(first_run())
    reads_at_kill = Counter(bench.graph.unit_reads)
    pages_at_kill = Counter(bench.graph.page_reads)
    done = cursor_units(tmp_path / "state")
    assert 0 < len(done) < units
    assert set(done.values()) <= {"done", "reading"}
    finished = {i for i, state in done.items() if state == "done"}
    verdicts_at_kill = verdicts_by_message(tmp_path / "verdicts.sqlite")
    assert 0 < len(verdicts_at_kill) < len(messages)

    bench.clock.advance(30)  # the host restarts

    async def restart() -> ControlPlane:
        processing = processing_for(bench, tmp_path)
        plane = await plane_for(bench, tmp_path, processing)
        stop = asyncio.Event()
        stop.set()  # start, then stop: what a restarted control plane does before its loops
        await plane.run(stop)
        processing.store.close()
        processing.queue.close()
        return plane

    requests_before = len(bench.graph.requests)
    plane = asyncio.run(restart())
    # The unfinished job came first: every export read precedes the first reconcile.
    restarted = bench.graph.requests[requests_before:]
    first_reconcile = next(i for i, r in enumerate(restarted) if r[1] == "/subscriptions")
    assert not any("getAllMessages" in r[1] for r in restarted[first_reconcile:])

    # Every message has exactly one verdict.
    verdicts = verdicts_by_message(tmp_path / "verdicts.sqlite")
    assert set(verdicts) == messages
    assert set(verdicts.values()) == {1}
    # Every unit was read; those read twice were in flight at the kill, and no more than the
    # concurrency allows.
    unit_names = [f"user:{u}" for u in bench.graph.users] + [f"team:{t}" for t in bench.graph.teams]
    assert set(bench.graph.unit_reads) == set(unit_names)
    in_flight = {
        name
        for index, name in enumerate(unit_names)
        if reads_at_kill[name] and index not in finished
    }
    assert 0 < len(in_flight) <= CONCURRENCY
    read_twice = {name for name, count in bench.graph.unit_reads.items() if count > 1}
    assert read_twice <= in_flight
    pages_twice = {unit for (unit, _), count in bench.graph.page_reads.items() if count > 1}
    assert pages_twice <= in_flight
    assert sum(pages_at_kill.values()) < sum(bench.graph.page_reads.values())
    # Within Graph's export throttling, and the job is gone from the store once finished.
    assert bench.graph.rejected_for_rate == 0
    assert cursor_units(tmp_path / "state") == {}
    assert plane.resync is not None
    (job,) = plane.resync.progress()
    assert (job.state, job.units_done, job.units_total) == ("finished", units, units)
    assert utcnow(bench.clock) >= START


def test_a_stricter_export_limit_is_waited_out_through_retry_after(
    bench: Bench, tmp_path: Path
) -> None:
    """The fake enforces a tenth of the published export rate: Graph answers 429 with
    Retry-After, every reader pauses, and the resync still gives each message one verdict."""
    messages = populate(bench, users=400, messages=150)
    bench.graph.exports_per_second = 20

    async def scenario() -> ControlPlane:
        await publish_key(bench, tmp_path)
        processing = processing_for(bench, tmp_path)
        plane = await plane_for(bench, tmp_path, processing)
        await plane.resync_downtime(GAP_START)
        processing.store.close()
        processing.queue.close()
        return plane

    plane = asyncio.run(scenario())
    assert bench.graph.rejected_for_rate > 0
    assert plane.resync is not None
    assert plane.resync.throttle.stats.throttled > 0
    verdicts = verdicts_by_message(tmp_path / "verdicts.sqlite")
    assert set(verdicts) == messages
    assert set(verdicts.values()) == {1}
    assert plane.resync.throttle.settings == EXPORT_READS


def test_a_saved_page_link_graph_no_longer_honours_reads_that_unit_again(
    bench: Bench, tmp_path: Path
) -> None:
    """A user with more messages than one page, killed after the first page was committed:
    after the restart its saved link has expired, so the unit is read from its first page."""
    messages = populate(bench, users=6, messages=400)

    # The process dies while a second page is on its way: the first page is committed and
    # the link to the second is in the cursor.
    killer = Dies(bench.graph, lambda request: "skiptoken" in str(request.url))

    async def first_run() -> None:
        await publish_key(bench, tmp_path)
        processing = processing_for(bench, tmp_path)
        plane = await plane_for(
            bench, tmp_path, processing, transport=killer, settings=ResyncSettings(concurrency=1)
        )
        task = asyncio.create_task(plane.resync_downtime(GAP_START))
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()
        assert plane.resync is not None
        await plane.resync.store.close()
        processing.store.close()
        processing.queue.close()

    asyncio.run(first_run())
    reading = [i for i, s in cursor_units(tmp_path / "state").items() if s == "reading"]
    assert len(reading) == 1
    bench.graph.expire_page_links()

    async def restart() -> None:
        processing = processing_for(bench, tmp_path)
        plane = await plane_for(bench, tmp_path, processing)
        await plane.resume_resyncs()
        processing.store.close()
        processing.queue.close()

    asyncio.run(restart())
    verdicts = verdicts_by_message(tmp_path / "verdicts.sqlite")
    assert set(verdicts) == messages
    assert set(verdicts.values()) == {1}
    refused = [r for r in bench.graph.requests if r[2] == 400]
    assert len(refused) == 1


class Departs(httpx.AsyncBaseTransport):
    """Graph's transport, where `user` leaves the tenant once the work list was taken."""

    def __init__(self, graph: FakeGraph, user: str) -> None:
        self._graph = graph
        self._user = user

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if "getAllMessages" in request.url.path and self._user in self._graph.users:
            self._graph.users.remove(self._user)
        return await self._graph.handle_async_request(request)


def test_a_user_gone_since_the_listing_fails_alone_and_a_refusal_stops_the_job(
    bench: Bench, tmp_path: Path
) -> None:
    messages = populate(bench, users=40, messages=120)
    gone = bench.graph.users[7]
    granted = set(bench.graph.permissions)

    async def refused() -> ControlPlane:
        await publish_key(bench, tmp_path)
        bench.graph.permissions = granted - {"Chat.Read.All"}
        processing = processing_for(bench, tmp_path)
        plane = await plane_for(bench, tmp_path, processing, transport=Departs(bench.graph, gone))
        with pytest.raises(GraphError, match=r"Chat\.Read\.All"):
            await plane.resync_downtime(GAP_START)
        processing.store.close()
        processing.queue.close()
        assert plane.resync is not None
        await plane.resync.store.close()
        return plane

    plane = asyncio.run(refused())
    assert plane.resync is not None
    (stopped,) = plane.resync.progress()
    assert (stopped.state, stopped.units_done, stopped.units_failed) == ("interrupted", 0, 0)
    assert stopped.last_error is not None
    assert "403" in stopped.last_error
    # Every unit would have failed alike: the job waits in the store for the permission.
    assert set(cursor_units(tmp_path / "state").values()) <= {"reading"}

    bench.graph.permissions = granted

    async def resumed() -> ControlPlane:
        processing = processing_for(bench, tmp_path)
        plane = await plane_for(bench, tmp_path, processing)
        await plane.resume_resyncs()
        processing.store.close()
        processing.queue.close()
        return plane

    plane = asyncio.run(resumed())
    assert plane.resync is not None
    (job,) = plane.resync.progress()
    assert (job.state, job.units_failed, job.units_done) == ("finished", 1, job.units_total - 1)
    assert job.last_error is not None
    assert job.last_error.startswith(f"user:{gone}: export chats of {gone}: 404")
    # The departed user's chats were read through the other members.
    verdicts = verdicts_by_message(tmp_path / "verdicts.sqlite")
    assert set(verdicts) == messages
    assert set(verdicts.values()) == {1}
