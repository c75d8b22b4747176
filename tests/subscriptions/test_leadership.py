"""One control plane at a time: the leader lease, fencing, and takeover when a leader dies.

The lease contract runs against Azurite (the real BlobLeaseClient through the authorizing
transport) and against the simulated lease the week-long run uses, so both serve the same
rules. Where Azurite differs from Azure: it times leases on its own wall clock, so the
takeover test over it waits for real (15 s leases, the shortest Azure allows).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from graphtap.subscriptions.clock import SystemClock, VirtualClock
from graphtap.subscriptions.control_plane import ControlPlane, ControlPlaneSettings
from graphtap.subscriptions.leadership import (
    BlobLease,
    LeaderSettings,
    Leadership,
    Lease,
    LeaseTaken,
    NotLeader,
)
from tests.fakes.azure_transport import TokenCredential
from tests.fakes.azurite import AzuriteStorage
from tests.fakes.leases import LeaseClient, SimulatedLeases
from tests.subscriptions.conftest import (
    SUBSCRIPTIONS,
    Bench,
    FakeCredential,
    deployment,
    desired_state,
)

WEEK = 7 * 24 * 3600.0
CONTAINER = "control-plane"
LEASE = LeaderSettings(duration=60, margin=10)
#: Four-hour subscriptions renewed at half-life: hundreds of writes in the week to fence.
SHORT_LIVED = {"subscription": [{**s, "lifetime_minutes": 240} for s in SUBSCRIPTIONS]}
FAST = ControlPlaneSettings(
    renewal_check=600.0, reconcile_interval=3600.0, lifecycle_poll=60.0, rotation_check=3600.0
)


def blob_lease(storage: AzuriteStorage, **options: Any) -> BlobLease:
    return BlobLease(
        storage.account_url,
        CONTAINER,
        TokenCredential(),
        transport=storage.transport(),
        **options,
    )


# -- the lease contract: Azurite and the simulation agree -----------------------------------


async def contract(first: Lease, second: Lease) -> None:
    held = await first.acquire(15)
    with pytest.raises(LeaseTaken):
        await second.acquire(15)
    await first.renew(held)
    with pytest.raises(LeaseTaken):  # another id renews nothing
        await second.renew("00000000-0000-0000-0000-000000000000")
    await first.release(held)
    taken = await second.acquire(15)
    with pytest.raises(LeaseTaken):  # the first holder's id is dead once another acquired
        await first.renew(held)
    await second.release(taken)


def test_azurite_serves_the_lease_rules_leadership_relies_on(
    azurite_storage: AzuriteStorage,
) -> None:
    azurite_storage.create_container(CONTAINER)

    async def scenario() -> None:
        first, second = blob_lease(azurite_storage), blob_lease(azurite_storage)
        try:
            await contract(first, second)  # the first acquire creates the `leader` blob
        finally:
            await first.close()
            await second.close()

    asyncio.run(scenario())
    assert set(azurite_storage.blobs(CONTAINER)) == {"leader"}
    assert "LeaseAlreadyPresent" in azurite_storage.refused


def test_the_simulated_lease_serves_the_same_rules() -> None:
    leases = SimulatedLeases(VirtualClock())
    asyncio.run(contract(leases.client("a"), leases.client("b")))
    assert [t.holder for t in leases.history] == ["a", "b"]


def test_a_missing_container_is_an_error_not_a_standby(azurite_storage: AzuriteStorage) -> None:
    async def scenario() -> None:
        lease = blob_lease(azurite_storage)
        try:
            await lease.acquire(15)
        finally:
            await lease.close()

    with pytest.raises(Exception, match="ContainerNotFound"):
        asyncio.run(scenario())
    assert azurite_storage.containers() == []  # the runtime never creates it


def test_lease_settings_outside_blob_storage_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="15 to 60"):
        LeaderSettings(duration=90)
    with pytest.raises(ValueError, match="margin"):
        LeaderSettings(duration=30, margin=12)


# -- takeover over Azurite, on the wall clock ----------------------------------------------


def test_a_standby_takes_over_within_two_lease_periods_of_the_leader_dying(
    azurite: Any,
) -> None:
    """Over Azurite: the leader's host dies without releasing; the standby waits the lease
    out and leads. Real time: about 15 to 25 s."""
    storage = AzuriteStorage(azurite)
    storage.reset()
    storage.create_container(CONTAINER)
    leader_host = AzuriteStorage(azurite)  # the same account, reached from the doomed host
    settings = LeaderSettings(duration=15, margin=3)
    clock = SystemClock()

    async def scenario() -> float:
        # Its calls fail at once once it is dead, not after the SDK's minute of retries.
        doomed = blob_lease(leader_host, retry_total=0)
        first = Leadership(doomed, clock, instance="web-1", settings=settings)
        second = Leadership(blob_lease(storage), clock, instance="web-2", settings=settings)
        stop_first, stop_second = asyncio.Event(), asyncio.Event()
        holding = asyncio.create_task(first.hold(stop_first))
        assert await asyncio.wait_for(first.elected(stop_first), 10) == 1
        standing_by = asyncio.create_task(second.hold(stop_second))
        await asyncio.sleep(1)
        assert first.is_leader()
        assert not second.is_leader()
        with pytest.raises(NotLeader):
            second.fence("create /chats/getAllMessages")
        # The host dies: nothing it sends arrives any more, not even a release.
        leader_host.fault = lambda request: (503, "ServerBusy")
        died = time.monotonic()
        holding.cancel()
        await asyncio.gather(holding, return_exceptions=True)
        await asyncio.wait_for(second.elected(stop_second), 2 * settings.duration + 5)
        took = time.monotonic() - died
        assert second.is_leader()
        second.fence("renew")  # allowed: it leads now
        stop_second.set()
        await standing_by
        return took

    took = asyncio.run(scenario())
    assert took <= 2 * settings.duration
    assert took >= settings.duration - settings.margin  # it waited the lease out


# -- three control planes for a simulated week -----------------------------------------------


class HostClock:
    """One host's view of the shared simulated clock; a frozen host's tasks stall at their
    next wake-up until it thaws (a hung process, a long GC pause, a stopped VM)."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self._thawed = asyncio.Event()
        self._thawed.set()

    def time(self) -> float:
        return self.clock.time()

    def monotonic(self) -> float:
        return self.clock.monotonic()

    async def sleep(self, seconds: float) -> None:
        await self.clock.sleep(seconds)
        await self._thawed.wait()

    def freeze(self) -> None:
        self._thawed.clear()

    def thaw(self) -> None:
        self._thawed.set()


