"""The fakes across a process boundary: a host in a child process calls the test's fakes.

The test process serves its fakes on loopback (`FakesServer`); the child installs stand-ins
at the seams the in-process fakes use (`RemoteFakes`):

- an azure-core or httpx transport per seam (Key Vault, Blob storage, Microsoft Graph, any
  fake transport the test lends) forwards each request, bearer token and body included, and
  returns the fake's answer;
- the Event Hubs clients and the checkpoint store forward each network call (partition ids
  and properties, receive from a position with its owner level, send a batch, ownership
  claims and checkpoints) to what `install` patched into the test process (the fakes, and
  the SDK's checkpoint store on Azurite), while the SDK's own event processor and load
  balancer keep running in the child;
- the credential asks the test process for its tokens, as a managed identity asks its
  host's identity endpoint, and only for the identity the test lends.

Nothing a fake decides is repeated here: every call reaches the very fake object, with the
child's token, so the test's `Authority` authorizes it and records any denial, and a refusal
comes back to the child in the service's shape (an HTTP status and body, or the SDK's
exception). Frames are length-prefixed JSON; a connection must first present the key the
test process generated, which reaches the child through its environment.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hmac
import itertools
import json
import logging
import os
import secrets
import struct
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import httpx
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.exceptions import HttpResponseError, ResponseNotReadError
from azure.core.pipeline.transport import AsyncHttpTransport
from azure.core.rest import HttpRequest
from azure.eventhub import EventData, EventDataBatch
from azure.eventhub import exceptions as eventhub_errors
from azure.eventhub.aio import CheckpointStore, EventHubConsumerClient, EventHubProducerClient

from tests.fakes.authorization import Authority
from tests.fakes.azure_transport import FakeResponse
from tests.fakes.eventhubs import (
    CHECKPOINT_SEAM,
    CONSUMER_SEAM,
    PRODUCER_SEAM,
    FakeProducerClient,
    Installed,
)

log = logging.getLogger(__name__)

#: The child's environment: where the fakes are served, and the key to present.
ADDRESS_ENV = "GRAPHTAP_FAKES_ADDRESS"
KEY_ENV = "GRAPHTAP_FAKES_KEY"
EVENTHUBS_SCOPE = "https://eventhubs.azure.net/.default"
STORAGE_SCOPE = "https://storage.azure.com/.default"
MAX_FRAME = 64 * 1024 * 1024
_LENGTH = struct.Struct(">I")


class BridgeError(RuntimeError):
    """The bridge itself failed (not a service's refusal): a bad key, a lost connection, or
    an unexpected error in the test process, named in the message."""


# -- wire format ------------------------------------------------------------------------


def encode(value: Any) -> Any:
    """JSON for what the SDKs exchange: bytes, datetimes and maps with non-string keys."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes | bytearray):
        return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, Mapping):
        return {"$map": [[encode(k), encode(v)] for k, v in value.items()]}
    raise TypeError(f"the fakes bridge cannot carry a {type(value).__name__}")


def decode(value: Any) -> Any:
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        if "$bytes" in value:
            return base64.b64decode(value["$bytes"])
        if "$datetime" in value:
            return dt.datetime.fromisoformat(value["$datetime"])
        return {decode(k): decode(v) for k, v in value["$map"]}
    return value


