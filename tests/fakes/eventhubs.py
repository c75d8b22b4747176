"""Moto-style fakes of the azure-eventhub async clients: state kept in memory, rules enforced.

The fakes replace the SDK only where it would open a network connection, so the SDK's own
event processor, load balancer (`OwnershipManager`) and `PartitionContext` run unchanged:

- `FakeNamespace`: hubs with a fixed number of partitions, each an append-only log with
  sequence numbers and offsets; events over the size limit are refused; sends can be made
  to fail (an outage) for a while.
- `FakeConsumerClient`: the real `EventHubConsumerClient` with its partition receivers and
  management calls answered from the namespace. Receivers honour start positions
  (`"-1"`, `"@latest"`, offsets, sequence numbers, enqueued times) and owner levels: a new
  receiver on a partition disconnects an older one with an equal or lower owner level, as
  the service does.
- `FakeCheckpointStore`: the blob checkpoint store's contract: ownership claims succeed only
  with the current etag (optimistic concurrency), checkpoints are kept per partition. The
  deployment rehearsal uses the SDK's own `BlobCheckpointStore` over Azurite instead (given
  to `install`); the source's own tests still read and break records here directly.
- `FakeProducerClient`: batches are the SDK's own `EventDataBatch` (size enforced); the
  partition is chosen by a hash of the partition key, as the service keeps one key on one
  partition.

Given an `Authority`, the namespace authorizes every send and receive as Event Hubs does
for Entra ID callers (the `Send` or `Listen` claim from a Data Sender or Data Receiver role
on the hub or namespace), and the checkpoint store every blob read and write; a refusal is
the service's: the link detached with `amqp:unauthorized-access`, or 403
`AuthorizationPermissionMismatch` from storage.

`install(mocker, namespace)` patches them in at the names the adapters import.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import itertools
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Self

from azure.core.exceptions import HttpResponseError
from azure.eventhub import EventData, EventDataBatch
from azure.eventhub.aio import CheckpointStore, EventHubConsumerClient, EventHubProducerClient
from azure.eventhub.exceptions import ConnectionLostError, EventDataSendError

from tests.fakes.authorization import Authority

MAX_EVENT_BYTES = 1024 * 1024  # Standard tier
#: Where the adapters import the SDK's clients: the names `install` patches.
CONSUMER_SEAM = "graphtap.processing.sources.eventhubs.EventHubConsumerClient"
CHECKPOINT_SEAM = "graphtap.processing.sources.eventhubs.BlobCheckpointStore"
PRODUCER_SEAM = "graphtap.processing.sinks.eventhubs.EventHubProducerClient"

_SEQUENCE = b"x-opt-sequence-number"
_OFFSET = b"x-opt-offset"
_ENQUEUED = b"x-opt-enqueued-time"
_PARTITION_KEY = b"x-opt-partition-key"


@dataclass
class StoredEvent:
    sequence_number: int
    enqueued_at: float
    body: bytes
    partition_key: bytes | None
    properties: dict[str | bytes, Any]

    @property
    def offset(self) -> str:
        return str(self.sequence_number)

    def received(self) -> EventData:
        """The event as a receiver sees it: the SDK's EventData with the service's annotations."""
        event = EventData(self.body)
        annotations: dict[str | bytes, Any] = {
            _SEQUENCE: self.sequence_number,
            _OFFSET: self.offset.encode(),
            _ENQUEUED: int(self.enqueued_at * 1000),
        }
        if self.partition_key is not None:
            annotations[_PARTITION_KEY] = self.partition_key
        event.raw_amqp_message.annotations = annotations
        event.properties = dict(self.properties)
        return event


@dataclass
class Partition:
    events: list[StoredEvent] = field(default_factory=list)
    changed: asyncio.Event | None = None
    receivers: dict[str, tuple[int, int]] = field(default_factory=dict)  # group -> (level, id)

    def append(self, body: bytes, key: bytes | None, properties: dict[str | bytes, Any]) -> None:
        self.events.append(StoredEvent(len(self.events), time.time(), body, key, properties))
        if self.changed is not None:
            self.changed.set()


class FakeNamespace:
    """One Event Hubs namespace: hubs of partitions, and a switch to make sends fail."""

    def __init__(
        self,
        host: str = "fake.servicebus.windows.net",
        *,
        authority: Authority | None = None,
        resource_id: str = "",
    ) -> None:
        self.host = host
        self.authority = authority
        self.resource_id = resource_id  # the namespace's ARM id
        self.hubs: dict[str, list[Partition]] = {}
        #: hub -> its consumer groups, when the namespace knows them (from the stack).
        self.consumer_groups: dict[str, set[str]] = {}
        self.send_failures = 0  # the next N sends fail, as in an outage
        self.sends = 0
        self.max_event_bytes = MAX_EVENT_BYTES
        self._receiver_ids = itertools.count(1)

    def create_hub(self, name: str, partitions: int) -> None:
        self.hubs[name] = [Partition() for _ in range(partitions)]

    def authorize(
        self,
        token: str | None,
        *,
        claim: str,
        hub: str,
        call: str,
        group: str | None = None,
        partition: str | None = None,
    ) -> None:
        """Refuse as the service does when the caller lacks `claim` (Send or Listen)."""
        if group is not None and group not in self.consumer_groups.get(hub, {group}):
            raise ConnectionLostError(
                f"The messaging entity 'sb://{self.host}/{hub}/consumergroups/{group}' "
                "could not be found."
            )
        if self.authority is None:
            return
        verb = "send" if claim == "Send" else "receive"
        resource = f"{self.resource_id}/eventhubs/{hub}"
        entity = f"sb://{self.host}/{hub}"
        if group is not None:
            resource += f"/consumergroups/{group}"
            entity += f"/consumergroups/{group}/partitions/{partition}"
        if self.authority.check(
            token,
            service="Event Hubs",
            call=call,
            resource=resource,
            data_action=f"Microsoft.EventHub/namespaces/messages/{verb}/action",
        ):
            raise ConnectionLostError(
                "Error condition: amqp:unauthorized-access\n Error Description: Unauthorized "
                f"access. '{claim}' claim(s) are required to perform this operation. "
                f"Resource: '{entity}'."
            )

    def partitions(self, hub: str) -> list[Partition]:
        try:
            return self.hubs[hub]
        except KeyError:
            raise ConnectionLostError(f"the messaging entity {hub!r} could not be found") from None

    def partition_for(self, hub: str, key: str | bytes | None, partition_id: str | None) -> int:
        count = len(self.partitions(hub))
        if partition_id is not None:
            return int(partition_id)
        if key is None:
            return self.sends % count
        raw = key.encode() if isinstance(key, str) else key
        return int.from_bytes(hashlib.sha256(raw).digest()[:4], "big") % count

    def publish(
        self,
        hub: str,
        bodies: Iterable[bytes],
        *,
        partition_key: str | None = None,
        token: str | None = None,
    ) -> None:
        """What Graph does: write events into the hub (the tier's event size limit applies);
        with an authority, as the principal `token` was issued to."""
        self.authorize(token, claim="Send", hub=hub, call=f"send to {hub}")
        for body in bodies:
            if len(body) > self.max_event_bytes:
                raise EventDataSendError(
                    f"event of {len(body)} bytes exceeds the {self.max_event_bytes}-byte limit"
                )
            index = self.partition_for(hub, partition_key, None)
            self.sends += 1
            self.partitions(hub)[index].append(
                body, partition_key.encode() if partition_key else None, {}
            )

    def bodies(self, hub: str) -> list[bytes]:
        return [e.body for p in self.partitions(hub) for e in p.events]

    def open_receiver(self, hub: str, group: str, partition: int, owner_level: int | None) -> int:
        """A new receiver; with an owner level it disconnects the group's older receivers."""
        receiver = next(self._receiver_ids)
        if owner_level is not None:
            current = self.partitions(hub)[partition].receivers.get(group)
            if current is None or owner_level >= current[0]:
                self.partitions(hub)[partition].receivers[group] = (owner_level, receiver)
        return receiver

    def is_connected(self, hub: str, group: str, partition: int, receiver: int) -> bool:
        current = self.partitions(hub)[partition].receivers.get(group)
        return current is None or current[1] == receiver


@dataclass
class FakeStorage:
    """Blob containers of checkpoint stores: ownership and checkpoint records by path."""

    ownership: dict[tuple[str, ...], dict[str, Any]] = field(default_factory=dict)
    checkpoints: dict[tuple[str, ...], dict[str, Any]] = field(default_factory=dict)
    claims_refused: int = 0
    fail_checkpoint_updates: bool = False


class ClosingCheckpointStore(CheckpointStore):
    """Closes as `BlobCheckpointStore` does, also as an async context manager."""

    closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self.closed = True


class FakeCheckpointStore(ClosingCheckpointStore):
    """`BlobCheckpointStore`'s contract on an in-memory container, for the Event Hubs source's
    tests: they read the records and fail checkpoint writes on cue. Azurite could serve them
    through the SDK's store, as it serves the deployment rehearsal's."""

    storages: dict[tuple[str, str], FakeStorage] = defaultdict(FakeStorage)
    authority: Authority | None = None
    #: account URL -> the storage account's ARM id, for the authority's scope checks.
    account_ids: dict[str, str] = {}

    def __init__(
        self, blob_account_url: str, container_name: str, *, credential: Any = None, **_: Any
    ) -> None:
        self.storage = self.storages[(blob_account_url, container_name)]
        self.closed = False
        self._credential = credential
        self._container = container_name
        self._account_url = blob_account_url

    async def _authorize(self, verb: str, call: str) -> None:
        if self.authority is None:
            return
        token = None
        if self._credential is not None:
            token = (await self._credential.get_token("https://storage.azure.com/.default")).token
        account = self.account_ids.get(self._account_url, self._account_url)
        container = f"{account}/blobServices/default/containers/{self._container}"
        if self.authority.check(
            token,
            service="Blob Storage",
            call=f"{call} {self._container}",
            resource=f"{container}/blobs/checkpoint",
            data_action=f"Microsoft.Storage/storageAccounts/blobServices/containers/blobs/{verb}",
        ):
            error = HttpResponseError(
                message="This request is not authorized to perform this operation using this "
                "permission.\nErrorCode:AuthorizationPermissionMismatch"
            )
            error.status_code = 403
            error.error_code = "AuthorizationPermissionMismatch"  # type: ignore[attr-defined]  # as storage sets it
            raise error

    async def list_ownership(
        self, fully_qualified_namespace: str, eventhub_name: str, consumer_group: str, **_: Any
    ) -> Iterable[dict[str, Any]]:
        await self._authorize("read", "list ownership")
        prefix = (fully_qualified_namespace, eventhub_name, consumer_group)
        return [dict(o) for path, o in self.storage.ownership.items() if path[:3] == prefix]

    async def claim_ownership(
        self, ownership_list: Iterable[dict[str, Any]], **_: Any
    ) -> Iterable[dict[str, Any]]:
        await self._authorize("write", "claim ownership")
        claimed = []
        for wanted in ownership_list:
            path = _path(wanted)
            current = self.storage.ownership.get(path)
            if current is not None and wanted.get("etag") != current["etag"]:
                self.storage.claims_refused += 1  # someone else claimed it since it was listed
                continue
            record = {
                **{k: wanted[k] for k in _PATH_FIELDS},
                "owner_id": wanted["owner_id"],
                "etag": uuid.uuid4().hex,
                "last_modified_time": time.time(),
            }
            self.storage.ownership[path] = record
            wanted.update(record)
            claimed.append(dict(record))
        return claimed

    async def update_checkpoint(self, checkpoint: dict[str, Any], **_: Any) -> None:
        await self._authorize("write", "update checkpoint")
        if self.storage.fail_checkpoint_updates:
            raise ConnectionLostError("checkpoint container unreachable")
        self.storage.checkpoints[_path(checkpoint)] = {
            **{k: checkpoint[k] for k in _PATH_FIELDS},
            "sequence_number": checkpoint["sequence_number"],
            "offset": checkpoint["offset"],
        }

    async def list_checkpoints(
        self, fully_qualified_namespace: str, eventhub_name: str, consumer_group: str, **_: Any
    ) -> Iterable[dict[str, Any]]:
        await self._authorize("read", "list checkpoints")
        prefix = (fully_qualified_namespace, eventhub_name, consumer_group)
        return [dict(c) for path, c in self.storage.checkpoints.items() if path[:3] == prefix]


_PATH_FIELDS = ("fully_qualified_namespace", "eventhub_name", "consumer_group", "partition_id")


def _path(record: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(record[k]) for k in _PATH_FIELDS)


class FakePartitionReceiver:
    """What `EventHubConsumerClient._create_consumer` returns: one partition's receiver."""

    def __init__(
        self,
        namespace: FakeNamespace,
        hub: str,
        group: str,
        partition: int,
        position: str | int | dt.datetime,
        inclusive: bool,
        on_event_received: Callable[[Any], Awaitable[None]],
        owner_level: int | None,
        credential: Any = None,
    ) -> None:
        self._namespace = namespace
        self._credential = credential
        self._authorized = False
        self._hub = hub
        self._group = group
        self._partition = partition
        self._on_event_received = on_event_received
        self._receiver = namespace.open_receiver(hub, group, partition, owner_level)
        self._next = self._start(position, inclusive)

    def _start(self, position: str | int | dt.datetime, inclusive: bool) -> int:
        events = self._namespace.partitions(self._hub)[self._partition].events
        if position == "-1":
            return 0
        if position == "@latest":
            return len(events)
        if isinstance(position, dt.datetime):
            moment = position.timestamp()
            return next((e.sequence_number for e in events if e.enqueued_at > moment), len(events))
        number = int(position)  # an offset string or a sequence number: equal in this fake
        return number if inclusive else number + 1

    async def receive(self, batch: bool, max_batch_size: int, max_wait_time: float | None) -> None:
        if not self._authorized:  # the link is authorized once, when it attaches
            self._namespace.authorize(
                await _token(self._credential, self._namespace.authority),
                claim="Listen",
                hub=self._hub,
                call=f"receive from {self._hub}/{self._group}",
                group=self._group,
                partition=str(self._partition),
            )
            self._authorized = True
        partition = self._namespace.partitions(self._hub)[self._partition]
        if partition.changed is None:
            partition.changed = asyncio.Event()
        deadline = None if max_wait_time is None else time.monotonic() + max_wait_time
        while True:
            if not self._namespace.is_connected(
                self._hub, self._group, self._partition, self._receiver
            ):
                raise ConnectionLostError(
                    "New receiver with higher or equal owner level was created; "
                    "this receiver is disconnected"
                )
            events = partition.events[self._next : self._next + max_batch_size]
            if events:
                self._next += len(events)
                head = partition.events[-1]
                received = [e.received() for e in events]
                for event in received:  # what track_last_enqueued_event_properties delivers
                    event._last_enqueued_event_properties = {
                        "sequence_number": head.sequence_number,
                        "offset": head.offset,
                        "enqueued_time": dt.datetime.fromtimestamp(head.enqueued_at, dt.UTC),
                        "retrieval_time": dt.datetime.now(dt.UTC),
                    }
                await self._on_event_received(received)
                return
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                await self._on_event_received([])
                return
            partition.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(partition.changed.wait(), min(remaining or 0.05, 0.05))

    async def close(self) -> None:
        return None


class FakeConsumerClient(EventHubConsumerClient):
    """The SDK's consumer client, answering from a `FakeNamespace` instead of the network."""

    namespace: FakeNamespace = FakeNamespace()

    def __init__(
        self,
        fully_qualified_namespace: str,
        eventhub_name: str,
        consumer_group: str,
        credential: Any,
        **kwargs: Any,
    ) -> None:
        if fully_qualified_namespace != self.namespace.host:
            raise ConnectionLostError(f"{fully_qualified_namespace}: no such namespace")
        super().__init__(
            fully_qualified_namespace, eventhub_name, consumer_group, credential, **kwargs
        )
        self._fake_credential = credential

    async def _listen(self, call: str) -> None:
        self.namespace.authorize(
            await _token(self._fake_credential, self.namespace.authority),
            claim="Listen",
            hub=self.eventhub_name,
            call=f"{call} of {self.eventhub_name}",
        )

    async def get_partition_ids(self) -> list[str]:
        await self._listen("partition ids")
        return [str(i) for i in range(len(self.namespace.partitions(self.eventhub_name)))]

    async def get_partition_properties(self, partition_id: str) -> dict[str, Any]:
        await self._listen("partition properties")
        events = self.namespace.partitions(self.eventhub_name)[int(partition_id)].events
        last = events[-1] if events else None
        return {
            "eventhub_name": self.eventhub_name,
            "id": partition_id,
            "beginning_sequence_number": 0,
            "last_enqueued_sequence_number": last.sequence_number if last else -1,
            "last_enqueued_offset": last.offset if last else "-1",
            "last_enqueued_time_utc": (
                dt.datetime.fromtimestamp(last.enqueued_at, dt.UTC) if last else None
            ),
            "is_empty": last is None,
        }

    def _create_consumer(  # type: ignore[override]
        self,
        consumer_group: str,
        partition_id: str,
        event_position: str | int | dt.datetime,
        on_event_received: Callable[[Any], Awaitable[None]],
        **kwargs: Any,
    ) -> FakePartitionReceiver:
        return FakePartitionReceiver(
            self.namespace,
            self.eventhub_name,
            consumer_group,
            int(partition_id),
            event_position,
            bool(kwargs.get("event_position_inclusive")),
            on_event_received,
            kwargs.get("owner_level"),
            self._fake_credential,
        )


class FakeProducerClient(EventHubProducerClient):
    """The SDK's producer client, sending into a `FakeNamespace`."""

    namespace: FakeNamespace = FakeNamespace()

    def __init__(
        self, fully_qualified_namespace: str, eventhub_name: str, credential: Any, **kwargs: Any
    ) -> None:
        if fully_qualified_namespace != self.namespace.host:
            raise ConnectionLostError(f"{fully_qualified_namespace}: no such namespace")
        super().__init__(fully_qualified_namespace, eventhub_name, credential, **kwargs)
        self.batches_sent = 0
        self._fake_credential = credential

    async def _send_claim(self, call: str) -> None:
        self.namespace.authorize(
            await _token(self._fake_credential, self.namespace.authority),
            claim="Send",
            hub=self.eventhub_name,
            call=f"{call} {self.eventhub_name}",
        )

    async def get_partition_ids(self) -> list[str]:
        await self._send_claim("partition ids of")
        return [str(i) for i in range(len(self.namespace.partitions(self.eventhub_name)))]

    async def create_batch(
        self,
        *,
        partition_id: str | None = None,
        partition_key: str | None = None,
        max_size_in_bytes: int | None = None,
    ) -> EventDataBatch:
        if max_size_in_bytes is not None and max_size_in_bytes > MAX_EVENT_BYTES:
            raise ValueError(f"max_size_in_bytes {max_size_in_bytes} exceeds {MAX_EVENT_BYTES}")
        return EventDataBatch(
            max_size_in_bytes=max_size_in_bytes or MAX_EVENT_BYTES,
            partition_id=partition_id,
            partition_key=partition_key,
        )

    async def send_batch(self, event_data_batch: Any, **_: Any) -> None:
        if not isinstance(event_data_batch, EventDataBatch):
            raise TypeError("this fake sends EventDataBatch objects only")
        await self._send_claim("send to")
        if self.namespace.send_failures > 0:
            self.namespace.send_failures -= 1
            raise EventDataSendError("the service is unavailable (fake outage)")
        key = event_data_batch._partition_key
        index = self.namespace.partition_for(
            self.eventhub_name, key, event_data_batch._partition_id
        )
        self.namespace.sends += 1
        partition = self.namespace.partitions(self.eventhub_name)[index]
        for event in event_data_batch._internal_events:
            assert isinstance(event, EventData)
            partition.append(
                b"".join(event.body),  # type: ignore[arg-type]
                key.encode() if isinstance(key, str) else key,
                event.properties or {},
            )
        self.batches_sent += 1

    async def close(self, **_: Any) -> None:
        return None


@dataclass
class Installed:
    """What `install` patched in: the namespace, the checkpoint containers, and the client
    classes bound to them (which a bridge to another process calls on its behalf)."""

    namespace: FakeNamespace
    storages: dict[tuple[str, str], FakeStorage]
    consumer: type[FakeConsumerClient] = FakeConsumerClient
    producer: type[FakeProducerClient] = FakeProducerClient
    #: `FakeCheckpointStore` bound to `storages`, or the SDK's store `install` was given.
    checkpoint_store: Callable[..., CheckpointStore] = FakeCheckpointStore

    def storage(self, account_url: str, container: str) -> FakeStorage:
        return self.storages[(account_url, container)]


async def _token(credential: Any, authority: Authority | None) -> str | None:
    """A token only when the namespace authorizes: unit tests' credentials refuse to mint."""
    if credential is None or authority is None:
        return None
    return str((await credential.get_token("https://eventhubs.azure.net/.default")).token)


def install(
    mocker: Any,
    namespace: FakeNamespace,
    *,
    account_ids: dict[str, str] | None = None,
    checkpoint_store: Callable[..., CheckpointStore] | None = None,
) -> Installed:
    """Patch the fakes in where the adapters import the SDK clients; the checkpoint store
    authorizes with the namespace's authority, `account_ids` naming each account's ARM id.
    Given `checkpoint_store` (the SDK's own store over Azurite), that one is patched in."""
    storages: dict[tuple[str, str], FakeStorage] = defaultdict(FakeStorage)
    consumer = type("EventHubConsumerClient", (FakeConsumerClient,), {"namespace": namespace})
    producer = type("EventHubProducerClient", (FakeProducerClient,), {"namespace": namespace})
    store = type(
        "BlobCheckpointStore",
        (FakeCheckpointStore,),
        {
            "storages": storages,
            "authority": namespace.authority,
            "account_ids": dict(account_ids or {}),
        },
    )
    mocker.patch(CONSUMER_SEAM, consumer)
    mocker.patch(CHECKPOINT_SEAM, checkpoint_store or store)
    mocker.patch(PRODUCER_SEAM, producer)
    return Installed(namespace, storages, consumer, producer, checkpoint_store or store)
