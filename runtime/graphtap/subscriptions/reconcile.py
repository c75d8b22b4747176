"""Reconcile: a pure plan (desired vs. what Graph holds), then its execution, paced.

Only subscriptions whose notificationUrl is this deployment's own are ours: Graph never
returns clientState, so the URL is the ownership mark. Anything else is listed but never
touched. Running the plan twice changes nothing the second time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from graphtap.subscriptions.clock import Clock, utcnow
from graphtap.subscriptions.desired import DesiredState, DesiredSubscription
from graphtap.subscriptions.graph import (
    GraphError,
    GraphSubscription,
    GraphSubscriptions,
    NewSubscription,
)
from graphtap.subscriptions.throttle import SUBSCRIPTION_LISTS, RetryableError, WriteThrottle

#: Ask for a little less than the maximum so clock skew never makes Graph refuse it.
LIFETIME_MARGIN = dt.timedelta(minutes=5)
T = TypeVar("T")


class Kind(enum.StrEnum):
    KEEP = "keep"
    CREATE = "create"
    RENEW = "renew"
    REKEY = "rekey"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how this deployment's subscriptions deliver."""

    notification_url: str
    client_state: str
    certificate: str | None
    certificate_id: str | None
    #: Rich subscriptions' `blobStoreUrl` (payloads over 1 MB); None: the deployment has no
    #: payload store.
    blob_store_url: str | None = None

    def __repr__(self) -> str:  # clientState is a secret
        return (
            f"Target(notification_url={self.notification_url!r}, "
            f"certificate_id={self.certificate_id!r})"
        )


@dataclass(frozen=True, slots=True)
class Action:
    kind: Kind
    desired: DesiredSubscription | None
    actual: GraphSubscription | None

    @property
    def resource(self) -> str:
        if self.desired is not None:
            return self.desired.resource
        return self.actual.resource if self.actual is not None else ""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one subscription: the row of bootstrap's table."""

    resource: str
    action: str
    subscription_id: str | None
    expiration: dt.datetime | None
    error: GraphError | None = None
    subscription: GraphSubscription | None = None


def owned(actual: Sequence[GraphSubscription], notification_url: str) -> list[GraphSubscription]:
    return [s for s in actual if s.notification_url == notification_url]


def renewal_due(
    subscription: GraphSubscription, desired: DesiredSubscription, renew_at: float, now: dt.datetime
) -> bool:
    """Due once `renew_at` of the desired lifetime has passed (measured from its expiry)."""
    remaining = subscription.expiration - now
    return remaining <= desired.lifetime * (1.0 - renew_at)


def plan(
    desired: DesiredState, actual: Sequence[GraphSubscription], target: Target, now: dt.datetime
) -> list[Action]:
    """The actions that make Graph match `desired`; pure, so it is tested on its own."""
    mine: dict[tuple[str, str], GraphSubscription] = {}
    actions: list[Action] = []
    for subscription in sorted(owned(actual, target.notification_url), key=lambda s: s.id):
        if subscription.key in mine:  # a duplicate of ours: keep the one that lives longest
            other = mine[subscription.key]
            keep, drop = sorted((other, subscription), key=lambda s: s.expiration, reverse=True)
            mine[subscription.key] = keep
            actions.append(Action(Kind.DELETE, None, drop))
        else:
            mine[subscription.key] = subscription
    wanted = desired.by_key()
    for key, want in wanted.items():
        have = mine.get(key)
        if have is None:
            actions.append(Action(Kind.CREATE, want, None))
        elif want.rich and have.encryption_certificate_id != target.certificate_id:
            actions.append(Action(Kind.REKEY, want, have))
        elif renewal_due(have, want, desired.renew_at, now) or not _matches(have, want):
            actions.append(Action(Kind.RENEW, want, have))
        else:
            actions.append(Action(Kind.KEEP, want, have))
    actions.extend(
        Action(Kind.DELETE, None, have) for key, have in mine.items() if key not in wanted
    )
    return actions


def _matches(have: GraphSubscription, want: DesiredSubscription) -> bool:
    return have.include_resource_data == want.rich


