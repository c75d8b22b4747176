"""Gap resync: read a window's messages back from Graph's export APIs and inspect them once.

Whenever notifications may have been lost (a removed subscription, a `missed` event,
downtime), the messages modified in the gap are read with the export APIs and turned into
the notifications Graph would have sent, encrypted to the current certificate. They go
through the same pipeline as live notifications, so their verdict keys equal the live ones
and a message already seen adds nothing.

A resync is a durable job (`graphtap.subscriptions.cursor`): the window and its work list
(every user's chats, every team's channels) are stored first, then a few units at a time are
read, page by page, within the export APIs' throttling. A page's messages are committed
before the link to the next page is recorded, and a unit is recorded done only after its
last page was committed, so a restart resumes from the cursor and reads again at most the
units that were in flight.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import itertools
import json
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric import rsa

from graphtap.notifications.crypto import encrypt_content
from graphtap.processing.committer import BatchCommitter
from graphtap.processing.fetch import ContentFetcher
from graphtap.processing.fetched import Fetched, Payload
from graphtap.processing.pipeline import EventResult
from graphtap.processing.sources import SourceEvent
from graphtap.subscriptions.clock import Clock
from graphtap.subscriptions.cursor import (
    RENEW_SECONDS,
    TEAM,
    USER,
    Cursor,
    CursorStore,
    MemoryCursorStore,
    ResyncJob,
    Unit,
    UnitUpdate,
)
from graphtap.subscriptions.graph import GraphError, GraphExports
from graphtap.subscriptions.keyvault import EncryptionCertificate
from graphtap.subscriptions.throttle import EXPORT_READS, ThrottleSettings, WriteThrottle

log = logging.getLogger(__name__)
RESYNC_PARTITION = "resync"
#: Notifications per synthesized event body.
BATCH = 50
#: The largest body resync hands the pipeline, under the 1 MB an Event Hubs event may have.
MAX_BODY_BYTES = 900_000
#: A notification larger than this travels as Graph sends one over 1 MB: only an
#: `additionalPayloadStorageId` in the body, its content handed over beside it.
LARGE_ITEM_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True)
class ResyncEvent:
    """An event body resync synthesized, and (by item index) the large payloads its items
    point at, which the fetcher then does not look for in the payload store."""

    body: bytes
    fetched: dict[int, Fetched] | None = None


def pack(items: Sequence[dict[str, Any]]) -> list[ResyncEvent]:
    """Notifications into event bodies of at most `BATCH` items and `MAX_BODY_BYTES`."""
    events: list[ResyncEvent] = []
    encoded: list[bytes] = []
    fetched: dict[int, Fetched] = {}
    size = 0

    def flush() -> None:
        nonlocal encoded, fetched, size
        if encoded:
            events.append(ResyncEvent(b'{"value":[' + b",".join(encoded) + b"]}", fetched or None))
        encoded, fetched, size = [], {}, 0

    for item in items:
        text = json.dumps(item, separators=(",", ":")).encode()
        payload = None
        if len(text) > LARGE_ITEM_BYTES:
            properties = {k: item[k] for k in _PAYLOAD_PROPERTIES if k in item}
            small = {k: v for k, v in item.items() if k not in _PAYLOAD_PROPERTIES}
            small["additionalPayloadStorageId"] = f"resync-{hashlib.sha256(text).hexdigest()}"
            text = json.dumps(small, separators=(",", ":")).encode()
            payload = Payload(properties, handed_over=True)
        if encoded and (len(encoded) == BATCH or size + len(text) + 32 > MAX_BODY_BYTES):
            flush()
        if payload is not None:
            fetched[len(encoded)] = payload
        encoded.append(text)
        size += len(text) + 1
    flush()
    return events


_PAYLOAD_PROPERTIES = ("resource", "resourceData", "encryptedContent")


class ResyncSink(Protocol):
    async def submit(self, events: Sequence[ResyncEvent]) -> int:
        """Hand synthesized events to the processing path; returns the new verdicts."""
        ...


class ProcessingSubmitter:
    """Hands resynced event bodies to the processing path: process them, then the one commit
    step (with no checkpoint to move). Resynced notifications get the same verdict keys as
    live ones, so the sink sees each change once; rejected items land in the same
    dead-letter store."""

    def __init__(
        self,
        process: Callable[[Sequence[SourceEvent]], Awaitable[list[EventResult]]],
        committer: BatchCommitter,
        *,
        fetcher: ContentFetcher | None = None,
    ) -> None:
        self._process = process
        self._committer = committer
        #: Reads what resynced mail notifications point at, as for live ones.
        self._fetcher = fetcher
        self._offsets = itertools.count(1)
        # One resync batch at a time: the units read concurrently, the CPU-bound processing
        # gains nothing from interleaving, and each batch's new verdicts stay its own.
        self._one_batch_at_a_time = asyncio.Lock()

    async def submit(self, synthesized: Sequence[ResyncEvent]) -> int:
        events = [
            SourceEvent(RESYNC_PARTITION, next(self._offsets), e.body, e.fetched)
            for e in synthesized
        ]
        async with self._one_batch_at_a_time:
            if self._fetcher is not None:
                await self._fetcher.fill(events)
            results = await self._process(events)
            before = self._committer.summary.verdicts
            await self._committer.commit(results, events=len(events), checkpoint=_no_checkpoint)
            return self._committer.summary.verdicts - before


async def _no_checkpoint() -> None:
    """Resync reads Graph, not a partition: there is nothing to checkpoint."""


@dataclass(frozen=True)
class ResyncSettings:
    #: Units (users or teams) read at once; each reads one page at a time.
    concurrency: int = 4
    #: How long a claim on a job holds without a cursor write (wall-clock seconds): another
    #: instance takes over a job whose runner went quiet for this long.
    claim_seconds: float = 600.0
    #: Finished jobs the status page keeps showing.
    keep_finished: int = 5
    throttle: ThrottleSettings = EXPORT_READS

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"resync concurrency must be at least 1, got {self.concurrency}")
        if self.claim_seconds < 2 * RENEW_SECONDS:
            raise ValueError(
                f"resync claim_seconds must be at least {2 * RENEW_SECONDS:g} (claims are "
                f"renewed every {RENEW_SECONDS:g} s), got {self.claim_seconds}"
            )


@dataclass(frozen=True, slots=True)
class ResyncReport:
    job_id: str
    reason: str
    start: dt.datetime
    end: dt.datetime
    units: int
    failed_units: int
    messages: int
    new_verdicts: int


@dataclass(frozen=True, slots=True)
class JobProgress:
    """A job as the status page shows it: counts and times, never content."""

    id: str
    reason: str
    start: dt.datetime
    end: dt.datetime
    state: str  # running | interrupted | finished
    units_total: int
    units_done: int
    units_failed: int
    in_flight: int
    messages: int
    units_per_second: float
    messages_per_second: float
    last_error: str | None


@dataclass
class _Run:
    """A job's live bookkeeping in this process."""

    job: ResyncJob
    cursor: Cursor
    clock: Clock
    state: str = "running"
    in_flight: int = 0
    messages: int = 0
    new_verdicts: int = 0
    last_error: str | None = None
    #: (monotonic time, units finished, messages) over the last `RATE_SPAN` seconds.
    samples: deque[tuple[float, int, int]] = field(default_factory=deque)
    #: Changes committed by this run: another member's copy of a chat message is skipped.
    seen: set[tuple[str, str]] = field(default_factory=set)

    def finished(self, units: int, messages: int) -> None:
        now = self.clock.monotonic()
        self.samples.append((now, units, messages))
        while self.samples and self.samples[0][0] < now - RATE_SPAN:
            self.samples.popleft()

    def progress(self) -> JobProgress:
        now = self.clock.monotonic()
        recent = [s for s in self.samples if s[0] >= now - RATE_SPAN]
        span = max(now - recent[0][0], 1.0) if recent else 1.0
        return JobProgress(
            id=self.job.id,
            reason=self.job.reason,
            start=self.job.start,
            end=self.job.end,
            state=self.state,
            units_total=len(self.job.units),
            units_done=len(self.cursor.done),
            units_failed=len(self.cursor.failed),
            in_flight=self.in_flight,
            messages=self.messages,
            units_per_second=sum(s[1] for s in recent) / span if recent else 0.0,
            messages_per_second=sum(s[2] for s in recent) / span if recent else 0.0,
            last_error=self.last_error,
        )


