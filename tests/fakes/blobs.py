"""A fake Blob service at the azure-core transport, for the real azure-storage-blob clients.

It keeps containers and block blobs (created with Put Container and Put Blob; tests read
the state directly) and enforces the service's documented rules that the
runtime relies on: requests must carry a bearer token; a blob is created only in an existing
container (404 ContainerNotFound); `If-None-Match: *` (the SDK's `overwrite=False`) refuses
an existing blob with 409 BlobAlreadyExists and leaves it unchanged; creating a container
that exists is 409 ContainerAlreadyExists. Errors carry `x-ms-error-code` and the XML body
the service sends.
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
        if not blob and request.method == "PUT" and query.get("restype") == ["container"]:
            return self._create_container(container)
        if blob and request.method == "PUT" and not query.get("comp"):
            return self._put_blob(container, blob, request)
        return _error(400, "UnsupportedHttpVerb", f"{request.method} {url.path}?{url.query}")

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
        content = _body(request)
        blob = StoredBlob(
            content,
            request.headers.get("x-ms-blob-content-type"),
            f'"0x{hashlib.sha256(content + uuid.uuid4().bytes).hexdigest()[:16].upper()}"',
            dt.datetime.now(dt.UTC),
        )
        blobs[name] = blob
        return 201, None, _stamp(blob.etag, blob.last_modified)


def _body(request: HttpRequest) -> bytes:
    content = request.content
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
