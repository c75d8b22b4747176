"""One delivery per verdict across every host: a ledger of verdict keys in Blob Storage.

Several writers can meet the same change: with `processor = "both"` the web app and the
Function App each read the notifications hub in their own consumer group, a `missed` resync
reads again what the live path may already have sent, and partitions move between instances.
Each of them would send the same verdict to the findings hub. The ledger makes them agree
on one sender per verdict key before anything is sent:

1. **claim**: create `<key>.json` with `If-None-Match: *` (`{"state": "claimed", "owner",
   "at"}`). Created: this writer sends. The blob exists and says `sent`: nobody sends again.
   It says `claimed` by another writer: that writer sends, unless its claim is older than
   `claim_ttl` (it crashed or hung between claiming and settling), and then this writer
   takes the claim over (`If-Match` its ETag).
2. **send** through the wrapped sink, renewing the claims every third of `claim_ttl` while
   it runs (a send waiting out long throttling is alive, not hung); a failure raises, the
   claims stay this writer's, and the batch delivered again finds them its own.
3. **settle**: overwrite the claim with `sent` (`If-Match` the claim's ETag).
4. **wait** for the keys other writers hold, polling their claims until each is sent or
   expired. A writer waits only once it holds nothing unsettled, so two writers that meet
   the same keys in opposite orders never wait for each other.

So a change is sent once while its writers are alive, and at least once when one dies
between sending and settling: the keyed consumers' rule still holds. Claims carry the
writer's wall clock (`at`): hosts in one region keep clocks within seconds of each other,
far inside `claim_ttl`. The stack's lifecycle rule deletes ledger blobs after the hub's
retention, beyond which no event can be delivered again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from azure.core import MatchConditions
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import ContentSettings
from azure.storage.blob.aio import ContainerClient

from graphtap.processing.sinks import AsyncVerdictSink, gather_storage
from graphtap.processing.verdicts import Verdict

log = logging.getLogger(__name__)

JSON = ContentSettings(content_type="application/json")
CLAIMED = "claimed"
SENT = "sent"
HELD = "held"  # claimed by another writer, not yet settled


class LedgerUnavailable(RuntimeError):
    """Blob Storage refused the ledger; the batch must not be sent or checkpointed."""


@dataclass(frozen=True)
class LedgerSettings:
    #: How long a claim holds before another writer may take it over: longer than a send
    #: with its retries takes, short enough that a crashed writer's verdicts move on.
    claim_ttl: float = 120.0
    #: Polling for another writer's claim to settle: first and longest wait.
    poll_initial: float = 0.05
    poll_max: float = 2.0
    concurrent_requests: int = 32

    def __post_init__(self) -> None:
        if self.claim_ttl <= 0 or self.poll_initial <= 0 or self.poll_max < self.poll_initial:
            raise ValueError(f"ledger timings must be positive and ordered: {self}")
        if self.concurrent_requests < 1:
            raise ValueError(
                f"concurrent_requests must be at least 1, got {self.concurrent_requests}"
            )


@dataclass(frozen=True)
class Claim:
    key: str
    etag: str


def writer_id() -> str:
    """This writer's name in its claims: the instance, and a nonce per process start."""
    instance = os.environ.get("WEBSITE_INSTANCE_ID") or socket.gethostname()
    return f"{instance[:32]}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


