"""Certificate rotation end to end: Graph encrypts under old and new keys during the switch."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from graphtap.subscriptions.clock import utcnow
from graphtap.subscriptions.rotation import retire_keys
from tests.subscriptions.conftest import CERTIFICATE, Bench, tenant_for
from tests.subscriptions.test_control_plane import TICK, started


@pytest.mark.parametrize(
    "graph_patch", ["takes", "ignores", "refuses"], ids=["patch", "recreate", "refused"]
)
def test_every_notification_decrypts_across_a_rotation(
    bench: Bench, tmp_path: Path, graph_patch: str
) -> None:
    bench.graph.certificate_lag = 300.0  # Graph keeps using the old certificate for a while
    bench.graph.accept_certificate_patch = graph_patch == "takes"
    bench.graph.reject_certificate_patch = graph_patch == "refuses"
    graph_takes_patch = graph_patch == "takes"
    tenant = tenant_for(bench.graph)
    rng = random.Random(5)
    published = 0

    def publish(count: int) -> None:
        nonlocal published
        for _ in range(count):
            bench.clock.advance(20)
            tenant.clock = utcnow(bench.clock) - TICK
            bench.graph.publish(tenant.post(sensitive=rng.random() < 0.5))
            published += 1

    async def scenario() -> tuple[str, str, list[str]]:
        plane, processing = await started(bench, tmp_path)
        await plane.reconcile()
        old = plane.status().certificate_id
        assert old is not None
        publish(5)
        await processing.drain()

        bench.vault.add_certificate_version(CERTIFICATE)  # Key Vault's AutoRenew
        outcomes = await plane.check_rotation()
        new = plane.status().certificate_id
        assert new is not None
        assert new != old
        rich = {o.resource: o.action for o in outcomes if "getAllMessages" in o.resource}
        expected = "rekeyed" if graph_takes_patch else "recreated (new certificate)"
        assert set(rich.values()) == {expected}
        for subscription in bench.graph.active():
            if subscription.include_resource_data:
                assert subscription.certificate_id == new

        publish(5)  # within Graph's lag: still the old certificate (PATCH case)
        await processing.drain()
        bench.clock.advance(400)
        publish(5)  # the new certificate
        await processing.drain()
        assert processing.verdict_count() == published
        assert processing.summary.dead_letters == 0
        used = sorted(processing.summary.certificates_used)
        return old, new, used

    old, new, used = asyncio.run(scenario())
    assert set(used) == {old, new}

    # Retirement: the old key goes only after a grace period without use.
    keys_dir = tmp_path / "keys"
    now = time.time()
    kept = retire_keys(
        keys_dir, current=new, last_used={old: now}, retired_at=now, grace=3600, now=now + 60
    )
    assert kept == []
    removed = retire_keys(
        keys_dir, current=new, last_used={old: now}, retired_at=now, grace=3600, now=now + 3601
    )
    assert removed == [old]
    assert sorted(p.name for p in keys_dir.glob("*.key.pem")) == [f"{new}.key.pem"]


def test_the_key_ring_picks_up_and_retires_keys_without_restart(
    bench: Bench, tmp_path: Path
) -> None:
    async def scenario() -> None:
        plane, processing = await started(bench, tmp_path)
        ring = processing.keys
        ring.retire_grace = 600.0
        first = plane.status().certificate_id
        bench.vault.add_certificate_version(CERTIFICATE)
        await plane.check_rotation()
        second = plane.status().certificate_id
        now = ring.clock()  # the ring's intervals run on its monotonic clock
        assert ring.refresh(now)
        assert {e.certificate_id for e in ring.entries()} == {first, second}
        (tmp_path / "keys" / f"{first}.key.pem").unlink()
        ring.refresh(now + 1)
        assert {e.certificate_id for e in ring.entries()} == {first, second}  # grace
        ring.refresh(now + 700)
        assert {e.certificate_id for e in ring.entries()} == {second}

    asyncio.run(scenario())


def test_rotate_issues_a_new_version_and_moves_every_subscription(bench: Bench) -> None:
    async def scenario() -> None:
        plane = bench.control_plane()
        await plane.reconcile()
        before = len(bench.vault.certificates[CERTIFICATE])
        await plane.rotate()
        assert len(bench.vault.certificates[CERTIFICATE]) == before + 1
        current = plane.status().certificate_id
        assert all(
            s.certificate_id == current for s in bench.graph.active() if s.include_resource_data
        )

    asyncio.run(scenario())