async def _read_frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    try:
        (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    except asyncio.IncompleteReadError:
        return None
    if length > MAX_FRAME:
        raise BridgeError(f"a frame of {length} bytes exceeds the bridge's {MAX_FRAME}")
    message: dict[str, Any] = json.loads(await reader.readexactly(length))
    return message


def _frame(message: Mapping[str, Any]) -> bytes:
    raw = json.dumps(message).encode()
    return _LENGTH.pack(len(raw)) + raw


#: The services' exceptions a refusal may take, by name, as the SDKs raise them.
_SERVICE_ERRORS: dict[str, type[Exception]] = {
    name: kind
    for name, kind in vars(eventhub_errors).items()
    if isinstance(kind, type) and issubclass(kind, eventhub_errors.EventHubError)
}


def _error_shape(error: Exception) -> dict[str, Any]:
    if isinstance(error, eventhub_errors.EventHubError):
        return {"type": type(error).__name__, "message": error.message}
    if isinstance(error, HttpResponseError):
        return {
            "type": "HttpResponseError",
            "message": error.message,
            "status_code": error.status_code,
            "error_code": getattr(error, "error_code", None),
        }
    return {"type": "BridgeError", "message": f"{type(error).__name__}: {error}"}


def _raise(shape: Mapping[str, Any]) -> None:
    kind = shape["type"]
    if kind in _SERVICE_ERRORS:
        raise _SERVICE_ERRORS[kind](shape["message"])
    if kind == "HttpResponseError":
        error = HttpResponseError(message=shape["message"])
        error.status_code = shape["status_code"]
        error.error_code = shape["error_code"]  # type: ignore[attr-defined]  # as storage sets it
        raise error
    raise BridgeError(shape["message"])


# -- the test process: the fakes, served ------------------------------------------------


@dataclass(frozen=True)
class Exposed:
    """What the test process lends a child: its fake transports by seam (an azure-core
    `AsyncHttpTransport` or an httpx transport), the Event Hubs fakes `install` patched in,
    and the one identity whose tokens the child may have."""

    authority: Authority
    principal: str
    transports: Mapping[str, AsyncHttpTransport | httpx.AsyncBaseTransport]  # type: ignore[type-arg]
    eventhubs: Installed | None = None


class _Presented:
    """The credential a parent-side fake sees: the token the child sent with the call."""

    def __init__(self) -> None:
        self.token = ""

    async def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 300)


