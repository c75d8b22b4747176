"""Outlook messages read from Graph for inspection, within Outlook's limits per mailbox.

A mail notification carries no content (Graph cannot put a body in an Outlook notification),
so the message is read with msgraph-sdk: `GET /users/{id}/messages/{id}` with `$select`, and,
when it has attachments, their names (`GET .../attachments?$select=name,contentType,size`;
the bytes are never read). Outlook throttles per app and mailbox: 4 requests in flight and
10,000 per 10 minutes (soc-mail-storage §4.3). `MailboxLimiter` keeps each mailbox under both
and, on a 429 or 503, pauses that mailbox for its Retry-After (the client is built without the
SDK's retry handler, which would sleep behind the limiter's back). Errors name the status and
Graph's code, never a body.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import httpx
import orjson
from kiota_abstractions.api_error import APIError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.request_information import RequestInformation
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.users.item.messages.item.attachments.attachments_request_builder import (
    AttachmentsRequestBuilder,
)
from msgraph.generated.users.item.messages.item.message_item_request_builder import (
    MessageItemRequestBuilder,
)
from msgraph.graph_service_client import GraphServiceClient

from graphtap.notifications.outlook import IMMUTABLE_IDS
from graphtap.processing.fetch import FetchError

T = TypeVar("T")

#: What inspection reads of a message, and what identifies its version.
MESSAGE_FIELDS = (
    "id",
    "subject",
    "body",
    "from",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "hasAttachments",
    "internetMessageId",
    "lastModifiedDateTime",
)
ATTACHMENT_FIELDS = ("name", "contentType", "size")
#: Throttled or briefly unavailable: wait for Retry-After and send again.
THROTTLED = frozenset({429, 503})
#: Attachment pages followed at most (Outlook pages a message's attachments rarely).
MAX_ATTACHMENT_PAGES = 20
_ERRORS: dict[str, Any] = {"XXX": ODataError}
#: Path segments a URL resolves away (`messages/..` is the mailbox, not a message).
_NOT_AN_ID = frozenset({"", ".", ".."})


class MonotonicClock(Protocol):
    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemMonotonic:
    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


@dataclass(frozen=True)
class MailboxLimits:
    """Outlook's limits per app and mailbox, and how throttling is waited out."""

    concurrency: int = 4
    requests: int = 10_000
    window: float = 600.0
    #: Sends of one request while Graph answers 429/503, before it is given up.
    attempts: int = 6
    #: When a 429/503 carries no Retry-After: this, doubled per attempt.
    default_retry_after: float = 2.0
    #: A longer Retry-After is not waited for: the read fails (and is retried or replayed).
    max_retry_after: float = 300.0

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.requests < 1 or self.window <= 0 or self.attempts < 1:
            raise ValueError("concurrency, requests, window and attempts must be positive")


@dataclass
class _Mailbox:
    slots: asyncio.Semaphore
    sent: deque[float] = field(default_factory=deque)
    paused_until: float = 0.0
    callers: int = 0


#: Mailboxes tracked before idle ones are forgotten.
_TRACKED = 4096


class MailboxLimiter:
    """At most `concurrency` requests in flight and `requests` per `window` seconds for each
    mailbox, on a monotonic clock; a throttled mailbox pauses for its Retry-After."""

    def __init__(
        self, limits: MailboxLimits | None = None, clock: MonotonicClock | None = None
    ) -> None:
        self.limits = limits or MailboxLimits()
        self.clock = clock or SystemMonotonic()
        #: By last use, oldest first: idle mailboxes are forgotten from that end.
        self._mailboxes: OrderedDict[str, _Mailbox] = OrderedDict()
        #: Requests sent again after a 429/503, and the seconds waited for them.
        self.retries = 0
        self.waited = 0.0

    @property
    def tracked(self) -> int:
        """Mailboxes whose window and pause are kept (idle ones are forgotten past 4,096)."""
        return len(self._mailboxes)

    async def call(self, mailbox: str, send: Callable[[], Awaitable[T]]) -> T:
        """`send()` once the mailbox has room; again after Retry-After while it is throttled."""
        box = self._mailbox(mailbox.lower())
        box.callers += 1  # a mailbox with callers, even waiting ones, is never forgotten
        try:
            attempt = 0
            while True:
                async with box.slots:
                    await self._admit(box)
                    try:
                        return await send()
                    except APIError as error:
                        attempt += 1
                        if (
                            error.response_status_code not in THROTTLED
                            or attempt >= self.limits.attempts
                        ):
                            raise
                        wait = self._retry_after(error, attempt)
                        box.paused_until = max(box.paused_until, self.clock.monotonic() + wait)
                        self.retries += 1
                        self.waited += wait
        finally:
            box.callers -= 1

    async def _admit(self, box: _Mailbox) -> None:
        limits = self.limits
        while True:
            now = self.clock.monotonic()
            while box.sent and box.sent[0] <= now - limits.window:
                box.sent.popleft()
            if now < box.paused_until:
                await self.clock.sleep(box.paused_until - now)
            elif len(box.sent) >= limits.requests:
                await self.clock.sleep(box.sent[0] + limits.window - now)
            else:
                box.sent.append(now)
                return

    def _retry_after(self, error: APIError, attempt: int) -> float:
        headers: Any = error.response_headers
        value = headers.get("Retry-After") if headers is not None else None
        if isinstance(value, list | tuple | set):
            value = next(iter(value), None)
        try:
            wait = float(value) if value is not None else None
        except ValueError:
            wait = None
        if wait is None:
            wait = self.limits.default_retry_after * 2 ** (attempt - 1)
        if wait > self.limits.max_retry_after:
            raise error
        return max(0.0, wait)

    def _mailbox(self, name: str) -> _Mailbox:
        box = self._mailboxes.get(name)
        if box is not None:
            self._mailboxes.move_to_end(name)
            return box
        if len(self._mailboxes) >= _TRACKED:
            self._forget_idle()
        box = self._mailboxes[name] = _Mailbox(asyncio.Semaphore(self.limits.concurrency))
        return box

    def _forget_idle(self) -> None:
        """Mailboxes with no caller, no pause and no request in the window, least recently
        used first. The walk ends at the first one used within the window: every mailbox
        after it was used later, so a tenant with many busy mailboxes costs one step per new
        mailbox, not a pass over all of them."""
        now = self.clock.monotonic()
        idle = []
        for name, box in self._mailboxes.items():
            if box.sent and box.sent[-1] > now - self.limits.window:
                break
            if not box.callers and box.paused_until <= now:
                idle.append(name)
        for name in idle:
            del self._mailboxes[name]