class BlobVerdictLedger:
    def __init__(
        self,
        account_url: str,
        container: str,
        *,
        credential: AsyncTokenCredential,
        settings: LedgerSettings = LedgerSettings(),
        owner: str | None = None,
        clock: Callable[[], float] = time.time,
        **client_options: Any,
    ) -> None:
        """`client_options` go to the `ContainerClient` (a transport, retry settings)."""
        self._container = ContainerClient(
            account_url, container, credential=credential, **client_options
        )
        self.location = f"{account_url.rstrip('/')}/{container}"
        self.owner = owner or writer_id()
        self.settings = settings
        self._clock = clock
        self._requests = asyncio.Semaphore(settings.concurrent_requests)
        self.taken_over = 0  # claims of writers that never settled them

    async def claim(self, keys: Sequence[str]) -> tuple[list[Claim], list[str]]:
        """Claim each key without waiting: the claims this writer now holds and must send,
        and the keys another writer holds unsettled. Keys already sent are in neither."""
        outcomes = await self._each(self._claim, keys, "claim")
        claims = [o for o in outcomes if isinstance(o, Claim)]
        held = [key for key, o in zip(keys, outcomes, strict=True) if o == HELD]
        return claims, held

    @contextlib.asynccontextmanager
    async def holding(self, claims: Sequence[Claim]) -> AsyncIterator[list[Claim]]:
        """`claims`, renewed every third of `claim_ttl` until the block ends: the list
        yielded holds their latest ETags, to settle with."""
        held = list(claims)

        async def renew() -> None:
            while True:
                await asyncio.sleep(self.settings.claim_ttl / 3)
                try:
                    held[:] = await self._each(self._renew, held, "renew")
                except LedgerUnavailable as error:  # the next round tries again
                    log.warning("verdict claims not renewed: %s", error)

        task = asyncio.create_task(renew())
        try:
            yield held
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def settle(self, claims: Sequence[Claim]) -> None:
        """Record the claims' verdicts as sent."""
        await self._each(self._settle, claims, "settle")

    async def close(self) -> None:
        await self._container.close()

    async def _each(self, call: Callable[[Any], Any], items: Sequence[Any], what: str) -> list[Any]:
        return await gather_storage(
            [call(item) for item in items],
            unavailable=LedgerUnavailable,
            describe=lambda failed, total: (
                f"{failed} of {total} verdict keys could not {what} in {self.location}"
            ),
        )

    async def _claim(self, key: str) -> Claim | str:
        """The claim, `SENT`, or `HELD` (by another writer, within its `claim_ttl`)."""
        while True:
            created = await self._put(key, CLAIMED, etag=None)
            if created is not None:
                return Claim(key, created)
            found = await self._read(key)
            if found is None:
                continue  # expired and deleted between the two calls: claim again
            record, etag = found
            if record.get("state") == SENT:
                return SENT
            if record.get("owner") == self.owner:
                return Claim(key, etag)  # this writer's own claim, from a failed send
            if self._clock() - float(record.get("at", 0)) <= self.settings.claim_ttl:
                return HELD
            taken = await self._put(key, CLAIMED, etag=etag)
            if taken is not None:
                self.taken_over += 1
                log.warning(
                    "verdict claim taken over from a writer that never settled it",
                    extra={"verdict_key": key, "state": str(record.get("owner"))},
                )
                return Claim(key, taken)
            # Someone settled or took it first: read again.

    async def _renew(self, claim: Claim) -> Claim:
        etag = await self._put(claim.key, CLAIMED, etag=claim.etag)
        if etag is None:
            log.warning(
                "verdict claim taken over while it was being sent; it may be delivered twice",
                extra={"verdict_key": claim.key},
            )
            return claim
        return Claim(claim.key, etag)

    async def _settle(self, claim: Claim) -> None:
        if await self._put(claim.key, SENT, etag=claim.etag) is None:
            # Another writer took the claim over after `claim_ttl`: it sends again.
            log.warning(
                "verdict settled after its claim was taken over; it may be delivered twice",
                extra={"verdict_key": claim.key},
            )

    async def _put(self, key: str, state: str, *, etag: str | None) -> str | None:
        """Write the record; the new ETag, or None when the condition failed."""
        record = orjson.dumps({"state": state, "owner": self.owner, "at": self._clock()})
        conditions: dict[str, Any] = (
            {"overwrite": False}
            if etag is None
            else {"overwrite": True, "etag": etag, "match_condition": MatchConditions.IfNotModified}
        )
        try:
            async with self._requests:
                blob = self._container.get_blob_client(_blob_name(key))
                written = await blob.upload_blob(record, content_settings=JSON, **conditions)
        except (ResourceExistsError, ResourceModifiedError):
            return None
        return str(written["etag"])

    async def _read(self, key: str) -> tuple[dict[str, Any], str] | None:
        try:
            async with self._requests:
                download = await self._container.download_blob(_blob_name(key))
                content = await download.readall()
        except ResourceNotFoundError:
            return None
        return orjson.loads(content), str(download.properties.etag)


class LedgeredSink:
    """A verdict sink that sends each verdict key once across every writer of the ledger."""

    def __init__(self, sink: AsyncVerdictSink, ledger: BlobVerdictLedger) -> None:
        self._sink = sink
        self._ledger = ledger
        # Keys this process is claiming or sending right now (resync and the live path can
        # meet one change at once): a second comer waits for the first instead of the ledger.
        self._in_flight: dict[str, asyncio.Future[None]] = {}

    async def write_verdicts(self, verdicts: Sequence[Verdict]) -> int:
        unique = {verdict.key: verdict for verdict in verdicts}
        elsewhere = [self._in_flight[key] for key in unique if key in self._in_flight]
        mine = {key: v for key, v in unique.items() if key not in self._in_flight}
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for key in mine:
            self._in_flight[key] = done
        try:
            sent = await self._send_once(mine)
            done.set_result(None)
        except BaseException as error:
            if isinstance(error, asyncio.CancelledError):
                done.cancel()
            else:
                done.set_exception(error)
                done.exception()  # retrieved: a waiter, if any, raises it itself
            raise
        finally:
            for key in mine:
                del self._in_flight[key]
        # The other batch's outcome is this batch's: its failure must stop this checkpoint.
        for pending in elsewhere:
            await asyncio.shield(pending)
        return sent

    async def _send_once(self, verdicts: dict[str, Verdict]) -> int:
        """Send the verdicts this writer claims; wait out those other writers hold."""
        settings = self._ledger.settings
        delay = settings.poll_initial
        remaining = list(verdicts)
        sent = 0
        while remaining:
            claims, remaining = await self._ledger.claim(remaining)
            if claims:
                async with self._ledger.holding(claims) as held:
                    await self._sink.write_verdicts([verdicts[claim.key] for claim in claims])
                await self._ledger.settle(held)
                sent += len(claims)
            if remaining:
                await asyncio.sleep(delay)
                delay = min(delay * 2, settings.poll_max)
        return sent

    async def close(self) -> None:
        try:
            await self._sink.close()
        finally:
            await self._ledger.close()


def _blob_name(key: str) -> str:
    return f"{key}.json"