@dataclass
class _Session:
    """One child's connection: its calls in flight and the fake clients it opened."""

    exposed: Exposed
    writer: asyncio.StreamWriter
    calls: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    clients: dict[str, tuple[Any, _Presented]] = field(default_factory=dict)
    receivers: dict[str, tuple[Any, list[Any]]] = field(default_factory=dict)
    #: The checkpoint stores opened for the child: the SDK's hold HTTP connections.
    stores: list[Any] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def answer(self, call: int, op: str, args: dict[str, Any]) -> None:
        try:
            reply: dict[str, Any] = {"id": call, "ok": encode(await self._dispatch(op, args))}
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if _error_shape(error)["type"] == "BridgeError":
                log.exception("the fakes bridge failed on %s", op)
            reply = {"id": call, "error": _error_shape(error)}
        finally:
            self.calls.pop(call, None)
        async with self.lock:
            # A child that went away while its call ran has no use for the reply.
            with contextlib.suppress(ConnectionError):
                self.writer.write(_frame(reply))
                await self.writer.drain()

    async def _dispatch(self, op: str, args: dict[str, Any]) -> Any:
        handlers: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]] = {
            "token": self._token,
            "http": self._http,
            "consumer": self._consumer,
            "producer": self._producer,
            "checkpoints": self._checkpoints,
        }
        if op not in handlers:
            raise BridgeError(f"no such bridge call: {op!r}")
        return await handlers[op](decode(args))

    async def _token(self, args: dict[str, Any]) -> dict[str, Any]:
        """The identity endpoint: a token only for the lent identity, asked by its client id."""
        authority, name = self.exposed.authority, self.exposed.principal
        principal = authority.estate.principals[name]
        if args["client_id"] not in (None, principal.app_id):
            raise BridgeError(
                f"no managed identity with client id {args['client_id']} is assigned here"
            )
        return {"token": authority.issue(name, args["scope"]), "expires_on": time.time() + 3600}

    async def _http(self, args: dict[str, Any]) -> dict[str, Any]:
        seam = args["seam"]
        transport = self.exposed.transports.get(seam)
        if transport is None:
            raise BridgeError(f"no fake transport is lent for {seam!r}")
        if isinstance(transport, httpx.AsyncBaseTransport):
            request = httpx.Request(
                args["method"], args["url"], headers=args["headers"], content=args["body"] or b""
            )
            response = await transport.handle_async_request(request)
            body = await response.aread()
            return {
                "status": response.status_code,
                "headers": response.headers.multi_items(),
                "body": body,
            }
        answer = await transport.send(
            HttpRequest(
                args["method"], args["url"], headers=dict(args["headers"]), content=args["body"]
            )
        )
        return {
            "status": answer.status_code,
            "headers": list(answer.headers.items()),
            "body": await _content(answer),
        }

    def _installed(self) -> Installed:
        if self.exposed.eventhubs is None:
            raise BridgeError("no Event Hubs fakes are lent to this child")
        return self.exposed.eventhubs

    def _client(self, args: dict[str, Any], open_client: Callable[[_Presented], Any]) -> Any:
        handle = self.clients.get(args["client"])
        if handle is None:
            presented = _Presented()
            handle = self.clients[args["client"]] = (open_client(presented), presented)
        client, presented = handle
        presented.token = args["token"]
        return client

    async def _consumer(self, args: dict[str, Any]) -> Any:
        installed = self._installed()
        client = self._client(
            args,
            lambda credential: installed.consumer(
                args["host"], args["hub"], args["group"], credential
            ),
        )
        method = args["method"]
        if method == "partition_ids":
            return await client.get_partition_ids()
        if method == "partition_properties":
            return await client.get_partition_properties(args["partition"])
        if method == "close_receiver":
            self.receivers.pop(args["receiver"], None)
            return None
        if method != "receive":
            raise BridgeError(f"no such consumer call: {method!r}")
        if args["receiver"] not in self.receivers:
            received: list[Any] = []

            async def collect(events: Any) -> None:
                received.append(events)

            receiver = client._create_consumer(
                args["consumer_group"],
                args["partition"],
                args["position"],
                collect,
                owner_level=args["owner_level"],
                event_position_inclusive=args["inclusive"],
            )
            self.receivers[args["receiver"]] = (receiver, received)
        receiver, received = self.receivers[args["receiver"]]
        received.clear()
        await receiver.receive(args["batch"], args["max_batch_size"], args["max_wait_time"])
        return [[_event_shape(e) for e in _as_list(events)] for events in received]

    async def _producer(self, args: dict[str, Any]) -> Any:
        installed = self._installed()
        client = self._client(
            args, lambda credential: installed.producer(args["host"], args["hub"], credential)
        )
        if args["method"] == "partition_ids":
            return await client.get_partition_ids()
        if args["method"] != "send":
            raise BridgeError(f"no such producer call: {args['method']!r}")
        batch = EventDataBatch(
            max_size_in_bytes=args["max_size_in_bytes"],
            partition_id=args["partition_id"],
            partition_key=args["partition_key"],
        )
        for body, properties in args["events"]:
            event = EventData(body)
            event.properties = properties
            batch.add(event)
        await client.send_batch(batch)
        return client.batches_sent

    async def _checkpoints(self, args: dict[str, Any]) -> Any:
        installed = self._installed()

        def open_store(credential: _Presented) -> Any:
            store = installed.checkpoint_store(
                args["account_url"], args["container"], credential=credential
            )
            self.stores.append(store)
            return store

        store = self._client(args, open_store)
        method = args["method"]
        if method == "claim_ownership":
            wanted = args["ownership"]
            claimed = await store.claim_ownership(wanted)
            return {"claimed": list(claimed), "wanted": wanted}
        if method == "update_checkpoint":
            return await store.update_checkpoint(args["checkpoint"])
        if method in ("list_ownership", "list_checkpoints"):
            return list(await getattr(store, method)(args["namespace"], args["hub"], args["group"]))
        raise BridgeError(f"no such checkpoint store call: {method!r}")


async def _content(answer: Any) -> bytes:
    """A response's body: a transport that loads it (aiohttp's) has read it already, and an
    empty one cannot be read twice; a fake's is read here."""
    try:
        return bytes(answer.content)
    except ResponseNotReadError:
        return bytes(await answer.read())


