"""Mail gap resync: each mailbox folder's delta query, from where it last stopped.

Outlook's `missed` event, a mail subscription created again and control-plane downtime all
mean that changes may have gone unnotified. A folder's delta query (`/users/{id}/mailFolders/
{id}/messages/delta`) returns what changed since the link stored for that folder, or, the
first time, the messages received since the gap began. Each change becomes the basic
notification Graph would have sent and goes through the same fetch, pipeline and commit step
as a live one, so its verdict key is the live path's and a change already seen adds nothing.

A folder with no link (its first resync, or after Graph dropped the link: 410 Gone,
`syncStateNotFound`) is synced in full, as Graph asks, but only ids and modification times are
listed: the messages modified since the gap began are read back, the rest were notified
live or read by an earlier resync. (A first delta filtered on `receivedDateTime` would miss
older mail changed in the gap, and stops at 5,000 messages.)

A page's changes are committed before the link after it is stored: a restart goes on from
that page. Teams gaps are not read here: they go to the export APIs
(`graphtap.subscriptions.resync`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import quote

from msgraph.graph_service_client import GraphServiceClient

from graphtap.notifications.outlook import IMMUTABLE_IDS, mail_change_item, mail_subscription
from graphtap.subscriptions.clock import Clock
from graphtap.subscriptions.deltalinks import DeltaLinkStore, MemoryDeltaLinks
from graphtap.subscriptions.desired import DesiredState
from graphtap.subscriptions.graph import GraphError, get_json
from graphtap.subscriptions.resync import ResyncEvent, ResyncSink, pack
from graphtap.subscriptions.throttle import (
    MAIL_READS,
    RetryableError,
    ThrottleSettings,
    WriteThrottle,
)

log = logging.getLogger(__name__)

#: What Graph answers for a delta link it no longer honours.
_RESET_CODES = frozenset({"syncStateNotFound", "resyncRequired", "SyncStateInvalid"})
#: Messages per delta page asked for (Graph may send fewer).
PAGE_SIZE = 200
#: A change modified this long before the gap began is still read back: Exchange's clock
#: and this host's may differ.
CLOCK_SKEW = dt.timedelta(minutes=5)
#: The subscription id resynced notifications carry: no subscription delivered them.
RESYNC_SUBSCRIPTION = "resync"


@dataclass(frozen=True, slots=True)
class Mailbox:
    """A mailbox a subscription watches: every folder, or the one it names."""

    user: str
    folder: str | None
    change_types: tuple[str, ...]

    @classmethod
    def of(cls, resource: str, change_types: Sequence[str]) -> Mailbox | None:
        match = mail_subscription(resource)
        if match is None:
            return None
        folder = match.group("quoted") or match.group("folder")
        return cls(match.group("user"), folder, tuple(change_types))


def mailboxes(desired: DesiredState) -> list[Mailbox]:
    """The mailboxes an environment's subscriptions watch, in declaration order."""
    found = (Mailbox.of(s.resource, s.change_types) for s in desired.subscriptions)
    return [m for m in found if m is not None]


@dataclass(frozen=True, slots=True)
class DeltaPage:
    changes: list[dict[str, Any]]
    next_link: str | None
    delta_link: str | None


class GraphMailFolders:
    """Outlook's folder list and per-folder delta, as Graph's JSON through the SDK's request
    adapter (its authentication and retry middleware): resync needs each change's id and
    `@odata.etag` only; the message itself is read by the live path's fetcher."""

    def __init__(self, client: GraphServiceClient) -> None:
        self._client = client
        self._base = client.request_adapter.base_url.rstrip("/")

    async def folders(self, user: str) -> list[str]:
        """Every folder of the mailbox, child folders included."""
        found: list[str] = []
        pending = [f"{self._base}/users/{quote(user, safe='')}/mailFolders"]
        while pending:
            link: str | None = f"{pending.pop()}?%24select=id,childFolderCount&%24top=100"
            while link:
                page = await get_json(self._client, f"list mail folders of {user}", link)
                for folder in page.get("value", []):
                    if not isinstance(folder, dict) or not folder.get("id"):
                        continue
                    found.append(str(folder["id"]))
                    if folder.get("childFolderCount"):
                        pending.append(
                            f"{self._base}/users/{quote(user, safe='')}/mailFolders/"
                            f"{quote(str(folder['id']), safe='')}/childFolders"
                        )
                link = page.get("@odata.nextLink")
        return found

    async def exists(self, user: str, message_id: str) -> bool:
        """Whether the mailbox still holds the message (in any folder)."""
        url = (
            f"{self._base}/users/{quote(user, safe='')}/messages/"
            f"{quote(message_id, safe='')}?%24select=id"
        )
        try:
            await get_json(self._client, f"read a message of {user}", url, prefer=IMMUTABLE_IDS)
        except GraphError as error:
            if error.status == 404:
                return False
            raise
        return True

    async def delta(self, user: str, folder: str, *, link: str | None) -> DeltaPage:
        """The page `link` names, or the first page of a full sync of the folder."""
        if link is None:
            link = (
                f"{self._base}/users/{quote(user, safe='')}/mailFolders/"
                f"{quote(folder, safe='')}/messages/delta"
                "?%24select=id,changeKey,lastModifiedDateTime"
            )
        prefer = f"{IMMUTABLE_IDS}, odata.maxpagesize={PAGE_SIZE}"
        page = await get_json(self._client, f"mail delta of {user}", link, prefer=prefer)
        changes = [c for c in page.get("value", []) if isinstance(c, dict) and c.get("id")]
        return DeltaPage(
            changes,
            page.get("@odata.nextLink") or None,
            page.get("@odata.deltaLink") or None,
        )


