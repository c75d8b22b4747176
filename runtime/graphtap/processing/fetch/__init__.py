"""Fetch, before the pipeline, the content a notification points at instead of carrying.

Graph leaves two kinds of change without their content in the event:
- a rich payload over 1 MB: the item carries `additionalPayloadStorageId`, a blob that Graph
  wrote into the payload store (`payloads`);
- an Outlook message: Outlook cannot put a body in a notification, so it is read from Graph
  (`mail`).

The pipeline is free of I/O and may run in worker processes, so the host fills each event's
`fetched` (by item index) with its own clients first, and the stages use it as if Graph had
sent it. Only items whose clientState is accepted are fetched: a forged notification makes
the host read nothing. A read that keeps failing becomes `Unavailable`, which the pipeline
dead-letters with its reason; nothing is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Collection, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from graphtap.notifications.authenticity import ClientStateCheck
from graphtap.notifications.binding import mail_message
from graphtap.notifications.errors import NotificationError, Reason
from graphtap.notifications.model import (
    DEFAULT_MAX_EVENT_BYTES,
    ChangeNotification,
    parse_collection,
)
from graphtap.processing.fetched import Fetched, Gone, MailMessage, Payload, Unavailable
from graphtap.processing.sources import SourceEvent

log = logging.getLogger(__name__)

#: Cheap test on the raw body: only an event that may hold such an item is parsed here.
_MAY_POINT_ELSEWHERE = re.compile(rb'additionalPayloadStorageId|"resource"\s*:\s*"/?(?i:users)/')


class FetchError(Exception):
    """A read that failed; the message names the problem (never the content)."""


class PayloadStore(Protocol):
    async def read(self, storage_id: str) -> bytes:
        """The blob's bytes; raises `FetchError` (or the client's error) if it cannot."""
        ...

    async def close(self) -> None: ...


class MailReader(Protocol):
    async def read(self, user_id: str, message_id: str) -> dict[str, Any] | None:
        """The message as Graph serves it, or None if it no longer exists."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class FetchRetry:
    """Reads that fail are tried again with exponential backoff, then given up as
    `Unavailable`; a missing blob is retried too (Graph may still be writing it)."""

    attempts: int = 3
    initial_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, attempt: int) -> float:
        return float(min(self.max_delay, self.initial_delay * 2**attempt))


