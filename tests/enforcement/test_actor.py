"""The actor against the fake Graph through msgraph-sdk: every outcome recorded, each action
applied once, Graph's rules (permission, licence, 404, throttling) obeyed."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError
from click.testing import CliRunner

from graphtap.hosts.cli import cli
from graphtap.hosts.commands import actions
from graphtap.processing.outbox import ALREADY_APPLIED, APPLIED, FORBIDDEN, GONE, PENDING
from graphtap.processing.sinks.ledger import LedgerUnavailable
from graphtap.processing.sources.localhub import LocalHubSource
from tests.enforcement.conftest import CARD, CHANNEL, TIP, Teams, teams_bench
from tests.subscriptions.conftest import FakeCredential


def patches(teams: Teams) -> list[tuple[str, str, int]]:
    return [r for r in teams.graph.requests if r[0] == "PATCH"]


def test_an_action_is_applied_once_and_recorded(teams: Teams) -> None:
    async def scenario() -> None:
        message = teams.post(CARD)
        (verdict,) = await teams.process()
        assert verdict.action is not None
        assert verdict.action.state == "pending"
        assert await teams.enforce() == {APPLIED: 1}
        violation = teams.graph.violation_of(message.id)
        assert violation is not None
        assert violation["dlpAction"].lower() == "blockaccess"
        assert violation["policyTip"]["generalText"] == TIP
        assert violation["policyTip"]["matchedConditionDescriptions"] == ["credit_card_number"]
        assert violation["verdictDetails"].lower() == "allowoverridewithjustification"
        record = teams.outbox.get(verdict.key)
        assert record is not None
        assert record.status == APPLIED
        assert record.attempts == 1
        assert await teams.enforce() == {}  # nothing pending: never applied twice

    asyncio.run(scenario())
    assert len(patches(teams)) == 1


def test_a_channel_message_is_patched_on_its_channel(teams: Teams) -> None:
    async def scenario() -> None:
        message = teams.post(CARD, CHANNEL)
        await teams.process()
        assert await teams.enforce() == {APPLIED: 1}
        assert teams.graph.violation_of(message.id) is not None

    asyncio.run(scenario())
    ((_, path, status),) = patches(teams)
    assert path.startswith(f"/teams/{CHANNEL.team_id}/channels/")
    assert status == 204


def test_a_redelivered_batch_adds_no_second_action(teams: Teams) -> None:
    async def scenario() -> None:
        teams.post(CARD)
        source = LocalHubSource(teams.tmp / "hub")
        try:
            (batch,) = list(source.batches(64))
            source_results = teams.pipeline.process_batch(batch)

            async def checkpoint() -> None:
                return None  # the crash: the batch is delivered again

            await teams.committer.commit(source_results, events=1, checkpoint=checkpoint)
            await teams.committer.commit(
                teams.pipeline.process_batch(batch), events=1, checkpoint=checkpoint
            )
        finally:
            source.close()
        assert len(teams.outbox.records()) == 1
        assert await teams.enforce() == {APPLIED: 1}

    asyncio.run(scenario())
    assert len(patches(teams)) == 1


def test_an_action_the_message_already_carries_is_not_applied_again(teams: Teams) -> None:
    async def scenario() -> None:
        message = teams.post(CARD)
        await teams.process()
        teams.edit(message, CARD + "<p>again</p>")  # a second verdict before the actor ran
        await teams.process()
        assert len(teams.outbox.pending()) == 2
        assert await teams.enforce() == {APPLIED: 1, ALREADY_APPLIED: 1}

    asyncio.run(scenario())
    assert len(patches(teams)) == 1


def test_a_deleted_message_is_recorded_as_gone(teams: Teams) -> None:
    async def scenario() -> None:
        message = teams.post(CARD)
        (verdict,) = await teams.process()
        message.deleted = message.modified = message.modified + dt.timedelta(seconds=5)
        teams.graph.publish(message, "deleted")  # the sender deletes it before the actor ran
        assert await teams.enforce() == {GONE: 1}
        record = teams.outbox.get(verdict.key)
        assert record is not None
        assert record.detail == "the message no longer exists"

    asyncio.run(scenario())
    assert patches(teams) == []


def forbidden_detail(teams: Teams) -> str:
    """Enforce one card Graph refuses; the outbox's detail is what tells the operator what to do."""

    async def scenario() -> str:
        teams.post(CARD)
        (verdict,) = await teams.process()
        assert await teams.enforce() == {FORBIDDEN: 1}
        record = teams.outbox.get(verdict.key)
        assert record is not None
        assert record.detail is not None
        return record.detail

    try:
        return asyncio.run(scenario())
    finally:
        teams.close()


def test_a_missing_permission_is_forbidden_with_what_to_do(tmp_path: Path) -> None:
    teams = teams_bench(tmp_path)
    teams.graph.permissions = {"Chat.Read.All", "ChannelMessage.Read.All"}

    detail = forbidden_detail(teams)
    assert "Chat.UpdatePolicyViolation.All" in detail
    assert 'mode = "enforce"' in detail
    assert [status for _, _, status in patches(teams)] == [403]


