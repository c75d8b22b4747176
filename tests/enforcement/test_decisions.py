"""The decision table, as data: each row a message, its findings and what the policy does."""

from __future__ import annotations

from typing import Any

import pytest

from graphtap.inspection.enforcement import Enforcement, EnforcementRule
from graphtap.processing.actions import decide

CARDS = EnforcementRule(
    name="cards",
    action="block",
    tip="No cards in chat.",
    compliance_url="https://contoso.example/cards",
    types=frozenset({"credit_card_number"}),
    min_severity="high",
    min_confidence=75,
    allow_override=True,
)
SECRETS = EnforcementRule(
    name="secrets",
    action="notify_sender",
    tip="Rotate that secret.",
    compliance_url="",
    types=frozenset({"github_token", "password"}),
)
EXTERNAL = EnforcementRule(
    name="anything high",
    action="block_external",
    tip="Not outside the company.",
    compliance_url="",
    min_severity="high",
)
SEVERITY = {"credit_card_number": "high", "github_token": "critical", "password": "medium"}
ENFORCE = Enforcement(mode="enforce", lift_on_fix=True, rules=(SECRETS, CARDS, EXTERNAL))


def card(confidence: int = 85) -> dict[str, Any]:
    return {"type": "credit_card_number", "confidence": confidence}


def ours(action: str = "blockAccess", **extra: Any) -> dict[str, Any]:
    tip = {"generalText": CARDS.tip, "complianceUrl": CARDS.compliance_url}
    return {
        "dlpAction": action,
        "policyTip": tip | {"matchedConditionDescriptions": ["credit_card_number"]},
        **extra,
    }


# (why, enforcement, change type, findings, current policyViolation, expected
#  (action, rule, state) or None)
TABLE: list[tuple[str, Enforcement, str, list[dict[str, Any]], Any, Any]] = [
    ("report mode decides nothing", Enforcement(rules=(CARDS,)), "created", [card()], None, None),
    ("a clean message needs nothing", ENFORCE, "created", [], None, None),
    ("a card at 85 is blocked", ENFORCE, "created", [card()], None, ("block", "cards", "pending")),
    (
        "below the rule's confidence only the broader rule matches",
        ENFORCE,
        "created",
        [card(65)],
        None,
        ("block_external", "anything high", "pending"),
    ),
    (
        "a medium-severity type reaches no severity floor but its own rule",
        ENFORCE,
        "created",
        [{"type": "password", "confidence": 75}],
        None,
        ("notify_sender", "secrets", "pending"),
    ),
    (
        "the strongest matching action wins, whatever the rule order",
        ENFORCE,
        "created",
        [{"type": "github_token", "confidence": 85}, card()],
        None,
        ("block", "cards", "pending"),
    ),
    (
        "of two rules as strong, the first in the file decides",
        Enforcement(
            mode="enforce",
            rules=(
                EnforcementRule("first", "block", "tip one", "", frozenset({"password"})),
                EnforcementRule("second", "block", "tip two", "", frozenset({"github_token"})),
            ),
        ),
        "created",
        [{"type": "github_token", "confidence": 85}, {"type": "password", "confidence": 85}],
        None,
        ("block", "first", "pending"),
    ),
    (
        "dry run decides the same, to show it",
        Enforcement(mode="dry_run", rules=(CARDS,)),
        "created",
        [card()],
        None,
        ("block", "cards", "dry_run"),
    ),
    (
        "our own violation coming back is already applied (no loop)",
        ENFORCE,
        "updated",
        [card()],
        ours(),
        ("block", "cards", "already_applied"),
    ),
    (
        "Graph's enum casing does not matter",
        ENFORCE,
        "updated",
        [card()],
        ours("BlockAccess"),
        ("block", "cards", "already_applied"),
    ),
    (
        "the sender's override is respected",
        ENFORCE,
        "updated",
        [card()],
        ours(userAction="Override", justificationText="customer asked"),
        ("block", "cards", "overridden"),
    ),
    (
        "an edit adding a type the override did not cover is acted on again",
        ENFORCE,
        "updated",
        [card(), {"type": "github_token", "confidence": 85}],
        ours(userAction="Override", justificationText="customer asked"),
        ("block", "cards", "pending"),
    ),
    (
        "a weaker violation of ours is strengthened",
        ENFORCE,
        "updated",
        [card()],
        ours("notifySender"),
        ("block", "cards", "pending"),
    ),
    (
        "someone else's block at least as strong stands",
        ENFORCE,
        "updated",
        [card()],
        {"dlpAction": "BlockAccess", "policyTip": {"generalText": "Purview says no"}},
        ("block", "cards", "already_applied"),
    ),
    (
        "someone else's weaker action is replaced",
        ENFORCE,
        "updated",
        [card()],
        {"dlpAction": "NotifySender", "policyTip": {"generalText": "Purview"}},
        ("block", "cards", "pending"),
    ),
    (
        "an edit that fixed the message is lifted",
        ENFORCE,
        "updated",
        [],
        ours(),
        ("lift", "lift_on_fix", "pending"),
    ),
    (
        "without lift_on_fix the block stays",
        Enforcement(mode="enforce", rules=(CARDS,)),
        "updated",
        [],
        ours(),
        None,
    ),
    (
        "a lifted violation coming back needs nothing",
        ENFORCE,
        "updated",
        [],
        ours("none"),
        None,
    ),
    (
        "someone else's block is never lifted by us",
        ENFORCE,
        "updated",
        [],
        {"dlpAction": "BlockAccess", "policyTip": {"generalText": "Purview says no"}},
        None,
    ),
]


