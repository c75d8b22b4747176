"""Outlook messages read through the real msgraph-sdk client from the fake Graph: subject,
body and attachment names; within Outlook's limits per mailbox; gone, failed and replayed."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest

from graphtap.notifications.authenticity import ClientStateCheck
from graphtap.notifications.outlook import mail_change_item, mail_resource
from graphtap.processing.committer import BlockingDeadLetters, BlockingVerdicts
from graphtap.processing.fetch import ContentFetcher, FetchError, FetchRetry
from graphtap.processing.fetch.mail import (
    GraphMailReader,
    MailboxLimiter,
    MailboxLimits,
)
from graphtap.processing.lifecycle import LifecycleQueue
from graphtap.processing.pipeline import Pipeline, PipelineSettings
from graphtap.processing.replay import LetterFilter, SqliteDeadLetterReader, replay
from graphtap.processing.sinks.sqlite import SqliteStore
from graphtap.processing.sources import SourceEvent
from graphtap.processing.verdicts import GONE, INSPECTED
from graphtap.simulation.emitter import SimulationSettings, simulate
from graphtap.subscriptions.certificates import CertificateFiles, load_certificate
from graphtap.subscriptions.clock import VirtualClock
from graphtap.subscriptions.graph import build_client
from tests.fakes.graph import FakeGraph
from tests.fakes.mailboxes import FakeMailboxes
from tests.subscriptions.conftest import FakeCredential

from .conftest import CLIENT_STATE

T = TypeVar("T")
TENANT = "6f1d4a7e-1111-4222-8333-944455556666"
ALICE = "0b4c1f1e-aaaa-4bbb-8ccc-dddddddddddd"
BOB = "1c5d2f2f-bbbb-4ccc-8ddd-eeeeeeeeeeee"
CARD = "4111 1111 1111 1111"
QUICK = FetchRetry(attempts=2, initial_delay=0.001, max_delay=0.001)


def _run(work: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await work()

    return asyncio.run(main())


def _graph(**fake: Any) -> tuple[VirtualClock, FakeGraph]:
    clock = VirtualClock()
    graph = FakeGraph(clock, tenant_id=TENANT, **fake)
    return clock, graph


def _reader(
    graph: FakeGraph, clock: VirtualClock, limits: MailboxLimits | None = None
) -> GraphMailReader:
    client = build_client(FakeCredential(), transport=graph)
    return GraphMailReader(client, MailboxLimiter(limits, clock))


def _letter(user: str, **overrides: Any) -> dict[str, Any]:
    return {
        "subject": "quarterly numbers",
        "body": {"contentType": "html", "content": f"<p>the card is {CARD} exp 12/29</p>"},
        "bodyPreview": "the card is ...",
        "from": {"emailAddress": {"name": "Alice", "address": "alice@contoso.example"}},
        "toRecipients": [{"emailAddress": {"address": f"{user}@contoso.example"}}],
        **overrides,
    }


def _notification(user: str, message_id: str, etag: str, change: str = "created") -> bytes:
    item = mail_change_item(
        subscription_id="sub-mail",
        change_type=change,
        tenant_id=TENANT,
        client_state=CLIENT_STATE,
        resource=mail_resource(user, TENANT, message_id),
        message_id=message_id,
        etag=etag,
    )
    return orjson.dumps({"value": [item]})


def test_a_message_is_read_with_its_attachment_names_and_only_what_is_selected() -> None:
    clock, graph = _graph()
    stored = graph.mailboxes.deliver(
        ALICE,
        _letter(ALICE),
        attachments=[
            {"name": "cards-2026.xlsx", "contentType": "text/csv", "contentBytes": "QQ=="}
        ],
    )
    reader = _reader(graph, clock)
    message = _run(lambda: reader.read(ALICE, stored.id))
    assert message is not None
    assert message["id"] == stored.id
    assert message["subject"] == "quarterly numbers"
    assert CARD in message["body"]["content"]
    assert message["@odata.etag"] == stored.etag
    assert message["attachments"] == [
        {"name": "cards-2026.xlsx", "contentType": "text/csv", "size": 1}
    ]
    assert "bodyPreview" not in message  # not selected, not served
    assert "isRead" not in message
    paths = [path for _, path, _ in graph.requests]
    assert paths == [
        f"/users/{ALICE}/messages/{stored.id}",
        f"/users/{ALICE}/messages/{stored.id}/attachments",
    ]


def test_a_message_without_attachments_costs_one_request_and_a_missing_one_is_none() -> None:
    clock, graph = _graph()
    stored = graph.mailboxes.deliver(ALICE, _letter(ALICE))
    reader = _reader(graph, clock)
    assert _run(lambda: reader.read(ALICE, stored.id)) is not None
    graph.mailboxes.delete(ALICE, stored.id)
    assert _run(lambda: reader.read(ALICE, stored.id)) is None
    assert [status for _, _, status in graph.requests] == [200, 404]


@pytest.mark.parametrize(("user", "message_id"), [(ALICE, ".."), (ALICE, "."), ("..", "m1")])
def test_an_id_a_url_would_resolve_away_is_refused_before_any_request(
    user: str, message_id: str
) -> None:
    """`messages/..` is the mailbox itself: read, it would pass for the message named."""
    clock, graph = _graph()
    graph.mailboxes.deliver(ALICE, _letter(ALICE))
    reader = _reader(graph, clock)
    with pytest.raises(FetchError, match=r"the notification's (mailbox|message id) is '\.\.?'"):
        _run(lambda: reader.read(user, message_id))
    assert graph.requests == []


def test_no_mailbox_ever_has_more_than_four_requests_in_flight() -> None:
    clock, graph = _graph()
    graph.mailboxes.latency = 0.2
    ids = {
        user: [graph.mailboxes.deliver(user, _letter(user)).id for _ in range(24)]
        for user in (ALICE, BOB)
    }
    reader = _reader(graph, clock)

    async def read_all() -> list[dict[str, Any] | None]:
        return await asyncio.gather(
            *(reader.read(user, i) for user, its in ids.items() for i in its)
        )

    assert all(_run(read_all))
    assert {box: peak for (_, box), peak in graph.mailboxes.peak.items()} == {
        ALICE.lower(): 4,
        BOB.lower(): 4,
    }
    assert graph.mailboxes.throttled == {}
    assert reader.limiter.retries == 0


def test_the_fake_refuses_a_fifth_concurrent_request_and_the_reader_waits_it_out() -> None:
    """Without the limiter's bound (8 allowed here), Outlook answers 429 MailboxConcurrency;
    the reader honours Retry-After and every read still succeeds."""
    clock, graph = _graph()
    graph.mailboxes.latency = 0.2
    ids = [graph.mailboxes.deliver(ALICE, _letter(ALICE)).id for _ in range(16)]
    reader = _reader(graph, clock, MailboxLimits(concurrency=8, attempts=20))

    async def read_all() -> list[dict[str, Any] | None]:
        return await asyncio.gather(*(reader.read(ALICE, i) for i in ids))

    assert all(_run(read_all))
    assert graph.mailboxes.throttled["concurrency"] > 0
    assert reader.limiter.retries == graph.mailboxes.throttled["concurrency"]
    assert graph.mailboxes.peak[("app", ALICE.lower())] == 4


def test_the_window_of_requests_per_mailbox_is_kept_on_the_monotonic_clock() -> None:
    """Outlook's 10,000 per 10 minutes, scaled to 30 per 60 s: 75 reads take three windows,
    and the fake never had to refuse one."""
    clock, graph = _graph()
    graph.mailboxes.requests_per_window, graph.mailboxes.window = 30, 60.0
    ids = [graph.mailboxes.deliver(ALICE, _letter(ALICE)).id for _ in range(75)]
    reader = _reader(graph, clock, MailboxLimits(requests=30, window=60.0))
    start = clock.monotonic()

    async def read_all() -> list[dict[str, Any] | None]:
        return await asyncio.gather(*(reader.read(ALICE, i) for i in ids))

    assert all(_run(read_all))
    assert graph.mailboxes.throttled["rate"] == 0
    assert 120.0 <= clock.monotonic() - start < 180.0


def test_over_the_window_graph_answers_429_and_the_reader_waits_for_retry_after() -> None:
    clock, graph = _graph()
    graph.mailboxes.requests_per_window, graph.mailboxes.window = 10, 60.0
    ids = [graph.mailboxes.deliver(ALICE, _letter(ALICE)).id for _ in range(15)]
    reader = _reader(graph, clock, MailboxLimits(requests=1000, window=60.0))

    async def read_all() -> list[dict[str, Any] | None]:
        return [await reader.read(ALICE, i) for i in ids]

    assert all(_run(read_all))
    assert graph.mailboxes.throttled["rate"] == 1  # one 429: the mailbox paused until the end
    assert reader.limiter.waited >= 59.0


def test_429_with_retry_after_is_retried_after_that_long() -> None:
    clock, graph = _graph()
    stored = graph.mailboxes.deliver(ALICE, _letter(ALICE))
    graph.mailboxes.fail(429, times=2, retry_after=7)
    reader = _reader(graph, clock)
    start = clock.monotonic()
    assert _run(lambda: reader.read(ALICE, stored.id)) is not None
    assert (reader.limiter.retries, reader.limiter.waited) == (2, 14.0)
    assert clock.monotonic() - start >= 14.0
    assert [status for _, _, status in graph.requests] == [429, 429, 200]


def _fetcher(reader: GraphMailReader) -> ContentFetcher:
    return ContentFetcher(ClientStateCheck([CLIENT_STATE]), mail=reader, retry=QUICK)


def test_a_notified_message_is_inspected_and_one_deleted_before_the_read_is_gone(
    pipeline: Pipeline,
) -> None:
    clock, graph = _graph()
    kept = graph.mailboxes.deliver(ALICE, _letter(ALICE))
    went = graph.mailboxes.deliver(BOB, _letter(BOB))
    events = [
        SourceEvent("0", 0, _notification(ALICE, kept.id, kept.etag)),
        SourceEvent("0", 1, _notification(BOB, went.id, went.etag)),
    ]
    graph.mailboxes.delete(BOB, went.id)
    fetcher = _fetcher(_reader(graph, clock))
    _run(lambda: fetcher.fill(events))
    first, second = pipeline.process_batch(events)
    [inspected] = first.verdicts
    assert inspected.content == INSPECTED
    assert "credit_card_number" in {f["type"] for f in inspected.findings}
    [gone] = second.verdicts
    assert gone.content == GONE
    assert (first.dead_letters, second.dead_letters) == ([], [])


def test_mail_read_missing_is_a_fetch_failed_letter_naming_the_refusal(
    pipeline: Pipeline,
) -> None:
    clock, graph = _graph(permissions={"Chat.Read.All", "ChannelMessage.Read.All"})
    stored = graph.mailboxes.deliver(ALICE, _letter(ALICE))
    event = SourceEvent("0", 0, _notification(ALICE, stored.id, stored.etag))
    _run(lambda: _fetcher(_reader(graph, clock)).fill([event]))
    result = pipeline.process(event)
    assert result.verdicts == []
    [letter] = result.dead_letters
    assert letter.reason == "fetch_failed"
    assert "403 ErrorAccessDenied" in letter.message
    assert "Mail.Read" in letter.message
    assert CARD not in letter.message


def test_a_fetch_that_keeps_failing_is_dead_lettered_then_replayed_once_graph_recovers(
    pipeline_settings: PipelineSettings, tmp_path: Path
) -> None:
    clock, graph = _graph()
    stored = graph.mailboxes.deliver(ALICE, _letter(ALICE))
    graph.mailboxes.fail(500)  # until healed
    event = SourceEvent("0", 7, _notification(ALICE, stored.id, stored.etag))
    reader = _reader(graph, clock)
    _run(lambda: _fetcher(reader).fill([event]))
    [letter] = Pipeline.from_settings(pipeline_settings).process(event).dead_letters
    assert letter.reason == "fetch_failed"
    assert "500 ErrorInternalServerTransientError" in letter.message
    path = tmp_path / "store.sqlite"
    store = SqliteStore(path)
    store.write_dead_letters([letter])

    graph.mailboxes.heal()

    async def replay_all() -> tuple[int, int]:
        letters_reader = SqliteDeadLetterReader(path)
        letters = await letters_reader.letters(
            LetterFilter(reason="fetch_failed", include_replayed=False)
        )
        queue = LifecycleQueue(path)
        try:
            report = await replay(
                letters_reader,
                letters,
                settings=pipeline_settings,
                sink=BlockingVerdicts(store),
                dead_letters=BlockingDeadLetters(store),
                lifecycle=queue,
                fetcher=_fetcher(reader),
            )
        finally:
            queue.close()
            await letters_reader.close()
        return len(report.replayed), len(report.still_failing)

    assert _run(replay_all) == (1, 0)
    assert _run(replay_all) == (0, 0)  # marked: not replayed twice
    store.close()
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT content, verdict_key FROM verdicts").fetchall()
    assert len(rows) == 1
    assert rows[0][0] == INSPECTED


def test_the_reader_refuses_a_limit_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        MailboxLimits(concurrency=0)


def test_the_fake_graph_routes_mailbox_paths_to_its_mailboxes() -> None:
    assert FakeMailboxes.serves("/users/u1/messages/m1")
    assert FakeMailboxes.serves("/users/u1/mailFolders/inbox/messages/delta()")
    assert not FakeMailboxes.serves("/users/u1/chats/getAllMessages")


def test_simulated_mail_is_served_by_the_fake_graph_and_every_change_gets_its_verdict(
    pipeline_settings: PipelineSettings, cert_a: CertificateFiles
) -> None:
    """The simulator names mail in notifications and hands over its content; loaded into the
    fake Graph, every mail change is read, inspected and keyed once per version."""
    events = list(
        simulate(
            SimulationSettings(count=60, seed=3, mail_share=0.5, sensitive_share=0.5),
            certificate=load_certificate(cert_a.certificate_path),
            certificate_id=cert_a.certificate_id,
            client_state=CLIENT_STATE,
        )
    )
    mail = [content for event in events for content in event.mail]
    assert 15 < len(mail) < 45
    assert any(content.attachments for content in mail)
    clock = VirtualClock()
    tenant_id = json.loads(events[-1].body)["value"][0]["tenantId"]
    graph = FakeGraph(clock, tenant_id=tenant_id)
    for content in mail:
        graph.mailboxes.deliver(content.user_id, content.message, attachments=content.attachments)
    sources = [SourceEvent("0", i, e.body) for i, e in enumerate(events)]
    fetcher = _fetcher(_reader(graph, clock))
    _run(lambda: fetcher.fill(sources))
    results = Pipeline.from_settings(pipeline_settings).process_batch(sources)
    verdicts = [v for r in results for v in r.verdicts]
    assert [d for r in results for d in r.dead_letters] == []
    mail_verdicts = [v for v in verdicts if "/messages/" in v.resource.lower()]
    assert len(mail_verdicts) == len(mail)
    assert {v.content for v in mail_verdicts} == {INSPECTED}
    # half the mail is sensitive: its bodies, read from Graph, are where the findings come from
    assert sum(1 for v in mail_verdicts if v.findings) >= len(mail) // 4
    assert sum(graph.mailboxes.reads.values()) == len(mail)


def test_idle_mailboxes_are_forgotten_and_busy_ones_kept() -> None:
    clock = VirtualClock()
    limiter = MailboxLimiter(MailboxLimits(), clock)

    async def ok() -> int:
        return 1

    async def scenario() -> tuple[int, int]:
        for n in range(4096):
            await limiter.call(f"user{n}", ok)
        before = limiter.tracked
        clock.advance(601.0)  # every window has passed
        await limiter.call("busy", ok)
        return before, limiter.tracked

    assert asyncio.run(scenario()) == (4096, 1)


class _CountedVisits(OrderedDict[str, Any]):
    """The limiter's mailboxes, counting those its walks for idle ones visit."""

    visits = 0

    def items(self) -> Any:
        for item in super().items():
            self.visits += 1
            yield item


def test_many_busy_mailboxes_cost_one_step_each_not_a_walk_over_all() -> None:
    """A tenant naming thousands of mailboxes within ten minutes: none of them may be
    forgotten (their windows hold), and a new one must not walk over all of them."""
    clock = VirtualClock()
    limiter = MailboxLimiter(MailboxLimits(), clock)
    counted = limiter._mailboxes = _CountedVisits()

    async def ok() -> int:
        return 1

    async def scenario(prefix: str) -> None:
        for n in range(4096 + 2_000):
            clock.advance(0.05)  # 300 s in all: every mailbox stays within its window
            await limiter.call(f"{prefix}{n}", ok)

    asyncio.run(scenario("user"))
    assert limiter.tracked == 4096 + 2_000
    assert counted.visits <= 2_000  # each walk stops at the first busy mailbox
    # once their windows have passed, the first new mailbox's walk forgets them all
    clock.advance(600.0)
    asyncio.run(scenario("later"))
    assert limiter.tracked == 4096 + 2_000
    assert not any(name.startswith("user") for name in counted)
