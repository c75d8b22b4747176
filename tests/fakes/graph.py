"""A stateful fake of Microsoft Graph's subscription and export APIs, as an httpx transport.

The real msgraph-sdk client talks to it. It keeps subscriptions, enforces the documented
rules (maximum lifetimes, the Teams lifecycle URL, 409 on duplicates, 404 once expired,
permission / protected-API / publishing / quota / licence errors, 500 writes and 25 lists
per 20 s with Retry-After), injects faults on demand, raises lifecycle events, and writes
encrypted change notifications into the local hub for its subscriptions. The export APIs
page with `@odata.nextLink` and are throttled at 200 requests in any second and 83 % of that
over 20 s; `unit_reads` counts how often each user's or team's export was started.
A Teams message's policyViolation is read and set (GET and PATCH on the message) under
Chat/ChannelMessage.UpdatePolicyViolation.All and the DLP licence, and the PATCH is followed,
as in Graph, by an `updated` notification carrying the violation. Outlook mail is served by
`FakeMailboxes` (tests/fakes/mailboxes.py); its changes are notified to mailbox subscriptions.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
import random
import re
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from graphtap.localhub import LocalHub
from graphtap.notifications.crypto import encrypt_content
from graphtap.notifications.keyring import thumbprint
from graphtap.notifications.outlook import mail_change_item, mail_resource
from graphtap.simulation.emitter import change_item
from graphtap.simulation.tenant import Message
from graphtap.subscriptions.clock import Clock
from tests.fakes.authorization import (
    GRAPH_CHANNEL_DLP,
    GRAPH_CHANNELS,
    GRAPH_CHAT_DLP,
    GRAPH_CHATS,
    GRAPH_TEAMS,
    GRAPH_USERS,
    Authority,
)
from tests.fakes.mailboxes import FakeMailboxes, StoredMessage, asks_immutable_ids

WINDOW = 20.0
GRAPH = "https://graph.microsoft.com"
TEAMS_PATTERNS = (
    r"/teams/getAllMessages",
    r"/chats/getAllMessages",
    r"/teams/[^/]+/channels/[^/]+/messages",
    r"/chats/[^/]+/messages",
    r"/users/[^/]+/chats/getAllMessages",
)
#: (pattern, max minutes basic, max minutes rich, permissions that satisfy it)
LIMITS = (
    (
        r"/teams/getAllMessages|/teams/[^/]+/channels/[^/]+/messages",
        4320,
        4320,
        {"ChannelMessage.Read.All"},
    ),
    (
        r"/chats/getAllMessages|/chats/[^/]+/messages|/users/[^/]+/chats/getAllMessages",
        4320,
        4320,
        {"Chat.Read.All"},
    ),
    (r"/users/[^/]+/(mailFolders/[^/]+/)?messages", 10080, 1440, {"Mail.Read"}),
)


@dataclass
class StoredSubscription:
    id: str
    resource: str
    change_type: str
    notification_url: str
    lifecycle_notification_url: str | None
    expiration: float
    client_state: str | None
    include_resource_data: bool
    certificate: x509.Certificate | None
    certificate_id: str | None
    previous: tuple[x509.Certificate, str, float] | None = None
    last_patch: float | None = None
    last_reauthorize: float | None = None
    #: Where Graph writes payloads over 1 MB (a Key Vault secret's URL); not returned by GET.
    blob_store_url: str | None = None
    #: Created with `Prefer: IdType="ImmutableId"`: its mail notifications name immutable ids
    #: (Outlook's own ids otherwise, which change when a message moves). Not returned by GET.
    immutable_ids: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "resource": self.resource,
            "changeType": self.change_type,
            "notificationUrl": self.notification_url,
            "lifecycleNotificationUrl": self.lifecycle_notification_url,
            "expirationDateTime": _iso(self.expiration),
            "includeResourceData": self.include_resource_data,
            "encryptionCertificateId": self.certificate_id,
            "applicationId": FakeGraph.APP_ID,
            "creatorId": FakeGraph.APP_ID,
            "notificationContentType": "application/json",
            "latestSupportedTlsVersion": "v1_2",
            "clientState": None,
        }


#: `blobStoreUrl`: a Key Vault secret, versionless, and the tenant's domain (Event Hubs only).
_BLOB_STORE_URL = re.compile(
    r"https://[a-z0-9-]+\.vault\.[a-z0-9.]+/secrets/[A-Za-z0-9-]+\?tenantId=[a-z0-9.-]+"
)


def _blob_store_problem(body: dict[str, Any], rich: bool) -> str | None:
    """Why Graph would refuse a subscription's `blobStoreUrl`, if it would."""
    url = body.get("blobStoreUrl")
    if url is None:
        return None
    if not rich:
        return "blobStoreUrl is supported only for subscriptions with includeResourceData"
    if not str(body.get("notificationUrl", "")).startswith("EventHub:"):
        return "blobStoreUrl is supported only for Event Hubs notification URLs"
    if not isinstance(url, str) or not _BLOB_STORE_URL.fullmatch(url):
        return f"blobStoreUrl {url!r} is not a Key Vault secret URL with a tenantId"
    return None