def _as_list(events: Any) -> list[Any]:
    return list(events) if isinstance(events, list | tuple) else [events]


def _event_shape(event: EventData) -> dict[str, Any]:
    return {
        "body": b"".join(event.body),  # type: ignore[arg-type]
        "annotations": dict(event.raw_amqp_message.annotations or {}),
        "properties": dict(event.properties or {}),
        "last_enqueued": getattr(event, "_last_enqueued_event_properties", None),
    }


def _event(shape: Mapping[str, Any]) -> EventData:
    """The event as the test process's receiver handed it over, annotations and all."""
    event = EventData(shape["body"])
    event.raw_amqp_message.annotations = shape["annotations"]
    event.properties = shape["properties"]
    if shape["last_enqueued"] is not None:
        event._last_enqueued_event_properties = shape["last_enqueued"]
    return event


class FakesServer:
    """The test process's side: serves `exposed` on a free loopback port until closed."""

    def __init__(self, exposed: Exposed) -> None:
        self.exposed = exposed
        self.key = secrets.token_hex(16)
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        if self._server is None:
            raise BridgeError("the fakes server is not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    def environment(self) -> dict[str, str]:
        """What a child needs in its environment to reach the fakes."""
        return {ADDRESS_ENV: self.address, KEY_ENV: self.key}

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", 0)

    async def close(self) -> None:
        """Stop serving and end every child's connection (a child takes that as its cue
        to stop)."""
        if self._server is not None:
            self._server.close()
        for session in list(self._sessions):
            session.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)

    async def __aenter__(self) -> FakesServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        session = _Session(self.exposed, writer)
        try:
            hello = await _read_frame(reader)
            if hello is None or not hmac.compare_digest(str(hello.get("key")), self.key):
                writer.write(_frame({"error": {"type": "BridgeError", "message": "wrong key"}}))
                return
            kinds = {
                seam: "httpx" if isinstance(transport, httpx.AsyncBaseTransport) else "azure"
                for seam, transport in self.exposed.transports.items()
            }
            writer.write(_frame({"ok": kinds}))
            while (message := await _read_frame(reader)) is not None:
                if "cancel" in message:
                    if (call := session.calls.get(message["cancel"])) is not None:
                        call.cancel()
                    continue
                session.calls[message["id"]] = asyncio.create_task(
                    session.answer(message["id"], message["op"], message["args"])
                )
        except (ConnectionError, asyncio.CancelledError):
            pass  # the child went away, or the test is over: its calls end with it
        finally:
            for call in list(session.calls.values()):
                call.cancel()
            await asyncio.gather(*session.calls.values(), return_exceptions=True)
            await asyncio.gather(*(store.close() for store in session.stores))
            writer.close()
            self._sessions.discard(task)


# -- the child process: stand-ins at the fakes' seams -----------------------------------


