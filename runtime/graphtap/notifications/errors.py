"""Why a notification could not be turned into a verdict: the dead-letter reason codes."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Dead-letter reason codes. Stable strings: operators alert and query on them."""

    MALFORMED_EVENT = "malformed_event"
    OVERSIZED_EVENT = "oversized_event"
    MALFORMED_NOTIFICATION = "malformed_notification"
    INVALID_VALIDATION_TOKEN = "invalid_validation_token"  # noqa: S105 (a reason, not a secret)
    CLIENT_STATE_MISMATCH = "client_state_mismatch"
    #: Letters of earlier releases, which did not read the payload store: replay them.
    PAYLOAD_IN_BLOB_STORAGE = "payload_in_blob_storage"
    #: A payload over 1 MB (`additionalPayloadStorageId`) that could not be read from the
    #: payload store after retries: missing, unreadable, or no store configured.
    PAYLOAD_UNAVAILABLE = "payload_unavailable"
    #: An Outlook message whose fetch from Graph kept failing (throttled, refused, down).
    FETCH_FAILED = "fetch_failed"
    UNKNOWN_CERTIFICATE = "unknown_certificate"
    MALFORMED_ENCRYPTED_CONTENT = "malformed_encrypted_content"
    SIGNATURE_MISMATCH = "signature_mismatch"
    DECRYPTION_FAILED = "decryption_failed"
    MALFORMED_RESOURCE = "malformed_resource"
    #: The decrypted message is not the one `resource` and `resourceData` name (a payload
    #: filed under another message's notification).
    RESOURCE_MISMATCH = "resource_mismatch"
    #: A stage failed in a way no rule anticipated (a bug, a library fault): the item is kept
    #: whole so it can be replayed once fixed, instead of stalling its partition for ever.
    PROCESSING_ERROR = "processing_error"


class NotificationError(Exception):
    """A notification (or a whole event) that must go to the dead letters, with its reason."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"
