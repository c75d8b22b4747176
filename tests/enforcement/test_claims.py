"""Two instances holding the same action (each wrote it in its own commit, as with
`processor = "both"`) apply it once: they agree through the verdict ledger's container,
served by Azurite."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

from graphtap.enforcement.actor import Enforcer
from graphtap.enforcement.messages import TeamsMessages
from graphtap.processing.outbox import ALREADY_APPLIED, APPLIED, FORBIDDEN, PENDING, ActionOutbox
from graphtap.processing.sinks.ledger import BlobVerdictLedger
from graphtap.subscriptions.graph import build_client
from graphtap.subscriptions.throttle import ThrottleSettings, WriteThrottle
from tests.enforcement.conftest import CARD, Teams
from tests.fakes.azure_transport import TokenCredential
from tests.fakes.azurite import AuthorizingTransport, AzuriteStorage
from tests.subscriptions.conftest import FakeCredential

LEDGER = "verdict-ledger"


class SettledAfterARead(AuthorizingTransport):
    """The ledger's transport, holding a claimant's settle (its `If-Match` write) until another
    instance has read the claim.

    Azurite is a real round trip away, so without the hold the other instance may read only
    after the claimant settled, and record `already_applied` at once: correct too, but not the
    overlap this test is about.
    """

    def __init__(self, storage: AzuriteStorage, read: asyncio.Event) -> None:
        super().__init__(storage)
        self.read = read

    async def send(self, request: Any, **kwargs: Any) -> Any:
        if request.method == "PUT" and "If-Match" in request.headers:
            await asyncio.wait_for(self.read.wait(), timeout=10)
        response = await super().send(request, **kwargs)
        if request.method == "GET":
            self.read.set()
        return response


def instance(
    teams: Teams, outbox: ActionOutbox, ledger: AzuriteStorage, name: str, read: asyncio.Event
) -> Enforcer:
    """One web app instance's actor: its own outbox, the shared ledger."""
    claims = BlobVerdictLedger(
        ledger.account_url,
        LEDGER,
        credential=TokenCredential(),
        owner=name,
        transport=SettledAfterARead(ledger, read),
    )
    return Enforcer(
        outbox,
        TeamsMessages(build_client(FakeCredential(), transport=teams.graph)),
        teams.clock,
        WriteThrottle(teams.clock, ThrottleSettings(rate=5.0, burst=10, concurrency=4)),
        claims=claims,
    )


def test_two_instances_with_the_same_action_patch_once(
    teams: Teams, azurite_storage: AzuriteStorage
) -> None:
    ledger = azurite_storage
    ledger.create_container(LEDGER)
    other = ActionOutbox(teams.tmp / "other-instance.sqlite")

    async def scenario() -> tuple[Counter[str], Counter[str]]:
        teams.post(CARD)
        (verdict,) = await teams.process()
        assert verdict.action is not None
        other.put([verdict.action])  # the second instance committed the same change
        read = asyncio.Event()
        first = instance(teams, teams.outbox, ledger, "web-1", read)
        second = instance(teams, other, ledger, "web-2", read)
        try:
            # Both drain at once: one claims and applies, the other waits its turn.
            together = sum(await asyncio.gather(first.drain(), second.drain()), Counter())
            return together, await second.drain() + await first.drain()
        finally:
            await first.close()
            await second.close()

    try:
        together, after = asyncio.run(scenario())
        records = [outbox.records()[0].status for outbox in (teams.outbox, other)]
    finally:
        other.close()
    assert together == Counter({APPLIED: 1, PENDING: 1})
    assert after == Counter({ALREADY_APPLIED: 1})
    assert sorted(records) == sorted([APPLIED, ALREADY_APPLIED])
    assert len([r for r in teams.graph.requests if r[0] == "PATCH"]) == 1


def test_a_refused_action_is_not_settled_for_the_other_instances(
    teams: Teams, azurite_storage: AzuriteStorage
) -> None:
    """Graph refused the PATCH (a permission missing here): the claim is left to lapse, so
    another instance meets the refusal itself instead of recording `already_applied`."""
    azurite_storage.create_container(LEDGER)
    teams.graph.permissions = {"Chat.Read.All", "ChannelMessage.Read.All"}

    async def scenario() -> tuple[Counter[str], str]:
        teams.post(CARD)
        (verdict,) = await teams.process()
        first = instance(teams, teams.outbox, azurite_storage, "web-1", asyncio.Event())
        try:
            outcomes = await first.drain()
        finally:
            await first.close()
        blob = azurite_storage.blob(LEDGER, f"action-{verdict.key}.json")
        return outcomes, json.loads(blob)["state"]

    outcomes, state = asyncio.run(scenario())
    assert outcomes == Counter({FORBIDDEN: 1})
    assert state == "claimed"