class RemoteFakes:
    """The child's side: one connection per event loop to the test process's fakes."""

    def __init__(self, address: str, key: str) -> None:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise BridgeError(f"{ADDRESS_ENV}={address!r} is not HOST:PORT")
        self._host, self._port, self._key = host, int(port), key
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._seams: dict[str, str] = {}
        self._connecting: asyncio.Lock | None = None
        self._reading: asyncio.Task[None] | None = None
        self._lost = False
        #: Called once the test process closes the bridge (or goes away).
        self.on_lost: Callable[[], None] | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> RemoteFakes:
        missing = [name for name in (ADDRESS_ENV, KEY_ENV) if not environ.get(name)]
        if missing:
            raise BridgeError(f"{' and '.join(missing)} must be set to reach the fakes")
        return cls(environ[ADDRESS_ENV], environ[KEY_ENV])

    async def seams(self) -> dict[str, str]:
        """The transports the test process lends: seam name -> "azure" (azure-core) or
        "httpx"."""
        await self._connect()
        return self._seams

    async def call(self, op: str, **args: Any) -> Any:
        writer = await self._connect()
        call = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[call] = future
        try:
            writer.write(_frame({"id": call, "op": op, "args": encode(args)}))
            await writer.drain()
            reply = await future
        except asyncio.CancelledError:
            if not writer.is_closing():
                writer.write(_frame({"cancel": call}))
            raise
        except ConnectionError as error:
            raise BridgeError(f"the fakes' process closed the bridge ({error})") from error
        finally:
            self._pending.pop(call, None)
        if "error" in reply:
            _raise(reply["error"])
        return decode(reply["ok"])

    async def _connect(self) -> asyncio.StreamWriter:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._lost:
                raise BridgeError("the fakes' process closed the bridge")
            if self._writer is None:
                reader, writer = await asyncio.open_connection(self._host, self._port)
                writer.write(_frame({"key": self._key}))
                hello = await _read_frame(reader)
                if hello is None or "error" in hello:
                    writer.close()
                    raise BridgeError("the fakes' process refused this bridge key")
                self._seams = dict(hello["ok"])
                self._writer = writer
                self._reading = asyncio.create_task(self._read(reader), name="fakes-bridge")
        return self._writer

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while (message := await _read_frame(reader)) is not None:
                future = self._pending.get(message["id"])
                if future is not None and not future.done():
                    future.set_result(message)
        finally:
            self._lost = True
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(BridgeError("the fakes' process closed the bridge"))
            if self.on_lost is not None:
                self.on_lost()

    # -- what the child installs ---------------------------------------------------------

    def transport(self, seam: str, kind: str = "azure") -> Any:
        """The stand-in for the lent transport `seam` of `kind` ("azure" or "httpx")."""
        if kind == "httpx":
            return RemoteHttpxTransport(self, seam)
        return RemoteTransport(self, seam)

    def managed_identity(self, *, managed_identity_client_id: str | None = None, **_: Any) -> Any:
        """What `DefaultAzureCredential(managed_identity_client_id=...)` gives on App Service."""
        return RemoteCredential(self, managed_identity_client_id)

    def install_eventhubs(self) -> list[Any]:
        """Patch the stand-ins in where the adapters import the SDK's Event Hubs clients (the
        names `tests.fakes.eventhubs.install` patches); the patches last for the process."""
        stand_ins = {
            CONSUMER_SEAM: RemoteConsumerClient,
            PRODUCER_SEAM: RemoteProducerClient,
            CHECKPOINT_SEAM: RemoteCheckpointStore,
        }
        patches = [
            mock.patch(seam, type(kind.__name__, (kind,), {"fakes": self}))
            for seam, kind in stand_ins.items()
        ]
        return [p.start() for p in patches]


class RemoteTransport(AsyncHttpTransport):  # type: ignore[type-arg]
    """An azure-core transport whose requests the test process's fake answers."""

    def __init__(self, fakes: RemoteFakes, seam: str) -> None:
        self._fakes = fakes
        self._seam = seam

    async def send(self, request: Any, **kwargs: Any) -> FakeResponse:
        answer = await self._fakes.call(
            "http",
            seam=self._seam,
            method=request.method,
            url=request.url,
            headers=list(request.headers.items()),
            body=_request_body(request.content),
        )
        return FakeResponse(request, answer["status"], answer["body"], dict(answer["headers"]))

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> RemoteTransport:
        return self

    async def __aexit__(self, *args: Any) -> None:
        return None


def _request_body(content: Any) -> bytes | None:
    if content is None or isinstance(content, bytes):
        return content
    if isinstance(content, bytearray):
        return bytes(content)
    if isinstance(content, str):
        return content.encode()
    raise BridgeError(f"the fakes bridge cannot forward a request body of {type(content).__name__}")