@dataclass(frozen=True, slots=True)
class MailResyncReport:
    reason: str
    mailboxes: int
    folders: int
    changes: int
    new_verdicts: int
    failed_folders: int


@dataclass
class _Tally:
    folders: int = 0
    changes: int = 0
    new_verdicts: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


class MailResync:
    def __init__(
        self,
        graph: GraphMailFolders,
        sink: ResyncSink,
        *,
        tenant_id: str,
        clock: Clock,
        links: DeltaLinkStore | None = None,
        throttle: ThrottleSettings = MAIL_READS,
    ) -> None:
        self._graph = graph
        self._sink = sink
        self._tenant_id = tenant_id
        self._clock = clock
        self.links: DeltaLinkStore = links if links is not None else MemoryDeltaLinks()
        self._throttle_settings = throttle
        self._throttles: dict[str, WriteThrottle] = {}
        self.last_error: str | None = None
        #: (mailbox, folder or None for its folder list) -> (mailbox, the earliest gap start):
        #: what failed and is read again each reconcile round. In memory: after a restart,
        #: the downtime resync reads every mailbox from its stored links anyway.
        self._pending: dict[tuple[str, str | None], tuple[Mailbox, dt.datetime]] = {}

    async def run(
        self,
        boxes: Sequence[Mailbox],
        since: dt.datetime,
        *,
        client_state: str,
        reason: str,
    ) -> MailResyncReport:
        """Read every folder of `boxes` from its stored link (or from `since`) to the end.

        A folder (or a mailbox's folder list) that fails is set aside and the others go on;
        its link stays where the last committed page left it. What was set aside is read
        again by `retry` (each reconcile round) until it succeeds, and this run raises
        `GraphError` naming it, so a lifecycle event that asked for it stays queued."""
        tally = _Tally()
        for box in boxes:
            # A gap set aside earlier began earlier: read from its start, then it is covered.
            listed_since = self._gap_start(box.user, None, since)
            try:
                folders = [box.folder] if box.folder is not None else await self._folders(box)
            except (GraphError, RetryableError) as error:
                self._set_aside(box, None, listed_since, str(error), tally)
                continue
            self._pending.pop((box.user, None), None)
            for folder in folders:
                await self._folder_or_set_aside(
                    box, folder, listed_since, client_state, tally, reason
                )
        self.last_error = tally.errors[-1] if tally.errors else None
        report = MailResyncReport(
            reason, len(boxes), tally.folders, tally.changes, tally.new_verdicts, tally.failed
        )
        log.info(
            "mail resync (%s): %d mailboxes, %d folders, %d changes, %d new verdicts, %d failed",
            reason,
            report.mailboxes,
            report.folders,
            report.changes,
            report.new_verdicts,
            report.failed_folders,
        )
        if tally.failed:
            raise GraphError(
                None, None, f"{tally.failed} set aside for retry; last: {tally.errors[-1]}", reason
            )
        return report

    async def retry(self, *, client_state: str) -> MailResyncReport | None:
        """Read again what earlier runs set aside (a folder, or a mailbox whose folders could
        not be listed), each from its stored link or its gap's start."""
        if not self._pending:
            return None
        tally = _Tally()
        for (user, folder), (box, since) in list(self._pending.items()):
            if (user, folder) not in self._pending:
                continue  # read already this round, with the mailbox's folder list
            if folder is None:
                try:
                    folders = await self._folders(box)
                except (GraphError, RetryableError) as error:
                    self._set_aside(box, None, since, str(error), tally)
                    continue
                del self._pending[(user, None)]
            else:
                folders = [folder]
            for name in folders:
                await self._folder_or_set_aside(box, name, since, client_state, tally, "retry")
        self.last_error = tally.errors[-1] if tally.errors else None
        return MailResyncReport(
            "retry", 0, tally.folders, tally.changes, tally.new_verdicts, tally.failed
        )

    @property
    def pending(self) -> int:
        """Folders (or mailboxes' folder lists) set aside, to be read again."""
        return len(self._pending)

    async def _folder_or_set_aside(
        self,
        box: Mailbox,
        folder: str,
        since: dt.datetime,
        client_state: str,
        tally: _Tally,
        reason: str,
    ) -> None:
        """Read one folder from the earliest gap start owed to it; set it aside on failure."""
        start = self._gap_start(box.user, folder, since)
        tally.folders += 1
        try:
            await self._folder(box, folder, start, client_state, tally)
        except (GraphError, RetryableError) as error:
            self._set_aside(box, folder, start, str(error), tally)
            log.warning("mail resync (%s): a folder of %s failed: %s", reason, box.user, error)
        else:
            self._pending.pop((box.user, folder), None)

    def _gap_start(self, user: str, folder: str | None, since: dt.datetime) -> dt.datetime:
        earlier = self._pending.get((user, folder))
        return min(since, earlier[1]) if earlier else since

    def _set_aside(
        self, box: Mailbox, folder: str | None, since: dt.datetime, error: str, tally: _Tally
    ) -> None:
        tally.failed += 1
        tally.errors.append(error)
        self._pending[(box.user, folder)] = (box, self._gap_start(box.user, folder, since))

    async def _folder(
        self,
        box: Mailbox,
        folder: str,
        since: dt.datetime,
        client_state: str,
        tally: _Tally,
    ) -> None:
        throttle = self._throttle(box.user)
        link = await self.links.get(box.user, folder)
        restarted = False
        full = link is None  # a full sync lists every message; a link's round, only changes
        while True:
            try:
                page = await throttle.run(partial(self._graph.delta, box.user, folder, link=link))
            except GraphError as error:
                if link is None or restarted or not _reset(error):
                    raise
                log.info(
                    "mail resync: %s's delta link for a folder was reset; syncing it in full",
                    box.user,
                )
                await self.links.drop(box.user, folder)
                link, restarted, full = None, True, True
                continue
            changes = _modified_since(page.changes, since - CLOCK_SKEW) if full else page.changes
            tally.changes += len(changes)
            bodies = self._bodies(box, await self._settled(box, changes), client_state)
            if bodies:
                tally.new_verdicts += await self._sink.submit(bodies)
            following = page.next_link or page.delta_link
            if following is None:
                raise GraphError(
                    None, None, "delta page has neither nextLink nor deltaLink", "mail delta"
                )
            await self.links.put(box.user, folder, following)
            if page.next_link is None:
                return
            link = following

    async def _settled(self, box: Mailbox, changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`changes` without the removals that are moves: a folder's delta says `@removed`
        both for a message deleted and for one moved to another folder, where it is still
        the mailbox's (and the destination folder's delta reports it)."""
        if "deleted" not in box.change_types:
            return [c for c in changes if "@removed" not in c]  # not notified live either
        kept = []
        for change in changes:
            if "@removed" in change and await self._throttle(box.user).run(
                partial(self._graph.exists, box.user, str(change["id"]))
            ):
                continue
            kept.append(change)
        return kept

    def _bodies(
        self, box: Mailbox, changes: Sequence[dict[str, Any]], client_state: str
    ) -> list[ResyncEvent]:
        """The basic notifications Graph would have sent for `changes`, in events."""
        items = []
        for change in changes:
            removed = "@removed" in change
            message_id = str(change["id"])
            resource = f"users/{box.user}/messages/{message_id}"
            etag = change.get("@odata.etag")
            if etag is None and change.get("changeKey"):
                etag = f'W/"{change["changeKey"]}"'
            items.append(
                mail_change_item(
                    subscription_id=RESYNC_SUBSCRIPTION,
                    change_type="deleted" if removed else "updated",
                    tenant_id=self._tenant_id,
                    client_state=client_state,
                    resource=resource,
                    message_id=message_id,
                    etag=etag,
                )
            )
        return pack(items)

    async def _folders(self, box: Mailbox) -> list[str]:
        return await self._throttle(box.user).run(partial(self._graph.folders, box.user))

    def _throttle(self, user: str) -> WriteThrottle:
        throttle = self._throttles.get(user.lower())
        if throttle is None:
            throttle = self._throttles[user.lower()] = WriteThrottle(
                self._clock, self._throttle_settings
            )
        return throttle


def _modified_since(changes: list[dict[str, Any]], since: dt.datetime) -> list[dict[str, Any]]:
    """Of a full sync's listing, what a gap from `since` may have kept from the live path:
    messages modified since, and any whose modification time is missing or unreadable. (A
    stored link's round returns only changes since the link, and all of them are read: the
    gap may have begun before the resync was asked for.)"""
    kept = []
    for change in changes:
        modified = change.get("lastModifiedDateTime")
        if "@removed" not in change and isinstance(modified, str):
            try:
                at = dt.datetime.fromisoformat(modified.replace("Z", "+00:00"))
            except ValueError:
                at = None
            if at is not None and at.tzinfo is not None and at < since:
                continue
        kept.append(change)
    return kept


def _reset(error: GraphError) -> bool:
    return error.status == 410 or (error.code or "") in _RESET_CODES
