"""The Event Hubs source: load balancing, checkpoints after the sink, outages, poison events."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from azure.eventhub.exceptions import ConnectionLostError, EventDataSendError

from graphtap.processing.sinks.eventhubs import records
from graphtap.processing.sources.eventhubs import (
    EARLIEST,
    LATEST,
    EventHubsSourceSettings,
    starting_position,
)
from graphtap.simulation.emitter import SimulatedEvent
from tests.eventhubs.conftest import (
    ACCOUNT,
    CONSUMER_GROUP,
    CONTAINER,
    FINDINGS,
    NAMESPACE,
    NOTIFICATIONS,
    Expected,
    FakeCredential,
    InstanceFactory,
    checkpoints,
    drained,
    owners,
    refuse_checkpoint_writes,
    store,
    wait_for,
)
from tests.fakes.azurite import AzuriteStorage
from tests.fakes.eventhubs import Installed


def findings(hubs: Installed) -> list[dict[str, object]]:
    return [r for body in hubs.namespace.bodies(FINDINGS) for r in records(body)]


def publish(hubs: Installed, traffic: list[SimulatedEvent]) -> None:
    hubs.namespace.publish(NOTIFICATIONS, [event.body for event in traffic])


def test_every_change_yields_one_verdict_on_the_findings_hub(
    hubs: Installed,
    make_instance: InstanceFactory,
    traffic: list[SimulatedEvent],
    expected: Expected,
) -> None:
    async def scenario() -> None:
        publish(hubs, traffic)
        instance = make_instance()
        instance.start()
        await wait_for(lambda: drained(hubs, instance.source), what="all partitions handled")
        await instance.close()
        sent = findings(hubs)
        assert Counter(str(v["verdict_key"]) for v in sent) == Counter(expected.verdict_keys)
        assert instance.summary.events == len(traffic)
        assert instance.summary.verdicts == len(expected.verdict_keys)
        assert instance.summary.dead_letters == expected.dead_letters > 0
        assert instance.summary.lifecycle_queued == sum(e.lifecycle for e in traffic) > 0

    asyncio.run(scenario())


def test_worker_processes_give_the_same_verdicts(
    hubs: Installed,
    make_instance: InstanceFactory,
    traffic: list[SimulatedEvent],
    expected: Expected,
) -> None:
    async def scenario() -> None:
        publish(hubs, traffic)
        instance = make_instance(workers=2, max_batch_size=64)
        instance.start()
        await wait_for(lambda: drained(hubs, instance.source), what="all partitions handled")
        await instance.close()
        keys = [str(v["verdict_key"]) for v in findings(hubs)]
        assert Counter(keys) == Counter(expected.verdict_keys)
        assert instance.summary.dead_letters == expected.dead_letters

    asyncio.run(scenario())


def test_two_instances_share_the_partitions_without_double_processing(
    hubs: Installed,
    make_instance: InstanceFactory,
    traffic: list[SimulatedEvent],
    expected: Expected,
) -> None:
    async def scenario() -> None:
        # Ownership that outlives a stalled event loop: only balancing moves a partition.
        first = make_instance(ownership_expiration=6.0)
        second = make_instance(ownership_expiration=6.0)
        first.start()
        second.start()
        await wait_for(lambda: sorted(owners(hubs).values()) == [2, 2], what="two partitions each")
        await asyncio.sleep(0.3)  # a few more balancing rounds: the split must hold
        assert sorted(owners(hubs).values()) == [2, 2]
        publish(hubs, traffic)
        await wait_for(
            lambda: drained(hubs, first.source, second.source), what="all partitions handled"
        )
        await first.close()
        await second.close()
        keys = [str(v["verdict_key"]) for v in findings(hubs)]
        assert Counter(keys) == Counter(expected.verdict_keys)  # each exactly once
        assert first.summary.events > 0
        assert second.summary.events > 0
        assert first.summary.events + second.summary.events == len(traffic)
        assert first.summary.duplicate_verdicts == second.summary.duplicate_verdicts == 0

    asyncio.run(scenario())


def test_a_joining_instance_takes_partitions_over_from_their_checkpoints(
    hubs: Installed,
    make_instance: InstanceFactory,
    traffic: list[SimulatedEvent],
    expected: Expected,
) -> None:
    half = len(traffic) // 2

    async def scenario() -> None:
        first = make_instance()
        first.start()
        publish(hubs, traffic[:half])
        await wait_for(lambda: drained(hubs, first.source), what="the first half handled")
        assert owners(hubs) == Counter({next(iter(owners(hubs))): 4})
        second = make_instance()
        second.start()
        await wait_for(lambda: sorted(owners(hubs).values()) == [2, 2], what="a 2/2 split")
        await wait_for(
            lambda: (
                len(second.source.meter.snapshot()) == 2
                and sum(p.owned for p in first.source.meter.snapshot()) == 2
            ),
            what="the first instance to release the stolen partitions",
        )
        publish(hubs, traffic[half:])
        await wait_for(
            lambda: drained(hubs, first.source, second.source), what="the second half handled"
        )
        await first.close()
        await second.close()
        keys = [str(v["verdict_key"]) for v in findings(hubs)]
        assert Counter(keys) == Counter(expected.verdict_keys)
        # The newcomer resumed after the checkpoints: it never saw the first half.
        assert second.summary.events == len(traffic) - half - (first.summary.events - half)
        assert first.summary.events + second.summary.events == len(traffic)

    asyncio.run(scenario())


def test_a_findings_hub_outage_holds_the_checkpoint_and_loses_no_verdict(
    hubs: Installed,
    make_instance: InstanceFactory,
    traffic: list[SimulatedEvent],
    expected: Expected,
) -> None:
    async def scenario() -> None:
        hubs.namespace.send_failures = 10**9
        publish(hubs, traffic)
        instance = make_instance()
        instance.start()
        await wait_for(lambda: instance.source.errors >= 3, what="failed batches")
        assert checkpoints(hubs) == {}  # nothing moved while the sink was down
        assert findings(hubs) == []
        assert instance.summary.events == 0
        hubs.namespace.send_failures = 0  # the hub is back
        await wait_for(lambda: drained(hubs, instance.source), what="all partitions handled")
        await instance.close()
        keys = [str(v["verdict_key"]) for v in findings(hubs)]
        assert set(keys) == expected.verdict_keys
        assert len(keys) == len(expected.verdict_keys)

    asyncio.run(scenario())


def test_a_lost_checkpoint_write_redelivers_and_the_sink_does_not_resend(
    hubs: Installed,
    make_instance: InstanceFactory,
    traffic: list[SimulatedEvent],
    expected: Expected,
    azurite_storage: AzuriteStorage,
) -> None:
    async def scenario() -> None:
        azurite_storage.fault = refuse_checkpoint_writes
        publish(hubs, traffic)
        instance = make_instance()
        instance.start()
        await wait_for(lambda: instance.source.errors >= 4, what="failed checkpoints")
        assert checkpoints(hubs) == {}
        assert "ServerBusy" in azurite_storage.refused
        azurite_storage.fault = None
        await wait_for(lambda: drained(hubs, instance.source), what="all partitions handled")
        await instance.close()
        keys = [str(v["verdict_key"]) for v in findings(hubs)]
        assert Counter(keys) == Counter(expected.verdict_keys)  # replays were not re-sent

    asyncio.run(scenario())


def test_poison_events_are_dead_lettered_and_the_partition_moves_on(
    hubs: Installed, make_instance: InstanceFactory, traffic: list[SimulatedEvent]
) -> None:
    good = [e.body for e in traffic if e.changes and not e.faults][:5]
    poison = [b"\xff\xfe not json", b'{"value": 7}', b"{" + b" " * (1024 * 1024)]

    async def scenario() -> None:
        hubs.namespace.max_event_bytes = 2 * 1024 * 1024  # Premium: more than we accept
        hubs.namespace.publish(NOTIFICATIONS, [good[0], *poison, *good[1:]], partition_key="poison")
        instance = make_instance()
        instance.start()
        await wait_for(
            lambda: drained(hubs, instance.source), what="the partition handled past the poison"
        )
        await instance.close()
        assert instance.source.errors == 0
        reasons = instance.summary.dead_letters_by_reason
        assert reasons["malformed_event"] == 2
        assert reasons["oversized_event"] == 1
        assert instance.summary.verdicts == sum(e.changes for e in traffic if e.body in set(good))

    asyncio.run(scenario())


def test_start_position_latest_skips_what_was_there_before(
    hubs: Installed, make_instance: InstanceFactory, traffic: list[SimulatedEvent]
) -> None:
    async def scenario() -> None:
        publish(hubs, traffic[:10])
        instance = make_instance(start="latest")
        instance.start()
        await wait_for(
            lambda: len(owners(hubs)) == 1 and sum(owners(hubs).values()) == 4,
            what="all partitions owned",
        )
        await wait_for(lambda: len(instance.source.meter.snapshot()) == 4, what="receivers")
        await asyncio.sleep(0.3)
        publish(hubs, traffic[10:20])
        await wait_for(lambda: drained(hubs, instance.source), what="the new events handled")
        await instance.close()
        assert instance.summary.events == 10

    asyncio.run(scenario())


def test_partition_lag_and_throughput_are_tracked(
    hubs: Installed, make_instance: InstanceFactory, traffic: list[SimulatedEvent]
) -> None:
    async def scenario() -> None:
        publish(hubs, traffic)
        instance = make_instance(max_batch_size=4)
        instance.start()
        await wait_for(lambda: drained(hubs, instance.source), what="all partitions handled")
        await asyncio.sleep(0.5)  # one empty receive per partition refreshes the head
        status = instance.source.meter.snapshot()
        await instance.close()
        assert [p.partition for p in status] == ["0", "1", "2", "3"]
        assert all(p.lag == 0 for p in status)
        assert all(p.owned for p in status)
        assert any(p.events_per_second > 0 for p in status)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("text", "position"),
    [("earliest", EARLIEST), ("latest", LATEST), (" Latest ", LATEST)],
)
def test_start_positions(text: str, position: str) -> None:
    assert starting_position(text) == position


def test_start_position_time_is_utc_unless_given() -> None:
    moment = starting_position("2026-01-05T09:00:00")
    assert not isinstance(moment, str)
    assert moment.utcoffset() is not None
    assert moment.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_bad_settings_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="not 'earliest', 'latest'"):
        starting_position("yesterday")
    with pytest.raises(ValueError, match="ownership_expiration"):
        EventHubsSourceSettings(
            "n", "h", "g", "u", "c", load_balancing_interval=10, ownership_expiration=5
        )


def test_fake_namespace_enforces_the_services_rules(hubs: Installed) -> None:
    with pytest.raises(ConnectionLostError, match="could not be found"):
        hubs.namespace.partitions("nope")
    with pytest.raises(EventDataSendError, match="exceeds"):
        hubs.namespace.publish(NOTIFICATIONS, [b"x" * (1024 * 1024 + 1)])


def test_the_checkpoint_store_refuses_a_claim_on_a_stale_etag(
    hubs: Installed, azurite_storage: AzuriteStorage
) -> None:
    """What keeps two instances from owning one partition: a claim carries the etag its
    owner listed (or, for a partition it saw unclaimed, none: If-None-Match: *), and storage
    refuses it once the blob has changed (412 ConditionNotMet). Azurite enforces If-Match
    itself; the wildcard on Set Blob Metadata it would perform, and the Azurite transport
    refuses it as Azure does. Without these the balancing tests above would pass on timing."""
    claim = {
        "fully_qualified_namespace": NAMESPACE,
        "eventhub_name": NOTIFICATIONS,
        "consumer_group": CONSUMER_GROUP,
        "partition_id": "0",
    }

    async def scenario() -> None:
        async with store(hubs)(ACCOUNT, CONTAINER, credential=FakeCredential()) as checkpoints:
            [first] = await checkpoints.claim_ownership([{**claim, "owner_id": "first"}])
            # No etag: claims a partition nobody owns yet; this one is owned.
            assert await checkpoints.claim_ownership([{**claim, "owner_id": "second"}]) == []
            [renewed] = await checkpoints.claim_ownership([{**first, "owner_id": "first"}])
            assert renewed["etag"] != first["etag"]
            # The second instance listed before the renewal: its etag is stale.
            assert await checkpoints.claim_ownership([{**first, "owner_id": "second"}]) == []
            [listed] = await checkpoints.list_ownership(NAMESPACE, NOTIFICATIONS, CONSUMER_GROUP)
            assert listed["owner_id"] == "first"
            # Listings give the etag bare, responses' ETag header quoted: Azure does the same.
            assert f'"{listed["etag"]}"' == renewed["etag"]

    asyncio.run(scenario())
    assert owners(hubs) == Counter({"first": 1})
    # The first claim finds no blob to set metadata on, and creates it.
    assert azurite_storage.refused == ["BlobNotFound", "ConditionNotMet", "ConditionNotMet"]
