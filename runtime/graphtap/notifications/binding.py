"""Is the decrypted message the one its notification names?

Graph's `dataSignature` is an HMAC over the ciphertext alone: it proves the content came
from Graph, not that it belongs to the notification it arrived in. Whoever can send to the
hub and knows the clientState could file message B's encrypted content under message A's
`resource`. So the ids inside the decrypted message (its id, and its chat, or its team and
channel) must be the ids `resource` and `resourceData` carry.

Graph writes `resource` as `chats('{chat}')/messages('{id}')`,
`teams('{team}')/channels('{channel}')/messages('{id}')` (with `/replies('{id}')` after the
parent's id for a channel reply) and `Users/{user}/Messages/{id}` for mail. The common forms
are compared as strings; anything else is read segment by segment.
"""

from __future__ import annotations

import re
from typing import Any

_SEGMENT = re.compile(r"/?([A-Za-z]+)(?:\('([^'/]*)'\)|/([^/'()]+))")


def binding_problem(
    resource: str | None, resource_data: dict[str, Any] | None, content: dict[str, Any]
) -> str | None:
    """Why `content` is not the message `resource` / `resourceData` name; None if it is."""
    message_id = content.get("id")
    if not isinstance(message_id, str) or not message_id:
        return "the decrypted resource has no string id"
    resource = resource or ""
    if not _names_content(resource, content, message_id):
        return (
            f"resource {resource[:300]!r} does not name the decrypted message "
            f"{message_id[:100]!r} (its chat, or team and channel)"
        )
    if resource_data is not None:
        data_id = resource_data.get("id")
        if data_id is not None and data_id != message_id:
            return (
                f"resourceData.id {str(data_id)[:100]!r} is not the decrypted message's id "
                f"{message_id[:100]!r}"
            )
        odata_id = resource_data.get("@odata.id")
        if (
            odata_id is not None
            and odata_id != resource
            and not (isinstance(odata_id, str) and _names_content(odata_id, content, message_id))
        ):
            return f"resourceData['@odata.id'] {str(odata_id)[:300]!r} is not the resource"
    return None


def _names_content(resource: str, content: dict[str, Any], message_id: str) -> bool:
    chat_id = content.get("chatId")
    channel = content.get("channelIdentity")
    # Graph's own forms first: a string comparison for nearly every notification.
    if isinstance(chat_id, str) and resource == f"chats('{chat_id}')/messages('{message_id}')":
        return channel is None
    if isinstance(channel, dict) and chat_id is None:
        team_id, channel_id = channel.get("teamId"), channel.get("channelId")
        prefix = f"teams('{team_id}')/channels('{channel_id}')/messages('"
        if resource == f"{prefix}{message_id}')":
            return True
        if resource == f"{prefix}{content.get('replyToId')}')/replies('{message_id}')":
            return True
    ids = resource_ids(resource)
    if ids is None:
        return False
    if "chats" in ids:
        return (
            set(ids) == {"chats", "messages"}
            and ids["chats"] == chat_id
            and ids["messages"] == message_id
            and channel is None
        )
    if "teams" in ids or "channels" in ids:
        if not isinstance(channel, dict) or chat_id is not None:
            return False
        team_id = channel.get("teamId")
        if not (
            isinstance(team_id, str)
            and ids.get("teams", "").lower() == team_id.lower()  # a GUID, in any case
            and ids.get("channels") == channel.get("channelId")
        ):
            return False
        if "replies" in ids:
            return (
                set(ids) == {"teams", "channels", "messages", "replies"}
                and ids["replies"] == message_id
                and ids["messages"] == content.get("replyToId")
            )
        return set(ids) == {"teams", "channels", "messages"} and ids["messages"] == message_id
    # Mail: `Users/{user}/Messages/{id}`; a Teams message is not mail.
    return (
        "messages" in ids
        and set(ids) <= {"users", "mailfolders", "messages"}
        and ids["messages"] == message_id
        and chat_id is None
        and channel is None
    )


def resource_ids(resource: str) -> dict[str, str] | None:
    """`{"chats": ..., "messages": ...}` from a resource path, names in lower case; None when
    the path is not a chain of `name('id')` or `name/id` segments, each name once."""
    ids: dict[str, str] = {}
    position, end = 0, len(resource)
    while position < end:
        match = _SEGMENT.match(resource, position)
        if match is None:
            return None
        name = match.group(1).lower()
        if name in ids:
            return None
        value = match.group(2) if match.group(2) is not None else match.group(3)
        ids[name] = value
        position = match.end()
    return ids


def mail_message(resource: str | None, tenant_id: str | None) -> tuple[str, str] | None:
    """`(user, message id)` when `resource` names an Outlook message, else None.

    Graph writes the mailbox as `{user}@{tenant}` in notifications and as the user's id in
    the resources it serves; the tenant suffix is dropped so both name one mailbox."""
    if not resource:
        return None
    ids = resource_ids(resource)
    if ids is None or "messages" not in ids or "users" not in ids:
        return None
    if not set(ids) <= {"users", "mailfolders", "messages"}:
        return None
    user, message_id = ids["users"], ids["messages"]
    if not user or not message_id:
        return None
    mailbox, at, domain = user.rpartition("@")
    if at and tenant_id and domain.lower() == tenant_id.lower():
        user = mailbox
    return user, message_id
