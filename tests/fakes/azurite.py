"""Real Blob and Queue storage for the tests: Azurite, behind the stack's authorization.

`Azurite` runs the emulator (the npm package the Makefile installs into `.node/`) on
127.0.0.1 with free ports, in memory, for one test session. `AzuriteStorage` is one storage
account as the runtime sees it: the real azure-storage clients call
`https://<account>.blob.core.windows.net` (or `.queue.`) with a bearer token, and the
transport they are given (`transport()`) decides each call the way Azure RBAC does for
Entra ID callers (`Authority`: 403 AuthorizationPermissionMismatch for a call the stack does
not grant), then forwards it to Azurite path-style, re-signed with Azurite's well-known
development key, and hands back Azurite's own response.

Where Azurite differs from Azure (each test that leans on one says so too):
- It knows no Entra ID over plain HTTP, so tokens are checked here, not by the emulator.
- It has one account; `AzuriteStorage.reset()` empties it between tests instead.
- Deleting a container frees its name at once (Azure keeps it for about 30 s).
- Leases are timed by the emulator's wall clock: a lease test waits for real.
- It performs Set Blob Metadata (or Properties) with `If-None-Match: *` on a blob that
  exists; Azure refuses that (412 ConditionNotMet), and the Event Hubs checkpoint store
  claims an unowned partition that way, so the transport refuses it as Azure does.
"""

from __future__ import annotations

import contextlib
import hmac
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit
from xml.etree import ElementTree

import httpx
from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.pipeline.transport import AioHttpTransport, AsyncHttpTransport
from azure.core.rest import HttpRequest
from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy

from tests.fakes.authorization import Authority
from tests.fakes.azure_transport import FakeResponse

ROOT = Path(__file__).resolve().parents[2]
AZURITE_BIN = ROOT / ".node" / "node_modules" / ".bin" / "azurite"
#: Azurite's documented development account: public, the same in every installation.
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_LISTENING = re.compile(r"Azurite (Blob|Queue) service is successfully listening at (\S+)")

_BLOB = "Microsoft.Storage/storageAccounts/blobServices"
_QUEUE = "Microsoft.Storage/storageAccounts/queueServices"


