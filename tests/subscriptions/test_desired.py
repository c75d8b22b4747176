"""Desired subscriptions: Graph's rules checked before any call, errors naming the rule."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from graphtap.subscriptions.desired import DesiredStateError, load_desired, parse_desired
from graphtap.subscriptions.rules import RULES, ResourceRule, rule_for

ENVIRONMENTS = Path(__file__).resolve().parents[2] / "runtime" / "environments"
PERMISSIONS = ["ChannelMessage.Read.All", "Chat.Read.All", "Mail.Read"]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_each_rule_matches_its_examples_and_nothing_else(rule: ResourceRule) -> None:
    for resource in rule.matches:
        assert rule.match(resource), resource
        assert rule_for(resource) is rule, resource
    for resource in rule.non_matches:
        assert not rule.match(resource), resource


@pytest.mark.parametrize(
    "environment", sorted(p.name for p in ENVIRONMENTS.iterdir() if p.is_dir())
)
def test_the_shipped_environments_are_valid(environment: str) -> None:
    state = load_desired(environment, directory=ENVIRONMENTS)
    resources = {s.resource for s in state.subscriptions}
    assert {"/teams/getAllMessages", "/chats/getAllMessages"} <= resources
    for subscription in state.subscriptions:
        assert subscription.lifetime <= dt.timedelta(minutes=4320)
        assert subscription.rich


def declare(*subscriptions: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"permissions": PERMISSIONS, "subscription": list(subscriptions), **extra}


def problems(document: dict[str, Any]) -> str:
    with pytest.raises(DesiredStateError) as caught:
        parse_desired(document, environment="test")
    return str(caught.value)


def test_per_user_resources_expand_from_a_list() -> None:
    state = parse_desired(
        declare(
            {
                "resource": "/users/{id}/messages",
                "for_each": "mailboxes",
                "rich": False,
                "lifetime_minutes": 10080,
            },
            lists={"mailboxes": ["a@contoso.com", "b@contoso.com"]},
        ),
        environment="test",
    )
    assert [s.resource for s in state.subscriptions] == [
        "/users/a@contoso.com/messages",
        "/users/b@contoso.com/messages",
    ]


def test_lifetime_defaults_to_graphs_maximum() -> None:
    state = parse_desired(declare({"resource": "/chats/getAllMessages"}), environment="test")
    assert state.subscriptions[0].lifetime == dt.timedelta(minutes=4320)


@pytest.mark.parametrize(
    ("entry", "rule", "words"),
    [
        ({"resource": "/chats/getAllMessages", "lifetime_minutes": 5000}, "max-lifetime", "4320"),
        (
            {
                "resource": "/users/u/messages?$select=subject",
                "rich": True,
                "lifetime_minutes": 2000,
            },
            "max-lifetime",
            "1440",
        ),
        (
            {"resource": "/teams/getAllMessages", "lifetime_minutes": 120, "lifecycle": False},
            "lifecycle-url",
            "lifecycleNotificationUrl",
        ),
        (
            {"resource": "/users/u/messages", "rich": True, "lifetime_minutes": 60},
            "rich-select",
            "$select",
        ),
        ({"resource": "/chats/getAllMessages", "lifetime_minutes": 10}, "min-lifetime", "45"),
        ({"resource": "/sites/root/lists", "lifetime_minutes": 60}, "unknown-resource", "/sites"),
        (
            {"resource": "/chats/getAllMessages", "change_types": ["created", "read"]},
            "change-types",
            "read",
        ),
    ],
)
def test_each_broken_rule_is_named(entry: dict[str, Any], rule: str, words: str) -> None:
    message = problems(declare(entry))
    assert f"[{rule}]" in message
    assert words in message


def test_a_short_teams_subscription_needs_no_lifecycle_url() -> None:
    parse_desired(
        declare({"resource": "/teams/getAllMessages", "lifetime_minutes": 60, "lifecycle": False}),
        environment="test",
    )


def test_write_permissions_are_refused() -> None:
    message = problems(
        {
            "permissions": ["Chat.ReadWrite.All"],
            "subscription": [{"resource": "/chats/getAllMessages"}],
        }
    )
    assert "[read-only-permissions]" in message
    assert "Chat.Read.All" in message
    assert "[permission]" in message


def test_a_resource_without_its_permission_is_refused() -> None:
    message = problems(
        {"permissions": ["Chat.Read.All"], "subscription": [{"resource": "/teams/getAllMessages"}]}
    )
    assert "ChannelMessage.Read.All" in message
    assert "[permission]" in message


def test_duplicates_and_every_problem_are_reported_at_once() -> None:
    error = None
    try:
        parse_desired(
            declare(
                {"resource": "/chats/getAllMessages"},
                {"resource": "/chats/getAllMessages"},
                {"resource": "/teams/getAllMessages", "lifetime_minutes": 9000},
            ),
            environment="test",
        )
    except DesiredStateError as caught:
        error = caught
    assert error is not None
    assert len(error.problems) == 2
    assert "[duplicate]" in str(error)
    assert "[max-lifetime]" in str(error)


def test_a_missing_file_says_where_to_declare(tmp_path: Path) -> None:
    with pytest.raises(DesiredStateError, match="declare the subscriptions here"):
        load_desired("staging", directory=tmp_path)
