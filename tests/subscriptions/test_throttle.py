"""Write pacing: below Graph's 500 per 20 s, Retry-After obeyed, concurrency bounded."""

from __future__ import annotations

import asyncio

import pytest

from graphtap.subscriptions.clock import VirtualClock
from graphtap.subscriptions.throttle import RetryableError, ThrottleSettings, WriteThrottle
from tests.subscriptions.conftest import Bench, desired_state


def test_settings_that_could_exceed_graphs_limit_are_refused() -> None:
    with pytest.raises(ValueError, match="exceeds Graph's 500 writes"):
        ThrottleSettings(rate=25.0, burst=20)


def test_writes_never_exceed_500_in_any_20_seconds() -> None:
    clock = VirtualClock()
    throttle = WriteThrottle(clock)
    stamps: list[float] = []

    async def write() -> None:
        stamps.append(clock.time())

    async def many() -> None:
        await asyncio.gather(*(throttle.run(write) for _ in range(1500)))

    asyncio.run(many())
    stamps.sort()
    worst = max(
        sum(1 for t in stamps[i : i + 600] if t < start + 20.0) for i, start in enumerate(stamps)
    )
    assert worst <= 500
    rate = len(stamps) / (stamps[-1] - stamps[0])
    assert rate >= 0.9 * 25


def test_a_429_pauses_every_writer_for_its_retry_after() -> None:
    clock = VirtualClock()
    throttle = WriteThrottle(clock)
    calls: list[float] = []

    async def throttled_once() -> str:
        calls.append(clock.time())
        if len(calls) == 1:
            raise RetryableError(429, 7.0, "too many requests")
        return "done"

    async def late_writer() -> float:
        await clock.sleep(1.0)
        await throttle.run(lambda: asyncio.sleep(0))
        return clock.time()

    async def scenario() -> tuple[str, float]:
        result, other = await asyncio.gather(throttle.run(throttled_once), late_writer())
        return result, other

    result, other_at = asyncio.run(scenario())
    assert result == "done"
    assert calls[1] - calls[0] >= 7.0
    assert other_at >= calls[0] + 7.0  # the other writer waited out the same Retry-After


def test_concurrency_is_bounded() -> None:
    clock = VirtualClock()
    throttle = WriteThrottle(clock, ThrottleSettings(concurrency=3))
    in_flight = 0
    peak = 0

    async def slow() -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await clock.sleep(0.5)
        in_flight -= 1

    async def many() -> None:
        await asyncio.gather(*(throttle.run(slow) for _ in range(20)))

    asyncio.run(many())
    assert peak == 3


def test_graphs_429s_are_absorbed_by_retries(bench: Bench) -> None:
    """A Graph that allows only 5 writes per 20 s: every create still lands, none fails."""
    bench.graph.writes_per_window = 5
    mailboxes = [f"user{i}@contoso.com" for i in range(12)]
    state = desired_state(lists={"mailboxes": mailboxes})
    outcomes = asyncio.run(bench.control_plane(state).reconcile())
    assert [o for o in outcomes if o.error is not None] == []
    assert len(bench.graph.active()) == 14
    assert bench.graph.rejected_for_rate > 0


@pytest.mark.parametrize("step", [-3600.0, 3600.0], ids=["wall back an hour", "wall ahead"])
def test_a_wall_clock_step_changes_no_pause(step: float) -> None:
    clock = VirtualClock()
    throttle = WriteThrottle(clock)
    calls: list[float] = []

    async def throttled_once() -> None:
        calls.append(clock.monotonic())
        if len(calls) == 1:
            raise RetryableError(429, 7.0, "too many requests")

    async def stepper() -> None:
        await clock.sleep(1.0)
        clock.step_wall(step)

    async def scenario() -> None:
        await asyncio.gather(throttle.run(throttled_once), stepper())

    asyncio.run(scenario())
    assert calls[1] - calls[0] == pytest.approx(7.0)  # not 3,607 s, not at once


@pytest.mark.parametrize("step", [-3600.0, 3600.0], ids=["wall back an hour", "wall ahead"])
def test_a_wall_clock_step_changes_no_pacing(step: float) -> None:
    clock = VirtualClock()
    settings = ThrottleSettings()
    throttle = WriteThrottle(clock, settings)
    stamps: list[float] = []

    async def write() -> None:
        stamps.append(clock.monotonic())
        if len(stamps) == settings.burst:
            clock.step_wall(step)

    async def many() -> None:
        await asyncio.gather(*(throttle.run(write) for _ in range(settings.burst + 48)))

    asyncio.run(many())
    # The burst at once, then the rate: 48 more writes in two seconds, whatever the wall did.
    assert stamps[settings.burst - 1] == pytest.approx(0.0)
    assert stamps[-1] == pytest.approx(48 / settings.rate, abs=0.01)


def test_the_virtual_wall_clock_steps_alone() -> None:
    clock = VirtualClock(1_000.0)
    woke: list[tuple[float, float]] = []

    async def sleeper() -> None:
        await clock.sleep(10.0)
        woke.append((clock.monotonic(), clock.time()))

    async def scenario() -> None:
        task = asyncio.create_task(sleeper())
        await asyncio.sleep(0)
        clock.step_wall(-3600.0)
        await task

    asyncio.run(scenario())
    assert woke == [(10.0, 1_000.0 - 3600.0 + 10.0)]
