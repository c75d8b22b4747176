"""A fake Blob service at the azure-core transport, for the real azure-storage-blob clients.

It keeps containers and block blobs (created with Put Container and Put Blob; tests read
the state directly) and enforces the service's documented rules that the
runtime relies on: requests must carry a bearer token; a blob is created only in an existing
container (404 ContainerNotFound); `If-None-Match: *` (the SDK's `overwrite=False`) refuses
an existing blob with 409 BlobAlreadyExists and leaves it unchanged; `If-Match: <etag>` (the
SDK's `match_condition=IfNotModified`) refuses a blob whose ETag differs, or that does not
exist, with 412 ConditionNotMet, and so does a Delete Blob carrying it (otherwise 202, or
404 BlobNotFound); List Blobs honours `prefix`; creating a container
that exists is 409 ContainerAlreadyExists. Lease Blob (acquire, renew, release, on the wall
clock) answers 409 LeaseAlreadyPresent while another lease is live and 409
LeaseIdMismatchWithLeaseOperation for another lease id; a leased blob is written only with
its lease id (412 LeaseIdMissing). Errors carry `x-ms-error-code` and the XML body the
service sends. Given an `Authority` and the account's ARM id, each call is authorized as
Azure RBAC does for Entra ID callers (403 `AuthorizationPermissionMismatch` otherwise).

The same account's Queue service (`<account>.queue.<suffix>`) keeps the queues the stack
declares (its `azurerm_storage_queue`s, when given an `Authority`) for the deployment
rehearsal: Put Message, Get Messages (hidden for the visibility timeout, counted in
DequeueCount, settled by Delete Message with the pop receipt: 404 MessageNotFound
otherwise) and Peek Messages, authorized per queue. The tests of the runtime's queues and
leases use Azurite (`tests.fakes.azurite`); this serves the rehearsal until it moves there.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import re
import time
import uuid
from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

from azure.core.rest import HttpRequest

from tests.fakes.authorization import Authority
from tests.fakes.azure_transport import FakeAsyncTransport
from tests.fakes.azurite import queue_operation

Response = tuple[int, Any, dict[str, str]]


@dataclass
class StoredBlob:
    content: bytes
    content_type: str | None
    etag: str
    last_modified: dt.datetime


@dataclass
class FakeBlobService:
    account_url: str = "https://fakedeadletters.blob.core.windows.net"
    containers: dict[str, dict[str, StoredBlob]] = field(default_factory=dict)
    #: Every write the service refused, by error code: what a test can check was attempted.
    refused: list[str] = field(default_factory=list)
    authority: Authority | None = None
    resource_id: str = ""  # the storage account's ARM id
    #: (container, blob) -> (lease id, duration, expiry on the monotonic clock).
    leases: dict[tuple[str, str], tuple[str, int, float]] = field(default_factory=dict)
    queues: dict[str, list[QueuedMessage]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.authority is not None:  # the queues the stack creates
            for queue in self.authority.estate.resources("azurerm_storage_queue").values():
                self.queues.setdefault(queue["name"], [])

    @property
    def queue_url(self) -> str:
        return self.account_url.replace(".blob.", ".queue.", 1)

    def transport(self) -> FakeAsyncTransport:
        return FakeAsyncTransport(self.handle)

    def create_container(self, name: str) -> None:
        self.containers.setdefault(name, {})

    def blobs(self, container: str) -> dict[str, bytes]:
        return {name: blob.content for name, blob in self.containers[container].items()}

    def handle(self, request: HttpRequest) -> Response:
        url = urlsplit(request.url)
        if f"{url.scheme}://{url.netloc}" == self.queue_url:
            return self._queue(request)
        if f"{url.scheme}://{url.netloc}" != self.account_url:
            return _error(400, "InvalidUri", f"no account at {url.netloc}")
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return _error(401, "NoAuthenticationInformation", "a bearer token is required")
        container, _, blob = unquote(url.path).lstrip("/").partition("/")
        query = parse_qs(url.query)
        method = request.method
        operation: tuple[str | None, str | None]
        if not blob and method == "PUT" and query.get("restype") == ["container"]:
            operation = ("containers/write", None)
        elif blob and method == "PUT" and query.get("comp") in (None, ["lease"]):
            operation = (None, "containers/blobs/write")  # Put Blob, and Lease Blob
        elif blob and method == "DELETE" and not query.get("comp"):
            operation = (None, "containers/blobs/delete")
        elif (blob and method in ("GET", "HEAD") and not query.get("comp")) or (
            not blob and method == "GET" and query.get("comp") == ["list"]
        ):
            operation = (None, "containers/blobs/read")
        else:
            return _error(400, "UnsupportedHttpVerb", f"{method} {url.path}?{url.query}")
        if self.authority is not None:
            action, data_action = (
                f"Microsoft.Storage/storageAccounts/blobServices/{verb}" if verb else None
                for verb in operation
            )
            scope = f"{self.resource_id}/blobServices/default/containers/{container}"
            refused = self._refuse(
                self.authority,
                request,
                service="Blob Storage",
                call=f"{method} {container}/{blob}",
                resource=f"{scope}/blobs/{blob}" if blob else scope,
                action=action,
                data_action=data_action,
            )
            if refused is not None:
                return refused
        if operation[0]:
            return self._create_container(container)
        if method == "PUT" and query.get("comp") == ["lease"]:
            return self._lease(container, blob, request)
        if method == "PUT":
            return self._put_blob(container, blob, request)
        if method == "DELETE":
            return self._delete_blob(container, blob, request.headers.get("If-Match"))
        if blob:
            return self._get_blob(container, blob, request.headers.get("x-ms-range"))
        return self._list(container, (query.get("prefix") or [""])[0])

    def _refuse(self, authority: Authority, request: HttpRequest, **check: Any) -> Response | None:
        """Storage's 403, for blobs and queues alike, when the roles fall short."""
        if not authority.check(request.headers.get("Authorization"), **check):
            return None
        self.refused.append("AuthorizationPermissionMismatch")
        return _error(
            403,
            "AuthorizationPermissionMismatch",
            "This request is not authorized to perform this operation using this permission.",
        )

    def _create_container(self, name: str) -> Response:
        if name in self.containers:
            return _error(409, "ContainerAlreadyExists", "The specified container already exists.")
        self.containers[name] = {}
        return 201, None, _stamp(uuid.uuid4().hex, dt.datetime.now(dt.UTC))

    def _put_blob(self, container: str, name: str, request: HttpRequest) -> Response:
        if request.headers.get("x-ms-blob-type") != "BlockBlob":
            return _error(400, "MissingRequiredHeader", "x-ms-blob-type: BlockBlob is required")
        blobs = self.containers.get(container)
        if blobs is None:
            self.refused.append("ContainerNotFound")
            return _error(404, "ContainerNotFound", "The specified container does not exist.")
        if request.headers.get("If-None-Match") == "*" and name in blobs:
            self.refused.append("BlobAlreadyExists")
            return _error(409, "BlobAlreadyExists", "The specified blob already exists.")
        lease = self._live_lease(container, name)
        if lease is not None and request.headers.get("x-ms-lease-id") != lease:
            self.refused.append("LeaseIdMissing")
            return _error(412, "LeaseIdMissing", "There is currently a lease on the blob.")
        expected = request.headers.get("If-Match")
        if expected is not None and (name not in blobs or blobs[name].etag != expected):
            self.refused.append("ConditionNotMet")
            return _error(
                412,
                "ConditionNotMet",
                "The condition specified using HTTP conditional header(s) is not met.",
            )
        content = _body(request)
        blob = StoredBlob(
            content,
            request.headers.get("x-ms-blob-content-type"),
            f'"0x{hashlib.sha256(content + uuid.uuid4().bytes).hexdigest()[:16].upper()}"',
            dt.datetime.now(dt.UTC),
        )
        blobs[name] = blob
        return 201, None, _stamp(blob.etag, blob.last_modified)

    # -- the Queue service --------------------------------------------------------------

    def _queue(self, request: HttpRequest) -> Response:
        url = urlsplit(request.url)
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return _error(401, "NoAuthenticationInformation", "a bearer token is required")
        path = unquote(url.path).lstrip("/")
        query = parse_qs(url.query)
        name, _, rest = path.partition("/")
        if self.authority is not None:
            action, data_action, resource = queue_operation(
                self.resource_id, request.method, path, query
            )
            refused = self._refuse(
                self.authority,
                request,
                service="Queue Storage",
                call=f"{request.method} {path}",
                resource=resource,
                action=action,
                data_action=data_action,
            )
            if refused is not None:
                return refused
        queue = self.queues.get(name)
        if queue is None or not rest.startswith("messages"):
            return _error(404, "QueueNotFound", "The specified queue does not exist.")
        now = time.time()
        if request.method == "POST":
            found_text = _MESSAGE_TEXT.search(_body(request).decode())
            text = html.unescape(found_text.group(1)) if found_text else ""
            message = QueuedMessage(str(uuid.uuid4()), text, now)
            queue.append(message)
            return 201, _messages([message], receipt=True, text=False), _XML
        if request.method == "GET" and query.get("peekonly") == ["true"]:
            count = int((query.get("numofmessages") or ["1"])[0])
            visible = [m for m in queue if m.visible_at <= now][:count]
            return 200, _messages(visible, receipt=False, text=True), _XML
        if request.method == "GET":
            count = int((query.get("numofmessages") or ["1"])[0])
            hidden = int((query.get("visibilitytimeout") or ["30"])[0])
            taken = [m for m in queue if m.visible_at <= now][:count]
            for message in taken:
                message.dequeue_count += 1
                message.pop_receipt = uuid.uuid4().hex
                message.visible_at = now + hidden
            return 200, _messages(taken, receipt=True, text=True), _XML
        if request.method == "DELETE":
            message_id = rest.removeprefix("messages/")
            receipt = (query.get("popreceipt") or [""])[0]
            found = next((m for m in queue if m.id == message_id), None)
            if found is None or found.pop_receipt != receipt:
                return _error(404, "MessageNotFound", "The specified message does not exist.")
            queue.remove(found)
            return 204, None, {"x-ms-request-id": str(uuid.uuid4())}
        return _error(400, "UnsupportedHttpVerb", f"{request.method} {path}")

    def _live_lease(self, container: str, name: str) -> str | None:
        held = self.leases.get((container, name))
        return held[0] if held is not None and time.monotonic() < held[2] else None

    def _lease(self, container: str, name: str, request: HttpRequest) -> Response:
        stored = self.containers.get(container, {}).get(name)
        if stored is None:
            code = "BlobNotFound" if container in self.containers else "ContainerNotFound"
            return _error(404, code, "The specified blob does not exist.")
        action = request.headers.get("x-ms-lease-action")
        given = request.headers.get("x-ms-lease-id")
        live = self._live_lease(container, name)
        held = self.leases.get((container, name))
        now = time.monotonic()
        if action == "acquire":
            if live is not None:
                self.refused.append("LeaseAlreadyPresent")
                return _error(409, "LeaseAlreadyPresent", "There is already a lease present.")
            duration = int(request.headers.get("x-ms-lease-duration", "-1"))
            if not 15 <= duration <= 60:
                return _error(400, "InvalidHeaderValue", "x-ms-lease-duration: 15 to 60")
            lease_id = request.headers.get("x-ms-proposed-lease-id") or str(uuid.uuid4())
            self.leases[(container, name)] = (lease_id, duration, now + duration)
            return (
                201,
                None,
                {**_stamp(stored.etag, stored.last_modified), "x-ms-lease-id": lease_id},
            )
        if held is None or held[0] != given:
            self.refused.append("LeaseIdMismatchWithLeaseOperation")
            return _error(
                409,
                "LeaseIdMismatchWithLeaseOperation",
                "The lease ID specified did not match the lease ID for the blob.",
            )
        if action == "renew":  # an expired lease its holder still has is renewed too
            self.leases[(container, name)] = (held[0], held[1], now + held[1])
        elif action == "release":
            del self.leases[(container, name)]
        else:
            return _error(400, "InvalidHeaderValue", f"x-ms-lease-action: {action}")
        return 200, None, {**_stamp(stored.etag, stored.last_modified), "x-ms-lease-id": held[0]}

    def _delete_blob(self, container: str, name: str, expected: str | None) -> Response:
        blobs = self.containers.get(container)
        if blobs is None:
            return _error(404, "ContainerNotFound", "The specified container does not exist.")
        if name not in blobs:
            return _error(404, "BlobNotFound", "The specified blob does not exist.")
        if expected is not None and blobs[name].etag != expected:
            self.refused.append("ConditionNotMet")
            return _error(
                412,
                "ConditionNotMet",
                "The condition specified using HTTP conditional header(s) is not met.",
            )
        del blobs[name]
        return 202, None, {"x-ms-request-id": str(uuid.uuid4()), "x-ms-version": "2025-01-05"}

    def _get_blob(self, container: str, name: str, range_header: str | None) -> Response:
        stored = self.containers.get(container, {}).get(name)
        if stored is None:
            return _error(404, "BlobNotFound", "The specified blob does not exist.")
        size = len(stored.content)
        first, last = 0, size - 1
        if range_header:  # the SDK reads in ranges: "bytes=0-33554431"
            start, _, end = range_header.removeprefix("bytes=").partition("-")
            first, last = int(start), min(int(end or size - 1), size - 1)
        content = stored.content[first : last + 1]
        headers = {
            **_stamp(stored.etag, stored.last_modified),
            "Content-Type": stored.content_type or "application/octet-stream",
            "Content-Length": str(len(content)),
            "x-ms-blob-type": "BlockBlob",
        }
        if range_header:
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
            return 206, content, headers
        return 200, content, headers

    def _list(self, container: str, prefix: str = "") -> Response:
        blobs = self.containers.get(container)
        if blobs is None:
            return _error(404, "ContainerNotFound", "The specified container does not exist.")
        items = "".join(
            f"<Blob><Name>{name}</Name><Properties><Content-Length>{len(b.content)}"
            f"</Content-Length><BlobType>BlockBlob</BlobType></Properties></Blob>"
            for name, b in sorted(blobs.items())
            if name.startswith(prefix)
        )
        body = (
            '<?xml version="1.0" encoding="utf-8"?><EnumerationResults>'
            f"<Blobs>{items}</Blobs><NextMarker /></EnumerationResults>"
        ).encode()
        return 200, body, {"Content-Type": "application/xml"}