class Azurite:
    """One emulator process: Blob and Queue on loopback, ports chosen by the OS."""

    def __init__(self, workspace: Path) -> None:
        if not AZURITE_BIN.exists():
            raise RuntimeError(
                f"{AZURITE_BIN} is missing: `make test` installs it (npm ci in .node/)"
            )
        self.workspace = workspace
        self.endpoints: dict[str, str] = {}
        self._process: subprocess.Popen[str] | None = None
        self._output: list[str] = []

    def start(self, timeout: float = 60.0) -> Azurite:
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not on PATH: Azurite needs node 20+")
        self._process = subprocess.Popen(
            [
                str(AZURITE_BIN),
                *("--blobHost", "127.0.0.1", "--blobPort", "0"),
                *("--queueHost", "127.0.0.1", "--queuePort", "0"),
                *("--tableHost", "127.0.0.1", "--tablePort", "0"),
                "--inMemoryPersistence",
                "--skipApiVersionCheck",
                "--disableTelemetry",  # it would otherwise call out to Application Insights
                "--loose",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=self.workspace,
        )
        ready = threading.Event()
        threading.Thread(target=self._read, args=(ready,), daemon=True).start()
        if not ready.wait(timeout):
            self.stop()
            raise RuntimeError(f"Azurite did not start in {timeout:.0f} s: {self.output()}")
        if not {"blob", "queue"} <= set(self.endpoints):
            self.stop()
            raise RuntimeError(f"Azurite did not start: {self.output()}")
        return self

    def _read(self, ready: threading.Event) -> None:
        assert self._process is not None
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._output = [*self._output, line.rstrip()][-50:]
            if match := _LISTENING.search(line):
                self.endpoints[match.group(1).lower()] = match.group(2)
                if {"blob", "queue"} <= set(self.endpoints):
                    ready.set()
        ready.set()  # the process ended: `start` reports why

    def output(self) -> str:
        return " | ".join(self._output)

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(10)

    def url(self, service: str) -> str:
        """The path-style URL of the development account on one service."""
        return f"{self.endpoints[service]}/{DEV_ACCOUNT}"


#: A test's fault injection: a canned (status, error code) for a request, or None to forward.
Fault = Callable[[Any], tuple[int, str] | None]


@dataclass
class AzuriteStorage:
    """One storage account of the stack, served by Azurite, with Azure's authorization."""

    azurite: Azurite
    account: str = "graphtaptest"
    authority: Authority | None = None
    resource_id: str = ""  # the storage account's ARM id, for the Authority's scopes
    #: Every call refused, by error code (Azurite's or the authorization's).
    refused: list[str] = field(default_factory=list)
    #: The same, with the container (or queue) each refused call was for.
    refused_at: list[tuple[str, str]] = field(default_factory=list)
    fault: Fault | None = None
    #: The account key, for an account that allows shared keys (the payload account Graph
    #: writes to); None: a request signed with a key is refused, as such an account does.
    shared_key: str | None = None

    @property
    def account_url(self) -> str:
        return f"https://{self.account}.blob.core.windows.net"

    @property
    def queue_url(self) -> str:
        return f"https://{self.account}.queue.core.windows.net"

    def transport(self, *, shared: bool = False) -> AuthorizingTransport:
        """A transport for one client, or (`shared`) one that many clients use in turn: their
        closing leaves it open, and its owner closes it (`aclose`)."""
        return AuthorizingTransport(self, shared=shared)

    # -- direct access, as a test reads and arranges state (no authorization) --------------

    def _sync(self, method: str, service: str, path: str, **params: str) -> httpx.Response:
        url = f"{self.azurite.url(service)}/{path}"
        return _send(httpx.Request(method, url, params=params, headers=_VERSION))

    def create_container(self, name: str) -> None:
        response = self._sync("PUT", "blob", name, restype="container")
        if response.status_code not in (201, 409):
            raise RuntimeError(f"create container {name}: {response.status_code} {response.text}")

    def create_queue(self, name: str) -> None:
        response = self._sync("PUT", "queue", name)
        if response.status_code not in (201, 204):
            raise RuntimeError(f"create queue {name}: {response.status_code} {response.text}")

    def containers(self) -> list[str]:
        response = self._sync("GET", "blob", "", comp="list")
        return re.findall(r"<Container><Name>([^<]+)</Name>", response.text)

    def put_blob(self, container: str, name: str, data: bytes) -> None:
        """A blob as a test arranges it (what a damaged or foreign store might hold)."""
        url = f"{self.azurite.url('blob')}/{container}/{name}"
        headers = {**_VERSION, "x-ms-blob-type": "BlockBlob"}
        response = _send(httpx.Request("PUT", url, content=data, headers=headers))
        if response.status_code != 201:
            raise RuntimeError(f"put blob {container}/{name}: {response.status_code}")

    def blobs(self, container: str) -> dict[str, bytes]:
        """Every blob of a container and its content."""
        response = self._sync("GET", "blob", container, restype="container", comp="list")
        if response.status_code == 404:
            raise KeyError(container)
        names = [unquote(n) for n in re.findall(r"<Name>([^<]+)</Name>", response.text)]
        return {name: self.blob(container, name) for name in names}

    def blob(self, container: str, name: str) -> bytes:
        response = self._sync("GET", "blob", f"{container}/{name}")
        if response.status_code == 404:
            raise KeyError(f"{container}/{name}")
        return response.content

    def blob_properties(self, container: str, name: str) -> httpx.Headers:
        return self._sync("HEAD", "blob", f"{container}/{name}").headers

    def blob_metadata(self, container: str, prefix: str = "") -> dict[str, dict[str, str]]:
        """The metadata of every blob whose name starts with `prefix`, by name: one listing
        call per 5,000 blobs, cheap enough to poll."""
        found: dict[str, dict[str, str]] = {}
        marker = ""
        while True:
            params = {"restype": "container", "comp": "list", "include": "metadata"}
            params |= {"prefix": prefix} if prefix else {}
            params |= {"marker": marker} if marker else {}
            response = self._sync("GET", "blob", container, **params)
            if response.status_code == 404:
                raise KeyError(container)
            if response.status_code != 200:
                raise RuntimeError(
                    f"list blobs of {container}: {response.status_code} {response.text}"
                )
            listing = ElementTree.fromstring(response.content)  # noqa: S314  (the local emulator's)
            for blob in listing.iter("Blob"):
                metadata = blob.find("Metadata")
                found[blob.findtext("Name", "")] = {
                    entry.tag: entry.text or ""
                    for entry in (metadata if metadata is not None else [])
                }
            marker = listing.findtext("NextMarker") or ""
            if not marker:
                return found

    def reset(self) -> None:
        """An empty account: every container and queue deleted."""
        self.refused.clear()
        self.refused_at.clear()
        self.fault = None
        for container in self.containers():
            self._sync("DELETE", "blob", container, restype="container")
        listing = self._sync("GET", "queue", "", comp="list").text
        for queue in re.findall(r"<Queue><Name>([^<]+)</Name>", listing):
            self._sync("DELETE", "queue", queue)

    def record_refusal(self, code: str, url: str) -> None:
        self.refused.append(code)
        path = unquote(urlsplit(url).path).lstrip("/")
        if path.startswith(f"{DEV_ACCOUNT}/"):  # forwarded: path-style, the account first
            path = path.removeprefix(f"{DEV_ACCOUNT}/")
        self.refused_at.append((code, path.partition("/")[0]))

    # -- authorization ---------------------------------------------------------------------

    def authorize(self, request: Any) -> tuple[int, str] | None:
        """Azure RBAC's decision for one call, or None when it is allowed."""
        url = urlsplit(request.url)
        service = url.netloc.split(".")[1]
        if request.headers.get("Authorization", "").startswith("SharedKey "):
            return self._key_decision(request)
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return 401, "NoAuthenticationInformation"
        if self.authority is None:
            return None
        path = unquote(url.path).lstrip("/")
        query = parse_qs(url.query)
        action, data_action, resource = (
            _blob_operation(self.resource_id, request.method, path, query)
            if service == "blob"
            else queue_operation(self.resource_id, request.method, path, query)
        )
        if self.authority.check(
            request.headers.get("Authorization"),
            service="Blob Storage" if service == "blob" else "Queue Storage",
            call=f"{request.method} {path}",
            resource=resource,
            action=action,
            data_action=data_action,
        ):
            return 403, "AuthorizationPermissionMismatch"
        return None

    def _key_decision(self, request: Any) -> tuple[int, str] | None:
        """A request signed with an account key: refused unless the account allows shared
        keys and the signature is its key's (the key grants everything, as in Azure)."""
        if self.shared_key is None:
            return 403, "KeyBasedAuthenticationNotPermitted"
        probe = HttpRequest(request.method, request.url, headers=dict(request.headers))
        del probe.headers["Authorization"]
        signer = SharedKeyCredentialPolicy(self.account, self.shared_key)  # type: ignore[no-untyped-call]
        signer.on_request(PipelineRequest(probe, PipelineContext(None)))  # type: ignore[no-untyped-call]
        if not hmac.compare_digest(
            probe.headers["Authorization"], request.headers["Authorization"]
        ):
            return 403, "AuthenticationFailed"
        return None

    def forward_url(self, url: str) -> str:
        parts = urlsplit(url)
        host = parts.netloc
        if host == f"{self.account}.blob.core.windows.net":
            base = urlsplit(self.azurite.url("blob"))
        elif host == f"{self.account}.queue.core.windows.net":
            base = urlsplit(self.azurite.url("queue"))
        else:
            raise ValueError(f"no account at {host}: this storage serves {self.account}")
        return urlunsplit(("http", base.netloc, base.path + parts.path, parts.query, ""))


def _blob_operation(
    account: str, method: str, path: str, query: dict[str, list[str]]
) -> tuple[str | None, str | None, str]:
    """(action, data action, resource) of a Blob call, per the service's RBAC table."""
    container, _, blob = path.partition("/")
    scope = f"{account}/blobServices/default/containers/{container}"
    comp = (query.get("comp") or [""])[0]
    if not container:
        return f"{_BLOB}/containers/read", None, f"{account}/blobServices/default"
    if not blob:
        if comp == "list":  # List Blobs
            return None, f"{_BLOB}/containers/blobs/read", scope
        verb = {"PUT": "write", "DELETE": "delete"}.get(method, "read")
        return f"{_BLOB}/containers/{verb}", None, scope
    resource = f"{scope}/blobs/{blob}"
    if method in ("GET", "HEAD"):
        return None, f"{_BLOB}/containers/blobs/read", resource
    if method == "DELETE":
        return None, f"{_BLOB}/containers/blobs/delete", resource
    # Put Blob, Put Block (List), Set Blob Metadata and Lease Blob: all blobs/write.
    return None, f"{_BLOB}/containers/blobs/write", resource


def queue_operation(
    account: str, method: str, path: str, query: dict[str, list[str]]
) -> tuple[str | None, str | None, str]:
    """(action, data action, resource) of a Queue call, per the service's RBAC table."""
    queue, _, rest = path.partition("/")
    if not queue:
        return f"{_QUEUE}/queues/read", None, f"{account}/queueServices/default"
    resource = f"{account}/queueServices/default/queues/{queue}"
    messages = f"{_QUEUE}/queues/messages"
    if not rest:
        verb = {"PUT": "write", "DELETE": "delete"}.get(method, "read")
        return f"{_QUEUE}/queues/{verb}", None, resource
    if method == "POST":  # Put Message
        return None, f"{messages}/add/action", resource
    if method == "GET" and query.get("peekonly") == ["true"]:
        return None, f"{messages}/read", resource
    # Get Messages (dequeue) and Delete Message: what Message Processor's process/action allows.
    if method in ("GET", "DELETE"):
        return None, f"{messages}/process/action", resource
    return None, f"{messages}/write", resource  # Update Message: Queue Data Contributor only


def _error(request: Any, status: int, code: str) -> FakeResponse:
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f"<Error><Code>{code}</Code><Message>{code}</Message></Error>"
    ).encode()
    return FakeResponse(
        request, status, body, {"Content-Type": "application/xml", "x-ms-error-code": code}
    )