class Reconciler:
    """Executes plans against Graph through the write throttle."""

    def __init__(
        self,
        graph: GraphSubscriptions,
        throttle: WriteThrottle,
        clock: Clock,
        *,
        fence: Callable[[str], None] | None = None,
    ) -> None:
        self.graph = graph
        self.throttle = throttle
        #: List pages have a budget of their own (25 per 20 s), apart from writes.
        self.lists = WriteThrottle(clock, SUBSCRIPTION_LISTS)
        self.clock = clock
        #: Raises unless this instance may write (`Leadership.fence`); None: always may.
        self.fence = fence

    async def _write(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        """A Graph write, paced by the throttle and fenced as it leaves it, retries too."""

        async def fenced() -> T:
            if self.fence is not None:
                self.fence(what)
            return await operation()

        return await self.throttle.run(fenced)

    async def list_all(self) -> list[GraphSubscription]:
        return await self.graph.list_all(pace=self.lists.run)

    async def reconcile(self, desired: DesiredState, target: Target) -> list[Outcome]:
        actual = await self.list_all()
        return await self.apply(plan(desired, actual, target, utcnow(self.clock)), target)

    async def apply(self, actions: Sequence[Action], target: Target) -> list[Outcome]:
        return list(await asyncio.gather(*(self.execute(a, target) for a in actions)))

    async def execute(self, action: Action, target: Target) -> Outcome:
        try:
            return await self._execute(action, target)
        except GraphError as error:
            actual = action.actual
            return Outcome(
                action.resource,
                f"{action.kind} failed",
                actual.id if actual else None,
                actual.expiration if actual else None,
                error,
            )
        except RetryableError as error:
            actual = action.actual
            failure = GraphError(error.status, None, f"gave up after retries: {error}", "write")
            return Outcome(
                action.resource,
                f"{action.kind} failed",
                actual.id if actual else None,
                actual.expiration if actual else None,
                failure,
            )

    async def _execute(self, action: Action, target: Target) -> Outcome:
        actual, want = action.actual, action.desired
        if action.kind is Kind.KEEP and actual is not None:
            return Outcome(action.resource, "unchanged", actual.id, actual.expiration, None, actual)
        if action.kind is Kind.DELETE and actual is not None:
            await self._write("delete", lambda: self.graph.delete(actual.id))
            return Outcome(action.resource, "deleted", actual.id, None)
        assert want is not None
        if action.kind is Kind.CREATE or actual is None:
            created = await self.create(want, target)
            return Outcome(want.resource, "created", created.id, created.expiration, None, created)
        if action.kind is Kind.REKEY:
            return await self.rekey(actual, want, target)
        return await self.renew(actual, want, target)

    async def create(self, want: DesiredSubscription, target: Target) -> GraphSubscription:
        request = NewSubscription(
            resource=want.resource,
            change_type=want.change_type,
            notification_url=target.notification_url,
            lifecycle_notification_url=target.notification_url if want.lifecycle else None,
            expiration=self.expiration(want),
            client_state=target.client_state,
            include_resource_data=want.rich,
            encryption_certificate=target.certificate if want.rich else None,
            encryption_certificate_id=target.certificate_id if want.rich else None,
            blob_store_url=target.blob_store_url if want.rich else None,
        )
        return await self._write("create", lambda: self.graph.create(request))

    async def renew(
        self, actual: GraphSubscription, want: DesiredSubscription, target: Target
    ) -> Outcome:
        """PATCH a new expiry (which also reauthorizes); a 404 means it is gone: recreate."""
        if actual.include_resource_data != want.rich:
            await self._write("delete", lambda: self.graph.delete(actual.id))
            created = await self.create(want, target)
            return Outcome(
                want.resource,
                "recreated (rich/basic changed)",
                created.id,
                created.expiration,
                None,
                created,
            )
        try:
            renewed = await self._write(
                "renew", lambda: self.graph.renew(actual.id, self.expiration(want))
            )
        except GraphError as error:
            if error.status != 404:
                raise
            created = await self.create(want, target)
            return Outcome(
                want.resource,
                "recreated (404 on renew)",
                created.id,
                created.expiration,
                None,
                created,
            )
        return Outcome(want.resource, "renewed", renewed.id, renewed.expiration, None, renewed)

    async def rekey(
        self, actual: GraphSubscription, want: DesiredSubscription, target: Target
    ) -> Outcome:
        """Move to the current certificate by PATCH; where Graph ignores it, recreate."""
        assert target.certificate is not None
        assert target.certificate_id is not None
        certificate, certificate_id = target.certificate, target.certificate_id
        try:
            updated = await self._write(
                "rekey",
                lambda: self.graph.update_certificate(
                    actual.id,
                    certificate=certificate,
                    certificate_id=certificate_id,
                    expiration=self.expiration(want),
                ),
            )
        except GraphError as error:
            if error.status not in (400, 404):
                raise
            updated = None
            # 404: already gone. 400: Graph refuses certificate changes by PATCH (one reading
            # of its docs), so the subscription still exists and must go before it is recreated.
            still_there = error.status == 400
        else:
            still_there = True
        if updated is not None and updated.encryption_certificate_id == certificate_id:
            return Outcome(want.resource, "rekeyed", updated.id, updated.expiration, None, updated)
        if still_there:
            await self._write("delete", lambda: self.graph.delete(actual.id))
        created = await self.create(want, target)
        return Outcome(
            want.resource,
            "recreated (new certificate)",
            created.id,
            created.expiration,
            None,
            created,
        )

    def expiration(self, want: DesiredSubscription) -> dt.datetime:
        return utcnow(self.clock) + want.lifetime - LIFETIME_MARGIN