@dataclass
class ContentFetcher:
    """Fills `SourceEvent.fetched` for a batch: payloads from `payloads`, Outlook messages
    from `mail` (without one, mail keeps its `not_included` verdict)."""

    client_states: ClientStateCheck
    payloads: PayloadStore | None = None
    mail: MailReader | None = None
    retry: FetchRetry = field(default_factory=FetchRetry)
    #: Reads in flight for one batch, across stores and mailboxes.
    concurrency: int = 32
    #: The pipeline's event size limit: the fetcher reads what the pipeline would accept.
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    #: Seconds a batch's reads may take in all (a throttled mailbox may ask for minutes):
    #: what is unread by then is `Unavailable` and dead-lettered, so the batch moves on well
    #: inside the Function App's timeout, and replay reads it later.
    deadline: float = 240.0

    async def fill(self, events: Sequence[SourceEvent]) -> None:
        jobs: list[tuple[SourceEvent, int, Reason, Coroutine[Any, Any, Fetched]]] = []
        for event in events:
            if _MAY_POINT_ELSEWHERE.search(event.body) is None:
                continue
            have = event.fetched.keys() if event.fetched else ()
            for index, reason, job in self._wanted(event.body, skip=have):
                jobs.append((event, index, reason, job))
        if not jobs:
            return
        limit = asyncio.Semaphore(self.concurrency)

        async def run(job: Coroutine[Any, Any, Fetched]) -> Fetched:
            try:
                async with limit:
                    return await job
            finally:
                job.close()  # one cancelled before its turn never ran: nothing to warn of

        tasks = [asyncio.ensure_future(run(job)) for *_, job in jobs]
        done, late = await asyncio.wait(tasks, timeout=self.deadline)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        for (event, index, reason, _), task in zip(jobs, tasks, strict=True):
            if event.fetched is None:
                event.fetched = {}
            if task in done:
                event.fetched[index] = task.result()
            else:
                log.warning("item %d not read within %g s: dead-lettered", index, self.deadline)
                event.fetched[index] = Unavailable(
                    reason, f"not read within the batch's {self.deadline:g} s"
                )

    def _wanted(
        self, body: bytes, *, skip: Collection[int] = ()
    ) -> list[tuple[int, Reason, Coroutine[Any, Any, Fetched]]]:
        """(item index, read) for every accepted item of `body` that points elsewhere, but
        those in `skip` (already at hand, as resync hands them); an event the pipeline will
        reject anyway is left to it."""
        try:
            collection = parse_collection(body, max_bytes=self.max_event_bytes)
        except NotificationError:
            return []
        wanted: list[tuple[int, Reason, Coroutine[Any, Any, Fetched]]] = []
        for item in collection.items:
            if not isinstance(item, ChangeNotification) or item.is_lifecycle or item.index in skip:
                continue
            try:
                self.client_states.verify(item.client_state)
            except NotificationError:
                continue
            if item.additional_payload_storage_id is not None:
                read = self._payload(item.additional_payload_storage_id)
                wanted.append((item.index, Reason.PAYLOAD_UNAVAILABLE, read))
            elif self.mail is not None and item.change_type != "deleted":
                mailbox = mail_message(item.resource, item.tenant_id)
                if mailbox is not None:
                    wanted.append((item.index, Reason.FETCH_FAILED, self._message(*mailbox)))
        return wanted

    async def _payload(self, storage_id: str) -> Fetched:
        if self.payloads is None:
            return Unavailable(
                Reason.PAYLOAD_UNAVAILABLE,
                f"payload {storage_id[:200]!r} is in the payload store, and none is configured",
            )
        store = self.payloads
        try:
            data = await self._with_retries(lambda: store.read(storage_id))
        except Exception as exc:  # noqa: BLE001 (the item is dead-lettered with the cause)
            return Unavailable(
                Reason.PAYLOAD_UNAVAILABLE,
                f"payload {storage_id[:200]!r} unreadable after {self.retry.attempts} "
                f"attempts: {_cause(exc)}",
            )
        try:
            properties = orjson.loads(data)
        except orjson.JSONDecodeError:
            properties = None
        if not isinstance(properties, dict):
            return Unavailable(
                Reason.MALFORMED_NOTIFICATION,
                f"payload {storage_id[:200]!r} is not a JSON object",
            )
        return Payload(properties)

    async def _message(self, user_id: str, message_id: str) -> Fetched:
        assert self.mail is not None
        reader = self.mail
        try:
            message = await self._with_retries(lambda: reader.read(user_id, message_id))
        except Exception as exc:  # noqa: BLE001 (the item is dead-lettered with the cause)
            return Unavailable(
                Reason.FETCH_FAILED,
                f"message {message_id[:200]!r} of mailbox {user_id[:100]!r} not fetched after "
                f"{self.retry.attempts} attempts: {_cause(exc)}",
            )
        return Gone() if message is None else MailMessage(message)

    async def _with_retries(self, read: Any) -> Any:
        for attempt in range(self.retry.attempts):
            try:
                return await read()
            except Exception as exc:
                if attempt + 1 == self.retry.attempts:
                    raise
                log.warning("fetch failed, retrying: %s", _cause(exc))
                await asyncio.sleep(self.retry.delay(attempt))
        raise AssertionError("unreachable")

    async def close(self) -> None:
        for store in (self.payloads, self.mail):
            if store is not None:
                await store.close()


def _cause(exc: BaseException) -> str:
    """What failed, by type and the service's status and code: never a message that could
    quote content."""
    if isinstance(exc, FetchError):
        return str(exc)
    parts = [type(exc).__name__]
    for name in ("status_code", "response_status_code", "error_code"):
        value = getattr(exc, name, None)
        if value:
            parts.append(f"{name.replace('response_', '')} {value}")
    return ", ".join(parts)
