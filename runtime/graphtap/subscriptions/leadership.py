"""One control plane at a time: a blob lease elects the leader, and fences its Graph writes.

Every web host runs `Leadership.hold`. A standby tries to acquire the lease on the
`leader` blob every half lease period; the leader renews it every third. `is_leader()` is
this instance's own conservative view on its monotonic clock: a term is trusted until
`duration - margin` after the acquire or renew that extended it was *sent*, and the service
starts counting only when it receives the call, so the view ends before the lease can. A
frozen or partitioned leader therefore stops trusting itself before anyone else can acquire.

Every Graph write calls `fence()` first (`Reconciler` does, just before each write leaves
the throttle): a leader whose term lapsed writes nothing more. Locally there is one process
and no lease: `Leadership.single()` is always leader.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
from azure.storage.blob.aio import BlobLeaseClient, ContainerClient

from graphtap.subscriptions.clock import Clock

log = logging.getLogger(__name__)

LEADER_BLOB = "leader"
#: Azure Blob Storage's bounds for a finite lease, in seconds.
MIN_LEASE, MAX_LEASE = 15, 60


class NotLeader(RuntimeError):
    """A Graph write was about to leave an instance that does not hold the lease."""


class LeaseTaken(Exception):
    """Another instance holds the lease (or took it over once ours expired)."""


class Lease(Protocol):
    """The lease service: Azure Blob Storage's lease on one blob."""

    async def acquire(self, seconds: int) -> str:
        """A new lease id; `LeaseTaken` while another holder's lease is live."""
        ...

    async def renew(self, lease_id: str) -> None:
        """Extend the lease by its duration; `LeaseTaken` once another holder has it."""
        ...

    async def release(self, lease_id: str) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class LeaderSettings:
    #: The lease period in seconds (Blob Storage allows 15 to 60).
    duration: int = 30
    #: How much earlier than the lease this instance stops trusting its term: room for the
    #: call's time on the wire and for the two clocks' rates to differ.
    margin: float = 5.0

    def __post_init__(self) -> None:
        if not MIN_LEASE <= self.duration <= MAX_LEASE:
            raise ValueError(
                f"lease duration must be {MIN_LEASE} to {MAX_LEASE} s, got {self.duration}"
            )
        if not 0 < self.margin < self.duration / 3:
            raise ValueError(
                f"lease margin must be above 0 and below a third of the lease "
                f"({self.duration / 3:.1f} s), got {self.margin}"
            )

    @property
    def renew_every(self) -> float:
        return self.duration / 3

    @property
    def standby_poll(self) -> float:
        """A standby's acquire attempts: the lease of a dead leader is taken within
        `duration + standby_poll`, inside two lease periods."""
        return self.duration / 2