class RemoteHttpxTransport(httpx.AsyncBaseTransport):
    """An httpx transport (Microsoft Graph's) whose requests the test process's fake answers."""

    def __init__(self, fakes: RemoteFakes, seam: str) -> None:
        self._fakes = fakes
        self._seam = seam

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        answer = await self._fakes.call(
            "http",
            seam=self._seam,
            method=request.method,
            url=str(request.url),
            headers=request.headers.multi_items(),
            body=await request.aread(),
        )
        return httpx.Response(
            answer["status"], headers=answer["headers"], content=answer["body"], request=request
        )


class RemoteCredential:
    """The managed identity in the child: tokens from the test process, cached per scope
    until shortly before they expire, as the identity libraries cache them."""

    def __init__(self, fakes: RemoteFakes, client_id: str | None) -> None:
        self._fakes = fakes
        self._client_id = client_id
        self._tokens: dict[str, AccessTokenInfo] = {}

    async def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        (scope,) = scopes
        cached = self._tokens.get(scope)
        if cached is None or cached.expires_on < time.time() + 300:
            answer = await self._fakes.call("token", client_id=self._client_id, scope=scope)
            cached = self._tokens[scope] = AccessTokenInfo(
                answer["token"], int(answer["expires_on"])
            )
        return cached

    async def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        info = await self.get_token_info(*scopes)
        return AccessToken(info.token, info.expires_on)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> RemoteCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


async def _token(credential: Any, scope: str) -> str | None:
    return None if credential is None else str((await credential.get_token(scope)).token)


class RemoteConsumerClient(EventHubConsumerClient):
    """The SDK's consumer client (its event processor and load balancer run here) whose
    partition ids, properties and receivers are the test process's `FakeConsumerClient`'s."""

    fakes: RemoteFakes

    def __init__(
        self,
        fully_qualified_namespace: str,
        eventhub_name: str,
        consumer_group: str,
        credential: Any,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            fully_qualified_namespace, eventhub_name, consumer_group, credential, **kwargs
        )
        self._remote = {
            "client": uuid.uuid4().hex,
            "host": fully_qualified_namespace,
            "hub": eventhub_name,
            "group": consumer_group,
        }
        self._remote_credential = credential

    async def _call(self, method: str, **args: Any) -> Any:
        token = await _token(self._remote_credential, EVENTHUBS_SCOPE)
        return await self.fakes.call("consumer", method=method, token=token, **self._remote, **args)

    async def get_partition_ids(self) -> list[str]:
        ids: list[str] = await self._call("partition_ids")
        return ids

    async def get_partition_properties(self, partition_id: str) -> dict[str, Any]:
        properties: dict[str, Any] = await self._call(
            "partition_properties", partition=partition_id
        )
        return properties

    def _create_consumer(  # type: ignore[override]
        self,
        consumer_group: str,
        partition_id: str,
        event_position: str | int | dt.datetime,
        on_event_received: Callable[[Any], Awaitable[None]],
        **kwargs: Any,
    ) -> RemotePartitionReceiver:
        return RemotePartitionReceiver(
            self,
            {
                "receiver": uuid.uuid4().hex,
                "consumer_group": consumer_group,
                "partition": partition_id,
                "position": event_position,
                "inclusive": bool(kwargs.get("event_position_inclusive")),
                "owner_level": kwargs.get("owner_level"),
            },
            on_event_received,
        )


class RemotePartitionReceiver:
    """One partition's receiver; the test process keeps its position and owner level."""

    def __init__(
        self,
        client: RemoteConsumerClient,
        opening: dict[str, Any],
        on_event_received: Callable[[Any], Awaitable[None]],
    ) -> None:
        self._client = client
        self._opening = opening
        self._on_event_received = on_event_received

    async def receive(self, batch: bool, max_batch_size: int, max_wait_time: float | None) -> None:
        deliveries = await self._client._call(
            "receive",
            batch=batch,
            max_batch_size=max_batch_size,
            max_wait_time=max_wait_time,
            **self._opening,
        )
        for events in deliveries:
            await self._on_event_received([_event(e) for e in events])

    async def close(self) -> None:
        with contextlib.suppress(BridgeError):  # the test process may be gone at shutdown
            await self._client._call("close_receiver", receiver=self._opening["receiver"])


