"""Graph change notifications: parse collections, hold keys, decrypt, check authenticity."""

from graphtap.notifications.crypto import decrypt_content, encrypt_content
from graphtap.notifications.errors import NotificationError, Reason
from graphtap.notifications.keyring import KeyRing
from graphtap.notifications.model import (
    ChangeNotification,
    EncryptedContent,
    MalformedItem,
    NotificationCollection,
    parse_collection,
)

__all__ = [
    "ChangeNotification",
    "EncryptedContent",
    "KeyRing",
    "MalformedItem",
    "NotificationCollection",
    "NotificationError",
    "Reason",
    "decrypt_content",
    "encrypt_content",
    "parse_collection",
]
