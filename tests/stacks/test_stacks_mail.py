"""Least privilege, driven by what an environment declares: Mail.Read is granted to the
runtime only where subscriptions.toml declares mailboxes (it reads every notified message),
and a declaration the stack does not grant fails the synth."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from graphtap.subscriptions.desired import DesiredStateError
from stacks.config import ENVIRONMENTS_DIR
from stacks.constructs.graph_permissions import MAIL_PERMISSIONS, subscription_permissions
from tests.stacks.conftest import SynthesizedStack
from tests.stacks.test_stacks_enforcement import graph_roles

TEAMS = ("Chat.Read.All", "ChannelMessage.Read.All")
MAILBOXES = """
[[subscription]]
resource = "/users/{id}/messages"
for_each = "mailboxes"
rich = false
change_types = ["created", "updated"]
lifetime_minutes = 10080

[lists]
mailboxes = []
"""


def environment(tmp_path: Path, extra: str = "", permissions: str | None = None) -> Path:
    """dev's folder with `extra` appended to its subscriptions.toml."""
    folder = tmp_path / "dev"
    folder.mkdir()
    shutil.copy(ENVIRONMENTS_DIR / "dev" / "stack.toml", folder / "stack.toml")
    text = (ENVIRONMENTS_DIR / "dev" / "subscriptions.toml").read_text()
    if permissions is not None:
        text = text.replace(
            'permissions = ["ChannelMessage.Read.All", "Chat.Read.All"]', permissions
        )
    (folder / "subscriptions.toml").write_text(text + extra)
    return folder / "stack.toml"


def test_teams_only_declarations_ask_for_nothing_more(tmp_path: Path) -> None:
    assert subscription_permissions(environment(tmp_path), "dev", TEAMS) == ()


def test_declaring_mailboxes_grants_mail_read_even_before_the_list_is_filled(
    tmp_path: Path,
) -> None:
    stack_file = environment(
        tmp_path,
        MAILBOXES,
        permissions='permissions = ["ChannelMessage.Read.All", "Chat.Read.All", "Mail.Read"]',
    )
    assert subscription_permissions(stack_file, "dev", TEAMS) == MAIL_PERMISSIONS
    assert subscription_permissions(stack_file, "dev", (*TEAMS, "Mail.Read")) == ()


def test_a_declaration_the_stack_does_not_grant_fails_naming_environment_and_resource(
    tmp_path: Path,
) -> None:
    calendars = """
[[subscription]]
resource = "/users/{id}/events"
for_each = "people"
rich = false
change_types = ["created"]
lifetime_minutes = 10080

[lists]
people = ["alice@contoso.com"]
"""
    stack_file = environment(
        tmp_path,
        calendars,
        permissions='permissions = ["ChannelMessage.Read.All", "Chat.Read.All", "Calendars.Read"]',
    )
    with pytest.raises(ValueError, match=r"environment dev: .*subscriptions\.toml") as refused:
        subscription_permissions(stack_file, "dev", TEAMS)
    message = str(refused.value)
    assert "/users/{id}/events needs one of Calendars.Read" in message
    assert "permissions lists Calendars.Read" in message
    assert str(stack_file) in message


def test_a_permission_said_to_be_held_but_not_granted_fails_the_synth(tmp_path: Path) -> None:
    stack_file = environment(
        tmp_path,
        permissions='permissions = ["ChannelMessage.Read.All", "Chat.Read.All", "Mail.Read"]',
    )
    with pytest.raises(ValueError, match=r"permissions lists Mail\.Read, which the stack"):
        subscription_permissions(stack_file, "dev", TEAMS)


def test_a_broken_declaration_fails_the_synth_naming_its_rule(tmp_path: Path) -> None:
    broken = MAILBOXES.replace("10080", "99999").replace("[]", '["alice@contoso.com"]')
    stack_file = environment(tmp_path, broken)
    with pytest.raises(DesiredStateError, match=r"\[max-lifetime\]"):
        subscription_permissions(stack_file, "dev", TEAMS)


def test_prod_declares_mailboxes_and_its_runtime_holds_mail_read(
    prod: SynthesizedStack, dev: SynthesizedStack
) -> None:
    assert "Mail.Read" in graph_roles(prod)
    assert "Mail.Read" not in graph_roles(dev)