class RemoteProducerClient(FakeProducerClient):
    """The SDK's producer client: batches are built here (the SDK enforces their size), and
    sent by the test process's `FakeProducerClient` into its namespace."""

    fakes: RemoteFakes

    def __init__(
        self, fully_qualified_namespace: str, eventhub_name: str, credential: Any, **kwargs: Any
    ) -> None:
        EventHubProducerClient.__init__(
            self, fully_qualified_namespace, eventhub_name, credential, **kwargs
        )
        self.batches_sent = 0
        self._fake_credential = credential
        self._remote = {
            "client": uuid.uuid4().hex,
            "host": fully_qualified_namespace,
            "hub": eventhub_name,
        }

    async def _call(self, method: str, **args: Any) -> Any:
        token = await _token(self._fake_credential, EVENTHUBS_SCOPE)
        return await self.fakes.call("producer", method=method, token=token, **self._remote, **args)

    async def get_partition_ids(self) -> list[str]:
        ids: list[str] = await self._call("partition_ids")
        return ids

    async def send_batch(self, event_data_batch: Any, **_: Any) -> None:
        if not isinstance(event_data_batch, EventDataBatch):
            raise TypeError("this fake sends EventDataBatch objects only")
        self.batches_sent = await self._call(
            "send",
            max_size_in_bytes=event_data_batch.max_size_in_bytes,
            partition_id=event_data_batch._partition_id,
            partition_key=event_data_batch._partition_key,
            events=[
                (b"".join(e.body), dict(e.properties or {}))  # type: ignore[arg-type]
                for e in event_data_batch._internal_events
            ],
        )


class RemoteCheckpointStore(CheckpointStore):
    """The blob checkpoint store whose records the test process's store keeps (ownership
    etags, checkpoints: the SDK's own on Azurite), authorized with this process's storage
    token. It closes as `BlobCheckpointStore` does, also as an async context manager."""

    fakes: RemoteFakes

    def __init__(
        self, blob_account_url: str, container_name: str, *, credential: Any = None, **_: Any
    ) -> None:
        self._credential = credential
        self._remote = {
            "client": uuid.uuid4().hex,
            "account_url": blob_account_url,
            "container": container_name,
        }
        self.closed = False

    async def __aenter__(self) -> RemoteCheckpointStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self.closed = True

    async def _call(self, method: str, **args: Any) -> Any:
        token = await _token(self._credential, STORAGE_SCOPE)
        return await self.fakes.call(
            "checkpoints", method=method, token=token, **self._remote, **args
        )

    async def list_ownership(
        self, fully_qualified_namespace: str, eventhub_name: str, consumer_group: str, **_: Any
    ) -> Iterable[dict[str, Any]]:
        owned: list[dict[str, Any]] = await self._call(
            "list_ownership",
            namespace=fully_qualified_namespace,
            hub=eventhub_name,
            group=consumer_group,
        )
        return owned

    async def claim_ownership(
        self, ownership_list: Iterable[dict[str, Any]], **_: Any
    ) -> Iterable[dict[str, Any]]:
        wanted = list(ownership_list)
        answer = await self._call("claim_ownership", ownership=wanted)
        for mine, theirs in zip(wanted, answer["wanted"], strict=True):
            mine.update(theirs)  # the store stamps the claims it grants, as the blob one does
        claimed: list[dict[str, Any]] = answer["claimed"]
        return claimed

    async def update_checkpoint(self, checkpoint: dict[str, Any], **_: Any) -> None:
        await self._call("update_checkpoint", checkpoint=checkpoint)

    async def list_checkpoints(
        self, fully_qualified_namespace: str, eventhub_name: str, consumer_group: str, **_: Any
    ) -> Iterable[dict[str, Any]]:
        checkpoints: list[dict[str, Any]] = await self._call(
            "list_checkpoints",
            namespace=fully_qualified_namespace,
            hub=eventhub_name,
            group=consumer_group,
        )
        return checkpoints
