"""A stateful fake of Outlook mail in Microsoft Graph: `/users/{id}/messages` and
`/users/{id}/mailFolders/...`, served through `FakeGraph` to the real msgraph-sdk client.

Mailboxes hold folders and messages (with `changeKey` and `@odata.etag`, which move on every
change) and their attachments. It serves what graphtap reads and its rules (soc-mail-storage
§4, azure-authorization §3.5):
- `GET` a message (in a folder or not) and its attachments, honouring `$select` (Graph always
  adds `id` and `@odata.etag`; an unknown property is a 400); 404 `ErrorItemNotFound` once
  the message is deleted or never was;
- delta per folder (`.../mailFolders/{f}/messages/delta`): `@odata.nextLink` pages
  (`Prefer: odata.maxpagesize`), then an `@odata.deltaLink` with an opaque token that keeps
  the original `$select`; later rounds return what changed, `@removed` for what was deleted
  or moved out; an expired token is 410 `syncStateNotFound`, a reset 410 `resyncRequired`
  with a `Location` holding an empty `$deltatoken`;
- Outlook throttling per app and mailbox: a fifth concurrent request is 429 (MailboxConcurrency)
  and the 10,001st in 10 minutes is 429, both with Retry-After; `peak` records the most in
  flight ever seen;
- Mail.Read (or Mail.ReadWrite) from the token's roles (an `Authority`) or the app's
  `permissions`; without it, Graph's 403 `ErrorAccessDenied`;
- ids as Outlook gives them: a message has an immutable id for its lifetime, served to
  requests with `Prefer: IdType="ImmutableId"`, and a default id, served to the others, that
  is new after each move (the old one then finds nothing); a request may name either.
Tests put mail in with `deliver`, change it with `update`, `move` and `delete` (each notified
through `notify`), and inject outages with `fail`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import re
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

import httpx

from graphtap.subscriptions.clock import Clock
from tests.fakes.authorization import GRAPH_MAIL, Authority

GRAPH = "https://graph.microsoft.com"
WELL_KNOWN_FOLDERS = ("inbox", "sentitems", "drafts", "deleteditems", "archive")
#: Outlook's limits per app and mailbox (soc-mail-storage §4.3).
CONCURRENCY = 4
REQUESTS_PER_WINDOW = 10_000
WINDOW_SECONDS = 600.0
#: A folder's first delta with `$filter=receivedDateTime ...` returns at most this many.
INITIAL_FILTERED_MAX = 5_000
#: Properties of a message this fake knows; $select names outside them are refused.
MESSAGE_PROPERTIES = (
    "id",
    "createdDateTime",
    "lastModifiedDateTime",
    "changeKey",
    "categories",
    "receivedDateTime",
    "sentDateTime",
    "hasAttachments",
    "internetMessageId",
    "subject",
    "bodyPreview",
    "importance",
    "parentFolderId",
    "conversationId",
    "isRead",
    "isDraft",
    "body",
    "uniqueBody",
    "sender",
    "from",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "replyTo",
    "webLink",
)
ATTACHMENT_PROPERTIES = ("id", "name", "contentType", "size", "isInline", "lastModifiedDateTime")
_MAILBOX_PATH = re.compile(r"/users/([^/]+)/(messages|mailFolders)(/.*)?", re.IGNORECASE)


@dataclass
class StoredMessage:
    #: The immutable id (`Prefer: IdType="ImmutableId"`): kept for the message's lifetime.
    id: str
    folder: str
    properties: dict[str, Any]
    attachments: list[dict[str, Any]]
    change_key: str
    #: The mailbox's change sequence when this message last changed (for delta).
    sequence: int
    #: The id Outlook gives without that header: a new one each time the message moves.
    rest_id: str = ""

    @property
    def etag(self) -> str:
        return f'W/"{self.change_key}"'

    def id_for(self, immutable: bool) -> str:
        return self.id if immutable else self.rest_id

    def to_graph(self, *, immutable: bool = True) -> dict[str, Any]:
        return {
            "@odata.etag": self.etag,
            "id": self.id_for(immutable),
            **self.properties,
            "changeKey": self.change_key,
            "parentFolderId": self.folder,
            "hasAttachments": bool(self.attachments),
        }


@dataclass
class Folder:
    id: str
    display_name: str
    well_known: str | None = None


@dataclass
class Mailbox:
    user_id: str
    folders: dict[str, Folder] = field(default_factory=dict)
    messages: dict[str, StoredMessage] = field(default_factory=dict)
    #: Deleted or moved out: (folder it left, immutable id) -> sequence when it left.
    removed: dict[tuple[str, str], int] = field(default_factory=dict)
    #: The id without the header that a message had in the folder it left (same keys).
    left_as: dict[tuple[str, str], str] = field(default_factory=dict)
    sequence: int = 0
    #: Delta tokens from an older generation have expired (syncStateNotFound); from an older
    #: reset, the service asks for a full resync (410 resyncRequired).
    generation: int = 0
    reset: int = 0

    def folder(self, name: str) -> Folder | None:
        name = name.strip("'()")
        lowered = name.lower()
        for folder in self.folders.values():
            if folder.id == name or folder.well_known == lowered:
                return folder
        return None


@dataclass
class Fault:
    status: int
    remaining: int | None  # None: until healed
    retry_after: int | None


@dataclass
class FakeMailboxes:
    clock: Clock
    #: Seconds (on `clock`) each request is held in flight: concurrency becomes visible.
    latency: float = 0.0
    #: Messages per delta page unless `Prefer: odata.maxpagesize` asks for fewer.
    delta_page_size: int = 10
    concurrency: int = CONCURRENCY
    requests_per_window: int = REQUESTS_PER_WINDOW
    window: float = WINDOW_SECONDS
    #: Called for every change a test makes: (user id, message id, change type, message).
    notify: Callable[[str, str, str, StoredMessage], None] | None = None

    mailboxes: dict[str, Mailbox] = field(default_factory=dict)
    #: The most requests ever in flight at once, per (app, mailbox).
    peak: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: 429s served, by limit ("concurrency", "rate", "injected").
    throttled: Counter[str] = field(default_factory=Counter)
    #: Successful message reads by (user, message id).
    reads: Counter[tuple[str, str]] = field(default_factory=Counter)
    faults: list[Fault] = field(default_factory=list)
    _in_flight: Counter[tuple[str, str]] = field(default_factory=Counter)
    _sent: dict[tuple[str, str], deque[float]] = field(default_factory=dict)
    _ids: int = 0

    # -- what tests do to the service -----------------------------------------------------

    def mailbox(self, user_id: str) -> Mailbox:
        """The user's mailbox, created with the well-known folders on first use."""
        key = user_id.lower()
        box = self.mailboxes.get(key)
        if box is None:
            box = self.mailboxes[key] = Mailbox(user_id)
            for name, display in zip(
                WELL_KNOWN_FOLDERS,
                ("Inbox", "Sent Items", "Drafts", "Deleted Items", "Archive"),
                strict=True,
            ):
                folder = Folder(self._opaque("folder"), display, name)
                box.folders[folder.id] = folder
        return box

    def add_folder(self, user_id: str, display_name: str) -> Folder:
        box = self.mailbox(user_id)
        folder = Folder(self._opaque("folder"), display_name)
        box.folders[folder.id] = folder
        return folder

    def deliver(
        self,
        user_id: str,
        message: dict[str, Any],
        *,
        folder: str = "inbox",
        attachments: Iterable[dict[str, Any]] = (),
    ) -> StoredMessage:
        """New mail in `folder`: `message` as Graph's JSON (subject, body, from, ...); its
        `id` is kept when given. Attachments carry name, contentType and contentBytes."""
        box = self.mailbox(user_id)
        target = box.folder(folder)
        if target is None:
            raise KeyError(f"mailbox {user_id} has no folder {folder!r}")
        properties = {k: v for k, v in message.items() if k in MESSAGE_PROPERTIES}
        message_id = str(properties.pop("id", None) or self._opaque("message"))
        now = _iso(self.clock.time())
        properties.setdefault("createdDateTime", now)
        properties.setdefault("receivedDateTime", now)
        properties.setdefault("sentDateTime", now)
        properties["lastModifiedDateTime"] = now
        properties.setdefault("internetMessageId", f"<{message_id[-12:]}@contoso.example>")
        properties.setdefault("isRead", False)
        properties.setdefault("isDraft", False)
        properties.setdefault("importance", "normal")
        stored = StoredMessage(
            message_id,
            target.id,
            properties,
            [self._attachment(a) for a in attachments],
            self._opaque("ck"),
            self._next(box),
            rest_id=self._opaque("rest"),
        )
        box.messages[message_id] = stored
        box.removed.pop((target.id, message_id), None)
        self._notify(user_id, stored, "created")
        return stored

    def update(self, user_id: str, message_id: str, **properties: Any) -> StoredMessage:
        """The message changes (read, flagged, edited): a new changeKey and etag."""
        box = self.mailbox(user_id)
        stored = box.messages[message_id]
        stored.properties.update(properties)
        stored.properties["lastModifiedDateTime"] = _iso(self.clock.time())
        stored.change_key = self._opaque("ck")
        stored.sequence = self._next(box)
        self._notify(user_id, stored, "updated")
        return stored

    def move(self, user_id: str, message_id: str, folder: str) -> StoredMessage:
        """To another folder (a user, or an inbox rule the moment mail arrives): the immutable
        id stays, the id without `Prefer: IdType="ImmutableId"` is a new one."""
        box = self.mailbox(user_id)
        stored = box.messages[message_id]
        target = box.folder(folder)
        if target is None:
            raise KeyError(f"mailbox {user_id} has no folder {folder!r}")
        box.removed[(stored.folder, message_id)] = self._next(box)
        box.left_as[(stored.folder, message_id)] = stored.rest_id
        stored.rest_id = self._opaque("rest")
        stored.folder = target.id
        stored.change_key = self._opaque("ck")
        stored.sequence = self._next(box)
        self._notify(user_id, stored, "updated")
        return stored

    def delete(self, user_id: str, message_id: str) -> None:
        """Hard-deleted: gone from every folder; delta reports it `@removed`."""
        box = self.mailbox(user_id)
        stored = box.messages.pop(message_id)
        box.removed[(stored.folder, message_id)] = self._next(box)
        box.left_as[(stored.folder, message_id)] = stored.rest_id
        self._notify(user_id, stored, "deleted")

    def expire_delta_tokens(self, user_id: str) -> None:
        """Outlook evicted the sync state: every delta link handed out so far fails with
        `syncStateNotFound`."""
        self.mailbox(user_id).generation += 1

    def reset_sync(self, user_id: str) -> None:
        """A service-side reset: delta links answer 410 `resyncRequired`."""
        self.mailbox(user_id).reset += 1

    def fail(
        self, status: int, *, times: int | None = None, retry_after: int | None = None
    ) -> None:
        """The next `times` mailbox requests (every one while `times` is None, until `heal`)
        get `status`."""
        self.faults.append(Fault(status, times, retry_after))

    def heal(self) -> None:
        self.faults.clear()

    def message(self, user_id: str, message_id: str) -> StoredMessage | None:
        """By either id: the immutable one, or the one without the header it has now (an
        id from before a move finds nothing, as Outlook's does)."""
        box = self.mailbox(user_id)
        stored = box.messages.get(message_id)
        if stored is None:
            stored = next((m for m in box.messages.values() if m.rest_id == message_id), None)
        return stored

    # -- HTTP -----------------------------------------------------------------------------------

    @staticmethod
    def serves(path: str) -> bool:
        return _MAILBOX_PATH.fullmatch(path) is not None

    async def handle(
        self,
        request: httpx.Request,
        path: str,
        *,
        permissions: set[str],
        authority: Authority | None,
    ) -> httpx.Response:
        token = request.headers.get("Authorization")
        if not (token or "").startswith("Bearer "):
            return _error(401, "InvalidAuthenticationToken", "Access token is empty.")
        app = "app"
        if authority is not None:
            who = authority.caller(token)
            if who is None:
                return _error(401, "InvalidAuthenticationToken", "Access token validation failure.")
            app = str(who[1].get("appid") or who[0])
            if authority.check_graph(token, call=f"{request.method} {path}", any_of=GRAPH_MAIL):
                return _denied()
        elif not permissions & set(GRAPH_MAIL):
            return _denied()
        match = _MAILBOX_PATH.fullmatch(path)
        assert match is not None
        user = unquote(match.group(1))
        key = (app, user.lower())
        if self._in_flight[key] >= self.concurrency:
            self.throttled["concurrency"] += 1
            return _error(
                429,
                "ApplicationThrottled",
                "Application is over its MailboxConcurrency limit.",
                {"Retry-After": "1"},
            )
        if (limited := self._rate(key)) is not None:
            return limited
        self._in_flight[key] += 1
        self.peak[key] = max(self.peak[key], self._in_flight[key])
        try:
            await self.clock.sleep(self.latency)
            if (fault := self._fault()) is not None:
                return fault
            return self._route(request, user, match.group(2), match.group(3) or "")
        finally:
            self._in_flight[key] -= 1

    def _rate(self, key: tuple[str, str]) -> httpx.Response | None:
        now = self.clock.monotonic()
        sent = self._sent.setdefault(key, deque())
        while sent and sent[0] <= now - self.window:
            sent.popleft()
        if len(sent) >= self.requests_per_window:
            self.throttled["rate"] += 1
            wait = max(1, math.ceil(sent[0] + self.window - now))
            return _error(
                429,
                "ApplicationThrottled",
                "Application is over its request limit for this mailbox.",
                {"Retry-After": str(wait)},
            )
        sent.append(now)
        return None

    def _fault(self) -> httpx.Response | None:
        if not self.faults:
            return None
        fault = self.faults[0]
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                self.faults.pop(0)
        if fault.status == 429:
            self.throttled["injected"] += 1
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        code = (
            "ApplicationThrottled" if fault.status == 429 else "ErrorInternalServerTransientError"
        )
        return _error(fault.status, code, "The service is busy.", headers)

    def _route(self, request: httpx.Request, user: str, kind: str, rest: str) -> httpx.Response:
        box = self.mailboxes.get(user.lower())
        if box is None:
            return _error(404, "ErrorInvalidUser", f"The requested user '{user}' is invalid.")
        if request.method != "GET":
            return _error(405, "ErrorInvalidRequest", f"{request.method} is not served here")
        parts = [unquote(p) for p in rest.strip("/").split("/") if p]
        if kind.lower() == "mailfolders":
            if not parts:
                return httpx.Response(
                    200,
                    json={
                        "value": [
                            {"id": f.id, "displayName": f.display_name}
                            for f in box.folders.values()
                        ]
                    },
                )
            folder = box.folder(parts[0])
            if folder is None:
                return _error(404, "ErrorItemNotFound", "The specified folder could not be found.")
            if parts[1:2] != ["messages"]:
                return _error(400, "BadRequest", f"Unsupported request GET {request.url.path}")
            parts = parts[2:]
            if parts and parts[0] in ("delta", "delta()"):
                return self._delta(request, box, folder)
            return self._item(request, box, parts, folder)
        return self._item(request, box, parts, None)

    def _item(
        self, request: httpx.Request, box: Mailbox, parts: list[str], folder: Folder | None
    ) -> httpx.Response:
        if not parts or len(parts) > 2 or (len(parts) == 2 and parts[1] != "attachments"):
            return _error(400, "BadRequest", f"Unsupported request GET {request.url.path}")
        stored = self.message(box.user_id, parts[0])
        if stored is None or (folder is not None and stored.folder != folder.id):
            return _error(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        select = _select(request)
        if len(parts) == 2:
            unknown = [s for s in select or () if s not in ATTACHMENT_PROPERTIES]
            if unknown:
                return _unknown_property(unknown[0], "attachment")
            values = [_project(a, select, always=("id",)) for a in stored.attachments]
            return httpx.Response(200, json={"value": values})
        unknown = [s for s in select or () if s not in MESSAGE_PROPERTIES]
        if unknown:
            return _unknown_property(unknown[0], "message")
        self.reads[(box.user_id.lower(), stored.id)] += 1
        immutable = asks_immutable_ids(request)
        body = _project(stored.to_graph(immutable=immutable), select, always=("@odata.etag", "id"))
        body["@odata.context"] = f"{GRAPH}/v1.0/$metadata#users('{box.user_id}')/messages/$entity"
        return httpx.Response(200, json=body)

    def _delta(self, request: httpx.Request, box: Mailbox, folder: Folder) -> httpx.Response:
        params = request.url.params
        token = params.get("$deltatoken") or params.get("$skiptoken")
        if token:
            try:
                state = json.loads(base64.urlsafe_b64decode(token.encode()))
            except ValueError:
                return _error(400, "BadRequest", "The delta token is malformed.")
            if state.get("f") != folder.id:
                return _error(400, "BadRequest", "The delta token belongs to another folder.")
            if state.get("r") != box.reset:
                folder_url = f"{GRAPH}/v1.0/users/{box.user_id}/mailFolders/{folder.id}"
                location = f"{folder_url}/messages/delta?$deltatoken="
                return _error(
                    410,
                    "resyncRequired",
                    "The sync state was reset; resync the folder from the start.",
                    {"Location": location},
                )
            if state.get("g") != box.generation:
                return _error(410, "syncStateNotFound", "The sync state could not be found.")
            if "$select" in params:
                return _error(
                    400, "BadRequest", "Query options may not be added to a delta or next link."
                )
            select = state.get("sel")
            received = state.get("rcv")  # the first round's filter, kept for its next pages
            since, until = int(state["s"]), int(state.get("u", box.sequence))
            # Pages follow the change sequence, not positions: a message that changes while
            # a round is paged leaves it for the next round, and no other item is skipped.
            after = int(state["a"]) if "$skiptoken" in params else since
        else:
            select = _select(request)
            unknown = [s for s in select or () if s not in MESSAGE_PROPERTIES]
            if unknown:
                return _unknown_property(unknown[0], "message")
            since, until, after = 0, box.sequence, 0
            received = _received_filter(params.get("$filter"))
            if isinstance(received, httpx.Response):
                return received
        immutable = asks_immutable_ids(request)
        changes: list[tuple[int, dict[str, Any]]] = [
            (
                m.sequence,
                _project(m.to_graph(immutable=immutable), select, always=("@odata.etag", "id")),
            )
            for m in box.messages.values()
            if m.folder == folder.id
            and since < m.sequence <= until
            and (since or received is None or _received_after(m, received))
        ]
        if not since and received is not None:
            changes = sorted(changes, key=lambda change: change[0])[:INITIAL_FILTERED_MAX]
        if since:
            changes += [
                (
                    sequence,
                    {
                        "id": message_id if immutable else box.left_as[(where, message_id)],
                        "@removed": {"reason": "deleted"},
                    },
                )
                for (where, message_id), sequence in box.removed.items()
                if where == folder.id
                and since < sequence <= until
                and not (
                    (present := box.messages.get(message_id)) is not None
                    and present.folder == folder.id
                )
            ]
        changes.sort(key=lambda change: change[0])
        remaining = [change for change in changes if change[0] > after]
        # The page size asked for first holds for the round's next links (kept in the token).
        size = int(state["p"]) if token and "p" in state else self.delta_page_size
        prefer = request.headers.get("Prefer", "")
        if asked := re.search(r"odata\.maxpagesize=(\d+)", prefer):
            size = max(1, min(self.delta_page_size, int(asked.group(1))))
        page = [item for _, item in remaining[:size]]
        base = f"{GRAPH}/v1.0/users/{box.user_id}/mailFolders/{folder.id}/messages/delta"
        issued = {"f": folder.id, "g": box.generation, "r": box.reset, "sel": select}
        if not since and received is not None:
            issued["rcv"] = list(received)
        body: dict[str, Any] = {"value": page}
        if len(remaining) > size:
            last = remaining[size - 1][0]
            following = {**issued, "s": since, "u": until, "a": last, "p": size}
            body["@odata.nextLink"] = f"{base}?$skiptoken={quote(_token(following))}"
        else:
            body["@odata.deltaLink"] = f"{base}?$deltatoken={quote(_token({**issued, 's': until}))}"
        return httpx.Response(200, json=body)

    # -- helpers --------------------------------------------------------------------------------

    def _notify(self, user_id: str, stored: StoredMessage, change_type: str) -> None:
        if self.notify is not None:
            self.notify(user_id, stored.id, change_type, stored)

    def _next(self, box: Mailbox) -> int:
        box.sequence += 1
        return box.sequence

    def _opaque(self, kind: str) -> str:
        self._ids += 1
        raw = f"{kind}-{self._ids:08d}-graphtap-fake".encode()
        return "AAMkAD" + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _attachment(self, attachment: dict[str, Any]) -> dict[str, Any]:
        content = attachment.get("contentBytes", "")
        size = attachment.get("size") or (len(base64.b64decode(content)) if content else 0)
        return {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "id": self._opaque("att"),
            "name": attachment["name"],
            "contentType": attachment.get("contentType", "application/octet-stream"),
            "size": int(size),
            "isInline": bool(attachment.get("isInline", False)),
            "lastModifiedDateTime": _iso(self.clock.time()),
            "contentBytes": content,
        }


def _received_filter(text: str | None) -> tuple[str, str] | httpx.Response | None:
    """`receivedDateTime ge|gt <instant>`, the one filter a folder's first delta takes."""
    if text is None:
        return None
    match = re.fullmatch(r"receivedDateTime (ge|gt) (\S+)", text.strip())
    if match is None:
        return _error(400, "BadRequest", f"Unsupported filter on a delta query: {text[:100]}")
    return match.group(1), match.group(2)


def _received_after(message: StoredMessage, received: Sequence[str]) -> bool:
    operator, instant = received
    value = str(message.properties.get("receivedDateTime", ""))
    moment = dt.datetime.fromisoformat(instant.replace("Z", "+00:00"))
    at = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return at >= moment if operator == "ge" else at > moment


def asks_immutable_ids(request: httpx.Request) -> bool:
    """`Prefer: IdType="ImmutableId"` among the request's preferences (they apply to it only)."""
    prefer = ",".join(request.headers.get_list("Prefer"))
    return re.search(r'(?:^|[,;\s])IdType="?ImmutableId"?', prefer, re.IGNORECASE) is not None


def _select(request: httpx.Request) -> list[str] | None:
    text = request.url.params.get("$select")
    if text is None:
        return None
    return [name.strip() for name in text.split(",") if name.strip()]


def _project(
    entity: dict[str, Any], select: list[str] | None, *, always: tuple[str, ...]
) -> dict[str, Any]:
    if select is None:
        return dict(entity)
    wanted = {name.lower() for name in (*always, *select)}
    return {k: v for k, v in entity.items() if k.lower() in wanted}


def _token(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).decode()


def _denied() -> httpx.Response:
    return _error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")


def _unknown_property(name: str, entity: str) -> httpx.Response:
    return _error(
        400,
        "RequestBroker--ParseUri",
        f"Could not find a property named '{name}' on type 'microsoft.graph.{entity}'.",
    )


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"code": code, "message": message}}, headers=headers or {}
    )


def _iso(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
