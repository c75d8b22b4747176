"""A Teams message's policyViolation, read and set through msgraph-sdk.

`GET` and `PATCH /chats/{id}/messages/{id}`, `/teams/{id}/channels/{id}/messages/{id}` and
its `/replies/{id}`. Graph's errors become `GraphError` (what to do) or `RetryableError`
(throttled or a transient 5xx, with its Retry-After), as for every Graph call of graphtap.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

import httpx
from kiota_abstractions.api_error import APIError
from msgraph.generated.models.chat_message import ChatMessage
from msgraph.generated.models.chat_message_policy_violation import ChatMessagePolicyViolation
from msgraph.generated.models.chat_message_policy_violation_dlp_action_types import (
    ChatMessagePolicyViolationDlpActionTypes,
)
from msgraph.generated.models.chat_message_policy_violation_policy_tip import (
    ChatMessagePolicyViolationPolicyTip,
)
from msgraph.generated.models.chat_message_policy_violation_verdict_details_types import (
    ChatMessagePolicyViolationVerdictDetailsTypes,
)
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.graph_service_client import GraphServiceClient

from graphtap.processing.actions import Target
from graphtap.subscriptions.graph import GraphError
from graphtap.subscriptions.throttle import RETRYABLE_STATUS, RetryableError

T = TypeVar("T")


class TeamsMessages:
    """Read and set one message's policyViolation."""

    def __init__(self, client: GraphServiceClient) -> None:
        self._client = client

    def _builder(self, target: Target) -> Any:
        if target.chat_id is not None:
            return self._client.chats.by_chat_id(target.chat_id).messages.by_chat_message_id(
                target.message_id
            )
        if target.team_id is None or target.channel_id is None:
            raise ValueError(f"message {target.message_id} names neither a chat nor a channel")
        messages = (
            self._client.teams.by_team_id(target.team_id).channels.by_channel_id(target.channel_id)
        ).messages
        if target.reply_to_id is not None:
            return messages.by_chat_message_id(target.reply_to_id).replies.by_chat_message_id1(
                target.message_id
            )
        return messages.by_chat_message_id(target.message_id)

    async def violation(self, target: Target) -> dict[str, Any] | None:
        """The message's policyViolation as Graph's JSON (None: it has none)."""
        message = await _call(f"read message {target.message_id}", self._builder(target).get())
        if message is None:
            raise GraphError(404, None, "Graph returned no message", "read message")
        return _violation_json(message.policy_violation)

    async def set_violation(self, target: Target, violation: dict[str, Any]) -> None:
        """PATCH the message's policyViolation (Graph answers 204 No Content)."""
        body = ChatMessage(policy_violation=_violation_model(violation))
        await _call(
            f"set policyViolation on {target.message_id}", self._builder(target).patch(body)
        )


def _violation_model(violation: dict[str, Any]) -> ChatMessagePolicyViolation:
    tip = violation.get("policyTip")
    return ChatMessagePolicyViolation(
        dlp_action=ChatMessagePolicyViolationDlpActionTypes(violation["dlpAction"]),
        verdict_details=ChatMessagePolicyViolationVerdictDetailsTypes(
            violation.get("verdictDetails", "none")
        ),
        policy_tip=(
            ChatMessagePolicyViolationPolicyTip(
                general_text=tip.get("generalText"),
                compliance_url=tip.get("complianceUrl"),
                matched_condition_descriptions=list(tip.get("matchedConditionDescriptions", [])),
            )
            if isinstance(tip, dict)
            else None
        ),
    )


def _violation_json(model: ChatMessagePolicyViolation | None) -> dict[str, Any] | None:
    if model is None:
        return None
    tip = model.policy_tip
    return {
        "dlpAction": _enum(model.dlp_action),
        "verdictDetails": _enum(model.verdict_details),
        "userAction": _enum(model.user_action),
        "justificationText": model.justification_text,
        "policyTip": (
            {
                "generalText": tip.general_text,
                "complianceUrl": tip.compliance_url,
                "matchedConditionDescriptions": list(tip.matched_condition_descriptions or []),
            }
            if tip is not None
            else None
        ),
    }


def _enum(value: Any) -> str:
    """An enum as Graph's text; the SDK reads flag enums (dlpAction, verdictDetails) as a list."""
    if value is None:
        return "none"
    if isinstance(value, list):
        return ",".join(str(getattr(v, "value", v)) for v in value) or "none"
    return str(getattr(value, "value", value))


async def _call(operation: str, awaitable: Awaitable[T]) -> T:
    try:
        return await awaitable
    except APIError as error:
        status = error.response_status_code
        code, message = None, error.message or str(error)
        if isinstance(error, ODataError) and error.error is not None:
            code, message = error.error.code, error.error.message or ""
        if status in RETRYABLE_STATUS:
            headers: Any = error.response_headers
            raw = headers.get("Retry-After") if headers is not None else None
            try:
                wait = float(raw) if raw is not None else None
            except ValueError:
                wait = None
            raise RetryableError(status or 0, wait, f"{operation}: {status} {message}") from None
        raise GraphError(status, code, message, operation) from None
    except httpx.TransportError as error:
        raise RetryableError(503, None, f"{operation}: {type(error).__name__}") from None
