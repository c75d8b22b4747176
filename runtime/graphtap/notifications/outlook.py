"""Outlook's basic change notification: it names a message; the content stays in the mailbox.

Graph writes these for mail subscriptions. The mail resync writes one for each change it
reads back, so read-back changes take the live path; the simulator and the test fakes write
the ones Graph would send. One shape for all of them, here.
"""

from __future__ import annotations

import re
from typing import Any

MESSAGE_TYPE = "#Microsoft.Graph.Message"
#: The `Prefer` value that asks Outlook for immutable ids. A message keeps its id when it
#: moves between folders (an inbox rule moves it the moment it arrives), so the id a
#: notification names still finds the message when it is read, and a folder's delta reports a
#: move, not a deletion and a new message. Every mail request sends it, and a mail
#: subscription is created with it: Graph then writes immutable ids in its notifications.
IMMUTABLE_IDS = 'IdType="ImmutableId"'
_MAIL_SUBSCRIPTION = re.compile(
    r"/?users/(?P<user>[^/]+)(?:/mailFolders(?:\('(?P<quoted>[^']+)'\)|/(?P<folder>[^/]+)))?"
    r"/messages",
    re.IGNORECASE,
)


def mail_subscription(resource: str) -> re.Match[str] | None:
    """A mail subscription's resource, a whole mailbox or one folder of it (`user`, and
    `quoted` or `folder`), its query (`$select` of a rich subscription) aside; else None."""
    return _MAIL_SUBSCRIPTION.fullmatch(resource.split("?", 1)[0])


def mail_resource(user: str, tenant_id: str, message_id: str) -> str:
    """The `resource` Graph gives a mail notification: the user's id and tenant, the message."""
    return f"Users/{user}@{tenant_id}/Messages/{message_id}"


def mail_change_item(
    *,
    subscription_id: str,
    change_type: str,
    tenant_id: str,
    client_state: str | None,
    resource: str,
    message_id: str,
    etag: str | None = None,
    expiration: str | None = None,
) -> dict[str, Any]:
    """One item of a notification collection for a change to message `message_id`."""
    item: dict[str, Any] = {"subscriptionId": subscription_id}
    if expiration is not None:
        item["subscriptionExpirationDateTime"] = expiration
    resource_data: dict[str, Any] = {
        "@odata.type": MESSAGE_TYPE,
        "@odata.id": resource,
        "id": message_id,
    }
    if etag is not None:
        resource_data["@odata.etag"] = etag
    return item | {
        "changeType": change_type,
        "clientState": client_state,
        "tenantId": tenant_id,
        "resource": resource,
        "resourceData": resource_data,
    }