@pytest.mark.parametrize(
    ("why", "enforcement", "change_type", "findings", "current", "expected"),
    TABLE,
    ids=[row[0] for row in TABLE],
)
def test_decision(
    why: str,
    enforcement: Enforcement,
    change_type: str,
    findings: list[dict[str, Any]],
    current: Any,
    expected: tuple[str, str, str] | None,
) -> None:
    message = {"id": "1700000000000", "chatId": "19:a@unq.gbl.spaces", "policyViolation": current}
    action = decide(
        enforcement,
        verdict_key="k",
        change_type=change_type,
        message=message,
        findings=findings,
        severity_of=SEVERITY.__getitem__,
        now=1.0,
    )
    found = None if action is None else (action.action, action.rule, action.state)
    assert found == expected, why


def test_no_message_or_a_deletion_or_mail_decides_nothing() -> None:
    def decided(change_type: str, message: dict[str, Any] | None) -> object:
        return decide(
            ENFORCE,
            verdict_key="k",
            change_type=change_type,
            message=message,
            findings=[card()],
            severity_of=SEVERITY.__getitem__,
            now=1.0,
        )

    assert decided("created", None) is None
    assert decided("deleted", {"id": "1", "chatId": "19:a"}) is None
    assert decided("created", {"id": "AAMk", "subject": "mail has no policyViolation"}) is None
    assert decided("created", {"id": "1", "chatId": "19:a"}) is not None


def test_the_record_names_the_rule_and_types_never_the_content_or_justification() -> None:
    action = decide(
        ENFORCE,
        verdict_key="k",
        change_type="updated",
        message={
            "id": "1",
            "chatId": "19:a",
            "body": {"content": "4111 1111 1111 1111"},
            "policyViolation": ours(userAction="override", justificationText="secret reason"),
        },
        findings=[card()],
        severity_of=SEVERITY.__getitem__,
        now=5.0,
    )
    assert action is not None
    record = action.to_dict()
    assert record == {
        "verdict_key": "k",
        "action": "block",
        "rule": "cards",
        "types": ["credit_card_number"],
        "confidence": 85,
        "mode": "enforce",
        "state": "overridden",
        "decided_at": 5.0,
        "justified": True,
    }
    assert "secret reason" not in repr(action)
    assert "4111" not in repr(action)