def test_a_tenant_without_the_dlp_licence_is_forbidden_with_what_to_do(tmp_path: Path) -> None:
    teams = teams_bench(tmp_path, dlp_licensed=False)

    detail = forbidden_detail(teams)
    assert "Communications DLP" in detail
    assert "402" in detail


def test_throttling_is_waited_out_then_applied(tmp_path: Path) -> None:
    teams = teams_bench(tmp_path, throttle_message_writes=2)

    async def scenario() -> float:
        teams.post(CARD)
        await teams.process()
        started = teams.clock.monotonic()
        assert await teams.enforce() == {APPLIED: 1}
        return teams.clock.monotonic() - started

    try:
        waited = asyncio.run(scenario())
    finally:
        teams.close()
    assert [status for _, _, status in patches(teams)] == [429, 429, 204]
    assert waited >= 4.0  # two Retry-After: 2 honoured


def test_a_failing_graph_never_holds_the_checkpoint(tmp_path: Path) -> None:
    teams = teams_bench(tmp_path, throttle_message_writes=1000)

    async def scenario() -> None:
        teams.post(CARD)
        assert len(await teams.process()) == 1
        assert await teams.enforce() == {PENDING: 1}  # retried, then left for the next drain
        teams.post("<p>and another card 5555 5555 5555 4444 on the credit card</p>")
        # The next notification is processed and checkpointed although Graph still fails.
        assert len(await teams.process()) == 1
        assert await teams.process() == []  # both checkpointed: nothing comes back
        teams.graph.throttle_message_writes = 0
        assert await teams.enforce() == {APPLIED: 2}

    try:
        asyncio.run(scenario())
    finally:
        teams.close()


def test_operators_list_the_outcomes(teams: Teams) -> None:
    teams.graph.permissions = {"Chat.Read.All"}

    async def scenario() -> None:
        teams.post(CARD)
        await teams.process()
        await teams.enforce()

    asyncio.run(scenario())
    outbox = teams.tmp / "verdicts.sqlite"
    result = CliRunner().invoke(cli, ["actions", "list", "--outbox", str(outbox), "--json"])
    assert result.exit_code == 0, result.output
    (line,) = result.output.splitlines()
    assert '"status": "forbidden"' in line
    assert "Chat.UpdatePolicyViolation.All" in line
    assert "4111" not in line
    assert TIP not in line
    missing = CliRunner().invoke(cli, ["actions", "list", "--outbox", str(teams.tmp / "no")])
    assert missing.exit_code != 0
    assert "does not exist" in missing.output


def test_the_actor_runs_beside_a_host_until_stopped(teams: Teams) -> None:
    async def scenario() -> None:
        stop = asyncio.Event()
        runner = asyncio.create_task(teams.enforcer().run(stop, interval=0.01))
        message = teams.post(CARD)
        await teams.process()
        for _ in range(500):
            if teams.graph.violation_of(message.id) is not None:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(runner, 5)

    asyncio.run(scenario())
    assert [status for _, _, status in patches(teams)] == [204]


class _NoToken(FakeCredential):
    """A managed identity whose token endpoint is down, or no sign-in on this machine."""

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        raise ClientAuthenticationError("ManagedIdentityCredential: IMDS did not answer")

    async def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        raise ClientAuthenticationError("ManagedIdentityCredential: IMDS did not answer")


class _DownLedger:
    """The claims' storage refusing every call, as `BlobVerdictLedger` reports it."""

    async def claim(self, keys: Any) -> Any:
        raise LedgerUnavailable("1 of 1 verdict keys could not claim: storage unreachable")

    async def close(self) -> None:
        return None


@pytest.mark.parametrize("failing", ["token", "claims"])
def test_a_token_or_claims_store_failing_leaves_the_action_pending_and_the_actor_running(
    teams: Teams, failing: str
) -> None:
    """The actor runs in the host's task group beside the processor: a transient failure
    must cost a drain, not the host."""

    async def scenario() -> None:
        teams.post(CARD)
        await teams.process()
        enforcer = teams.enforcer(_NoToken() if failing == "token" else None)
        if failing == "claims":
            enforcer._claims = _DownLedger()  # type: ignore[assignment]
        stop = asyncio.Event()
        running = asyncio.create_task(enforcer.run(stop, interval=0.01))
        await asyncio.sleep(0.2)
        assert not running.done()
        stop.set()
        await asyncio.wait_for(running, 5)
        assert enforcer.last_error is not None

    asyncio.run(scenario())
    [record] = teams.outbox.pending()
    assert record.status == PENDING
    assert record.attempts > 0


def test_apply_without_a_sign_in_says_so_in_one_line(
    teams: Teams, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def prepare() -> None:
        teams.post(CARD)
        await teams.process()

    asyncio.run(prepare())
    monkeypatch.setattr(
        actions,
        "load_deployment",
        lambda environment, endpoint: SimpleNamespace(graph_endpoint="https://graph.microsoft.com"),
    )
    monkeypatch.setattr(actions, "credential", lambda authority, deployment: _NoToken())
    result = CliRunner().invoke(
        cli, ["actions", "apply", "--outbox", str(teams.tmp / "verdicts.sqlite")]
    )
    assert result.exit_code == 1
    assert "1 action(s) left pending; last: ClientAuthenticationError" in result.output
    assert "Traceback" not in result.output