@dataclass
class QueuedMessage:
    id: str
    text: str
    inserted: float
    visible_at: float = 0.0
    dequeue_count: int = 0
    pop_receipt: str = ""


_MESSAGE_TEXT = re.compile(r"<MessageText>(.*?)</MessageText>", re.S)
_XML = {"Content-Type": "application/xml", "x-ms-version": "2025-01-05"}


def _messages(messages: list[QueuedMessage], *, receipt: bool, text: bool) -> bytes:
    """A QueueMessagesList as the service sends it."""

    def when(moment: float) -> str:
        return format_datetime(dt.datetime.fromtimestamp(moment, dt.UTC), usegmt=True)

    items = []
    for m in messages:
        parts = [
            f"<MessageId>{m.id}</MessageId>",
            f"<InsertionTime>{when(m.inserted)}</InsertionTime>",
            f"<ExpirationTime>{when(m.inserted + 7 * 86_400)}</ExpirationTime>",
        ]
        if receipt:
            parts.append(f"<PopReceipt>{m.pop_receipt or uuid.uuid4().hex}</PopReceipt>")
            parts.append(
                f"<TimeNextVisible>{when(max(m.visible_at, m.inserted))}</TimeNextVisible>"
            )
        if text:
            parts.append(f"<DequeueCount>{m.dequeue_count}</DequeueCount>")
            parts.append(f"<MessageText>{escape(m.text)}</MessageText>")
        items.append("<QueueMessage>" + "".join(parts) + "</QueueMessage>")
    return (
        '<?xml version="1.0" encoding="utf-8"?><QueueMessagesList>'
        + "".join(items)
        + "</QueueMessagesList>"
    ).encode()


def _body(request: HttpRequest) -> bytes:
    content = request.content
    if content is None:  # an empty blob
        return b""
    if isinstance(content, bytes | bytearray):
        return bytes(content)
    if isinstance(content, str):
        return content.encode()
    raise AssertionError(f"the fake cannot read a request body of {type(content).__name__}")


def _stamp(etag: str, modified: dt.datetime) -> dict[str, str]:
    return {
        "ETag": etag,
        "Last-Modified": format_datetime(modified, usegmt=True),
        "x-ms-request-id": str(uuid.uuid4()),
        "x-ms-version": "2025-01-05",
    }


def _error(status: int, code: str, message: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    ).encode()
    return status, body, {"Content-Type": "application/xml", "x-ms-error-code": code}