class Leadership:
    """This instance's part in the election: hold the lease while it can, and say whether
    it is leader (`is_leader`, `fence`) and for which term."""

    def __init__(
        self,
        lease: Lease | None,
        clock: Clock,
        *,
        instance: str,
        settings: LeaderSettings = LeaderSettings(),
    ) -> None:
        self.lease = lease
        self.clock = clock
        self.instance = instance
        self.settings = settings
        #: Counts terms won; the control plane starts afresh (reconciles) in each.
        self.term = 0
        self._lease_id: str | None = None
        self._valid_until = float("-inf")
        self._elected = asyncio.Event()
        self._ended = asyncio.Event()
        if lease is None:  # one process, no election
            self.term = 1
            self._valid_until = float("inf")
            self._elected.set()

    @classmethod
    def single(cls, clock: Clock, instance: str = "local") -> Leadership:
        """Always leader: the local, single-process control plane."""
        return cls(None, clock, instance=instance)

    # -- what the control plane asks ------------------------------------------------------

    def is_leader(self) -> bool:
        return self.clock.monotonic() < self._valid_until

    @property
    def role(self) -> str:
        return "leader" if self.is_leader() else "standby"

    def fence(self, what: str) -> None:
        """Refuse a Graph write unless this instance's term is still valid."""
        if not self.is_leader():
            raise NotLeader(f"{self.instance} is not the leader: {what} not sent")

    async def elected(self, stop: asyncio.Event) -> int | None:
        """This instance's term once it leads (at once if it does), or None if `stop` is set
        first."""
        await _first(self._elected, stop)
        return self.term if self._elected.is_set() else None

    async def term_over(self, term: int, stop: asyncio.Event) -> None:
        """Return once `term` has ended (lease lost, lapsed or released) or `stop` is set."""
        if self.term != term or not self._elected.is_set():
            return
        await _first(self._ended, stop)

    # -- the lease ------------------------------------------------------------------------

    async def hold(self, stop: asyncio.Event) -> None:
        """Acquire and renew the lease until `stop`, then release it."""
        if self.lease is None:
            await stop.wait()
            return
        try:
            while not stop.is_set():
                await self._step()
                wait = (
                    self.settings.renew_every
                    if self._lease_id is not None
                    else self.settings.standby_poll
                )
                await _sleep_unless(self.clock, wait, stop)
        finally:
            await self._release()

    async def _step(self) -> None:
        assert self.lease is not None
        duration = self.settings.duration
        sent = self.clock.monotonic()
        if self._lease_id is not None and sent >= self._valid_until:
            # Frozen past our own view of the term: whatever the service says, it is over.
            self._end("its term lapsed before it could renew")
        try:
            if self._lease_id is None:
                self._lease_id = await self.lease.acquire(duration)
                self._begin(sent)
            else:
                await self.lease.renew(self._lease_id)
                self._valid_until = sent + duration - self.settings.margin
        except LeaseTaken:
            if self._lease_id is not None:
                self._end("another instance holds the lease")
        except (AzureError, OSError) as error:
            # The term runs out on its own if storage stays unreachable; retried next round.
            log.warning("leader lease (%s): %s", self.instance, error)

    def _begin(self, sent: float) -> None:
        self.term += 1
        self._valid_until = sent + self.settings.duration - self.settings.margin
        self._ended = asyncio.Event()
        self._elected.set()
        log.info("%s leads the control plane (term %d)", self.instance, self.term)

    def _end(self, why: str) -> None:
        log.warning("%s is no longer the leader: %s", self.instance, why)
        self._lease_id = None
        self._valid_until = float("-inf")
        self._elected.clear()
        self._ended.set()

    async def _release(self) -> None:
        if self.lease is None:
            return
        lease_id, self._lease_id = self._lease_id, None
        if lease_id is not None:
            self._end("stopping")
            try:
                await self.lease.release(lease_id)
            except (LeaseTaken, AzureError, OSError) as error:
                # The lease then expires by itself; a standby waits one period longer.
                log.warning("leader lease not released (%s): %s", self.instance, error)
        await self.lease.close()


class BlobLease:
    """The lease on `<container>/leader` in the runtime's storage account (Entra ID)."""

    def __init__(
        self,
        account_url: str,
        container: str,
        credential: AsyncTokenCredential,
        *,
        blob: str = LEADER_BLOB,
        **client_options: Any,
    ) -> None:
        self.where = f"{account_url.rstrip('/')}/{container}/{blob}"
        self._container = ContainerClient(
            account_url, container, credential=credential, **client_options
        )
        self._blob = self._container.get_blob_client(blob)

    async def acquire(self, seconds: int) -> str:
        lease = BlobLeaseClient(self._blob)
        try:
            await lease.acquire(lease_duration=seconds)
        except ResourceNotFoundError as error:
            if _code(error) != "BlobNotFound":
                raise LeaseUnavailable(f"{self.where}: {_code(error)}") from None
            await self._create()
            await lease.acquire(lease_duration=seconds)
        except HttpResponseError as error:
            if error.status_code == 409:  # LeaseAlreadyPresent
                raise LeaseTaken(f"{self.where}: {_code(error)}") from None
            raise
        return str(lease.id)

    async def _create(self) -> None:
        """The lease needs a blob to hold: an empty one, created once by whoever is first."""
        try:
            await self._blob.upload_blob(b"", overwrite=False)
        except HttpResponseError as error:
            if error.status_code != 409:  # 409: another instance created it meanwhile
                raise

    async def renew(self, lease_id: str) -> None:
        try:
            await BlobLeaseClient(self._blob, lease_id=lease_id).renew()
        except HttpResponseError as error:
            if error.status_code == 409:  # LeaseIdMismatchWithLeaseOperation: taken over
                raise LeaseTaken(f"{self.where}: {_code(error)}") from None
            raise

    async def release(self, lease_id: str) -> None:
        try:
            await BlobLeaseClient(self._blob, lease_id=lease_id).release()
        except HttpResponseError as error:
            if error.status_code == 409:
                raise LeaseTaken(f"{self.where}: {_code(error)}") from None
            raise

    async def close(self) -> None:
        await self._container.close()


class LeaseUnavailable(AzureError):
    """The lease's container is missing: the stack creates it, the runtime never does."""


def _code(error: HttpResponseError) -> str:
    """The service's error code (x-ms-error-code), which the storage SDK sets on its errors."""
    return str(getattr(error, "error_code", None) or error.status_code)


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _sleep_unless(clock: Clock, seconds: float, stop: asyncio.Event) -> None:
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((sleeper, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()
        stopped.cancel()
