"""The continuous control plane on a virtual clock: renewals, lifecycle events, gap resync."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import random
from pathlib import Path

from graphtap.subscriptions.clock import VirtualClock, utcnow
from graphtap.subscriptions.control_plane import ControlPlane, ControlPlaneSettings
from graphtap.subscriptions.rotation import KeyFolderPublisher
from tests.subscriptions.conftest import (
    Bench,
    Processing,
    client_state_of,
    desired_state,
    tenant_for,
)

WEEK = 7 * 24 * 3600.0
#: The synthetic tenant's own clock ticks a few seconds per message; start it behind "now".
TICK = dt.timedelta(seconds=10)
FAST = ControlPlaneSettings(
    renewal_check=600.0, reconcile_interval=3600.0, lifecycle_poll=60.0, rotation_check=3600.0
)


async def started(bench: Bench, tmp_path: Path) -> tuple[ControlPlane, Processing]:
    """A control plane that has bootstrapped, and a processor reading the same hub."""
    plane = bench.control_plane(settings=FAST)
    plane.on_certificate = KeyFolderPublisher(plane.keyvault, tmp_path / "keys")
    await plane.refresh_target()
    processing = Processing.start(
        bench.hub.directory,
        tmp_path / "keys",
        client_state_of(bench.vault),
        tmp_path / "out.sqlite",
    )
    plane.lifecycle_queue = processing.queue
    return plane, processing


def with_resync(bench: Bench, plane: ControlPlane, processing: Processing) -> None:
    """Gap resync into the processor's own pipeline and verdict store."""
    wired = bench.control_plane(resync_sink=processing.resync_submitter())
    plane.resync = wired.resync


def test_a_simulated_week_under_20_percent_faults_never_lets_a_subscription_expire(
    bench: Bench, tmp_path: Path
) -> None:
    bench.graph.fault_rate = 0.2
    tenant = tenant_for(bench.graph)
    rng = random.Random(11)
    published: set[str] = set()
    removals = 0

    async def tenant_activity(stop: asyncio.Event, processing: Processing) -> None:
        nonlocal removals
        while not stop.is_set():
            await bench.clock.sleep(1200)
            tenant.clock = utcnow(bench.clock) - TICK
            message = tenant.post(sensitive=rng.random() < 0.3)
            published.add(message.id)
            bench.graph.publish(message)
            live = bench.graph.active()
            roll = rng.random()
            if roll < 0.04 and live:
                removals += 1
                bench.graph.remove(rng.choice(live).id)
                # Messages sent while the subscription is gone are only recoverable by resync.
                tenant.clock = utcnow(bench.clock) - TICK
                gap_message = tenant.post(sensitive=True)
                published.add(gap_message.id)
                bench.graph.publish(gap_message)
            elif roll < 0.08 and live:
                bench.graph.reauthorization_required(rng.choice(live).id)
            await processing.drain()

    async def week() -> tuple[ControlPlane, Processing]:
        plane, processing = await started(bench, tmp_path)
        with_resync(bench, plane, processing)
        stop = asyncio.Event()
        start = bench.clock.time()

        async def stopper() -> None:
            await bench.clock.sleep(WEEK)
            stop.set()

        await asyncio.gather(plane.run(stop), stopper(), tenant_activity(stop, processing))
        assert bench.clock.time() - start >= WEEK
        await processing.drain()
        return plane, processing

    plane, processing = asyncio.run(week())
    graph = bench.graph
    # The faults hit about a fifth of every call the week made (the rate asked for).
    assert graph.faults_injected > 0.1 * len(graph.requests)
    assert graph.expired == []
    assert graph.reauth_patch_conflicts == []
    assert not any(path.endswith("/reauthorize") for _, path, _ in graph.requests)
    assert removals > 0
    wanted = {s.resource for s in desired_state().subscriptions}
    assert {s.resource for s in graph.active()} == wanted
    status = plane.status()
    assert {s.resource for s in status.subscriptions} == wanted
    assert all(s.state == "active" for s in status.subscriptions)
    # Every message of the week has exactly one verdict, the gaps' ones from resync.
    assert processing.verdict_count() == len(published)
    assert processing.summary.dead_letters == 0
    assert processing.queue.counts().get("subscriptionRemoved/pending", 0) == 0


