"""Least privilege for acting in Teams, decided by the stack's own grants: the runtime identity
of an environment whose policy enforces sets a message's policyViolation with zero denials;
prod, which only reports, is refused the way Graph refuses it; and each of the two
UpdatePolicyViolation roles is needed by the call it covers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from graphtap.processing.outbox import APPLIED, FORBIDDEN
from stacks.constructs.graph_permissions import ENFORCEMENT_PERMISSIONS
from tests.deployment.enforcing import enforcing_prod
from tests.enforcement.conftest import CARD, CHANNEL, CHAT, Teams, teams_bench
from tests.fakes.authorization import RUNTIME, Authority, Estate
from tests.stacks.conftest import SynthesizedStack


@pytest.fixture(scope="module")
def enforcing(tmp_path_factory: pytest.TempPathFactory) -> Estate:
    document, _ = enforcing_prod(tmp_path_factory.mktemp("enforcing"))
    return Estate.from_stack(document)


def acted(tmp_path: Path, estate: Estate) -> tuple[Teams, Authority, dict[str, int]]:
    """A card posted in a chat and in a channel, processed, and the actor run as the runtime."""
    authority = Authority(estate)
    teams = teams_bench(tmp_path, authority=authority)

    async def scenario() -> dict[str, int]:
        teams.post(CARD, CHAT)
        teams.post(CARD, CHANNEL)
        await teams.process()
        return dict(await teams.enforcer(authority.credential(RUNTIME)).drain())

    try:
        return teams, authority, asyncio.run(scenario())
    finally:
        teams.close()


def test_the_enforcing_runtime_patches_chats_and_channels_with_zero_denials(
    tmp_path: Path, enforcing: Estate
) -> None:
    teams, authority, outcomes = acted(tmp_path, enforcing)
    assert outcomes == {APPLIED: 2}
    assert authority.denied == []
    assert len(teams.graph.violations_set) == 2
    used = {call for principal, _, call in authority.allowed if principal == RUNTIME}
    assert {c.split()[0] for c in used} == {"GET", "PATCH"}


def test_a_reporting_environment_cannot_set_a_violation(
    tmp_path: Path, prod: SynthesizedStack
) -> None:
    teams, authority, outcomes = acted(tmp_path, Estate.from_stack(prod.document))
    assert outcomes == {FORBIDDEN: 2}
    assert {d.needs for d in authority.denied} == set(ENFORCEMENT_PERMISSIONS)
    assert teams.graph.violations_set == []


@pytest.mark.parametrize("permission", ENFORCEMENT_PERMISSIONS)
def test_each_enforcement_role_is_needed(
    tmp_path: Path, enforcing: Estate, permission: str
) -> None:
    (grant,) = [g for g in enforcing.app_roles if g.permission == permission]
    teams, authority, outcomes = acted(tmp_path, enforcing.without(grant.key))
    assert outcomes == {APPLIED: 1, FORBIDDEN: 1}
    assert [d.needs for d in authority.denied] == [permission]
    assert len(teams.graph.violations_set) == 1  # the other kind of conversation
