"""`prod` deployed as synthesized: every call of every host, made as the identity Azure would
see, allowed only by what the stack grants; and no grant the rehearsal could do without."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from graphtap.processing.sinks.loganalytics import VERDICT_TABLE
from tests.deployment.rehearsal import Outcome, Refused, rehearse
from tests.fakes.authorization import AppRoleGrant, Estate, Grant
from tests.fakes.azurite import Azurite
from tests.stacks.conftest import SynthesizedStack

SNAPSHOT = Path(__file__).resolve().parents[1] / "stacks" / "snapshots" / "prod.json"

#: The leaf resources a grant may name: one hub, container, secret or certificate.
LEAF_SCOPE = (
    "/eventhubs/",
    "/blobServices/default/containers/",
    "/queueServices/default/queues/",
    "/secrets/",
    "/certificates/",
    "/dataCollectionRules/",
)


@pytest.fixture(scope="module")
def estate(prod: SynthesizedStack) -> Estate:
    return Estate.from_stack(prod.document)


def test_prod_deploys_bootstraps_and_processes_with_exactly_the_stacks_grants(
    estate: Estate, mocker: Any, tmp_path: Path, azurite: Azurite
) -> None:
    azure, outcome = asyncio.run(rehearse(estate, mocker, tmp_path, azurite))
    assert azure.authority.denied == []
    assert azure.undelivered == []
    assert outcome.bootstrap.ok
    # Without sign-in nothing but the health probe answers: 401 from the app's role check.
    assert outcome.anonymous == [401, 401, 401, 200] * 2
    # The reauthorization Graph kept refusing is set aside in the poison queue, with why.
    assert [(p["event"], p["subscription_id"]) for p in outcome.poisoned] == [
        ("reauthorizationRequired", outcome.refused)
    ]
    assert "Forbidden" in outcome.poisoned[0]["last_error"]
    # The one damaged event is a dead letter, kept in the stack's container; nothing else is.
    assert set(outcome.dead_letters) == {"signature_mismatch"}
    # Every declared subscription is alive in Graph, and was created by the runtime.
    assert set(outcome.live_subscriptions) == outcome.declared
    assert all(expiry > time.time() + 3600 for expiry in outcome.live_subscriptions.values())
    # Exactly one verdict per change on the findings hub, although prod processes every
    # notification in both hosts and a `missed` resync reads the changes back: the verdict
    # ledger lets one writer send each key.
    keys = Counter(verdict["verdict_key"] for verdict in outcome.findings)
    assert len(keys) == outcome.changes
    assert [key for key, count in keys.items() if count > 1] == []
    # prod sends verdicts to Log Analytics too: one row per change, each key exactly once.
    rows = Counter(row["VerdictKey"] for row in azure.logs.rows(VERDICT_TABLE))
    assert set(rows) == set(keys)
    assert set(rows.values()) == {1}
    # The message over 1 MB came through the payload account and was inspected.
    assert len(outcome.large) == 1
    (large,) = [v for v in outcome.findings if v["message_id"] == outcome.large[0]]
    assert large["content"] == "inspected"
    assert large["findings"]
    # Both certificate versions decrypted live traffic: the rotation lost nothing.
    assert len({v["certificate_id"] for v in outcome.findings}) >= 2
    # Every grant of the stack was used by some call.
    assert {principal for principal, _, _ in azure.authority.allowed} == {
        "deployer",
        "runtime",
        "change_tracking",
    }


def _grants(estate: Estate) -> list[Grant | AppRoleGrant]:
    return [*estate.grants, *estate.app_roles]


def test_every_grant_names_one_leaf_resource(estate: Estate) -> None:
    """Nothing is granted on a vault, namespace, account, resource group or subscription."""
    broad = [g for g in estate.grants if not any(part in g.scope for part in LEAF_SCOPE)]
    assert broad == []


def _snapshot_grant_keys() -> list[str]:
    """The prod stack's grants by Terraform address, from its golden snapshot (which the
    snapshot test holds equal to what synth produces), so collection needs no synth."""
    snapshot = json.loads(SNAPSHOT.read_text())["resource"]
    return [
        f"{kind}.{name}"
        for kind in ("azurerm_role_assignment", "azuread_app_role_assignment")
        for name, body in sorted(snapshot.get(kind, {}).items())
        if kind == "azurerm_role_assignment" or "microsoft_graph" in body["resource_object_id"]
    ]


def test_the_parametrised_grants_are_the_synthesized_ones(estate: Estate) -> None:
    assert sorted(_snapshot_grant_keys()) == sorted(g.key for g in _grants(estate))


@pytest.mark.slow
@pytest.mark.parametrize("grant_key", _snapshot_grant_keys(), ids=lambda key: key.split(".", 1)[1])
def test_without_any_one_grant_the_rehearsal_fails_on_the_call_it_covers(
    estate: Estate, grant_key: str, mocker: Any, tmp_path: Path, azurite: Azurite
) -> None:
    removed = next(g for g in _grants(estate) if g.key == grant_key)
    reduced = estate.without(grant_key)
    outcome: Outcome | None = None
    with pytest.raises(Refused) as refused:
        _, outcome = asyncio.run(rehearse(reduced, mocker, tmp_path, azurite, traffic=12))
    assert outcome is None
    message = str(refused.value)
    if isinstance(removed, AppRoleGrant):
        assert removed.permission in message, message
    else:
        assert f"{removed.principal}:" in message, message
        assert removed.scope.rsplit("/", 1)[-1] in message, message