#: Seconds over which the status page's current rates are measured.
RATE_SPAN = 60.0
#: Graph refuses these for the whole app (credential, consent, protected-API access,
#: licence): every unit would fail alike, so the job stops and is resumed later.
JOB_LEVEL_STATUS = frozenset({401, 402, 403})
#: A page link from an earlier process that Graph no longer honours: read the unit again.
STALE_LINK_STATUS = frozenset({400, 404, 410})


class Resync:
    """Gap resync as durable jobs: listed once, read a few units at a time, each unit marked
    done only after its messages were committed, resumable from its cursor after a restart."""

    def __init__(
        self,
        exports: GraphExports,
        sink: ResyncSink,
        *,
        tenant_id: str,
        clock: Clock,
        store: CursorStore | None = None,
        owner: str = "local",
        settings: ResyncSettings = ResyncSettings(),
    ) -> None:
        self._exports = exports
        self._sink = sink
        self._tenant_id = tenant_id
        self._clock = clock
        self.store: CursorStore = store if store is not None else MemoryCursorStore()
        self.owner = owner
        self.settings = settings
        self.throttle = WriteThrottle(clock, settings.throttle)
        self._runs: dict[str, _Run] = {}
        self._one_job_at_a_time = asyncio.Lock()

    def progress(self) -> tuple[JobProgress, ...]:
        return tuple(run.progress() for run in self._runs.values())

    async def window(
        self,
        start: dt.datetime,
        end: dt.datetime,
        *,
        certificate: EncryptionCertificate,
        client_state: str,
        reason: str = "gap",
    ) -> ResyncReport:
        """Every chat and channel message modified in (start, end), inspected once.

        The window is stored before anything is read: if listing the users and teams fails
        (throttled past every retry, a permission missing), `resume` lists them later, here
        or on another instance, and the gap is not forgotten."""
        async with self._one_job_at_a_time:
            planned = ResyncJob(
                id=uuid.uuid4().hex,
                reason=reason,
                start=start,
                end=end,
                units=(),
                created=dt.datetime.fromtimestamp(self._clock.time(), dt.UTC),
                listed=False,
            )
            await self.store.add(planned, owner=self.owner, until=self._claim_until())
            job = await self._listed(planned)
            return await self._run(job, Cursor(), certificate, client_state)

    async def _listed(self, planned: ResyncJob) -> ResyncJob:
        """The planned window as a job of every user's chats and every team's channels,
        stored before the plan is forgotten (a crash between the two lists it again, and
        the repeated reads add no verdicts)."""
        users = await self.throttle.run(self._exports.user_ids)
        teams = await self.throttle.run(self._exports.team_ids)
        job = dataclasses.replace(
            planned,
            id=uuid.uuid4().hex,
            units=(*(Unit(USER, u) for u in users), *(Unit(TEAM, t) for t in teams)),
            listed=True,
        )
        await self.store.add(job, owner=self.owner, until=self._claim_until())
        await self.store.finish(planned.id)
        log.info("resync %s (%s): %d units", job.id, job.reason, len(job.units))
        return job

    async def resume(
        self, *, certificate: EncryptionCertificate, client_state: str
    ) -> list[ResyncReport]:
        """Finish the jobs a stopped process left (this instance's, or any whose claim
        lapsed), each from its cursor."""
        async with self._one_job_at_a_time:
            claimed = await self.store.claim(
                owner=self.owner, now=self._clock.time(), until=self._claim_until()
            )
            reports = []
            for job, cursor in claimed:
                if not job.listed:
                    job, cursor = await self._listed(job), Cursor()
                log.info(
                    "resync %s (%s): resuming, %d of %d units left",
                    job.id,
                    job.reason,
                    len(cursor.pending(job)),
                    len(job.units),
                )
                reports.append(await self._run(job, cursor, certificate, client_state))
            return reports

    async def _run(
        self, job: ResyncJob, cursor: Cursor, certificate: EncryptionCertificate, client_state: str
    ) -> ResyncReport:
        run = self._runs[job.id] = _Run(job, cursor, self._clock)
        self._forget_finished()
        todo = deque(cursor.pending(job))

        async def worker() -> None:
            while todo:
                index = todo.popleft()
                run.in_flight += 1
                try:
                    await self._unit(run, index, certificate, client_state)
                finally:
                    run.in_flight -= 1

        workers = [
            asyncio.create_task(worker()) for _ in range(min(self.settings.concurrency, len(todo)))
        ]
        try:
            await asyncio.gather(*workers)
        except BaseException as error:
            # A unit that could not finish stops the job; it stays in the store, and the
            # units in flight are read again when it resumes.
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            run.state = "interrupted"
            if not isinstance(error, asyncio.CancelledError):
                run.last_error = _describe(error)
            raise
        await self.store.finish(job.id)
        run.state = "finished"
        report = ResyncReport(
            job.id,
            job.reason,
            job.start,
            job.end,
            len(job.units),
            len(cursor.failed),
            run.messages,
            run.new_verdicts,
        )
        log.info(
            "resync %s (%s) finished: %d units (%d failed), %d messages, %d new verdicts",
            job.id,
            job.reason,
            report.units,
            report.failed_units,
            report.messages,
            report.new_verdicts,
        )
        return report

    async def _unit(
        self, run: _Run, index: int, certificate: EncryptionCertificate, client_state: str
    ) -> None:
        """Read one user's chats or one team's channels, page by page, committing each page
        before its successor's link is recorded."""
        job = run.job
        unit = job.units[index]
        read = self._exports.chat_page if unit.kind == USER else self._exports.channel_page
        link = run.cursor.pages.get(index)
        saved = link is not None
        messages = 0
        while True:
            try:
                page = await self.throttle.run(partial(read, unit.id, job.start, job.end, link))
            except GraphError as error:
                if error.status in JOB_LEVEL_STATUS:
                    raise
                if saved and error.status in STALE_LINK_STATUS:
                    log.info(
                        "resync %s: %s's saved page link refused; reading it again", job.id, unit
                    )
                    link, saved = None, False
                    continue
                run.last_error = f"{unit}: {error}"
                await self._record(run, UnitUpdate(index, done=True, error=str(error)))
                run.finished(1, messages)
                return
            saved = False
            new = await self._submit(run, page.messages, certificate, client_state)
            messages += new
            if page.next_link is None:
                await self._record(run, UnitUpdate(index, done=True))
                run.finished(1, messages)
                return
            link = page.next_link
            await self._record(run, UnitUpdate(index, page=link))

    async def _submit(
        self,
        run: _Run,
        messages: Sequence[dict[str, Any]],
        certificate: EncryptionCertificate,
        client_state: str,
    ) -> int:
        """The page's changes not yet committed by this run, through the commit step."""
        changes = {
            (str(m.get("id")), str(m.get("etag"))): m for m in messages if _resource(m) is not None
        }
        fresh = {key: m for key, m in changes.items() if key not in run.seen}
        if not fresh:
            return 0
        items = [self._notification(m, certificate, client_state) for m in fresh.values()]
        run.new_verdicts += await self._sink.submit(pack(items))
        run.seen.update(fresh)  # only once committed: a failed commit is read again
        run.messages += len(fresh)
        return len(fresh)

    async def _record(self, run: _Run, update: UnitUpdate) -> None:
        await self.store.record(run.job.id, update, until=self._claim_until())
        run.cursor.apply(update)

    def _claim_until(self) -> float:
        return self._clock.time() + self.settings.claim_seconds

    def _forget_finished(self) -> None:
        finished = [i for i, r in self._runs.items() if r.state == "finished"]
        for job_id in finished[: max(0, len(finished) - self.settings.keep_finished)]:
            del self._runs[job_id]

    def _notification(
        self, message: dict[str, Any], certificate: EncryptionCertificate, client_state: str
    ) -> dict[str, Any]:
        resource = _resource(message)
        change_type = _change_type(message)
        item: dict[str, Any] = {
            "subscriptionId": RESYNC_PARTITION,
            "changeType": change_type,
            "clientState": client_state,
            "resource": resource,
            "resourceData": {
                "id": message.get("id"),
                "@odata.type": "#Microsoft.Graph.chatMessage",
                "@odata.id": resource,
            },
            "tenantId": self._tenant_id,
        }
        if change_type != "deleted":
            public_key = certificate.certificate.public_key()
            if not isinstance(public_key, rsa.RSAPublicKey):
                raise ValueError("the encryption certificate is not RSA")
            item["encryptedContent"] = encrypt_content(
                json.dumps(message, separators=(",", ":")).encode(),
                public_key,
                certificate_id=certificate.certificate_id,
                certificate_thumbprint=certificate.thumbprint,
            )
        return item


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"


def _change_type(message: dict[str, Any]) -> str:
    if message.get("deletedDateTime"):
        return "deleted"
    if message.get("lastModifiedDateTime") != message.get("createdDateTime"):
        return "updated"
    return "created"


def _resource(message: dict[str, Any]) -> str | None:
    """The notification `resource` Graph uses for this message."""
    message_id = message.get("id")
    if message.get("chatId"):
        return f"chats('{message['chatId']}')/messages('{message_id}')"
    channel = message.get("channelIdentity") or {}
    if channel.get("teamId") and channel.get("channelId"):
        return (
            f"teams('{channel['teamId']}')/channels('{channel['channelId']}')"
            f"/messages('{message_id}')"
        )
    return None
