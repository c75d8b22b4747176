"""An environment that enforces, deployed as synthesized: the web app's actor sets each
violation as the runtime identity with zero denials, never twice in a row for one message
(its own `updated` notifications, two instances, the Function App and a resync all see the
same changes), and without either UpdatePolicyViolation role the rehearsal fails on the
PATCH that role covers.

The rehearsal is `tests.deployment.rehearsal`'s, unchanged; the policy reaches every host as
the app setting `GRAPHTAP_POLICY` (`graphtap serve --policy`, the Function entry alike)."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from stacks.constructs.graph_permissions import ENFORCEMENT_PERMISSIONS
from tests.deployment.enforcing import enforcing_prod
from tests.deployment.rehearsal import Refused, rehearse
from tests.fakes.authorization import RUNTIME, Estate
from tests.fakes.azurite import Azurite


@pytest.fixture(scope="module")
def enforcing(tmp_path_factory: pytest.TempPathFactory) -> Estate:
    document, policy = enforcing_prod(tmp_path_factory.mktemp("enforcing"))
    # Every host of the deployment reads the same policy, as they would from the package.
    for kind in ("azurerm_linux_web_app", "azurerm_function_app_flex_consumption"):
        for host in document["resource"].get(kind, {}).values():
            host["app_settings"]["GRAPHTAP_POLICY"] = str(policy)
    return Estate.from_stack(document)


def test_an_enforcing_deployment_acts_once_per_violation_with_zero_denials(
    enforcing: Estate, mocker: Any, tmp_path: Path, azurite: Azurite
) -> None:
    azure, outcome = asyncio.run(rehearse(enforcing, mocker, tmp_path, azurite))
    assert azure.authority.denied == []
    assert outcome.bootstrap.ok
    patches = azure.graph.violations_set
    assert {action for _, action in patches} & {"blockaccess", "blockaccessexternal"}
    by_message: dict[str, list[str]] = defaultdict(list)
    for message_id, action in patches:
        by_message[message_id].append(action)
    repeated = {
        m: a for m, a in by_message.items() if any(x == y for x, y in itertools.pairwise(a))
    }
    assert repeated == {}
    assert any(
        principal == RUNTIME and call.startswith("PATCH ")
        for principal, _, call in azure.authority.allowed
    )
    states = {v["action"]["state"] for v in outcome.findings if v.get("action")}
    assert "pending" in states
    assert "already_applied" in states  # Graph's notification of our own PATCH


@pytest.mark.slow
@pytest.mark.parametrize("permission", ENFORCEMENT_PERMISSIONS)
def test_without_an_enforcement_role_the_rehearsal_fails_on_the_call_it_covers(
    enforcing: Estate, permission: str, mocker: Any, tmp_path: Path, azurite: Azurite
) -> None:
    (grant,) = [g for g in enforcing.app_roles if g.permission == permission]
    with pytest.raises(Refused) as refused:
        asyncio.run(rehearse(enforcing.without(grant.key), mocker, tmp_path, azurite))
    message = str(refused.value)
    assert f"needs {permission}" in message, message
    assert "runtime: Microsoft Graph PATCH" in message, message