def test_reauthorization_required_renews_with_a_patch_only(bench: Bench, tmp_path: Path) -> None:
    async def scenario() -> None:
        plane, processing = await started(bench, tmp_path)
        await plane.reconcile()
        teams = next(s for s in bench.graph.active() if s.resource == "/teams/getAllMessages")
        before = teams.expiration
        bench.clock.advance(3600)
        bench.graph.reauthorization_required(teams.id)
        await processing.drain()
        await plane.drain_lifecycle()
        assert bench.graph.subscriptions[teams.id].expiration > before
        assert processing.queue.counts() == {"reauthorizationRequired/done": 1}

    asyncio.run(scenario())
    patches = [r for r in bench.graph.requests if r[0] == "PATCH"]
    assert len(patches) == 1
    assert not any(path.endswith("/reauthorize") for _, path, _ in bench.graph.requests)


def test_subscription_removed_recreates_and_resyncs_the_gap_once(
    bench: Bench, tmp_path: Path
) -> None:
    tenant = tenant_for(bench.graph)

    async def scenario() -> Processing:
        plane, processing = await started(bench, tmp_path)
        with_resync(bench, plane, processing)
        await plane.reconcile()
        for _ in range(5):
            bench.clock.advance(60)
            tenant.clock = utcnow(bench.clock) - TICK
            bench.graph.publish(tenant.post(sensitive=True))
        await processing.drain()
        before = processing.verdict_count()
        chats = next(s for s in bench.graph.active() if s.resource == "/chats/getAllMessages")
        teams = next(s for s in bench.graph.active() if s.resource == "/teams/getAllMessages")
        bench.graph.remove(chats.id)
        bench.graph.remove(teams.id)
        gap = []
        for _ in range(4):  # the tenant goes on; Graph notifies nobody
            bench.clock.advance(60)
            tenant.clock = utcnow(bench.clock) - TICK
            message = tenant.post(sensitive=True)
            gap.append(message)
            assert bench.graph.publish(message) == 0
        await processing.drain()
        assert processing.verdict_count() == before
        await plane.drain_lifecycle()
        resources = {s.resource for s in bench.graph.active()}
        assert {"/chats/getAllMessages", "/teams/getAllMessages"} <= resources
        assert processing.verdict_count() == before + len(gap)
        # Resyncing again (a duplicate lifecycle event) adds nothing.
        await plane.handle(
            processing.queue.pending(10)[0] if processing.queue.pending(10) else _missed(chats.id)
        )
        assert processing.verdict_count() == before + len(gap)
        assert plane.status().resyncs >= 2
        return processing

    processing = asyncio.run(scenario())
    assert processing.summary.dead_letters == 0


def test_a_gap_message_too_large_for_one_event_is_resynced_like_any_other(
    bench: Bench, tmp_path: Path
) -> None:
    """A message over 1 MB cannot ride in an event, and forty medium ones not in one body:
    resync hands the large one over beside its event, as Graph does with a payload over 1 MB,
    and splits the others, so each gets its verdict and none is dead-lettered as oversized."""
    tenant = tenant_for(bench.graph)

    async def scenario() -> Processing:
        plane, processing = await started(bench, tmp_path)
        with_resync(bench, plane, processing)
        await plane.reconcile()
        chats = next(s for s in bench.graph.active() if s.resource == "/chats/getAllMessages")
        teams = next(s for s in bench.graph.active() if s.resource == "/teams/getAllMessages")
        bench.graph.remove(chats.id)
        bench.graph.remove(teams.id)
        bench.clock.advance(60)
        tenant.clock = utcnow(bench.clock) - TICK
        paste = tenant.post(sensitive=False)
        paste.html = "<p>" + "log line without secrets " * 60_000 + "4111 1111 1111 1111</p>"
        assert len(paste.html) > 1_400_000
        bench.graph.publish(paste)
        for _ in range(40):
            bench.clock.advance(5)
            tenant.clock = utcnow(bench.clock) - TICK
            medium = tenant.post(sensitive=False)
            medium.html = "<p>" + "quarterly planning notes " * 1_200 + "</p>"
            bench.graph.publish(medium)
        await processing.drain()
        await plane.drain_lifecycle()
        rows = processing.store._db.execute(
            "SELECT content, findings FROM verdicts WHERE message_id = ?", (paste.id,)
        ).fetchall()
        assert [content for content, _ in rows] == ["inspected"]
        assert "credit_card_number" in rows[0][1]
        assert processing.verdict_count() == 41
        return processing

    processing = asyncio.run(scenario())
    assert processing.summary.dead_letters == 0