@dataclass
class Host:
    name: str
    clock: HostClock
    lease: LeaseClient
    plane: ControlPlane
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


@dataclass
class Chaos:
    kills: list[tuple[str, float]] = field(default_factory=list)
    freezes: list[tuple[str, float, float]] = field(default_factory=list)


def start_host(bench: Bench, leases: SimulatedLeases, name: str) -> Host:
    clock = HostClock(bench.clock)
    lease = leases.client(name)
    leadership = Leadership(lease, clock, instance=name, settings=LEASE)
    plane = ControlPlane.from_deployment(
        deployment(),
        FakeCredential(),
        desired=desired_state(**SHORT_LIVED),
        clock=clock,
        settings=FAST,
        graph_transport=bench.graph.as_writer(name),
        keyvault_options={"transport": bench.vault.transport()},
        leadership=leadership,
        instance=name,
    )
    plane._rng = random.Random(name)
    host = Host(name, clock, lease, plane)
    host.task = asyncio.create_task(plane.run(host.stop))
    return host


def test_three_control_planes_for_a_week_of_kills_and_freezes_never_write_together(
    bench: Bench, tmp_path: Path
) -> None:
    bench.graph.fault_rate = 0.2
    leases = SimulatedLeases(bench.clock)
    rng = random.Random(16)
    chaos = Chaos()

    async def week() -> dict[str, Host]:
        hosts = {name: start_host(bench, leases, name) for name in ("web-1", "web-2", "web-3")}
        end = bench.clock.monotonic() + WEEK

        async def restart(name: str, after: float) -> None:
            await bench.clock.sleep(after)
            hosts[name] = start_host(bench, leases, name)

        restarts = []
        while bench.clock.monotonic() < end - 6 * 3600:
            await bench.clock.sleep(rng.uniform(2, 8) * 3600)
            leader = next((h for h in hosts.values() if h.plane.leadership.is_leader()), None)
            if leader is None:
                continue
            if rng.random() < 0.5:
                # Killed: its lease is never released, its tasks simply stop.
                chaos.kills.append((leader.name, bench.clock.monotonic()))
                leader.lease.down = True
                assert leader.task is not None
                leader.task.cancel()
                await asyncio.gather(leader.task, return_exceptions=True)
                restarts.append(asyncio.create_task(restart(leader.name, rng.uniform(60, 1800))))
            else:
                # Frozen: for less than a lease period (it keeps leading) or well past it.
                frozen_for = rng.choice((rng.uniform(5, 40), rng.uniform(90, 600)))
                chaos.freezes.append((leader.name, bench.clock.monotonic(), frozen_for))
                leader.clock.freeze()
                await bench.clock.sleep(frozen_for)
                leader.clock.thaw()
        await asyncio.gather(*restarts)
        await bench.clock.sleep(max(0.0, end - bench.clock.monotonic()))
        for host in hosts.values():
            host.stop.set()
        await asyncio.gather(*(h.task for h in hosts.values() if h.task is not None))
        return hosts

    started = time.monotonic()
    hosts = asyncio.run(week())
    elapsed = time.monotonic() - started
    graph = bench.graph

    # Zero expired subscriptions, under 20 % Graph faults.
    assert graph.faults_injected >= 0.15 * len(graph.requests)
    assert graph.faults_injected > 30
    assert graph.expired == []
    wanted = {s.resource for s in desired_state(**SHORT_LIVED).subscriptions}
    assert {s.resource for s in graph.active()} == wanted
    # Never two writers within one lease period: every write reached Graph from the host
    # that held the lease at that moment, and lease terms never overlap.
    assert len(graph.writes) > 300
    outside = [w for w in graph.writes if leases.holder_at(w.at) != w.writer]
    assert outside == []
    terms = leases.history
    assert all(a.end <= b.start for a, b in itertools.pairwise(terms))
    # Leaders were killed and frozen, and a standby took over within two lease periods.
    assert len(chaos.kills) >= 3
    assert any(frozen > LEASE.duration for _, _, frozen in chaos.freezes)
    for name, moment in chaos.kills:
        successor = next(t for t in terms if t.start > moment)
        assert successor.holder != name
        assert successor.start - moment <= 2 * LEASE.duration
    for _, moment, frozen in chaos.freezes:
        if frozen > LEASE.duration:  # the lease ran out under it: someone else leads
            successor = next(t for t in terms if t.start > moment)
            assert successor.start - moment <= 2 * LEASE.duration
    writers = Counter(w.writer for w in graph.writes)
    assert len(writers) >= 2
    # The status page's view: exactly one leader at the end, the others standing by.
    roles = sorted(h.plane.status().role for h in hosts.values())
    assert roles in (["leader", "standby", "standby"], ["standby", "standby", "standby"])
    print(
        f"week: {len(terms)} terms, {len(chaos.kills)} kills, {len(chaos.freezes)} freezes, "
        f"{len(graph.writes)} writes by {dict(writers)}, {graph.faults_injected} faults, "
        f"{elapsed:.1f} s"
    )


def test_a_leader_past_its_term_sends_no_write_and_says_why(bench: Bench) -> None:
    """The fence: once this host's own view of its term has run out, a reconcile that would
    create every subscription sends nothing, though no other host has taken the lease yet."""
    leases = SimulatedLeases(bench.clock)

    async def scenario() -> ControlPlane:
        host = start_host(bench, leases, "web-1")
        await host.plane.leadership.elected(host.stop)
        await bench.clock.sleep(1)
        assert len(bench.graph.writes) == 4  # it leads: the four subscriptions are created
        host.clock.freeze()
        bench.clock.advance(LEASE.duration - LEASE.margin)  # the term lapses under it
        assert not host.plane.leadership.is_leader()
        for stored in list(bench.graph.subscriptions):
            bench.graph.remove(stored)
        with pytest.raises(NotLeader, match="web-1 is not the leader: create"):
            await host.plane.reconcile()
        host.clock.thaw()
        host.stop.set()
        assert host.task is not None
        await host.task
        return host.plane

    plane = asyncio.run(scenario())
    assert len(bench.graph.writes) == 4  # nothing after the term ran out
    assert plane.status().role == "standby"