class GraphMailReader:
    """`MailReader` over msgraph-sdk: one message with its attachments' names, or None when
    Graph answers 404: deleted before it was read, or moved before it was read when its
    subscription predates immutable ids (see `IMMUTABLE_IDS`)."""

    def __init__(self, client: GraphServiceClient, limiter: MailboxLimiter | None = None) -> None:
        self._client = client
        self.limiter = limiter or MailboxLimiter()

    async def read(self, user_id: str, message_id: str) -> dict[str, Any] | None:
        for name, value in (("mailbox", user_id), ("message id", message_id)):
            if value in _NOT_AN_ID:  # the URL would lose the segment and name something else
                raise FetchError(f"read message: the notification's {name} is {value!r}")
        item = self._client.users.by_user_id(user_id).messages.by_message_id(message_id)
        query = MessageItemRequestBuilder.MessageItemRequestBuilderGetQueryParameters(
            select=list(MESSAGE_FIELDS)
        )
        info = item.to_get_request_information(RequestConfiguration(query_parameters=query))
        message = await self._get(user_id, "read message", info)
        if message is None:
            return None
        # Graph answers with the immutable id. A subscription created without the header
        # names messages by Outlook's default id instead; the message is still the one the
        # request named (one path segment, never a dot segment: see above), and keeps that
        # name, as a verdict keys on the id its notification gave.
        message["id"] = message_id
        if message.get("hasAttachments"):
            attachments = await self._attachments(user_id, item)
            if attachments is None:
                return None
            message["attachments"] = attachments
        return message

    async def _attachments(
        self, user_id: str, item: MessageItemRequestBuilder
    ) -> list[dict[str, Any]] | None:
        query = AttachmentsRequestBuilder.AttachmentsRequestBuilderGetQueryParameters(
            select=list(ATTACHMENT_FIELDS)
        )
        builder = item.attachments
        info = builder.to_get_request_information(RequestConfiguration(query_parameters=query))
        found: list[dict[str, Any]] = []
        for _ in range(MAX_ATTACHMENT_PAGES):
            page = await self._get(user_id, "list attachments", info)
            if page is None:
                return None  # the message went between the two reads
            values = page.get("value")
            if not isinstance(values, list):
                raise FetchError("list attachments: Graph returned a page without a value list")
            found.extend(
                {k: a[k] for k in ATTACHMENT_FIELDS if k in a}
                for a in values
                if isinstance(a, dict)
            )
            link = page.get("@odata.nextLink")
            if not isinstance(link, str) or not link:
                return found
            info = builder.with_url(link).to_get_request_information()
        raise FetchError(f"list attachments: more than {MAX_ATTACHMENT_PAGES} pages")

    async def _get(
        self, user_id: str, operation: str, info: RequestInformation
    ) -> dict[str, Any] | None:
        info.headers.try_add("Accept", "application/json")
        info.headers.try_add("Prefer", IMMUTABLE_IDS)  # ids that survive a move to a folder
        adapter: Any = self._client.request_adapter  # send_primitive_async's stub says None
        try:
            body = await self.limiter.call(
                user_id, lambda: adapter.send_primitive_async(info, "bytes", _ERRORS)
            )
        except APIError as error:
            if error.response_status_code == 404:
                return None
            raise FetchError(_describe(operation, error)) from None
        except httpx.TransportError as error:
            raise FetchError(f"{operation}: {type(error).__name__}") from None
        try:
            document = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            document = None
        if not isinstance(document, dict):
            raise FetchError(f"{operation}: Graph returned something other than a JSON object")
        return document

    async def close(self) -> None:
        """The client's HTTP connections (the credential belongs to the host)."""
        http = getattr(self._client.request_adapter, "_http_client", None)
        if isinstance(http, httpx.AsyncClient):
            await http.aclose()


def _describe(operation: str, error: APIError) -> str:
    """Status and Graph's error code; Graph's message is left out (it may quote content)."""
    code = error.error.code if isinstance(error, ODataError) and error.error else None
    text = f"{operation}: {error.response_status_code or 'no status'} {code or ''}".rstrip()
    if error.response_status_code == 403:
        text += (
            " (the runtime identity lacks Mail.Read, or an application access policy keeps "
            "it out of this mailbox)"
        )
    elif error.response_status_code in THROTTLED:
        text += " (still throttled after waiting out Retry-After)"
    return text
