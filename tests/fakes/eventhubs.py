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
- `FakeProducerClient`: batches are the SDK's own `EventDataBatch` (size enforced); the
  partition is chosen by a hash of the partition key, as the service keeps one key on one
  partition.

Checkpoints and ownership are not faked: the SDK's own `BlobCheckpointStore` keeps them in
Azurite (`checkpoint_store(storage)`, through `tests.fakes.azurite`'s authorizing transport),
so its optimistic concurrency on ownership etags is the emulator's.

Given an `Authority`, the namespace authorizes every send and receive as Event Hubs does
for Entra ID callers (the `Send` or `Listen` claim from a Data Sender or Data Receiver role
on the hub or namespace); a refusal is the service's: the link detached with
`amqp:unauthorized-access`. Storage's authority sits in the Azurite transport.

`install(mocker, namespace, checkpoint_store=...)` patches them in at the names the adapters
import.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import itertools
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from azure.eventhub import EventData, EventDataBatch
from azure.eventhub.aio import CheckpointStore, EventHubConsumerClient, EventHubProducerClient
from azure.eventhub.exceptions import ConnectionLostError, EventDataSendError
from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

from tests.fakes.authorization import Authority
from tests.fakes.azurite import AzuriteStorage

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


@dataclass(frozen=True)
class AzuriteCheckpoints:
    """The SDK's `BlobCheckpointStore` as the runtime constructs it, its calls served by
    Azurite behind the stack's authorization (`storage`); `options` reach its blob clients
    (a test's retry policy). A test reads the records straight from the container."""

    storage: AzuriteStorage
    options: Mapping[str, Any] = field(default_factory=dict)

    def __call__(
        self, blob_account_url: str, container_name: str, **kwargs: Any
    ) -> BlobCheckpointStore:
        return BlobCheckpointStore(
            blob_account_url,
            container_name,
            transport=self.storage.transport(),
            **{**self.options, **kwargs},
        )

    def records(
        self,
        container: str,
        namespace: str,
        hub: str,
        group: str,
        kind: Literal["checkpoint", "ownership"],
    ) -> dict[str, dict[str, str]]:
        """Partition id -> the metadata of its `kind` blob ("checkpoint": `sequencenumber`,
        `offset`; "ownership": `ownerid`), named as the SDK names it (lower case)."""
        if kind not in ("checkpoint", "ownership"):
            raise ValueError(f"no {kind!r} records: the store keeps checkpoint and ownership")
        prefix = f"{namespace}/{hub}/{group}/{kind}/".lower()
        return {
            name.removeprefix(prefix): metadata
            for name, metadata in self.storage.blob_metadata(container, prefix).items()
        }


def checkpoint_store(storage: AzuriteStorage, **options: Any) -> AzuriteCheckpoints:
    """The factory `install` patches in for `BlobCheckpointStore`, on `storage`."""
    return AzuriteCheckpoints(storage, options)


@dataclass
class Installed:
    """What `install` patched in: the namespace, the client classes bound to it, and the
    checkpoint store factory (which a bridge to another process calls on its behalf)."""

    namespace: FakeNamespace
    checkpoint_store: Callable[..., CheckpointStore]
    consumer: type[FakeConsumerClient] = FakeConsumerClient
    producer: type[FakeProducerClient] = FakeProducerClient


async def _token(credential: Any, authority: Authority | None) -> str | None:
    """A token only when the namespace authorizes: unit tests' credentials refuse to mint."""
    if credential is None or authority is None:
        return None
    return str((await credential.get_token("https://eventhubs.azure.net/.default")).token)


def install(
    mocker: Any, namespace: FakeNamespace, *, checkpoint_store: Callable[..., CheckpointStore]
) -> Installed:
    """Patch the fakes in where the adapters import the SDK clients, and `checkpoint_store`
    (the SDK's own store over Azurite: `checkpoint_store(storage)`) for `BlobCheckpointStore`."""
    consumer = type("EventHubConsumerClient", (FakeConsumerClient,), {"namespace": namespace})
    producer = type("EventHubProducerClient", (FakeProducerClient,), {"namespace": namespace})
    mocker.patch(CONSUMER_SEAM, consumer)
    mocker.patch(CHECKPOINT_SEAM, checkpoint_store)
    mocker.patch(PRODUCER_SEAM, producer)
    return Installed(namespace, checkpoint_store, consumer, producer)
