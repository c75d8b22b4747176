"""The action a verdict calls for in Teams, decided from the findings and the message itself.

Decided where the verdict is built, from the decrypted message's current `policyViolation`,
so the rules below need no memory beyond the message:

- A violation this policy set (same dlpAction, a tip and compliance URL the policy sets) is
  recognised when Graph notifies the change the PATCH made: `already_applied`, no new PATCH.
- A sender's override (userAction `override`) of a violation we set is respected:
  `overridden`, no PATCH, for as long as the message's findings stay within the types the
  violation named (its matchedConditionDescriptions). An edit that brings a type the sender
  did not override is a new violation and is acted on again.
- An edited message that no longer matches any rule, carrying a violation we set that still
  restricts it, is lifted (dlpAction `none`) when the policy says `lift_on_fix = true`.
- A violation someone else set (Purview's own DLP, say) that is at least as strong as ours
  stands (`already_applied`); a weaker one is replaced.

The action record never carries content: the verdict key, types, confidence, rule, action,
mode, state and time; the justification a sender typed is not kept, only that one was given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from graphtap.inspection.enforcement import Enforcement

#: Our action names and Graph's dlpAction values, weakest first.
DLP_ACTIONS: Mapping[str, str] = {
    "lift": "none",
    "notify_sender": "notifySender",
    "block_external": "blockAccessExternal",
    "block": "blockAccess",
}
_STRENGTH = {value.lower(): index for index, value in enumerate(DLP_ACTIONS.values())}

#: States an action is decided in.
PENDING = "pending"  # enforce: in the outbox, for the actor
DRY_RUN = "dry_run"  # dry run: recorded, Graph never called
ALREADY_APPLIED = "already_applied"  # the message already carries it
OVERRIDDEN = "overridden"  # the sender overrode it with a justification


@dataclass(frozen=True, slots=True)
class Target:
    """Where a Teams message lives: a chat, or a team's channel (and a reply's parent)."""

    message_id: str
    chat_id: str | None = None
    team_id: str | None = None
    channel_id: str | None = None
    reply_to_id: str | None = None

    @classmethod
    def of(cls, message: Mapping[str, Any]) -> Target | None:
        message_id = message.get("id")
        if not isinstance(message_id, str):
            return None
        chat_id = message.get("chatId")
        if isinstance(chat_id, str) and chat_id:
            return cls(message_id, chat_id=chat_id)
        channel = message.get("channelIdentity")
        if isinstance(channel, dict) and channel.get("teamId") and channel.get("channelId"):
            reply_to = message.get("replyToId")
            return cls(
                message_id,
                team_id=str(channel["teamId"]),
                channel_id=str(channel["channelId"]),
                reply_to_id=str(reply_to) if reply_to else None,
            )
        return None

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in _fields(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Target:
        def text(key: str) -> str | None:
            value = data.get(key)
            return str(value) if value else None

        return cls(
            str(data["message_id"]),
            chat_id=text("chat_id"),
            team_id=text("team_id"),
            channel_id=text("channel_id"),
            reply_to_id=text("reply_to_id"),
        )


def _fields(target: Target) -> dict[str, str | None]:
    return {
        "message_id": target.message_id,
        "chat_id": target.chat_id,
        "team_id": target.team_id,
        "channel_id": target.channel_id,
        "reply_to_id": target.reply_to_id,
    }


@dataclass(frozen=True, slots=True)
class Action:
    """What was decided for one verdict. `violation` is the policyViolation to PATCH (the
    policy's own tip text and the matched type names: configuration, never content)."""

    verdict_key: str
    action: str  # notify_sender | block_external | block | lift
    rule: str
    types: tuple[str, ...]
    confidence: int
    mode: str  # dry_run | enforce
    state: str  # pending | dry_run | already_applied | overridden
    decided_at: float
    target: Target | None = None
    violation: dict[str, Any] = field(default_factory=dict, compare=False)
    justified: bool = False  # the sender gave a justification (its text is not kept)

    @property
    def to_apply(self) -> bool:
        return self.state == PENDING

    def to_dict(self) -> dict[str, Any]:
        """The audit record, as every sink writes it beside the verdict."""
        record: dict[str, Any] = {
            "verdict_key": self.verdict_key,
            "action": self.action,
            "rule": self.rule,
            "types": list(self.types),
            "confidence": self.confidence,
            "mode": self.mode,
            "state": self.state,
            "decided_at": self.decided_at,
        }
        if self.justified:
            record["justified"] = True
        return record


@dataclass(frozen=True, slots=True)
class Violation:
    """A message's current policyViolation, as far as the decision needs it."""

    dlp_action: str  # lower case; "none" when absent
    tip: tuple[str, str]  # (generalText, complianceUrl)
    matched: frozenset[str]
    user_action: str  # lower case; "none" when absent
    justified: bool

    @classmethod
    def of(cls, value: Any) -> Violation | None:
        if not isinstance(value, dict):
            return None
        found = value.get("policyTip")
        tip: dict[str, Any] = found if isinstance(found, dict) else {}
        matched = tip.get("matchedConditionDescriptions") or []
        return cls(
            dlp_action=str(value.get("dlpAction") or "none").lower(),
            tip=(str(tip.get("generalText") or ""), str(tip.get("complianceUrl") or "")),
            matched=frozenset(str(m) for m in matched if isinstance(m, str)),
            user_action=str(value.get("userAction") or "none").lower(),
            justified=bool(value.get("justificationText")),
        )

    @property
    def restricts(self) -> bool:
        return self.dlp_action != "none"


def violation_body(
    action: str, *, tip: str, url: str, types: Sequence[str], allow_override: bool
) -> dict[str, Any]:
    """The policyViolation a PATCH sets, in Graph's JSON."""
    if action == "lift":
        return {"dlpAction": "none", "verdictDetails": "none"}
    return {
        "dlpAction": DLP_ACTIONS[action],
        "verdictDetails": "allowOverrideWithJustification" if allow_override else "none",
        "policyTip": {
            "generalText": tip,
            "complianceUrl": url or None,
            "matchedConditionDescriptions": list(types),
        },
    }


def decide(
    enforcement: Enforcement,
    *,
    verdict_key: str,
    change_type: str,
    message: Mapping[str, Any] | None,
    findings: Sequence[Mapping[str, Any]],
    severity_of: Callable[[str], str],
    now: float,
) -> Action | None:
    """The action for one verdict, or None (report mode, no message, nothing to do)."""
    if not enforcement.acts or message is None or change_type == "deleted":
        return None
    target = Target.of(message)
    if target is None:  # not a Teams message (mail): Graph has no policyViolation for it
        return None
    current = Violation.of(message.get("policyViolation"))
    ours = current is not None and current.tip in enforcement.tips()
    match = enforcement.match(findings, severity_of)
    pending = PENDING if enforcement.mode == "enforce" else DRY_RUN

    def record(
        action: str,
        rule: str,
        types: tuple[str, ...],
        confidence: int,
        state: str,
        violation: dict[str, Any],
    ) -> Action:
        return Action(
            verdict_key=verdict_key,
            action=action,
            rule=rule,
            types=types,
            confidence=confidence,
            mode=enforcement.mode,
            state=state,
            decided_at=now,
            target=target,
            violation=violation,
            justified=current.justified if current is not None else False,
        )

    if match is None:
        if (
            enforcement.lift_on_fix
            and change_type == "updated"
            and current is not None
            and ours
            and current.restricts
        ):
            body = violation_body("lift", tip="", url="", types=(), allow_override=False)
            return record("lift", "lift_on_fix", (), 0, pending, body)
        return None
    rule = match.rule
    wanted = DLP_ACTIONS[rule.action].lower()
    covered = current is not None and set(match.types) <= current.matched
    body = violation_body(
        rule.action,
        tip=rule.tip,
        url=rule.compliance_url,
        types=match.types,
        allow_override=rule.allow_override,
    )
    state = pending
    if current is not None and ours and covered:
        if current.user_action == "override":
            state = OVERRIDDEN
        elif current.dlp_action == wanted:
            state = ALREADY_APPLIED
    elif (
        current is not None
        and not ours
        and _STRENGTH.get(current.dlp_action, 0) >= _STRENGTH[wanted]
    ):
        state = ALREADY_APPLIED
    return record(rule.action, rule.name, match.types, match.confidence, state, body)
