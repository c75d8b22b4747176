"""The findings-hub sink: partition key per conversation, batching, retries, outage, dedupe."""

from __future__ import annotations

import asyncio
import json

import pytest

from graphtap.processing.sinks.eventhubs import (
    PACK_BYTES,
    EventHubsVerdictSink,
    RecentKeys,
    RetryPolicy,
    SinkUnavailable,
    partition_key,
    records,
)
from graphtap.processing.verdicts import Verdict, verdict_key
from tests.eventhubs.conftest import FINDINGS, NAMESPACE, FakeCredential
from tests.fakes.eventhubs import Installed

FAST = RetryPolicy(attempts=3, initial_delay=0.001, max_delay=0.002)


def verdict(conversation: str | None, number: int, *, findings: int = 0) -> Verdict:
    message_id = f"m{number}"
    return Verdict(
        key=verdict_key(
            "tenant",
            f"chats('{conversation}')/messages('{message_id}')",
            message_id,
            "created",
            "1",
        ),
        tenant_id="tenant",
        subscription_id="s",
        change_type="created",
        resource=f"chats('{conversation}')/messages('{message_id}')",
        message_id=message_id,
        conversation_id=conversation,
        version="1",
        sender_id="u",
        content="inspected",
        severity="high" if findings else "none",
        findings=tuple(
            {
                "type": "credit_card_number",
                "count": 1,
                "preview": "4111********1111",
                "value_hash": "ab" * 32,
                "confidence": 85,
            }
            for _ in range(findings)
        ),
        certificate_id="c",
        partition="0",
        offset=number,
        processed_at=0.0,
    )


def sink(**options: object) -> EventHubsVerdictSink:
    return EventHubsVerdictSink(NAMESPACE, FINDINGS, credential=FakeCredential(), **options)  # type: ignore[arg-type]


def sent(hubs: Installed) -> list[tuple[int, bytes | None, dict[str, object]]]:
    """Every verdict on the findings hub: its partition, its event's key, the record."""
    return [
        (index, event.partition_key, record)
        for index, partition in enumerate(hubs.namespace.partitions(FINDINGS))
        for event in partition.events
        for record in records(event.body)
    ]


def test_one_conversation_lands_on_one_partition_in_order(hubs: Installed) -> None:
    conversations = [f"19:chat{i}@thread.v2" for i in range(12)]
    verdicts = [verdict(conversations[n % 12], n) for n in range(240)]

    async def scenario() -> None:
        target = sink(retry=FAST)
        assert await target.write_verdicts(verdicts) == 240
        await target.close()

    asyncio.run(scenario())
    records = sent(hubs)
    assert len(records) == 240
    by_conversation: dict[str, list[tuple[int, int]]] = {}
    for index, key, record in records:
        assert key == str(record["conversation_id"]).encode()
        by_conversation.setdefault(str(record["conversation_id"]), []).append(
            (index, int(record["source"]["offset"]))  # type: ignore[index]
        )
    assert len({i for i, _, _ in records}) == 2  # conversations spread over both partitions
    for entries in by_conversation.values():
        assert len({index for index, _ in entries}) == 1
        offsets = [offset for _, offset in entries]
        assert offsets == sorted(offsets)


def test_verdicts_without_a_conversation_are_keyed_by_tenant() -> None:
    assert partition_key(verdict(None, 1)) == "tenant"
    assert partition_key(verdict("19:x", 1)) == "19:x"


def test_a_large_group_is_split_across_batches_without_losing_order(hubs: Installed) -> None:
    verdicts = [verdict("19:big", n, findings=20) for n in range(400)]  # ~4 KB each

    async def scenario() -> None:
        target = sink(retry=FAST)
        assert await target.write_verdicts(verdicts) == 400
        await target.close()

    asyncio.run(scenario())
    records = sent(hubs)
    assert [r["source"]["offset"] for _, _, r in records] == list(range(400))  # type: ignore[index]
    assert hubs.namespace.sends > 1  # more than 1 MB: several batches


def test_transient_failures_are_retried(hubs: Installed) -> None:
    hubs.namespace.send_failures = 2

    async def scenario() -> int:
        target = sink(retry=FAST)
        try:
            return await target.write_verdicts([verdict("19:a", 1)])
        finally:
            await target.close()

    assert asyncio.run(scenario()) == 1
    assert len(sent(hubs)) == 1


def test_an_outage_raises_so_the_checkpoint_does_not_move(hubs: Installed) -> None:
    hubs.namespace.send_failures = 3

    async def scenario() -> None:
        target = sink(retry=FAST)
        try:
            await target.write_verdicts([verdict("19:a", 1)])
        finally:
            await target.close()

    with pytest.raises(SinkUnavailable, match="after 3 attempts"):
        asyncio.run(scenario())
    assert sent(hubs) == []


def test_keys_sent_by_this_process_are_not_sent_again(hubs: Installed) -> None:
    async def scenario() -> tuple[int, int]:
        target = sink(retry=FAST)
        first = await target.write_verdicts([verdict("19:a", 1), verdict("19:a", 1)])
        again = await target.write_verdicts([verdict("19:a", 1), verdict("19:a", 2)])
        await target.close()
        return first, again

    assert asyncio.run(scenario()) == (1, 1)
    assert len(sent(hubs)) == 2


def test_a_conversation_travels_packed_in_events_of_at_most_64_kb(hubs: Installed) -> None:
    small = [verdict("19:a", n) for n in range(3)]
    large = [verdict("19:b", n, findings=20) for n in range(3, 60)]  # ~4 KB each

    async def scenario() -> None:
        target = sink(retry=FAST)
        await target.write_verdicts([*small, *large])
        await target.close()

    asyncio.run(scenario())
    events = [e for p in hubs.namespace.partitions(FINDINGS) for e in p.events]
    by_key: dict[bytes | None, list[list[dict[str, object]]]] = {}
    for event in events:
        assert len(event.body) <= PACK_BYTES
        assert json.loads(event.body).keys() == {"records"}
        packed = records(event.body)
        assert event.properties["verdict_count"] == len(packed)
        severities = {r["severity"] for r in packed}
        assert event.properties["severity"] == ("high" if "high" in severities else "none")
        by_key.setdefault(event.partition_key, []).append(packed)
    assert [len(p) for p in by_key[b"19:a"]] == [3]  # one event for the small conversation
    assert len(by_key[b"19:b"]) > 1  # 57 x 4 KB does not fit one 64 KB event
    offsets = [r["source"]["offset"] for pack in by_key[b"19:b"] for r in pack]  # type: ignore[index]
    assert offsets == list(range(3, 60))


def test_a_findings_hub_event_that_is_not_a_pack_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="records"):
        records(b'{"verdict_key": "k"}')


def test_recent_keys_are_bounded() -> None:
    recent = RecentKeys(3)
    for key in "abcd":
        recent.add(key)
    assert len(recent) == 3
    assert "a" not in recent
    assert "d" in recent


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(attempts=9, initial_delay=1.0, max_delay=4.0)
    assert all(0 <= policy.delay(1) <= 1.0 for _ in range(50))
    assert all(0 <= policy.delay(8) <= 4.0 for _ in range(50))
