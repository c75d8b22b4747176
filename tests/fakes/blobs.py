"""A fake Blob service at the azure-core transport, for the real azure-storage-blob clients.

It keeps containers and block blobs (created with Put Container and Put Blob; tests read
the state directly) and enforces the service's documented rules that the
runtime relies on: requests must carry a bearer token; a blob is created only in an existing
container (404 ContainerNotFound); `If-None-Match: *` (the SDK's `overwrite=False`) refuses
an existing blob with 409 BlobAlreadyExists and leaves it unchanged; `If-Match: <etag>` (the
SDK's `match_condition=IfNotModified`) refuses a blob whose ETag differs, or that does not
exist, with 412 ConditionNotMet, and so does a Delete Blob carrying it (otherwise 202, or
404 BlobNotFound); List Blobs honours `prefix`; creating a container
that exists is 409 ContainerAlreadyExists. Errors carry `x-ms-error-code` and the XML body
the service sends. Given an `Authority` and the account's ARM id, each call is authorized as
Azure RBAC does for Entra ID callers (403 `AuthorizationPermissionMismatch` otherwise).

Blob and Queue storage is otherwise Azurite (`tests.fakes.azurite`), the deployment
rehearsal's included. Nothing here is beyond Azurite: the tests of the verdict ledger's
claims, of the resync cursor and of `serve` on Azure still run on this fake, and are the
ones left to move.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from azure.core.rest import HttpRequest

from tests.fakes.authorization import Authority
from tests.fakes.azure_transport import FakeAsyncTransport

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

    def transport(self) -> FakeAsyncTransport:
        return FakeAsyncTransport(self.handle)

    def create_container(self, name: str) -> None:
        self.containers.setdefault(name, {})

    def blobs(self, container: str) -> dict[str, bytes]:
        return {name: blob.content for name, blob in self.containers[container].items()}

    def handle(self, request: HttpRequest) -> Response:
        url = urlsplit(request.url)
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
        elif blob and method == "PUT" and not query.get("comp"):
            operation = (None, "containers/blobs/write")
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
        if method == "PUT":
            return self._put_blob(container, blob, request)
        if method == "DELETE":
            return self._delete_blob(container, blob, request.headers.get("If-Match"))
        if blob:
            return self._get_blob(container, blob, request.headers.get("x-ms-range"))
        return self._list(container, (query.get("prefix") or [""])[0])

    def _refuse(self, authority: Authority, request: HttpRequest, **check: Any) -> Response | None:
        """Storage's 403 when the roles fall short."""
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
