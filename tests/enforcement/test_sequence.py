"""Real sequences through the fake Graph and the pipeline: the PATCH's own notification, the
sender's override, an edit that fixes the message, and dry run."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from graphtap.hosts.findings import FindingsQuery, read_sqlite
from graphtap.processing.committer import BatchCommitter, BlockingDeadLetters, BlockingVerdicts
from graphtap.processing.sinks.jsonl import JsonlVerdictSink
from graphtap.processing.sources.localhub import LocalHubSource
from graphtap.processing.summary import Summary
from tests.enforcement.conftest import CARD, CLEAN, ENFORCING, Teams, teams_bench


def patches(teams: Teams) -> list[tuple[str, str, int]]:
    return [r for r in teams.graph.requests if r[0] == "PATCH"]


def test_the_updated_notification_after_a_patch_is_not_acted_on_again(teams: Teams) -> None:
    async def scenario() -> None:
        teams.post(CARD)
        (created,) = await teams.process()
        assert await teams.enforce() == {"applied": 1}
        (updated,) = await teams.process()  # Graph's notification of the PATCH
        assert updated.change_type == "updated"
        assert updated.key != created.key
        assert updated.action is not None
        assert updated.action.state == "already_applied"
        assert await teams.enforce() == {}

    asyncio.run(scenario())
    assert len(patches(teams)) == 1
    assert len(teams.graph.violations_set) == 1
    # The findings view shows each verdict's action with the actor's outcome, newest first.
    rows = read_sqlite(teams.tmp / "verdicts.sqlite", FindingsQuery())
    assert [row.action for row in rows] == ["block: already_applied", "block: applied"]


def test_the_senders_override_is_respected_and_recorded(teams: Teams) -> None:
    async def scenario() -> None:
        message = teams.post(CARD)
        await teams.process()
        await teams.enforce()
        await teams.process()
        teams.graph.override(message.id, "the customer asked for it")
        (answered,) = await teams.process()
        assert answered.action is not None
        assert (answered.action.state, answered.action.justified) == ("overridden", True)
        assert await teams.enforce() == {}
        # Edited again with the same card: still covered by the override.
        teams.edit(message, CARD + "<p>(resent)</p>")
        (edited,) = await teams.process()
        assert edited.action is not None
        assert edited.action.state == "overridden"

    asyncio.run(scenario())
    assert len(patches(teams)) == 1
    rows = teams.store._db.execute("SELECT action FROM verdicts").fetchall()
    assert not any("the customer asked" in (row[0] or "") for row in rows)


def test_an_edit_that_fixes_the_message_lifts_the_block(teams: Teams) -> None:
    async def scenario() -> None:
        message = teams.post(CARD)
        await teams.process()
        await teams.enforce()
        await teams.process()
        teams.edit(message, CLEAN)
        (fixed,) = await teams.process()
        assert fixed.action is not None
        assert (fixed.action.action, fixed.action.state) == ("lift", "pending")
        assert await teams.enforce() == {"applied": 1}
        violation = teams.graph.violation_of(message.id)
        assert violation is not None
        assert violation["dlpAction"].lower() == "none"
        (after,) = await teams.process()  # the lift's own notification
        assert after.action is None
        assert await teams.enforce() == {}

    asyncio.run(scenario())
    assert [action for _, action in teams.graph.violations_set] == ["blockaccess", "none"]


def test_dry_run_records_what_it_would_do_and_calls_nothing(tmp_path: Path) -> None:
    teams = teams_bench(tmp_path, ENFORCING.replace('mode = "enforce"', 'mode = "dry_run"'))

    async def scenario() -> None:
        teams.post(CARD)
        (verdict,) = await teams.process()
        assert verdict.action is not None
        assert (verdict.action.action, verdict.action.state) == ("block", "dry_run")
        assert teams.outbox.records() == []
        assert await teams.enforce() == {}

    try:
        asyncio.run(scenario())
    finally:
        teams.close()
    assert teams.graph.requests == []
    # The findings view shows it beside the finding.
    (row,) = read_sqlite(tmp_path / "verdicts.sqlite", FindingsQuery())
    assert row.action == "block: dry_run"


def test_the_action_flows_wherever_verdicts_flow_and_carries_no_content(teams: Teams) -> None:
    jsonl = JsonlVerdictSink(teams.tmp / "verdicts.jsonl")

    async def scenario() -> None:
        teams.post(CARD)
        await teams.process()

    asyncio.run(scenario())
    (verdict,) = teams.verdicts
    jsonl.write_verdicts([verdict])
    jsonl.close()
    record = json.loads((teams.tmp / "verdicts.jsonl").read_text())
    assert record["action"] == verdict.to_dict()["action"]
    assert set(record["action"]) == {
        "verdict_key",
        "action",
        "rule",
        "types",
        "confidence",
        "mode",
        "state",
        "decided_at",
    }
    stored = teams.store._db.execute("SELECT action FROM verdicts").fetchone()[0]
    assert json.loads(stored) == record["action"]
    for text in (stored, json.dumps(record["action"])):
        assert "4111" not in text
        assert "credit card" not in text
    whole = json.dumps(record)  # findings keep only their masked preview
    assert "4111 1111 1111 1111" not in whole
    assert "4111111111111111" not in whole
    (row,) = read_sqlite(teams.tmp / "verdicts.sqlite", FindingsQuery())
    assert row.action == "block: pending"


def test_a_host_without_an_outbox_refuses_to_drop_an_enforced_action(teams: Teams) -> None:
    committer = BatchCommitter(
        sink=BlockingVerdicts(teams.store),
        dead_letters=BlockingDeadLetters(teams.store),
        lifecycle=teams.queue,
        summary=Summary(),
    )
    checkpointed: list[bool] = []

    async def scenario() -> None:
        teams.post(CARD)
        source = LocalHubSource(teams.tmp / "hub")
        try:
            (batch,) = list(source.batches(8))

            async def checkpoint() -> None:
                checkpointed.append(True)

            with pytest.raises(RuntimeError, match="no action outbox"):
                await committer.commit(
                    teams.pipeline.process_batch(batch), events=1, checkpoint=checkpoint
                )
        finally:
            source.close()

    asyncio.run(scenario())
    assert checkpointed == []
