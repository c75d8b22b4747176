"""A decrypted message binds to its notification's `resource` and `resourceData` by id."""

from __future__ import annotations

from typing import Any

import pytest

from graphtap.notifications.binding import binding_problem, resource_ids

CHAT = {"id": "1612289765949", "chatId": "19:abc@unq.gbl.spaces", "channelIdentity": None}
CHANNEL = {
    "id": "1625126194597",
    "chatId": None,
    "replyToId": None,
    "channelIdentity": {
        "teamId": "79852646-8963-4d32-95f1-e0c5237d37fa",
        "channelId": "19:x@thread.tacv2",
    },
}
REPLY = {**CHANNEL, "replyToId": "1625067617497"}
MAIL = {"id": "AAMkAGI2TAAA=", "subject": "hello"}
TEAM = "79852646-8963-4d32-95f1-e0c5237d37fa"


@pytest.mark.parametrize(
    ("resource", "content"),
    [
        ("chats('19:abc@unq.gbl.spaces')/messages('1612289765949')", CHAT),
        ("/chats('19:abc@unq.gbl.spaces')/messages('1612289765949')", CHAT),
        ("Chats/19:abc@unq.gbl.spaces/Messages/1612289765949", CHAT),
        (f"teams('{TEAM}')/channels('19:x@thread.tacv2')/messages('1625126194597')", CHANNEL),
        (
            f"teams('{TEAM.upper()}')/channels('19:x@thread.tacv2')/messages('1625126194597')",
            CHANNEL,
        ),
        (
            f"teams('{TEAM}')/channels('19:x@thread.tacv2')/messages('1625067617497')"
            "/replies('1625126194597')",
            REPLY,
        ),
        ("Users/7c1ba7a4-1b2c/Messages/AAMkAGI2TAAA=", MAIL),
        ("users('7c1ba7a4-1b2c')/mailFolders('inbox')/messages('AAMkAGI2TAAA=')", MAIL),
    ],
)
def test_the_message_a_resource_names_is_bound(resource: str, content: dict[str, Any]) -> None:
    assert binding_problem(resource, {"id": content["id"], "@odata.id": resource}, content) is None
    assert binding_problem(resource, None, content) is None


@pytest.mark.parametrize(
    ("resource", "content", "resource_data", "named"),
    [
        ("chats('19:abc@unq.gbl.spaces')/messages('1')", CHAT, None, "does not name"),
        ("chats('19:other@unq.gbl.spaces')/messages('1612289765949')", CHAT, None, "does not name"),
        (
            "chats('19:abc@unq.gbl.spaces')/messages('1612289765949')",
            CHAT,
            {"id": "2"},
            "resourceData.id",
        ),
        (
            "chats('19:abc@unq.gbl.spaces')/messages('1612289765949')",
            CHAT,
            {"@odata.id": "chats('19:abc@unq.gbl.spaces')/messages('2')"},
            "@odata.id",
        ),
        (
            f"teams('{TEAM}')/channels('19:y@thread.tacv2')/messages('1625126194597')",
            CHANNEL,
            None,
            "does not name",
        ),
        (
            f"teams('{TEAM}')/channels('19:x@thread.tacv2')/messages('1625126194597')",
            CHAT,
            None,
            "does not name",
        ),
        (
            "chats('19:abc@unq.gbl.spaces')/messages('1625126194597')",
            CHANNEL,
            None,
            "does not name",
        ),
        (
            f"teams('{TEAM}')/channels('19:x@thread.tacv2')/messages('9')/replies('1625126194597')",
            REPLY,
            None,
            "does not name",
        ),
        ("Users/u/Messages/1612289765949", CHAT, None, "does not name"),  # a chat is not mail
        ("Users/u/Messages/other", MAIL, None, "does not name"),
        ("", CHAT, None, "does not name"),
        ("NA", CHAT, None, "does not name"),
        (
            "chats('19:abc@unq.gbl.spaces')/chats('x')/messages('1612289765949')",
            CHAT,
            None,
            "does not name",
        ),
        (
            "chats('19:abc@unq.gbl.spaces')/messages('1612289765949')",
            {**CHAT, "id": 7},
            None,
            "no string id",
        ),
        (
            "chats('19:abc@unq.gbl.spaces')/messages('1612289765949')",
            {"chatId": "x"},
            None,
            "no string id",
        ),
    ],
)
def test_a_message_under_another_notification_is_named(
    resource: str, content: dict[str, Any], resource_data: dict[str, Any] | None, named: str
) -> None:
    problem = binding_problem(resource, resource_data, content)
    assert problem is not None
    assert named in problem


def test_resource_ids_read_both_segment_forms() -> None:
    assert resource_ids("teams('t')/channels('c')/messages('m')/replies('r')") == {
        "teams": "t",
        "channels": "c",
        "messages": "m",
        "replies": "r",
    }
    assert resource_ids("Users/u/Messages/m") == {"users": "u", "messages": "m"}
    assert resource_ids("chats('a')/messages") is None
    assert resource_ids("chats('a')//messages('b')") is None
