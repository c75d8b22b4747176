"""Mail gaps are read back per folder with delta queries, from a stored link, and every mail
change ends with exactly the verdict the live path gives it."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from graphtap.notifications.authenticity import ClientStateCheck
from graphtap.processing.fetch import ContentFetcher
from graphtap.processing.fetch.mail import GraphMailReader
from graphtap.subscriptions.clock import utcnow
from graphtap.subscriptions.control_plane import ControlPlane, ControlPlaneSettings
from graphtap.subscriptions.deltalinks import SqliteDeltaLinks
from graphtap.subscriptions.graph import GraphError, build_client
from graphtap.subscriptions.mailsync import GraphMailFolders, Mailbox, MailResync, mailboxes
from graphtap.subscriptions.resync import ResyncEvent
from graphtap.subscriptions.rotation import KeyFolderPublisher
from tests.subscriptions.conftest import (
    Bench,
    FakeCredential,
    Processing,
    client_state_of,
    desired_state,
)

ALICE = "alice@contoso.com"
BOB = "bob@contoso.com"
CARD = "4111 1111 1111 1111"
FAST = ControlPlaneSettings(renewal_check=5.0, reconcile_interval=30.0, lifecycle_poll=1.0)


def _mail(subject: str, body: str) -> dict[str, object]:
    return {
        "subject": subject,
        "body": {"contentType": "html", "content": body},
        "from": {"emailAddress": {"address": "mallory@fabrikam.example"}},
    }


class Setup:
    """A control plane that created the mail subscriptions, and the processor reading the
    hub they deliver to, fetching Outlook messages through the real msgraph-sdk client."""

    def __init__(self, bench: Bench, tmp_path: Path) -> None:
        self.bench = bench
        self.tmp_path = tmp_path
        self.plane: ControlPlane
        self.processing: Processing
        self.desired = desired_state()

    async def start(self) -> None:
        bench = self.bench
        self.plane = bench.control_plane(self.desired, settings=FAST)
        self.plane.on_certificate = KeyFolderPublisher(self.plane.keyvault, self.tmp_path / "k")
        await self.plane.refresh_target()
        state = client_state_of(bench.vault)
        self.processing = Processing.start(
            bench.hub.directory, self.tmp_path / "k", state, self.tmp_path / "out.sqlite"
        )
        client = build_client(FakeCredential(), transport=bench.graph)
        self.processing.fetcher = ContentFetcher(
            ClientStateCheck([state]), mail=GraphMailReader(client)
        )
        self.plane.lifecycle_queue = self.processing.queue
        self.links = SqliteDeltaLinks(self.tmp_path / "links.sqlite")
        self.plane.mail_resync = MailResync(
            GraphMailFolders(client),
            self.processing.resync_submitter(),
            tenant_id=bench.graph.tenant_id,
            clock=bench.clock,
            links=self.links,
        )
        await self.plane.reconcile()

    def verdicts(self) -> dict[str, tuple[str, str]]:
        rows = self.processing.store._db.execute(
            "SELECT verdict_key, message_id, content FROM verdicts"
        ).fetchall()
        return {key: (message_id, content) for key, message_id, content in rows}

    async def resync(
        self, *boxes: str, reason: str = "missed notifications", since: dt.datetime | None = None
    ) -> int:
        """Mail resync of `boxes` for a gap from `since` (now by default); the new verdicts
        it made."""
        before = len(self.verdicts())
        targets = [b for b in mailboxes(self.plane.desired) if b.user in boxes]
        await self.plane.mail_resync.run(  # type: ignore[union-attr]
            targets,
            since or utcnow(self.bench.clock),
            client_state=client_state_of(self.bench.vault),
            reason=reason,
        )
        return len(self.verdicts()) - before


@pytest.fixture
def setup(bench: Bench, tmp_path: Path) -> Setup:
    return Setup(bench, tmp_path)


def test_mail_an_inbox_rule_moves_before_it_is_read_is_inspected_where_it_went(
    setup: Setup,
) -> None:
    """The subscription and every read ask for immutable ids: the id the notification names
    still finds the message after the move (Outlook's default id would answer 404)."""

    async def scenario() -> None:
        await setup.start()
        boxes = setup.bench.graph.mailboxes
        leaked = boxes.deliver(ALICE, _mail("cards", f"<p>card {CARD} exp 12/29</p>"))
        boxes.move(ALICE, leaked.id, "archive")  # before the processor reads it
        await setup.processing.drain()
        rows = setup.processing.store._db.execute(
            "SELECT change_type, message_id, content, severity FROM verdicts"
        ).fetchall()
        # The created and the move's update: two versions, each read and inspected.
        assert sorted(rows) == [
            ("created", leaked.id, "inspected", "high"),
            ("updated", leaked.id, "inspected", "high"),
        ]

    asyncio.run(scenario())


def test_mail_of_a_subscription_created_without_immutable_ids_is_still_read(
    setup: Setup,
) -> None:
    """One an earlier version (or another tool) created names Outlook's default ids: each
    is read and keyed as its notification names it, not dead-lettered as another message."""

    async def scenario() -> None:
        await setup.start()
        graph = setup.bench.graph
        for stored in graph.subscriptions.values():
            stored.immutable_ids = False
        leaked = graph.mailboxes.deliver(ALICE, _mail("cards", f"<p>card {CARD} exp 12/29</p>"))
        await setup.processing.drain()
        rows = setup.processing.store._db.execute(
            "SELECT message_id, content, severity FROM verdicts"
        ).fetchall()
        assert rows == [(leaked.rest_id, "inspected", "high")]
        assert setup.processing.summary.dead_letters_by_reason == {}

    asyncio.run(scenario())


def test_a_resync_after_live_delivery_adds_nothing_and_finds_what_was_missed(
    setup: Setup,
) -> None:
    async def scenario() -> None:
        await setup.start()
        boxes = setup.bench.graph.mailboxes
        seen = [boxes.deliver(ALICE, _mail(f"note {i}", "<p>lunch?</p>")) for i in range(4)]
        leaked = boxes.deliver(ALICE, _mail("cards", f"<p>card {CARD} exp 12/29</p>"))
        await setup.processing.drain()
        live = setup.verdicts()
        assert {m for m, _ in live.values()} == {m.id for m in [*seen, leaked]}
        assert all(content == "inspected" for _, content in live.values())

        # The first resync reads every folder whole: every change is one the live path saw.
        assert await setup.resync(ALICE) == 0
        assert setup.verdicts() == live

        # Mail that arrives while notifications are lost (Outlook's `missed`).
        setup.bench.graph.mailboxes.notify = None
        lost = [boxes.deliver(ALICE, _mail(f"lost {i}", f"<p>{CARD}</p>")) for i in range(3)]
        moved = boxes.move(ALICE, seen[0].id, "archive")
        assert await setup.resync(ALICE) == 4
        found = sorted(m for key, (m, _) in setup.verdicts().items() if key not in live)
        # The move is a new version in another folder, not a deletion.
        assert found == sorted([m.id for m in lost] + [moved.id])

        # Caught up: the stored delta links return nothing new.
        assert await setup.resync(ALICE) == 0

    asyncio.run(scenario())


def test_a_stale_or_reset_delta_link_reads_the_folder_again(setup: Setup) -> None:
    async def scenario() -> None:
        await setup.start()
        boxes = setup.bench.graph.mailboxes
        boxes.notify = None
        boxes.deliver(BOB, _mail("one", "<p>hello</p>"))
        assert await setup.resync(BOB) == 1
        boxes.expire_delta_tokens(BOB)
        boxes.deliver(BOB, _mail("two", "<p>again</p>"))
        assert await setup.resync(BOB) == 1  # the first message is read again, adds nothing
        boxes.reset_sync(BOB)
        boxes.deliver(BOB, _mail("three", "<p>and again</p>"))
        assert await setup.resync(BOB) == 1

    asyncio.run(scenario())


def test_a_resync_killed_mid_folder_resumes_from_the_stored_page(setup: Setup) -> None:
    async def scenario() -> None:
        await setup.start()
        boxes = setup.bench.graph.mailboxes
        boxes.notify = None
        boxes.delta_page_size = 5
        for i in range(23):
            boxes.deliver(ALICE, _mail(f"m{i}", "<p>x</p>"))
        submitter = setup.plane.mail_resync._sink  # type: ignore[union-attr]
        pages = 0

        real = submitter.submit

        async def dies_on_the_third_page(bodies: list[bytes]) -> int:
            nonlocal pages
            pages += 1
            if pages == 3:
                raise asyncio.CancelledError  # the process dies before committing the page
            return await real(bodies)

        submitter.submit = dies_on_the_third_page  # type: ignore[method-assign]
        with pytest.raises(asyncio.CancelledError):
            await setup.resync(ALICE)
        assert len(setup.verdicts()) == 10
        submitter.submit = real  # type: ignore[method-assign]
        reads_before = sum(boxes.reads.values())
        assert await setup.resync(ALICE) == 13
        # Only the page in flight at the kill is fetched again, never the committed ones.
        assert sum(boxes.reads.values()) - reads_before == 13

    asyncio.run(scenario())


def test_missed_on_a_mailbox_reads_that_mailbox_and_never_the_teams_exports(
    setup: Setup,
) -> None:
    async def scenario() -> None:
        await setup.start()
        graph = setup.bench.graph
        graph.mailboxes.notify = None
        graph.mailboxes.deliver(ALICE, _mail("lost", f"<p>{CARD}</p>"))
        graph.mailboxes.deliver(BOB, _mail("not this one", "<p>x</p>"))
        [alice] = [s for s in graph.active() if ALICE in s.resource]
        graph.requests.clear()
        graph.missed(alice.id)
        await setup.processing.drain()
        await setup.plane.drain_lifecycle()
        paths = [path for _, path, _ in graph.requests]
        assert not any("getAllMessages" in path for path in paths)
        assert any(f"/users/{ALICE}/mailFolders" in path for path in paths)
        assert not any(f"/users/{BOB}/" in path for path in paths)
        [(_, content)] = setup.verdicts().values()
        assert content == "inspected"

    asyncio.run(scenario())


@pytest.mark.parametrize("told_of_deletions", [True, False])
def test_a_deletion_is_resynced_only_where_the_live_path_is_told_of_deletions(
    setup: Setup, told_of_deletions: bool
) -> None:
    async def scenario() -> None:
        if not told_of_deletions:  # as prod declares mail: created and updated only
            mail = {
                "resource": "/users/{id}/messages",
                "for_each": "mailboxes",
                "rich": False,
                "lifetime_minutes": 10080,
                "change_types": ["created", "updated"],
            }
            setup.desired = desired_state(subscription=[mail])
        await setup.start()
        boxes = setup.bench.graph.mailboxes
        kept = boxes.deliver(ALICE, _mail("kept", "<p>x</p>"))
        doomed = boxes.deliver(ALICE, _mail("doomed", "<p>y</p>"))
        await setup.processing.drain()
        assert await setup.resync(ALICE) == 0  # links stored
        boxes.notify = None
        boxes.delete(ALICE, doomed.id)
        assert kept.id in boxes.mailbox(ALICE).messages
        new = await setup.resync(ALICE)
        contents = sorted(c for m, c in setup.verdicts().values() if m == doomed.id)
        if told_of_deletions:
            assert new == 1
            assert contents == ["deleted", "inspected"]
        else:
            assert new == 0
            assert contents == ["inspected"]

    asyncio.run(scenario())


def test_a_mailbox_is_read_from_the_resource_its_subscription_names() -> None:
    assert Mailbox.of("/users/u1/mailFolders('inbox')/messages", ["created"]) == Mailbox(
        "u1", "inbox", ("created",)
    )
    assert Mailbox.of("users/u1/messages", ["created"]) == Mailbox("u1", None, ("created",))
    assert Mailbox.of("/chats/getAllMessages", ["created"]) is None
    assert Mailbox.of("/teams/getAllMessages", ["created"]) is None
    assert [b.user for b in mailboxes(desired_state())] == [ALICE, BOB]


def test_a_recreated_mail_subscription_reads_back_its_mailbox_only(setup: Setup) -> None:
    async def scenario() -> None:
        await setup.start()
        graph = setup.bench.graph
        [alice] = [s for s in graph.active() if ALICE in s.resource]
        graph.remove(alice.id)
        graph.mailboxes.deliver(ALICE, _mail("while it was gone", f"<p>{CARD}</p>"))
        graph.requests.clear()
        await setup.plane.reconcile()
        paths = [path for _, path, _ in graph.requests]
        assert not any("getAllMessages" in path for path in paths)
        assert not any(f"/users/{BOB}/" in path for path in paths)
        assert not [e for e in setup.plane.status().errors if "not resynced" in e]
        [(_, content)] = setup.verdicts().values()
        assert content == "inspected"

    asyncio.run(scenario())


def test_downtime_reads_every_declared_mailbox_back(setup: Setup) -> None:
    async def scenario() -> None:
        await setup.start()
        boxes = setup.bench.graph.mailboxes
        boxes.notify = None  # the control plane (and so the processor's feed) was down
        boxes.deliver(ALICE, _mail("while down", f"<p>{CARD}</p>"))
        boxes.deliver(BOB, _mail("also while down", "<p>x</p>"))
        await setup.plane.resync_downtime(utcnow(setup.bench.clock))
        assert sorted(c for _, c in setup.verdicts().values()) == ["inspected", "inspected"]

    asyncio.run(scenario())


def test_a_folder_that_keeps_failing_is_set_aside_and_read_on_the_next_round(
    setup: Setup,
) -> None:
    async def scenario() -> None:
        await setup.start()
        boxes = setup.bench.graph.mailboxes
        boxes.notify = None
        boxes.deliver(ALICE, _mail("lost", f"<p>{CARD}</p>"))
        boxes.fail(503)  # Outlook unavailable past every retry
        resync = setup.plane.mail_resync
        assert resync is not None
        with pytest.raises(GraphError, match="set aside for retry"):
            await setup.resync(ALICE)
        assert resync.pending == 1  # the mailbox's folder list, not yet read
        assert setup.verdicts() == {}
        boxes.heal()
        await setup.plane.retry_mail_resync()  # the next reconcile round
        assert resync.pending == 0
        assert [c for _, c in setup.verdicts().values()] == ["inspected"]

    asyncio.run(scenario())


@pytest.mark.parametrize("link", ["first resync", "kept", "expired", "reset"])
def test_older_mail_changed_in_the_gap_is_read_back_whatever_became_of_the_link(
    setup: Setup, link: str
) -> None:
    """A draft from long before the gap, edited during it: the stored link returns it; with
    no link (a first resync, or one Graph dropped) the folder is synced in full and the
    messages modified since the gap began are read back."""

    async def scenario() -> None:
        await setup.start()
        clock, boxes = setup.bench.clock, setup.bench.graph.mailboxes
        draft = boxes.deliver(ALICE, _mail("draft", "<p>nothing yet</p>"))
        boxes.deliver(ALICE, _mail("old news", "<p>lunch?</p>"))
        await setup.processing.drain()
        clock.advance(3 * 3600)
        if link != "first resync":
            assert await setup.resync(ALICE) == 0  # links stored; every change seen live
        clock.advance(3600)
        boxes.notify = None
        gap = utcnow(clock)
        clock.advance(60)
        boxes.update(ALICE, draft.id, body={"contentType": "html", "content": f"<p>{CARD}</p>"})
        if link == "expired":
            boxes.expire_delta_tokens(ALICE)
        elif link == "reset":
            boxes.reset_sync(ALICE)
        before = set(setup.verdicts())
        assert await setup.resync(ALICE, since=gap) == 1  # the draft; not the old news
        [(message, content)] = [v for k, v in setup.verdicts().items() if k not in before]
        assert (message, content) == (draft.id, "inspected")

    asyncio.run(scenario())


def test_a_stored_link_returns_every_change_since_it_whenever_the_gap_is_said_to_begin(
    setup: Setup,
) -> None:
    """A `missed` handled long after the loss asks for a window that begins too late: the
    stored link still returns the lost change, and it is read (only a full sync, which
    lists every message, is narrowed to the window)."""

    async def scenario() -> None:
        await setup.start()
        clock, boxes = setup.bench.clock, setup.bench.graph.mailboxes
        boxes.mailbox(ALICE)
        assert await setup.resync(ALICE) == 0  # links stored
        boxes.notify = None
        lost = boxes.deliver(ALICE, _mail("lost", f"<p>{CARD}</p>"))
        clock.advance(2 * 3600)
        assert await setup.resync(ALICE, since=utcnow(clock)) == 1
        assert [m for m, _ in setup.verdicts().values()] == [lost.id]

    asyncio.run(scenario())


def test_a_gap_set_aside_is_read_from_its_start_by_a_later_gap(setup: Setup) -> None:
    """Outlook down through the first gap's resync; a second gap's resync, before the next
    retry round, reads the mailbox from the first gap's start, not its own."""

    async def scenario() -> None:
        await setup.start()
        clock, boxes = setup.bench.clock, setup.bench.graph.mailboxes
        resync = setup.plane.mail_resync
        assert resync is not None
        boxes.notify = None
        first = utcnow(clock)
        clock.advance(60)
        lost = boxes.deliver(ALICE, _mail("first gap", f"<p>{CARD}</p>"))
        boxes.fail(503)
        with pytest.raises(GraphError, match="set aside for retry"):
            await setup.resync(ALICE, since=first)
        boxes.heal()
        clock.advance(3600)
        second = utcnow(clock)
        clock.advance(60)
        later = boxes.deliver(ALICE, _mail("second gap", f"<p>{CARD}</p>"))
        assert await setup.resync(ALICE, since=second) == 2
        assert resync.pending == 0
        assert {m for m, _ in setup.verdicts().values()} == {lost.id, later.id}

    asyncio.run(scenario())


class _Recorded:
    """A resync sink that keeps the message ids it is handed, in order."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    async def submit(self, events: Sequence[ResyncEvent]) -> int:
        for event in events:
            self.ids += [item["resourceData"]["id"] for item in json.loads(event.body)["value"]]
        return 0


def test_a_gap_of_more_mail_than_a_filtered_first_delta_returns_is_read_whole(
    bench: Bench,
) -> None:
    """A first delta filtered on receivedDateTime stops at 5,000 messages; the full sync
    has no such cap."""

    async def scenario() -> None:
        boxes = bench.graph.mailboxes
        boxes.notify = None
        boxes.delta_page_size = 1_000
        since = utcnow(bench.clock)
        bench.clock.advance(1)
        delivered = [boxes.deliver(ALICE, _mail(f"m{i}", "<p>x</p>")).id for i in range(5_001)]
        recorded = _Recorded()
        resync = MailResync(
            GraphMailFolders(build_client(FakeCredential(), transport=bench.graph)),
            recorded,
            tenant_id=bench.graph.tenant_id,
            clock=bench.clock,
        )
        inbox = Mailbox(ALICE, "inbox", ("created", "updated"))
        report = await resync.run([inbox], since, client_state="state", reason="missed")
        assert report.changes == 5_001
        assert sorted(recorded.ids) == sorted(delivered)

    asyncio.run(scenario())