def test_a_gap_whose_resync_could_not_list_its_users_is_resynced_on_the_next_round(
    bench: Bench, tmp_path: Path
) -> None:
    """The window is stored before the users and teams are listed: a listing Graph refuses
    once (a role not yet in effect) leaves the gap owed, and the next round reads it back
    although the subscription it came from exists again by then."""
    tenant = tenant_for(bench.graph)

    async def scenario() -> tuple[int, int, int]:
        plane, processing = await started(bench, tmp_path)
        with_resync(bench, plane, processing)
        await plane.reconcile()
        await processing.drain()
        before = processing.verdict_count()
        chats = next(s for s in bench.graph.active() if s.resource == "/chats/getAllMessages")
        bench.graph.remove(chats.id)
        lost = 0
        for _ in range(3):
            bench.clock.advance(60)
            tenant.clock = utcnow(bench.clock) - TICK
            message = tenant.post(sensitive=True)
            lost += not message.conversation.is_channel
            bench.graph.publish(message)
        await processing.drain()
        bench.graph.refuse_directory = 1
        await plane.drain_lifecycle()  # recreates the subscription; the resync is refused
        assert processing.verdict_count() == before
        await plane.resume_resyncs()  # the next round
        await processing.drain()
        return before, processing.verdict_count(), lost

    before, after, lost = asyncio.run(scenario())
    assert lost > 0
    assert after == before + lost


def _missed(subscription_id: str):  # type: ignore[no-untyped-def]
    from graphtap.processing.lifecycle import LifecycleEvent

    return LifecycleEvent("k", subscription_id, None, "missed", None, 0.0, {})


def test_status_reports_each_subscription(bench: Bench) -> None:
    async def scenario() -> None:
        plane = bench.control_plane()
        await plane.reconcile()
        status = plane.status()
        assert status.last_reconcile == utcnow(bench.clock)
        assert status.errors == ()
        assert status.certificate_id is not None
        assert len(status.subscriptions) == 4
        for subscription in status.subscriptions:
            assert subscription.id
            assert subscription.expiration is not None
            assert subscription.expiration > utcnow(bench.clock) + dt.timedelta(hours=40)
            assert subscription.last_action == "created"
            assert subscription.state == "active"

    asyncio.run(scenario())


def test_failures_show_in_status_and_do_not_stop_the_loops(bench: Bench) -> None:
    bench.graph.protected_api_approved = False

    async def scenario() -> None:
        plane = bench.control_plane(settings=FAST)
        stop = asyncio.Event()

        async def stopper() -> None:
            await bench.clock.sleep(4000)
            stop.set()

        await asyncio.gather(plane.run(stop), stopper())
        status = plane.status()
        failing = {s.resource for s in status.subscriptions if s.state == "failing"}
        assert failing == {"/teams/getAllMessages", "/chats/getAllMessages"}
        assert any("requestaccess" in error for error in status.errors)
        assert status.last_reconcile is not None
        assert status.last_reconcile > utcnow(bench.clock) - dt.timedelta(seconds=3000)

    asyncio.run(scenario())