#: A test's own reads and writes, signed with the development key: one pooled client.
_CLIENT = httpx.Client(timeout=30)
_SIGNER = SharedKeyCredentialPolicy(DEV_ACCOUNT, DEV_KEY)  # type: ignore[no-untyped-call]


def _sign(request: Any) -> None:
    """Sign a request for Azurite's development account, as a SharedKey client would."""
    request.headers.pop("Authorization", None)
    _SIGNER.on_request(PipelineRequest(request, PipelineContext(None)))  # type: ignore[no-untyped-call]


_VERSION = {"x-ms-version": "2025-01-05"}


def _send(request: httpx.Request) -> httpx.Response:
    """A request signed with the emulator's account key: a test's direct access."""
    _sign_httpx(request)
    return _CLIENT.send(request)


def _sign_httpx(request: httpx.Request) -> None:
    request.headers["x-ms-date"] = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
    shaped = HttpRequest(request.method, str(request.url), headers=dict(request.headers))
    _sign(shaped)
    request.headers["Authorization"] = shaped.headers["Authorization"]


class AuthorizingTransport(AsyncHttpTransport):  # type: ignore[type-arg]
    """The SDK's transport: Azure's authorization here, then Azurite's real answer."""

    def __init__(self, storage: AzuriteStorage, *, shared: bool = False) -> None:
        self.storage = storage
        self.shared = shared
        self._inner = AioHttpTransport()
        self.requests: list[tuple[str, str]] = []

    async def send(self, request: Any, **kwargs: Any) -> Any:
        self.requests.append((request.method, request.url))
        refusal = self.storage.authorize(request)
        if refusal is None and self.storage.fault is not None:
            refusal = self.storage.fault(request)
        if refusal is None and await self._exists_against_wildcard(request, **kwargs):
            refusal = 412, "ConditionNotMet"
        if refusal is not None:
            self.storage.record_refusal(refusal[1], request.url)
            return _error(request, *refusal)
        request.url = self.storage.forward_url(request.url)
        _sign(request)
        response = await self._inner.send(request, **kwargs)
        if response.status_code >= 400 and (code := response.headers.get("x-ms-error-code")):
            self.storage.record_refusal(code, request.url)
        return response

    async def _exists_against_wildcard(self, request: Any, **kwargs: Any) -> bool:
        """Whether Azure would refuse this call's `If-None-Match: *` and Azurite would not:
        a Set Blob Metadata or Properties on a blob that exists."""
        url = urlsplit(request.url)
        if request.method != "PUT" or request.headers.get("If-None-Match") != "*":
            return False
        if parse_qs(url.query).get("comp") not in (["metadata"], ["properties"]):
            return False
        probe = HttpRequest(
            "HEAD",
            self.storage.forward_url(urlunsplit((url.scheme, url.netloc, url.path, "", ""))),
            headers={"x-ms-version": request.headers.get("x-ms-version", "2025-01-05")},
        )
        probe.headers["x-ms-date"] = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
        _sign(probe)
        answer = await self._inner.send(probe, **kwargs)
        return bool(answer.status_code == 200)

    async def open(self) -> None:
        await self._inner.open()

    async def close(self) -> None:
        if not self.shared:
            await self._inner.close()

    async def aclose(self) -> None:
        """Close the connections, shared or not."""
        await self._inner.close()

    async def __aenter__(self) -> AuthorizingTransport:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *args: Any) -> None:
        await self.close()


@contextlib.contextmanager
def running(workspace: Path) -> Iterator[Azurite]:
    """Azurite for the length of the block, stopped whatever happens."""
    azurite = Azurite(workspace)
    try:
        yield azurite.start()
    finally:
        azurite.stop()
