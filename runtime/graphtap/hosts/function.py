"""The Azure Functions host's handler: a batch of Event Hubs events through the same pipeline.

The Functions host owns the Event Hubs client, the partition leases and the checkpoints; it
checkpoints a batch when the invocation returns. So the handler raises when the findings
hub (or a local store) refuses the batch, and `function_app.py` declares an unlimited retry
policy: the invocation is retried with backoff and the checkpoint does not move until the
batch is durable. The handler is built once per worker process and reused.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from graphtap.processing.handler import BatchHandler
from graphtap.processing.sources import SourceEvent

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

    from graphtap.hosts.azure import AzureServiceOptions

log = logging.getLogger(__name__)


class TriggerEvent(Protocol):
    """What the handler needs of `azure.functions.EventHubEvent`."""

    @property
    def sequence_number(self) -> int | None: ...
    @property
    def metadata(self) -> Mapping[str, Any] | None: ...
    def get_body(self) -> bytes: ...


class FunctionHandler:
    """The trigger's events as `SourceEvent`s, through the one batch handler."""

    def __init__(self, handler: BatchHandler) -> None:
        self.handler = handler

    async def handle(self, events: Sequence[TriggerEvent]) -> None:
        batch = [
            SourceEvent(partition_of(event), _sequence(event), event.get_body()) for event in events
        ]
        await self.handler.handle(batch, checkpoint=_host_checkpoints)


async def _host_checkpoints() -> None:
    """Nothing to do here: the Functions host checkpoints once the invocation returns."""


def partition_of(event: TriggerEvent) -> str:
    """The partition id from the trigger's metadata (`PartitionContext.PartitionId`)."""
    metadata = event.metadata or {}
    context = metadata.get("PartitionContext")
    if isinstance(context, Mapping) and context.get("PartitionId") is not None:
        return str(context["PartitionId"])
    return "unknown"


def _sequence(event: TriggerEvent) -> int:
    if event.sequence_number is None:
        raise ValueError("the trigger delivered an event without a sequence number")
    return int(event.sequence_number)


_handler: FunctionHandler | None = None
_lock = asyncio.Lock()


async def shared_handler(settings: Mapping[str, str] = os.environ) -> FunctionHandler:
    """The worker's handler, opened on first use from the app settings."""
    global _handler
    async with _lock:
        if _handler is None:
            _handler = await open_handler(settings)
        return _handler


async def open_handler(
    settings: Mapping[str, str],
    *,
    credential: AsyncTokenCredential | None = None,
    options: AzureServiceOptions | None = None,
) -> FunctionHandler:
    """The handler the Function App runs, from its app settings; `credential` defaults to
    the runtime's managed identity, `options` to the environment's policy."""
    from graphtap.deployment import Deployment
    from graphtap.hosts.azure import AzureProcessing, AzureServiceOptions, deployed_policy
    from graphtap.hosts.commands.options import HASH_KEY_ENV
    from graphtap.telemetry import (
        configure_azure_monitor,
        observe_metrics,
    )

    configure_azure_monitor(settings)
    deployment = Deployment.from_app_settings(settings)
    if credential is None:
        from azure.identity.aio import DefaultAzureCredential

        credential = DefaultAzureCredential(
            managed_identity_client_id=deployment.runtime_client_id,
            authority=deployment.profile.authority_host,
        )
    if options is None:
        options = AzureServiceOptions(
            policy=deployed_policy(settings, deployment.environment),
            # Else the environment's key from Key Vault, as every instance reads it.
            hash_key=bytes.fromhex(settings[HASH_KEY_ENV]) if HASH_KEY_ENV in settings else None,
        )
    processing = await AzureProcessing.open(deployment, credential, options)
    observe_metrics(lambda: processing.summary.observations())
    # No control plane runs here to announce a rotation: the handler looks for it itself.
    return FunctionHandler(processing.handler(watch_certificate=True))