def test_downtime_past_expiry_is_resynced_on_restart(bench: Bench, tmp_path: Path) -> None:
    tenant = tenant_for(bench.graph)
    heartbeat = tmp_path / "control-plane.heartbeat"

    async def run_for(plane: ControlPlane, seconds: float) -> None:
        stop = asyncio.Event()

        async def stopper() -> None:
            await bench.clock.sleep(seconds)
            stop.set()

        await asyncio.gather(plane.run(stop), stopper())

    async def scenario() -> tuple[int, int]:
        plane, processing = await started(bench, tmp_path)
        with_resync(bench, plane, processing)
        plane.heartbeat = heartbeat
        await run_for(plane, 1800)
        assert heartbeat.exists()
        bench.clock.advance(4 * 24 * 3600)  # the host is down; every subscription expires
        lost = []
        for _ in range(3):
            tenant.clock = utcnow(bench.clock) - TICK
            message = tenant.post(sensitive=True)
            lost.append(message)
            assert bench.graph.publish(message) == 0
            bench.clock.advance(60)
        assert len(bench.graph.expired) == 2  # the 72-hour Teams ones; mail lives 7 days
        restarted, _ = await started(bench, tmp_path)
        with_resync(bench, restarted, processing)
        restarted.heartbeat = heartbeat
        await run_for(restarted, 600)
        await processing.drain()
        return processing.verdict_count(), len(lost)

    verdicts, lost = asyncio.run(scenario())
    assert verdicts == lost
    assert {s.resource for s in bench.graph.active()} == {
        s.resource for s in desired_state().subscriptions
    }


def test_the_loops_keep_their_interval_when_the_wall_clock_steps() -> None:
    """NTP stepping the wall clock an hour either way neither stalls nor hurries a loop."""
    clock = VirtualClock()
    plane = ControlPlane(
        desired=desired_state(),
        reconciler=None,  # type: ignore[arg-type]  # the loop's job below needs none
        keyvault=None,  # type: ignore[arg-type]
        certificate_name="c",
        notification_url="https://example.invalid",
        clock=clock,
        settings=ControlPlaneSettings(jitter=0.0),
    )
    rounds: list[float] = []
    stop = asyncio.Event()

    async def job() -> None:
        rounds.append(clock.monotonic())
        if len(rounds) == 2:
            clock.step_wall(-3600.0)
        if len(rounds) == 4:
            clock.step_wall(7200.0)
        if len(rounds) == 6:
            stop.set()

    asyncio.run(plane._every(stop, 60.0, "renewal", job))
    assert [b - a for a, b in itertools.pairwise(rounds)] == [60.0] * 5


def test_observations_report_each_expiry_and_every_failed_renewal(bench: Bench) -> None:
    """What the expiry and renewal-failure alerts read (`telemetry.METRICS`)."""

    async def scenario() -> None:
        plane = bench.control_plane()
        await plane.reconcile()
        expiries = {
            attributes["resource"]: seconds
            for name, seconds, attributes in plane.observations()
            if name == "subscription.expiry_seconds"
        }
        assert set(expiries) == {s.resource for s in plane.status().subscriptions}
        status = {s.resource: s.expiration for s in plane.status().subscriptions}
        for resource, seconds in expiries.items():
            expiration = status[resource]
            assert expiration is not None
            assert seconds == (expiration - utcnow(bench.clock)).total_seconds()
        assert not [o for o in plane.observations() if o[0] == "subscription.renewal_failures"]

        bench.clock.advance(max(expiries.values()) + 60)  # every one has expired meanwhile
        assert all(
            seconds < 0
            for name, seconds, _ in plane.observations()
            if name == "subscription.expiry_seconds"
        )
        bench.graph.fault_rate = 1.0  # Graph answers every write with a 5xx
        outcomes = await plane.renew_due()
        assert outcomes
        assert all(outcome.action == "renew failed" for outcome in outcomes)
        failures = [
            (value, attributes)
            for name, value, attributes in plane.observations()
            if name == "subscription.renewal_failures"
        ]
        assert failures == [(len(outcomes), {"action": "renew"})]

    asyncio.run(scenario())


def test_a_refused_create_counts_as_a_failed_renewal(bench: Bench) -> None:
    bench.graph.protected_api_approved = False  # Teams subscriptions are refused (403)

    async def scenario() -> None:
        plane = bench.control_plane()
        await plane.reconcile()
        failing = [s for s in plane.status().subscriptions if s.state == "failing"]
        failures = {
            attributes["action"]: value
            for name, value, attributes in plane.observations()
            if name == "subscription.renewal_failures"
        }
        assert failures == {"create": len(failing)}
        assert len(failing) == 2

    asyncio.run(scenario())
