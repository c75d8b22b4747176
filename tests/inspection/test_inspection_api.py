"""The contract the pipeline relies on: settings, results, findings, privacy, policy."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json

import pytest

from graphtap.inspection import (
    Finding,
    InspectionResult,
    InspectionSettings,
    Inspector,
    Policy,
    TypePolicy,
    hyperscan_available,
)
from tests.inspection.conftest import KEY

CARD = "4111 1111 1111 1111"
JWT = ".".join(("eyJhbGciOiJIUzI1NiJ9", "eyJzdWIiOiIxIn0", "c2ln"))
SSN = "536-22-1844"


def chat_message(html: str, **extra: object) -> dict[str, object]:
    return {
        "id": "1700000000000",
        "messageType": "message",
        "subject": None,
        "summary": None,
        "body": {"contentType": "html", "content": html},
        "attachments": [],
        "mentions": [{"id": 0, "mentionText": "Megan Bowen"}],
        **extra,
    }


def test_settings_are_frozen_and_checked() -> None:
    settings = InspectionSettings(hash_key=KEY)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.engine = "python"  # type: ignore[misc]
    with pytest.raises(ValueError, match="hash_key"):
        InspectionSettings(hash_key=b"")
    with pytest.raises(ValueError, match="engine"):
        InspectionSettings(hash_key=KEY, engine="re2")  # type: ignore[arg-type]
    assert settings.policy == Policy.default()


def test_auto_engine_picks_hyperscan_when_importable() -> None:
    inspector = Inspector(InspectionSettings(hash_key=KEY, engine="auto"))
    assert inspector.engine == ("hyperscan" if hyperscan_available() else "python")


def test_clean_message_has_no_findings_and_severity_none(inspector: Inspector) -> None:
    result = inspector.inspect_message(
        chat_message('<p><at id="0">Megan Bowen</at>&nbsp;can you check the deck?</p>')
    )
    assert result == InspectionResult((), "none")


def test_findings_are_aggregated_per_distinct_value(inspector: Inspector) -> None:
    text = f"card number {CARD}\nagain {CARD.replace(' ', '')}\nother 5500 0000 0000 0004"
    result = inspector.inspect_text(text)
    cards = [f for f in result.findings if f.type == "credit_card_number"]
    assert sorted(f.count for f in cards) == [1, 2]
    repeated = next(f for f in cards if f.count == 2)
    assert repeated.positions == (text.index(CARD), text.index(CARD.replace(" ", "")))
    assert repeated.confidence == 85
    assert result.severity == "high"


def test_positions_are_offsets_in_the_extracted_text(inspector: Inspector) -> None:
    html = f"<p>hello</p><p>SSN: <b>{SSN}</b></p>"
    finding = inspector.inspect_html(html).findings[0]
    assert finding.type == "us_social_security_number"
    from graphtap.inspection.text import html_to_text

    text = html_to_text(html)
    assert text[finding.positions[0] : finding.positions[0] + len(SSN)] == SSN


def test_finding_never_carries_the_value(inspector: Inspector) -> None:
    secrets = [CARD, SSN, "GB82WEST12345698765432", "Falcon2231!x"]
    text = f"card {CARD} SSN {SSN} IBAN GB82WEST12345698765432 password=Falcon2231!x"
    result = inspector.inspect_text(text)
    assert {f.type for f in result.findings} == {
        "credit_card_number",
        "us_social_security_number",
        "iban",
        "password",
    }
    dumped = json.dumps([f.to_dict() for f in result.findings]) + repr(result)
    for secret in secrets:
        assert secret not in dumped
        assert secret.replace(" ", "").replace("-", "") not in dumped
    for finding in result.findings:
        assert len(finding.preview.removeprefix("****")) <= 4


def test_value_hash_is_hmac_sha256_of_the_normalised_value(inspector: Inspector) -> None:
    finding = inspector.inspect_text(f"visa {CARD}").findings[0]
    expected = hmac.new(KEY, b"4111111111111111", hashlib.sha256).hexdigest()
    assert finding.value_hash == expected
    assert finding.preview == "****1111"
    # the same value written differently correlates; another key does not
    assert inspector.inspect_text("visa 4111-1111-1111-1111").findings[0].value_hash == expected
    other = Inspector(InspectionSettings(hash_key=b"another key 1234", engine="python"))
    assert other.inspect_text(f"visa {CARD}").findings[0].value_hash != expected


def test_to_dict_has_the_documented_keys(inspector: Inspector) -> None:
    finding = inspector.inspect_text(f"card {CARD}").findings[0]
    assert isinstance(finding, Finding)
    assert set(finding.to_dict()) == {
        "type",
        "confidence",
        "count",
        "preview",
        "positions",
        "value_hash",
    }
    json.dumps(finding.to_dict())


def test_short_passwords_reveal_less(inspector: Inspector) -> None:
    finding = inspector.inspect_text("password=Tango4411$").findings[0]
    assert finding.preview == "****1$"


def test_message_parts_are_all_inspected(inspector: Inspector) -> None:
    card = json.dumps(
        {"type": "AdaptiveCard", "body": [{"type": "TextBlock", "text": f"SSN {SSN}"}]}
    )
    message = chat_message(
        "<p>nothing here</p>",
        subject="IBAN GB82WEST12345698765432",
        attachments=[
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card},
            {"contentType": "reference", "name": "aws key " + "AK" + "IAJ57XMQ7573CSU5G4.txt"},
        ],
    )
    found = {f.type for f in inspector.inspect_message(message).findings}
    assert found == {"iban", "us_social_security_number", "aws_access_key_id"}


def test_outlook_message(inspector: Inspector) -> None:
    message = {
        "subject": "payroll",
        "body": {"contentType": "html", "content": f"<div>Employee SSN {SSN}</div>"},
        "bodyPreview": f"Employee SSN {SSN}",
    }
    result = inspector.inspect_message(message)
    assert [(f.type, f.count) for f in result.findings] == [("us_social_security_number", 1)]


def test_ssn_confidence_levels_follow_purview(inspector: Inspector) -> None:
    def confidence(text: str) -> int | None:
        found = [f for f in inspector.inspect_text(text).findings]
        return found[0].confidence if found else None

    assert confidence("SSN 536-22-1844") == 85  # formatted, issued before 2011
    assert confidence("SSN 536221844") == 75  # unformatted
    assert confidence("SSN 812-44-1234") == 65  # formatted, randomized era
    assert confidence("SSN 812441234") is None  # 55: below the default policy
    assert confidence("536-22-1844") is None  # never without a keyword


def test_keyword_window_is_300_characters(inspector: Inspector) -> None:
    near = "SSN " + "x" * 290 + " 536-22-1844"
    far = "SSN " + "x" * 310 + " 536-22-1844"
    assert inspector.inspect_text(near).findings
    assert not inspector.inspect_text(far).findings


def test_card_confidence_low_alone_high_with_keyword_or_expiry(inspector: Inspector) -> None:
    assert inspector.inspect_text(f"here {CARD} ok").findings[0].confidence == 65
    assert inspector.inspect_text(f"here {CARD} 09/28").findings[0].confidence == 85
    assert inspector.inspect_text(f"amex? {CARD}").findings[0].confidence == 85


def test_unformatted_randomized_ssn_is_55_under_a_permissive_policy() -> None:
    policy = Policy(fallback=TypePolicy(min_confidence=55))
    inspector = Inspector(InspectionSettings(hash_key=KEY, policy=policy))
    finding = inspector.inspect_text("SSN 812441234").findings[0]
    assert finding.confidence == 55


def test_policy_min_confidence_min_count_and_severity() -> None:
    policy = Policy(
        fallback=TypePolicy(min_confidence=65, severity="low"),
        types={
            "credit_card_number": TypePolicy(min_confidence=85, severity="critical"),
            "us_social_security_number": TypePolicy(min_count=2, severity="high"),
        },
    )
    inspector = Inspector(InspectionSettings(hash_key=KEY, policy=policy))
    # a card at 65 does not pass a minimum of 85
    assert inspector.inspect_text(f"here {CARD} ok").severity == "none"
    assert inspector.inspect_text(f"card {CARD}").severity == "critical"
    # one SSN is not enough, two occurrences are
    assert inspector.inspect_text(f"SSN {SSN}").findings == ()
    twice = inspector.inspect_text(f"SSN {SSN} and SSN 536-22-1845")
    assert [f.type for f in twice.findings] == ["us_social_security_number"] * 2
    assert twice.severity == "high"
    # the highest severity among the types present wins
    both = inspector.inspect_text(f"IBAN GB82WEST12345698765432 card {CARD}")
    assert both.severity == "critical"


def test_engines_agree_on_mixed_content(inspectors: dict[str, Inspector]) -> None:
    html = (
        f"<p>card {CARD} and SSN {SSN}</p><p>token={JWT}</p>"
        "<p>Order # 021000021, routing 011000015</p><p>password: Summer2024!</p>"
    )
    results = {name: inspector.inspect_html(html) for name, inspector in inspectors.items()}
    assert results["hyperscan"] == results["python"]
    assert [f.type for f in results["python"].findings] == [
        "credit_card_number",
        "us_social_security_number",
        "jwt",
        "aba_routing_number",  # the routing number, not the order number before it
        "password",
    ]


def test_non_ascii_text_positions_are_character_offsets(inspectors: dict[str, Inspector]) -> None:
    text = "Grüße, Zoë — SSN 536-22-1844 and card 4111 1111 1111 1111"
    results = {name: inspector.inspect_text(text) for name, inspector in inspectors.items()}
    assert results["hyperscan"] == results["python"]
    starts = {f.type: f.positions[0] for f in results["python"].findings}
    assert text[starts["us_social_security_number"] :].startswith("536-22-1844")
    assert text[starts["credit_card_number"] :].startswith("4111 1111")


def test_auto_falls_back_to_python_without_hyperscan(monkeypatch: pytest.MonkeyPatch) -> None:
    from graphtap.inspection import engine

    monkeypatch.setattr(engine, "hyperscan", None)
    inspector = Inspector(InspectionSettings(hash_key=KEY, engine="auto"))
    assert inspector.engine == "python"
    assert inspector.inspect_text(f"SSN {SSN}").findings
    with pytest.raises(RuntimeError, match="hyperscan"):
        Inspector(InspectionSettings(hash_key=KEY, engine="hyperscan"))


def test_settings_pickle_for_worker_processes() -> None:
    import pickle

    policy = Policy(types={"iban": TypePolicy(severity="high")})
    settings = InspectionSettings(hash_key=KEY, policy=policy, engine="python")
    restored = pickle.loads(pickle.dumps(settings))  # noqa: S301  (our own bytes)
    assert restored == settings
    assert hash(restored) == hash(settings)
    assert restored.policy.for_type("iban").severity == "high"
