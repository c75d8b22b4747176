"""The verdict ledger: one sender per verdict key across writers, through the real
azure-storage-blob client and Azurite, which serves the conditional writes it relies on."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

import pytest

from graphtap.processing.sinks.ledger import (
    BlobVerdictLedger,
    LedgeredSink,
    LedgerSettings,
    LedgerUnavailable,
)
from graphtap.processing.verdicts import Verdict
from tests.eventhubs.test_sink import verdict
from tests.fakes.azure_transport import TokenCredential
from tests.fakes.azurite import AzuriteStorage

CONTAINER = "verdict-ledger"
QUICK = LedgerSettings(claim_ttl=0.3, poll_initial=0.01, poll_max=0.05)


class Recorder:
    """A findings hub that remembers every verdict it accepted, and can be made to fail:
    the next `failures` calls, or once for each call carrying a key in `fail_once`."""

    def __init__(self, sent: list[str]) -> None:
        self.sent = sent
        self.failures = 0
        self.fail_once: set[str] = set()
        self.delay = 0.0
        self.called = asyncio.Event()  # a writer won its claims and is sending

    async def write_verdicts(self, verdicts: Sequence[Verdict]) -> int:
        self.called.set()
        await asyncio.sleep(self.delay)
        refused = self.fail_once.intersection(v.key for v in verdicts)
        if self.failures or refused:
            self.failures = max(self.failures - 1, 0)
            self.fail_once -= refused
            raise ConnectionError("findings hub unreachable")
        self.sent.extend(v.key for v in verdicts)
        return len(verdicts)

    async def close(self) -> None:
        return None


def writer(
    service: AzuriteStorage, sent: list[str], *, owner: str, settings: LedgerSettings = QUICK
) -> tuple[LedgeredSink, Recorder, BlobVerdictLedger]:
    ledger = BlobVerdictLedger(
        service.account_url,
        CONTAINER,
        credential=TokenCredential(),
        settings=settings,
        owner=owner,
        transport=service.transport(),
    )
    hub = Recorder(sent)
    return LedgeredSink(hub, ledger), hub, ledger


@pytest.fixture
def service(azurite_storage: AzuriteStorage) -> AzuriteStorage:
    azurite_storage.create_container(CONTAINER)
    return azurite_storage


def record(service: AzuriteStorage, key: str) -> dict[str, Any]:
    return dict(json.loads(service.blob(CONTAINER, f"{key}.json")))


def test_two_writers_of_the_same_verdicts_send_each_once(service: AzuriteStorage) -> None:
    sent: list[str] = []
    verdicts = [verdict("19:chat", n) for n in range(40)]

    async def scenario() -> tuple[list[int], int]:
        long_ttl = LedgerSettings(claim_ttl=60, poll_initial=0.01, poll_max=0.05)
        web, _, web_ledger = writer(service, sent, owner="web", settings=long_ttl)
        function, _, function_ledger = writer(service, sent, owner="function", settings=long_ttl)
        # The web app and the Function App meet the same changes at the same moment, in
        # opposite orders: neither may wait for the other's claims while holding its own.
        counts = await asyncio.wait_for(
            asyncio.gather(web.write_verdicts(verdicts), function.write_verdicts(verdicts[::-1])),
            timeout=30,
        )
        return list(counts), web_ledger.taken_over + function_ledger.taken_over

    counts, taken_over = asyncio.run(scenario())
    assert sorted(sent) == sorted(v.key for v in verdicts)
    assert sum(counts) == len(verdicts)
    assert taken_over == 0  # nobody waited a claim out
    assert {record(service, v.key)["state"] for v in verdicts} == {"sent"}


def test_a_verdict_sent_before_is_not_sent_again(service: AzuriteStorage) -> None:
    sent: list[str] = []
    first = [verdict("19:chat", n) for n in range(3)]

    async def scenario() -> int:
        live, _, _ = writer(service, sent, owner="live")
        await live.write_verdicts(first)
        resync, _, _ = writer(service, sent, owner="resync")
        # A `missed` resync reads the same messages again, and one new.
        return await resync.write_verdicts([*first, verdict("19:chat", 3)])

    assert asyncio.run(scenario()) == 1
    assert sent == [v.key for v in first] + [verdict("19:chat", 3).key]


def test_a_claim_settled_while_waiting_is_not_sent_again(service: AzuriteStorage) -> None:
    sent: list[str] = []
    one = [verdict("19:chat", 1)]

    async def scenario() -> int:
        # The claim outlives any pause of a loaded machine: this is not about taking over.
        settings = LedgerSettings(claim_ttl=60, poll_initial=0.01, poll_max=0.05)
        slow, slow_hub, _ = writer(service, sent, owner="slow", settings=settings)
        slow_hub.delay = 0.1  # claimed, then a slow send
        other, _, _ = writer(service, sent, owner="other", settings=settings)
        sending = asyncio.create_task(slow.write_verdicts(one))
        await slow_hub.called.wait()  # "slow" holds the claim
        count = await other.write_verdicts(one)  # waits for "slow" to settle
        await sending
        return count

    assert asyncio.run(scenario()) == 0
    assert sent == [one[0].key]


def test_a_claim_its_writer_never_settled_is_taken_over_after_the_ttl(
    service: AzuriteStorage,
) -> None:
    sent: list[str] = []
    one = verdict("19:chat", 1)

    async def scenario() -> tuple[float, int]:
        # A writer claimed the key, then died before sending.
        _, _, dead_ledger = writer(service, sent, owner="dead")
        await dead_ledger.claim([one.key])
        survivor, _, survivor_ledger = writer(service, sent, owner="survivor")
        started = time.monotonic()
        await survivor.write_verdicts([one])
        return time.monotonic() - started, survivor_ledger.taken_over

    waited, taken_over = asyncio.run(scenario())
    assert sent == [one.key]
    assert taken_over == 1
    assert waited >= QUICK.claim_ttl
    assert record(service, one.key) | {"at": 0} == {"state": "sent", "owner": "survivor", "at": 0}


def test_a_failed_send_keeps_the_claim_and_the_batch_delivered_again_sends_it(
    service: AzuriteStorage,
) -> None:
    sent: list[str] = []
    batch = [verdict("19:chat", n) for n in range(3)]

    async def scenario() -> int:
        sink, hub, _ = writer(service, sent, owner="web", settings=LedgerSettings(claim_ttl=60))
        hub.failures = 1
        with pytest.raises(ConnectionError, match="findings hub unreachable"):
            await sink.write_verdicts(batch)
        # Another writer must neither send nor wait forever: the claim is fresh, so it
        # would wait; the batch delivered again to "web" sends and settles at once.
        assert {record(service, v.key)["state"] for v in batch} == {"claimed"}
        return await sink.write_verdicts(batch)

    assert asyncio.run(scenario()) == 3
    assert sent == [v.key for v in batch]
    assert {record(service, v.key)["state"] for v in batch} == {"sent"}


def test_overlapping_batches_in_one_process_send_each_key_once(service: AzuriteStorage) -> None:
    sent: list[str] = []
    first = [verdict("19:chat", n) for n in range(0, 6)]
    second = [verdict("19:chat", n) for n in range(3, 9)]

    async def scenario() -> list[int]:
        sink, hub, _ = writer(service, sent, owner="web")
        hub.delay = 0.05
        return list(await asyncio.gather(sink.write_verdicts(first), sink.write_verdicts(second)))

    assert asyncio.run(scenario()) == [6, 3]
    assert sorted(sent) == sorted({v.key for v in [*first, *second]})


def test_a_batch_waiting_on_a_failed_one_fails_too(service: AzuriteStorage) -> None:
    """Its checkpoint must not move past a verdict that was never sent."""
    sent: list[str] = []
    shared = verdict("19:chat", 1)

    async def scenario() -> list[Any]:
        sink, hub, _ = writer(service, sent, owner="web")
        hub.delay = 0.05
        # The shared key's send fails, whichever batch's claim reaches the ledger first.
        hub.fail_once = {shared.key}
        return list(
            await asyncio.gather(
                sink.write_verdicts([shared]),
                sink.write_verdicts([shared, verdict("19:chat", 2)]),
                return_exceptions=True,
            )
        )

    first, second = asyncio.run(scenario())
    assert isinstance(first, ConnectionError)
    assert isinstance(second, ConnectionError)
    assert sent == [verdict("19:chat", 2).key]


def test_a_missing_container_is_a_clear_error_and_nothing_is_sent(
    azurite_storage: AzuriteStorage,
) -> None:
    service = azurite_storage  # the stack's container was never created
    sent: list[str] = []

    async def scenario() -> None:
        sink, _, _ = writer(service, sent, owner="web")
        await sink.write_verdicts([verdict("19:chat", 1)])

    with pytest.raises(LedgerUnavailable, match=r"1 of 1 verdict keys could not claim in .*"):
        asyncio.run(scenario())
    assert sent == []
    assert service.refused == ["ContainerNotFound"]


@pytest.mark.parametrize(
    "settings",
    [
        {"claim_ttl": 0},
        {"poll_initial": 1, "poll_max": 0.5},
        {"concurrent_requests": 0},
    ],
)
def test_settings_that_cannot_work_are_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        LedgerSettings(**settings)  # type: ignore[arg-type]


def test_a_send_slower_than_the_claims_ttl_keeps_its_claims(service: AzuriteStorage) -> None:
    """A sink waiting out long throttling (Logs Ingestion's Retry-After can exceed the TTL)
    is alive: its claims are renewed while it sends, so another writer waits for it
    instead of taking them over and sending too."""
    sent: list[str] = []
    verdicts = [verdict("19:chat", n) for n in range(3)]

    # Renewed every third of the TTL: two thirds of it (0.67 s) left for a slow Azurite.
    settings = LedgerSettings(claim_ttl=1.0, poll_initial=0.01, poll_max=0.05)

    async def scenario() -> int:
        slow, hub, slow_ledger = writer(service, sent, owner="throttled", settings=settings)
        other, _, other_ledger = writer(service, sent, owner="other", settings=settings)
        hub.delay = 3 * settings.claim_ttl
        first = asyncio.create_task(slow.write_verdicts(verdicts))
        await hub.called.wait()
        await asyncio.gather(first, other.write_verdicts(verdicts))
        return slow_ledger.taken_over + other_ledger.taken_over

    assert asyncio.run(scenario()) == 0
    assert sorted(sent) == sorted(v.key for v in verdicts)
    assert {record(service, v.key)["state"] for v in verdicts} == {"sent"}