@dataclass(frozen=True)
class Write:
    writer: str
    at: float  # the service's monotonic clock
    method: str
    path: str
    status: int


class _Writer(httpx.AsyncBaseTransport):
    def __init__(self, graph: FakeGraph, name: str) -> None:
        self.graph = graph
        self.name = name

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.graph.handle_async_request(request, self.name)


@dataclass
class FakeGraph(httpx.AsyncBaseTransport):
    clock: Clock
    hub: LocalHub | None = None
    tenant_id: str = "11111111-2222-3333-4444-555555555555"
    permissions: set[str] = field(
        default_factory=lambda: {"ChannelMessage.Read.All", "Chat.Read.All", "Mail.Read"}
    )
    protected_api_approved: bool = True
    publishing_ok: bool = True
    payment_required: bool = False
    teams_quota: int = 10_000
    accept_certificate_patch: bool = True
    #: The stricter reading of the docs: only expirationDateTime and notificationUrl are
    #: updatable, and a PATCH carrying a certificate is refused outright.
    reject_certificate_patch: bool = False
    #: Seconds Graph keeps encrypting to the old certificate after a re-key.
    certificate_lag: float = 0.0
    fault_rate: float = 0.0
    page_size: int = 100
    writes_per_window: int = 500
    lists_per_window: int = 25
    #: Export APIs: messages per page, requests in any second, and the sustained share of
    #: that rate allowed over a 20-second window.
    export_page_size: int = 50
    exports_per_second: int = 200
    export_sustained_share: float = 0.83
    seed: int = 0
    #: With an authority, calls are decided by the token's `roles` (the app roles the stack
    #: assigns) instead of `permissions`; refusals carry Graph's 403 bodies.
    authority: Authority | None = None
    #: Where notifications go instead of `hub`: (notificationUrl, event body), e.g. an
    #: Event Hubs fake that Graph's Change Tracking principal sends to.
    deliver: Callable[[str, bytes], bool] | None = None
    #: The tenant holds a licence with the Microsoft Communications DLP service plan, which
    #: setting a policyViolation requires (402 without it).
    dlp_licensed: bool = True
    #: The next this many message writes are throttled (429 with Retry-After).
    throttle_message_writes: int = 0

    APP_ID = "aaaaaaaa-0000-0000-0000-000000000001"

    subscriptions: dict[str, StoredSubscription] = field(default_factory=dict)
    expired: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    reauth_patch_conflicts: list[str] = field(default_factory=list)
    #: Subscriptions the app lost access to: Graph refuses to renew or reauthorize them.
    lost_access: set[str] = field(default_factory=set)
    requests: list[tuple[str, str, int]] = field(default_factory=list)
    #: Every subscription write (create, PATCH, delete, reauthorize), whatever Graph answered.
    writes: list[Write] = field(default_factory=list)
    rejected_for_rate: int = 0
    faults_injected: int = 0
    users: list[str] = field(default_factory=list)
    teams: list[str] = field(default_factory=list)
    #: The next this many user or team listings are refused as Graph refuses an app whose
    #: role is missing or not yet in effect (403 Authorization_RequestDenied).
    refuse_directory: int = 0
    messages: list[tuple[dict[str, Any], tuple[str, ...]]] = field(default_factory=list)
    #: Export reads started from their first page, by "user:ID" / "team:ID".
    unit_reads: Counter[str] = field(default_factory=Counter)
    #: Every export page served, by (unit, offset).
    page_reads: Counter[tuple[str, int]] = field(default_factory=Counter)
    _writes: deque[float] = field(default_factory=deque)
    _lists: deque[float] = field(default_factory=deque)
    _exports_second: deque[float] = field(default_factory=deque)
    _exports_window: deque[float] = field(default_factory=deque)
    _link_generation: int = 0
    _index: dict[str, list[tuple[float, dict[str, Any]]]] = field(default_factory=dict)
    _index_of: list[tuple[dict[str, Any], tuple[str, ...]]] | None = None
    _index_size: int = 0
    #: The tenant's messages by id, as last published (for the notifications a PATCH sends).
    published: dict[str, Message] = field(default_factory=dict)
    #: Every policyViolation PATCH that took effect: (message id, dlpAction).
    violations_set: list[tuple[str, str]] = field(default_factory=list)

    #: Outlook mail (`/users/{id}/messages`, `/users/{id}/mailFolders`), served by its own fake.
    mailboxes: FakeMailboxes = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self.mailboxes = FakeMailboxes(self.clock, notify=self._mail_changed)

    # -- what tests do to the service -----------------------------------------------------

    def remove(self, subscription_id: str) -> None:
        """The service drops a subscription and says so (subscriptionRemoved)."""
        stored = self.subscriptions.pop(subscription_id)
        self.removed.append(subscription_id)
        self._lifecycle(stored, "subscriptionRemoved")

    def reauthorization_required(self, subscription_id: str) -> None:
        self._lifecycle(self.subscriptions[subscription_id], "reauthorizationRequired")

    def missed(self, subscription_id: str) -> None:
        self._lifecycle(self.subscriptions[subscription_id], "missed")

    def publish(
        self,
        message: Message,
        change_type: str = "created",
        *,
        damage: Callable[[dict[str, Any]], None] | None = None,
    ) -> int:
        """A message changes in the tenant: stored for export, notified to live subscriptions.

        `damage` alters each notification on its way, as a corrupted or forged event would
        arrive in the hub (the change itself stays stored for export)."""
        graph = message.to_graph()
        previous = self._message(message.id)
        if previous is not None and change_type == "updated":  # an edit keeps its violation
            graph["policyViolation"] = previous.get("policyViolation")
        self.published[message.id] = message
        members = tuple(u.id for u in message.conversation.members)
        self.messages = [(m, ids) for m, ids in self.messages if m["id"] != message.id]
        self.messages.append((graph, members))
        self._purge()
        resource = (
            "/teams/getAllMessages" if message.conversation.is_channel else "/chats/getAllMessages"
        )
        sent = 0
        for stored in self.subscriptions.values():
            if stored.resource.lower() != resource.lower() or change_type not in stored.change_type:
                continue
            item = self._change(stored, message, graph, change_type)
            if damage is not None:
                damage(item)
            self._send([item], stored.notification_url)
            sent += 1
        return sent

    def active(self) -> list[StoredSubscription]:
        self._purge()
        return list(self.subscriptions.values())

    def expire_page_links(self) -> None:
        """Every `@odata.nextLink` handed out so far stops working (an expired skiptoken)."""
        self._link_generation += 1

    # -- HTTP ---------------------------------------------------------------------------------

    async def handle_async_request(
        self, request: httpx.Request, writer: str = ""
    ) -> httpx.Response:
        await request.aread()
        path = request.url.path.removeprefix("/v1.0")
        method = request.method
        if FakeMailboxes.serves(path):
            response = await self.mailboxes.handle(
                request, path, permissions=self.permissions, authority=self.authority
            )
        else:
            response = self._handle(method, path, request)
        self.requests.append((method, path, response.status_code))
        if method in ("POST", "PATCH", "DELETE") and path.startswith("/subscriptions"):
            self.writes.append(
                Write(writer, self.clock.monotonic(), method, path, response.status_code)
            )
        return response

    def as_writer(self, name: str) -> httpx.AsyncBaseTransport:
        """This service as one named host reaches it: its subscription writes are recorded
        with its name in `writes` (which host wrote what, and when)."""
        return _Writer(self, name)

    def _handle(self, method: str, path: str, request: httpx.Request) -> httpx.Response:
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return _error(401, "InvalidAuthenticationToken", "Access token is empty.")
        self._purge()
        now = self.clock.time()
        if self.fault_rate and self._rng.random() < self.fault_rate:
            self.faults_injected += 1
            status = self._rng.choice((429, 503, 500, 504))
            headers = {"Retry-After": str(self._rng.randint(1, 10))} if status in (429, 503) else {}
            return _error(status, "ServiceUnavailable", "injected fault", headers)
        if self.authority is not None and (denied := self._authorize(method, path, request)):
            return denied
        is_write = method in ("POST", "PATCH", "DELETE") and not path.endswith("/reauthorize")
        if is_write and (limited := self._limit(self._writes, self.writes_per_window, now)):
            return limited
        if (
            path == "/subscriptions"
            and method == "GET"
            and (limited := self._limit(self._lists, self.lists_per_window, now))
        ):
            return limited
        if path == "/subscriptions":
            if method == "GET":
                return self._list(request)
            if method == "POST":
                return self._create(
                    json.loads(request.content),
                    request.headers.get("Authorization"),
                    immutable_ids=asks_immutable_ids(request),
                )
        match = re.fullmatch(r"/subscriptions/([^/]+)(/reauthorize)?", path)
        if match:
            stored = self.subscriptions.get(match.group(1))
            if stored is None:
                return _error(
                    404, "ResourceNotFound", f"The object was not found: {match.group(1)}"
                )
            if stored.id in self.lost_access and (match.group(2) or method == "PATCH"):
                operation = "Reauthorize" if match.group(2) else "Update"
                return _error(
                    403,
                    "ExtensionError",
                    f"Operation: {operation}; Exception: [Status Code: Forbidden; Reason: "
                    "The caller no longer has access to the resource]",
                )
            if match.group(2):
                if stored.last_patch is not None and now - stored.last_patch < 600:
                    self.reauth_patch_conflicts.append(stored.id)
                stored.last_reauthorize = now
                return httpx.Response(204)
            if method == "GET":
                return httpx.Response(200, json=stored.to_json())
            if method == "DELETE":
                del self.subscriptions[stored.id]
                return httpx.Response(204)
            if method == "PATCH":
                return self._patch(stored, json.loads(request.content))
        if method == "GET" and path in ("/users", "/teams"):
            return self._directory(path, request)
        if single := _single_message(path):
            return self._message_call(method, single, request)
        export = re.fullmatch(
            r"/(users|teams)/([^/]+)/(chats|channels)/getAllMessages(\(\))?", path
        )
        if method == "GET" and export:
            second = self._limit(self._exports_second, self.exports_per_second, now, span=1.0)
            sustained = self.exports_per_second * self.export_sustained_share * WINDOW
            window = second or self._limit(self._exports_window, int(sustained), now)
            if window is not None:
                return window
            return self._export(export.group(1), export.group(2), request)
        return _error(400, "BadRequest", f"Unsupported request {method} {path}")

    def _authorize(self, method: str, path: str, request: httpx.Request) -> httpx.Response | None:
        """Directory and export reads need their application permission; subscriptions are
        decided per resource when created."""
        assert self.authority is not None
        token = request.headers.get("Authorization")
        if self.authority.caller(token) is None:
            return _error(401, "InvalidAuthenticationToken", "Access token validation failure.")
        needed: tuple[str, ...] = ()
        if method == "GET" and path == "/users":
            needed, code = GRAPH_USERS, "Authorization_RequestDenied"
        elif method == "GET" and path == "/teams":
            needed, code = GRAPH_TEAMS, "Forbidden"
        elif single := _single_message(path):
            chat = single[0] == "chats"
            if method == "PATCH":
                needed = GRAPH_CHAT_DLP if chat else GRAPH_CHANNEL_DLP
            else:
                needed = GRAPH_CHATS if chat else GRAPH_CHANNELS
            code = "Forbidden"
        elif export := re.fullmatch(
            r"/(users|teams)/[^/]+/(chats|channels)/getAllMessages.*", path
        ):
            needed = GRAPH_CHATS if export.group(1) == "users" else GRAPH_CHANNELS
            code = "Forbidden"
        if not needed or not self.authority.check_graph(
            token, call=f"{method} {path}", any_of=needed
        ):
            return None
        message = (
            "Insufficient privileges to complete the operation."
            if code == "Authorization_RequestDenied"
            else f"Missing role permissions on the request. API requires one of "
            f"'{', '.join(needed)}'."
        )
        return _error(403, code, message)

    def _limit(
        self, window: deque[float], limit: int, now: float, *, span: float = WINDOW
    ) -> httpx.Response | None:
        while window and window[0] <= now - span:
            window.popleft()
        if len(window) >= limit:
            self.rejected_for_rate += 1
            wait = max(1, math.ceil(window[0] + span - now))
            return _error(429, "TooManyRequests", "Too many requests", {"Retry-After": str(wait)})
        window.append(now)
        return None

    def _list(self, request: httpx.Request) -> httpx.Response:
        start = int(request.url.params.get("$skiptoken", "0"))
        items = sorted(self.subscriptions.values(), key=lambda s: s.id)
        page = items[start : start + self.page_size]
        body: dict[str, Any] = {"value": [s.to_json() for s in page]}
        if start + self.page_size < len(items):
            skip = start + self.page_size
            body["@odata.nextLink"] = f"{GRAPH}/v1.0/subscriptions?$skiptoken={skip}"
        return httpx.Response(200, json=body)

    def _create(
        self, body: dict[str, Any], request_token: str | None = None, *, immutable_ids: bool = False
    ) -> httpx.Response:
        now = self.clock.time()
        for name in ("resource", "changeType", "notificationUrl", "expirationDateTime"):
            if not body.get(name):
                return _error(400, "InvalidRequest", f"{name} is a required property")
        resource, change_type = body["resource"], body["changeType"]
        rich = bool(body.get("includeResourceData"))
        limits = _limits(resource)
        if limits is None:
            return _error(400, "InvalidRequest", f"Unsupported resource {resource}")
        _, basic, rich_max, needed = limits
        expiration = max(_parse(body["expirationDateTime"]), now + 45 * 60)
        maximum = rich_max if rich else basic
        if expiration > now + maximum * 60 + 60:
            return _error(
                400,
                "InvalidRequest",
                f"Subscription expiration can only be {maximum} minutes in the future.",
            )
        teams = any(re.fullmatch(p, resource.split("?")[0]) for p in TEAMS_PATTERNS)
        if teams and expiration > now + 3600 and not body.get("lifecycleNotificationUrl"):
            return _error(
                400,
                "ValidationError",
                "lifecycleNotificationUrl is a required property for subscription creation on "
                "this resource when the expirationDateTime value is set to greater than 1 hour",
            )
        certificate = None
        if rich:
            if not body.get("encryptionCertificate") or not body.get("encryptionCertificateId"):
                return _error(
                    400,
                    "InvalidRequest",
                    "encryptionCertificate is required for includeResourceData",
                )
            try:
                certificate = x509.load_der_x509_certificate(
                    base64.b64decode(body["encryptionCertificate"], validate=True)
                )
            except (ValueError, binascii.Error):
                return _error(
                    400,
                    "InvalidRequest",
                    "Certificate validation error: Cannot find the requested object.",
                )
        if problem := _blob_store_problem(body, rich):
            return _error(400, "InvalidRequest", problem)
        roles = self.permissions
        if self.authority is not None:
            roles = set(self.authority.roles_of(request_token))
            if not roles & needed:
                self.authority.check_graph(request_token, call="POST /subscriptions", any_of=needed)
        if not roles & needed:
            return _error(
                403,
                "ExtensionError",
                "Operation: Create; Exception: [Status Code: Forbidden; Reason: Missing role "
                f"permissions on the request. API requires one of '{', '.join(sorted(needed))}'. "
                f"Roles on the request '{', '.join(sorted(roles))}'.]",
            )
        if teams and not self.protected_api_approved:
            return _error(
                403,
                "Forbidden",
                "Invoked API requires Protected API access in application-only context when "
                "not using Resource Specific Consent.",
            )
        if self.payment_required:
            return _error(
                402, "PaymentRequired", "The tenant needs a valid license to access this API."
            )
        if not self.publishing_ok:
            return _error(
                400,
                "InvalidRequest",
                "Client EventHubs publishing validation failed Object reference not set to an "
                "instance of an object.",
            )
        key = (resource.lower(), ",".join(sorted(change_type.split(","))))
        for stored in self.subscriptions.values():
            if (stored.resource.lower(), ",".join(sorted(stored.change_type.split(",")))) == key:
                return _error(
                    409,
                    "ExtensionError",
                    f"Subscription Id {stored.id} already exists for the requested combination",
                )
        if (
            teams
            and sum(1 for s in self.subscriptions.values() if _is_teams(s.resource))
            >= self.teams_quota
        ):
            return _error(
                403,
                "ExtensionError",
                "Subscription quota limit exceeded for Teams resources in the organization",
            )
        stored = StoredSubscription(
            id=str(uuid.UUID(int=self._rng.getrandbits(128), version=4)),
            resource=resource,
            change_type=change_type,
            notification_url=body["notificationUrl"],
            lifecycle_notification_url=body.get("lifecycleNotificationUrl"),
            expiration=expiration,
            client_state=body.get("clientState"),
            include_resource_data=rich,
            certificate=certificate,
            certificate_id=body.get("encryptionCertificateId"),
            blob_store_url=body.get("blobStoreUrl"),
            immutable_ids=immutable_ids,
        )
        if not self._send([_validation_item(self._rng)], stored.notification_url):
            # Graph sends a validation event before it accepts an Event Hubs subscription.
            return _error(
                400,
                "InvalidRequest",
                "Client EventHubs publishing validation failed Object reference not set to an "
                "instance of an object.",
            )
        self.subscriptions[stored.id] = stored
        return httpx.Response(201, json=stored.to_json())

    def _patch(self, stored: StoredSubscription, body: dict[str, Any]) -> httpx.Response:
        now = self.clock.time()
        if body.get("encryptionCertificate") and self.reject_certificate_patch:
            return _error(
                400,
                "InvalidRequest",
                "Only expirationDateTime and notificationUrl can be updated on a subscription.",
            )
        if stored.last_reauthorize is not None and now - stored.last_reauthorize < 600:
            self.reauth_patch_conflicts.append(stored.id)
        if "expirationDateTime" in body:
            limits = _limits(stored.resource)
            assert limits is not None
            maximum = limits[2] if stored.include_resource_data else limits[1]
            expiration = max(_parse(body["expirationDateTime"]), now + 45 * 60)
            if expiration > now + maximum * 60 + 60:
                return _error(
                    400,
                    "InvalidRequest",
                    f"Subscription expiration can only be {maximum} minutes in the future.",
                )
            stored.expiration = expiration
        if body.get("encryptionCertificate") and self.accept_certificate_patch:
            certificate = x509.load_der_x509_certificate(
                base64.b64decode(body["encryptionCertificate"])
            )
            if stored.certificate is not None and stored.certificate_id is not None:
                stored.previous = (stored.certificate, stored.certificate_id, now)
            stored.certificate = certificate
            stored.certificate_id = body.get("encryptionCertificateId")
        stored.last_patch = now
        return httpx.Response(200, json=stored.to_json())

    def _missing_role(self, needed: tuple[str, ...]) -> httpx.Response | None:
        """Graph's 403 for an app granted none of the roles; an authority, when set, decides."""
        if self.authority is not None or self.permissions & set(needed):
            return None
        return _error(
            403,
            "Forbidden",
            f"Missing role permissions on the request. API requires one of "
            f"'{', '.join(needed)}'. Roles on the request "
            f"'{', '.join(sorted(self.permissions))}'.",
        )

    def _directory(self, path: str, request: httpx.Request) -> httpx.Response:
        if self.refuse_directory > 0:
            self.refuse_directory -= 1
            return _error(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            )
        ids = self.users if path == "/users" else self.teams
        start = int(request.url.params.get("$skiptoken", "0"))
        body: dict[str, Any] = {"value": [{"id": i} for i in ids[start : start + self.page_size]]}
        if start + self.page_size < len(ids):
            body["@odata.nextLink"] = f"{GRAPH}/v1.0{path}?$skiptoken={start + self.page_size}"
        return httpx.Response(200, json=body)

    def _export(self, kind: str, owner: str, request: httpx.Request) -> httpx.Response:
        needed = GRAPH_CHATS if kind == "users" else GRAPH_CHANNELS
        if (missing := self._missing_role(needed)) is not None:
            return missing
        if owner not in (self.users if kind == "users" else self.teams):
            what = "User" if kind == "users" else "Team"
            return _error(404, "NotFound", f"{what} '{owner}' was not found.")
        text = request.url.params.get("$filter", "")
        window = re.fullmatch(
            r"lastModifiedDateTime gt (\S+) and lastModifiedDateTime lt (\S+)", text
        )
        if window is None:
            return _error(400, "BadRequest", "export needs a lastModifiedDateTime window")
        offset = 0
        if token := request.url.params.get("$skiptoken"):
            generation, _, position = token.partition("-")
            if int(generation) != self._link_generation:
                return _error(400, "BadRequest", "The $skiptoken is invalid or has expired.")
            offset = int(position)
        unit = f"{kind.removesuffix('s')}:{owner}"
        if offset == 0:
            self.unit_reads[unit] += 1
        self.page_reads[(unit, offset)] += 1
        start, end = _parse(window.group(1)), _parse(window.group(2))
        found = [graph for modified, graph in self._exported(unit) if start < modified < end]
        body: dict[str, Any] = {"value": found[offset : offset + self.export_page_size]}
        following = offset + self.export_page_size
        if following < len(found):
            body["@odata.nextLink"] = (
                f"{GRAPH}/v1.0{request.url.path.removeprefix('/v1.0')}?$filter={quote(text)}"
                f"&$skiptoken={self._link_generation}-{following}"
            )
        return httpx.Response(200, json=body)

    def _exported(self, unit: str) -> list[tuple[float, dict[str, Any]]]:
        """A user's chat messages or a team's channel messages, in the order stored (indexed
        once per state of `messages`: thousands of users each read their own)."""
        if self._index_of is not self.messages or self._index_size != len(self.messages):
            index: dict[str, list[tuple[float, dict[str, Any]]]] = {}
            for graph, members in self.messages:
                entry = (_parse(graph["lastModifiedDateTime"]), graph)
                channel = graph.get("channelIdentity")
                if graph.get("chatId"):
                    for member in members:
                        index.setdefault(f"user:{member}", []).append(entry)
                elif channel and channel.get("teamId"):
                    index.setdefault(f"team:{channel['teamId']}", []).append(entry)
            self._index, self._index_of, self._index_size = index, self.messages, len(self.messages)
        return self._index.get(unit, [])

    # -- Teams messages: policyViolation ------------------------------------------------------

    def override(self, message_id: str, justification: str) -> None:
        """The sender overrides the violation in Teams, giving a justification; Graph then
        notifies the change. Only a violation that allows it can be overridden."""
        graph = self._message(message_id)
        violation = (graph or {}).get("policyViolation") or {}
        if "allowoverride" not in str(violation.get("verdictDetails", "")).lower():
            raise ValueError(f"message {message_id} has no violation the sender may override")
        if not justification.strip():
            raise ValueError("an override needs a justification")
        violation |= {"userAction": "override", "justificationText": justification}
        self._changed(message_id)

    def violation_of(self, message_id: str) -> dict[str, Any] | None:
        graph = self._message(message_id)
        return graph.get("policyViolation") if graph is not None else None

    def _message(self, message_id: str) -> dict[str, Any] | None:
        return next((m for m, _ in self.messages if m["id"] == message_id), None)

    def _message_call(
        self, method: str, single: tuple[str, str, str], request: httpx.Request
    ) -> httpx.Response:
        kind, container, message_id = single
        graph = self._message(message_id)
        if graph is None or graph.get("deletedDateTime") or not _contains(graph, kind, container):
            return _error(404, "NotFound", f"Message {message_id} not found.")
        if method == "GET":
            return httpx.Response(200, json=graph)
        if method != "PATCH":
            return _error(405, "MethodNotAllowed", f"{method} is not supported on a message")
        needed = GRAPH_CHAT_DLP if kind == "chats" else GRAPH_CHANNEL_DLP
        if (missing := self._missing_role(needed)) is not None:
            return missing
        if self.throttle_message_writes > 0:
            self.throttle_message_writes -= 1
            self.rejected_for_rate += 1
            return _error(429, "TooManyRequests", "Too many requests", {"Retry-After": "2"})
        body = json.loads(request.content)
        violation = body.get("policyViolation")
        if set(body) != {"policyViolation"} or not isinstance(violation, dict):
            return _error(
                400,
                "BadRequest",
                "An application can only update the policyViolation property of a message.",
            )
        action = str(violation.get("dlpAction", "")).lower()
        if action not in {"none", "notifysender", "blockaccess", "blockaccessexternal"}:
            return _error(400, "BadRequest", f"Invalid dlpAction '{violation.get('dlpAction')}'.")
        if not self.dlp_licensed:
            return _error(
                402,
                "PaymentRequired",
                "The tenant needs a valid license to access this API. Setting policyViolation "
                "requires the Microsoft Communications DLP service plan.",
            )
        graph["policyViolation"] = {k: v for k, v in violation.items() if v is not None}
        self.violations_set.append((message_id, action))
        self._changed(message_id)
        return httpx.Response(204)

    def _changed(self, message_id: str) -> None:
        """A PATCH or a user's action changed the message: its version moves, and live
        subscriptions are sent an `updated` notification carrying the message as it is."""
        graph = self._message(message_id)
        message = self.published.get(message_id)
        assert graph is not None
        if message is None:
            return  # known only from an export: no subscription ever saw it
        moment = max(_parse(graph["lastModifiedDateTime"]) + 0.001, self.clock.time())
        graph["lastModifiedDateTime"] = _iso(moment)
        graph["etag"] = str(int(moment * 1000))
        resource = (
            "/teams/getAllMessages" if message.conversation.is_channel else "/chats/getAllMessages"
        )
        for stored in self.subscriptions.values():
            if stored.resource.lower() == resource.lower() and "updated" in stored.change_type:
                item = self._change(stored, message, graph, "updated")
                self._send([item], stored.notification_url)

    # -- notifications ------------------------------------------------------------------------

    def _mail_changed(
        self, user_id: str, message_id: str, change_type: str, message: StoredMessage
    ) -> None:
        """Outlook's basic notification to every live subscription on the user's messages
        (or the folder the message is in) for this change type."""
        self._purge()
        for stored in list(self.subscriptions.values()):
            match = re.fullmatch(
                r"/?users/([^/]+)/(?:mailFolders/([^/]+)/)?messages", stored.resource.split("?")[0]
            )
            if match is None or match.group(1).lower() != user_id.lower():
                continue
            if change_type not in stored.change_type.split(","):
                continue
            folder = match.group(2)
            if folder is not None:
                target = self.mailboxes.mailbox(user_id).folder(folder)
                if target is None or target.id != message.folder:
                    continue
            self.notify_mail(stored, user_id, message, change_type)

    def notify_mail(
        self, stored: StoredSubscription, user_id: str, message: StoredMessage, change_type: str
    ) -> bool:
        """Send the basic notification Outlook writes for a message (it names the message;
        the content stays in the mailbox) through `stored`'s channel."""
        message_id = message.id_for(stored.immutable_ids)
        item = mail_change_item(
            subscription_id=stored.id,
            expiration=_iso(stored.expiration),
            change_type=change_type,
            client_state=stored.client_state,
            tenant_id=self.tenant_id,
            resource=mail_resource(user_id, self.tenant_id, message_id),
            message_id=message_id,
            etag=message.etag,
        )
        return self._send([item], stored.notification_url)

    def _purge(self) -> None:
        now = self.clock.time()
        for stored in [s for s in self.subscriptions.values() if s.expiration <= now]:
            del self.subscriptions[stored.id]
            self.expired.append(stored.id)

    def _change(
        self, stored: StoredSubscription, message: Message, graph: dict[str, Any], change_type: str
    ) -> dict[str, Any]:
        item = change_item(
            message,
            change_type,
            subscription_id=stored.id,
            expiration=dt.datetime.fromtimestamp(stored.expiration, dt.UTC),
            client_state=stored.client_state,
            tenant_id=self.tenant_id,
        )
        if stored.include_resource_data and change_type != "deleted":
            certificate, certificate_id = stored.certificate, stored.certificate_id
            if (
                stored.previous is not None
                and self.clock.time() - stored.previous[2] < self.certificate_lag
            ):
                certificate, certificate_id = stored.previous[0], stored.previous[1]
            assert certificate is not None
            assert certificate_id is not None
            public_key = certificate.public_key()
            assert isinstance(public_key, rsa.RSAPublicKey)
            item["encryptedContent"] = encrypt_content(
                json.dumps(graph, separators=(",", ":")).encode(),
                public_key,
                certificate_id=certificate_id,
                certificate_thumbprint=thumbprint(certificate),
            )
        return item

    def _lifecycle(self, stored: StoredSubscription, event: str) -> None:
        if stored.lifecycle_notification_url is None:
            return
        self._send(
            [
                {
                    "subscriptionId": stored.id,
                    "subscriptionExpirationDateTime": _iso(stored.expiration),
                    "tenantId": self.tenant_id,
                    "clientState": stored.client_state,
                    "lifecycleEvent": event,
                }
            ],
            stored.lifecycle_notification_url,
        )

    def _send(self, items: list[dict[str, Any]], url: str) -> bool:
        """Deliver to the endpoint; False when it refused (Graph then drops the items)."""
        body = json.dumps({"value": items}, separators=(",", ":")).encode()
        if self.deliver is not None:
            return self.deliver(url, body)
        if self.hub is not None:
            self.hub.send([body])
        return True


