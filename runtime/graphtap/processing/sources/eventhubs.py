"""Azure Event Hubs as the source: the SDK's load-balancing consumer with blob checkpoints.

Every instance runs an `EventHubConsumerClient` against the same consumer group and blob
checkpoint store; the SDK's load balancer spreads the partitions across instances through
ownership records in the store, so in steady state each partition has exactly one reader.
For each partition the SDK hands over batches in order; this source only receives them and
hands each to `on_batch` (the `BatchHandler`: pipeline, commit, then this partition's
checkpoint). If anything fails, the callback raises: the SDK reports it, closes the
partition and claims it again on its next load-balancing round, resuming from the last
checkpoint, so the batch is delivered again and the keyed stores absorb the repeat.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from azure.core.credentials_async import AsyncTokenCredential
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubConsumerClient, PartitionContext
from azure.eventhub.amqp import AmqpMessageBodyType
from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

from graphtap.deployment import Deployment
from graphtap.processing.partitions import PartitionMeter
from graphtap.processing.sources import SourceEvent

log = logging.getLogger(__name__)


class Handler(Protocol):
    """What a received batch goes to (`BatchHandler`): the events, and how to checkpoint
    them once they are durable."""

    async def handle(
        self, batch: Sequence[SourceEvent], *, checkpoint: Callable[[], Awaitable[None]]
    ) -> object: ...


EARLIEST = "-1"
LATEST = "@latest"


def starting_position(text: str) -> str | dt.datetime:
    """Where a partition without a checkpoint starts: earliest, latest or an ISO-8601 time."""
    value = text.strip().lower()
    if value == "earliest":
        return EARLIEST
    if value == "latest":
        return LATEST
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"start position {text!r} is not 'earliest', 'latest' or an ISO-8601 time"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class EventHubsSourceSettings:
    namespace: str  # fully qualified, e.g. graphtap-dev.servicebus.windows.net
    hub: str
    consumer_group: str
    checkpoint_account_url: str
    checkpoint_container: str
    start: str = "earliest"  # only for partitions that have no checkpoint yet
    max_batch_size: int = 256
    max_wait_time: float = 5.0
    prefetch: int = 512
    load_balancing_interval: float = 10.0
    ownership_expiration: float = 60.0

    def __post_init__(self) -> None:
        starting_position(self.start)
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {self.max_batch_size}")
        if self.ownership_expiration <= self.load_balancing_interval:
            raise ValueError("ownership_expiration must be longer than load_balancing_interval")

    @classmethod
    def from_deployment(cls, deployment: Deployment, **options: Any) -> EventHubsSourceSettings:
        return cls(
            namespace=deployment.eventhub_namespace_host,
            hub=deployment.notifications_hub,
            consumer_group=deployment.consumer_group,
            checkpoint_account_url=deployment.checkpoint_account_url,
            checkpoint_container=deployment.checkpoint_container,
            **options,
        )


class EventHubsSource:
    """Consume until `stop` is set; several instances share the partitions."""

    def __init__(
        self,
        settings: EventHubsSourceSettings,
        *,
        credential: AsyncTokenCredential,
        handler: Handler,
        meter: PartitionMeter | None = None,
    ) -> None:
        self.settings = settings
        self._credential = credential
        self._handler = handler
        self.meter = meter or PartitionMeter()
        self.receiving = False
        self.errors = 0

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        store = BlobCheckpointStore(
            s.checkpoint_account_url, s.checkpoint_container, credential=self._credential
        )
        client = EventHubConsumerClient(
            s.namespace,
            s.hub,
            s.consumer_group,
            self._credential,
            checkpoint_store=store,
            load_balancing_interval=s.load_balancing_interval,
            partition_ownership_expiration_interval=s.ownership_expiration,
        )
        receiving = asyncio.create_task(
            client.receive_batch(
                self._on_batch,
                max_batch_size=s.max_batch_size,
                max_wait_time=s.max_wait_time,
                prefetch=s.prefetch,
                starting_position=starting_position(s.start),
                track_last_enqueued_event_properties=True,
                on_error=self._on_error,
                on_partition_initialize=self._on_partition_initialize,
                on_partition_close=self._on_partition_close,
            ),
            name="eventhubs-receive",
        )
        stopping = asyncio.create_task(stop.wait(), name="eventhubs-stop")
        self.receiving = True
        try:
            await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.receiving = False
            stopping.cancel()
            await client.close()  # stops the processor; ownership is released for the others
            await store.close()
            # The SDK's balancing loop may still sleep out its interval: end it now.
            receiving.cancel()
            [outcome] = await asyncio.gather(receiving, return_exceptions=True)
        if isinstance(outcome, Exception):
            raise outcome  # receiving itself failed, not just stopped

    async def _on_batch(self, context: PartitionContext, events: list[EventData]) -> None:
        partition = context.partition_id
        if not events:  # max_wait_time passed with nothing new
            self._observe_head(context)
            return
        batch = [SourceEvent(partition, _sequence(e), _body(e)) for e in events]
        last = events[-1]
        await self._handler.handle(batch, checkpoint=lambda: context.update_checkpoint(last))
        self.meter.observe(partition, last_sequence=_sequence(last))
        self._observe_head(context)

    def _observe_head(self, context: PartitionContext) -> None:
        head = context.last_enqueued_event_properties
        if head and head.get("sequence_number") is not None:
            self.meter.observe(
                context.partition_id, last_sequence=None, last_enqueued=head["sequence_number"]
            )

    async def _on_error(self, context: PartitionContext | None, error: Exception) -> None:
        """The SDK closes the partition and claims it again later; the checkpoint has not moved."""
        self.errors += 1
        log.warning(
            "partition receive failed; it resumes from its last checkpoint",
            extra={
                "partition": context.partition_id if context is not None else None,
                "error": type(error).__name__,
            },
        )

    async def _on_partition_initialize(self, context: PartitionContext) -> None:
        self.meter.observe(context.partition_id, last_sequence=None, owned=True)
        log.info("partition claimed", extra={"partition": context.partition_id})

    async def _on_partition_close(self, context: PartitionContext, reason: Any) -> None:
        self.meter.release(context.partition_id)
        log.info(
            "partition released", extra={"partition": context.partition_id, "reason": str(reason)}
        )


def _sequence(event: EventData) -> int:
    if event.sequence_number is None:
        raise ValueError("received an event without a sequence number")
    return event.sequence_number


def _body(event: EventData) -> bytes:
    """The raw body; Graph writes JSON as a data body, anything else is left to the parser."""
    if event.body_type == AmqpMessageBodyType.DATA:
        return b"".join(event.body)  # type: ignore[arg-type]
    body = event.body
    if isinstance(body, bytes):
        return body
    return str(body).encode()
