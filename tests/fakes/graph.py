"""A stateful fake of Microsoft Graph's subscription and export APIs, as an httpx transport.

The real msgraph-sdk client talks to it. It keeps subscriptions, enforces the documented
rules (maximum lifetimes, the Teams lifecycle URL, 409 on duplicates, 404 once expired,
permission / protected-API / publishing / quota / licence errors, 500 writes and 25 lists
per 20 s with Retry-After), injects faults on demand, raises lifecycle events, and writes
encrypted change notifications into the local hub for its subscriptions.
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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from graphtap.localhub import LocalHub
from graphtap.notifications.crypto import encrypt_content
from graphtap.notifications.keyring import thumbprint
from graphtap.simulation.emitter import change_item
from graphtap.simulation.tenant import Message
from graphtap.subscriptions.clock import Clock
from tests.fakes.authorization import (
    GRAPH_CHANNELS,
    GRAPH_CHATS,
    GRAPH_TEAMS,
    GRAPH_USERS,
    Authority,
)

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
    seed: int = 0
    #: With an authority, calls are decided by the token's `roles` (the app roles the stack
    #: assigns) instead of `permissions`; refusals carry Graph's 403 bodies.
    authority: Authority | None = None
    #: Where notifications go instead of `hub`: (notificationUrl, event body), e.g. an
    #: Event Hubs fake that Graph's Change Tracking principal sends to.
    deliver: Callable[[str, bytes], bool] | None = None

    APP_ID = "aaaaaaaa-0000-0000-0000-000000000001"

    subscriptions: dict[str, StoredSubscription] = field(default_factory=dict)
    expired: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    reauth_patch_conflicts: list[str] = field(default_factory=list)
    requests: list[tuple[str, str, int]] = field(default_factory=list)
    rejected_for_rate: int = 0
    faults_injected: int = 0
    users: list[str] = field(default_factory=list)
    teams: list[str] = field(default_factory=list)
    messages: list[tuple[dict[str, Any], tuple[str, ...]]] = field(default_factory=list)
    _writes: deque[float] = field(default_factory=deque)
    _lists: deque[float] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

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

    # -- HTTP ---------------------------------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        path = request.url.path.removeprefix("/v1.0")
        method = request.method
        response = self._handle(method, path, request)
        self.requests.append((method, path, response.status_code))
        return response

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
                    json.loads(request.content), request.headers.get("Authorization")
                )
        match = re.fullmatch(r"/subscriptions/([^/]+)(/reauthorize)?", path)
        if match:
            stored = self.subscriptions.get(match.group(1))
            if stored is None:
                return _error(
                    404, "ResourceNotFound", f"The object was not found: {match.group(1)}"
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
        if method == "GET" and path == "/users":
            return httpx.Response(200, json={"value": [{"id": u} for u in self.users]})
        if method == "GET" and path == "/teams":
            return httpx.Response(200, json={"value": [{"id": t} for t in self.teams]})
        export = re.fullmatch(
            r"/(users|teams)/([^/]+)/(chats|channels)/getAllMessages(\(\))?", path
        )
        if method == "GET" and export:
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

    def _limit(self, window: deque[float], limit: int, now: float) -> httpx.Response | None:
        while window and window[0] <= now - WINDOW:
            window.popleft()
        if len(window) >= limit:
            self.rejected_for_rate += 1
            wait = max(1, math.ceil(window[0] + WINDOW - now))
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

    def _create(self, body: dict[str, Any], request_token: str | None = None) -> httpx.Response:
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

    def _export(self, kind: str, owner: str, request: httpx.Request) -> httpx.Response:
        window = re.fullmatch(
            r"lastModifiedDateTime gt (\S+) and lastModifiedDateTime lt (\S+)",
            request.url.params.get("$filter", ""),
        )
        if window is None:
            return _error(400, "BadRequest", "export needs a lastModifiedDateTime window")
        start, end = _parse(window.group(1)), _parse(window.group(2))
        found = []
        for graph, members in self.messages:
            modified = _parse(graph["lastModifiedDateTime"])
            if not start < modified < end:
                continue
            channel = graph.get("channelIdentity")
            if (kind == "users" and graph.get("chatId") and owner in members) or (
                kind == "teams" and channel and channel.get("teamId") == owner
            ):
                found.append(graph)
        return httpx.Response(200, json={"value": found})

    # -- notifications ------------------------------------------------------------------------

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