def _single_message(path: str) -> tuple[str, str, str] | None:
    """("chats", chat id, message id) or ("teams", "team/channel", message id) for a path
    naming one message (or a channel reply), else None."""
    chat = re.fullmatch(r"/chats/([^/]+)/messages/([^/]+)", path)
    if chat:
        return "chats", chat.group(1), chat.group(2)
    channel = re.fullmatch(
        r"/teams/([^/]+)/channels/([^/]+)/messages/([^/]+)(?:/replies/([^/]+))?", path
    )
    if channel:
        message_id = channel.group(4) or channel.group(3)
        return "teams", f"{channel.group(1)}/{channel.group(2)}", message_id
    return None


def _contains(graph: dict[str, Any], kind: str, container: str) -> bool:
    if kind == "chats":
        return bool(graph.get("chatId") == container)
    channel = graph.get("channelIdentity") or {}
    return f"{channel.get('teamId')}/{channel.get('channelId')}" == container


def _limits(resource: str) -> tuple[str, int, int, set[str]] | None:
    path = resource.split("?")[0]
    return next((entry for entry in LIMITS if re.fullmatch(entry[0], path)), None)


def _is_teams(resource: str) -> bool:
    return any(re.fullmatch(p, resource.split("?")[0]) for p in TEAMS_PATTERNS)


def _validation_item(rng: random.Random) -> dict[str, Any]:
    return {
        "subscriptionId": "NA",
        "subscriptionExpirationDateTime": "NA",
        "changeType": "Validation: Testing client application reachability for subscription "
        f"Request-Id: {uuid.UUID(int=rng.getrandbits(128), version=4)}",
        "resource": "NA",
        "resourceData": {"@odata.type": "NA", "@odata.id": "NA", "id": "NA"},
        "clientState": "NA",
        "tenantId": "NA",
    }


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"code": code, "message": message}}, headers=headers or {}
    )


def _parse(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _iso(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
