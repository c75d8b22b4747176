"""The findings hub as the verdict sink: verdicts as JSON events through the async producer.

Verdicts are grouped by partition key, the verdict's conversation (chat, or team/channel),
else its tenant, so one conversation's verdicts land on one partition and stay in order.
A group travels packed, as Azure Monitor streams resource logs to Event Hubs: each event's
body is `{"records": [verdict, ...]}`, in order, up to `PACK_BYTES`. Event Hubs meters
ingress in events of up to 64 KB (a throughput unit takes 1,000 a second), and the SDK's
pure-Python AMQP encoding costs per event, twice, on the consumer's event loop: one event per
verdict cost an instance a fifth of its rate and the namespace an event per verdict. Each
event also carries `verdict_count` and `severity` (the pack's highest) as application
properties, for consumers that route on them without parsing the body.

The packs go out in as few `EventDataBatch`es as fit. A failed send is retried with
exponential backoff; when the retries are spent the write raises, so the caller does not
checkpoint and the batch is delivered again. Consumers of the findings hub deduplicate on
each record's `verdict_key`: delivery is at-least-once.

A small, bounded set of recently sent keys skips re-sending what this process already sent
(a replayed batch after a failed checkpoint); it is an optimisation, not the guarantee.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from azure.core.credentials_async import AsyncTokenCredential
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubProducerClient
from azure.eventhub.exceptions import EventHubError

from graphtap.inspection.policy import highest_severity
from graphtap.processing.sinks import gather_all
from graphtap.processing.verdicts import Verdict

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/json"
#: A pack grows to this many bytes of JSON: an event up to 64 KB is one ingress event.
PACK_BYTES = 64 * 1024
_OPEN, _SEPARATOR, _CLOSE = b'{"records":[', b",", b"]}"


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    initial_delay: float = 0.5
    max_delay: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"retry attempts must be at least 1, got {self.attempts}")

    def delay(self, attempt: int) -> float:
        """Full-jitter exponential backoff: attempt 1 waits up to `initial_delay`."""
        ceiling = min(self.max_delay, self.initial_delay * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)


class SinkUnavailable(RuntimeError):
    """The findings hub refused every attempt; the batch must not be checkpointed."""


def partition_key(verdict: Verdict) -> str:
    return verdict.conversation_id or verdict.tenant_id


class RecentKeys:
    """The last `capacity` keys sent, oldest evicted first."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._keys: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def add(self, key: str) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self._capacity:
            self._keys.popitem(last=False)

    def __len__(self) -> int:
        return len(self._keys)


class EventHubsVerdictSink:
    def __init__(
        self,
        namespace: str,
        hub: str,
        *,
        credential: AsyncTokenCredential,
        retry: RetryPolicy = RetryPolicy(),
        recent_keys: int = 100_000,
        concurrent_sends: int = 32,
    ) -> None:
        self._producer = EventHubProducerClient(namespace, hub, credential)
        self._retry = retry
        self._recent = RecentKeys(recent_keys)
        # One batch per partition key: many small sends at once, but not unboundedly many.
        self._sending = asyncio.Semaphore(concurrent_sends)
        self.failed_attempts = 0

    async def write_verdicts(self, verdicts: Sequence[Verdict]) -> int:
        """Send verdicts not sent before by this process; return how many were sent."""
        groups: defaultdict[str, dict[str, Verdict]] = defaultdict(dict)
        for verdict in verdicts:
            if verdict.key not in self._recent:
                groups[partition_key(verdict)].setdefault(verdict.key, verdict)
        if not groups:
            return 0
        sent = await gather_all(
            self._send_group(key, list(group.values())) for key, group in groups.items()
        )
        return sum(sent)

    async def _send_group(self, key: str, verdicts: list[Verdict]) -> int:
        """Send one partition key's verdicts; remember them once the hub accepted them all."""
        for attempt in range(1, self._retry.attempts + 1):
            try:
                async with self._sending:
                    await self._send(key, verdicts)
            except EventHubError as error:
                self.failed_attempts += 1
                if attempt == self._retry.attempts:
                    raise SinkUnavailable(
                        f"findings hub refused {len(verdicts)} verdict(s) after {attempt} "
                        f"attempts: {type(error).__name__}"
                    ) from error
                delay = self._retry.delay(attempt)
                log.warning(
                    "findings hub send failed; retrying",
                    extra={
                        "attempt": attempt,
                        "delay": round(delay, 3),
                        "error": type(error).__name__,
                    },
                )
                await asyncio.sleep(delay)
                continue
            for verdict in verdicts:
                self._recent.add(verdict.key)
            return len(verdicts)
        raise AssertionError("RetryPolicy.attempts must be at least 1")

    async def _send(self, key: str, verdicts: list[Verdict]) -> None:
        """One partition key's verdicts, in order, packed, in as few batches as fit."""
        batch = await self._producer.create_batch(partition_key=key)
        for pack, event in _packs(verdicts):
            try:
                batch.add(event)
            except ValueError:
                if len(batch) == 0:
                    raise ValueError(
                        f"verdict {pack[0].key} is larger than one event may be"
                    ) from None
                await self._producer.send_batch(batch)
                batch = await self._producer.create_batch(partition_key=key)
                batch.add(event)
        await self._producer.send_batch(batch)

    async def close(self) -> None:
        await self._producer.close()


def records(body: bytes) -> list[dict[str, Any]]:
    """The verdicts one findings-hub event carries, in the order they were sent."""
    document = orjson.loads(body)
    packed = document.get("records") if isinstance(document, dict) else None
    if not isinstance(packed, list):
        raise ValueError('a findings-hub event is {"records": [verdict, ...]}')
    return packed


def _packs(verdicts: Sequence[Verdict]) -> Iterator[tuple[list[Verdict], EventData]]:
    """`verdicts` in order, in events of at most `PACK_BYTES` (a larger verdict alone)."""
    # orjson: compact UTF-8 JSON, a tenth of `json.dumps`'s time, on the event loop.
    empty = len(_OPEN) + len(_CLOSE) - len(_SEPARATOR)  # the first record has no separator
    pack: list[Verdict] = []
    bodies: list[bytes] = []
    size = empty
    for verdict in verdicts:
        body = orjson.dumps(verdict.to_dict())
        if bodies and size + len(_SEPARATOR) + len(body) > PACK_BYTES:
            yield pack, _event(pack, bodies)
            pack, bodies, size = [], [], empty
        pack.append(verdict)
        bodies.append(body)
        size += len(_SEPARATOR) + len(body)
    if bodies:
        yield pack, _event(pack, bodies)


def _event(pack: list[Verdict], bodies: list[bytes]) -> EventData:
    event = EventData(_OPEN + _SEPARATOR.join(bodies) + _CLOSE)
    event.content_type = CONTENT_TYPE
    event.properties = {
        "verdict_count": len(pack),
        "severity": highest_severity([v.severity for v in pack]),
    }
    return event
