"""Each rule's own true and false examples, through both engines (gitleaks-style)."""

from __future__ import annotations

import pytest

from graphtap.inspection import Inspector
from graphtap.inspection.rules import RULES, TYPES, Rule

TRUE_CASES = [
    pytest.param(rule.type, text, id=f"{rule.type}-true-{i}")
    for rule in RULES
    for i, text in enumerate(rule.true_examples)
]
FALSE_CASES = [
    pytest.param(rule.type, text, id=f"{rule.type}-false-{i}")
    for rule in RULES
    for i, text in enumerate(rule.false_examples)
]


def test_the_types_are_exactly_the_documented_names() -> None:
    assert sorted(TYPES) == sorted(
        [
            "credit_card_number",
            "us_social_security_number",
            "iban",
            "aba_routing_number",
            "us_bank_account_number",
            "us_passport_number",
            "azure_storage_account_key",
            "azure_ad_client_secret",
            "aws_access_key_id",
            "github_token",
            "private_key",
            "jwt",
            "slack_token",
            "google_api_key",
            "stripe_secret_key",
            "password",
            "uk_national_insurance_number",
            "uk_nhs_number",
            "canada_social_insurance_number",
            "australia_tax_file_number",
            "australia_medicare_number",
            "india_aadhaar_number",
            "india_permanent_account_number",
            "us_individual_taxpayer_identification_number",
            "france_social_security_number",
            "spain_dni",
            "italy_fiscal_code",
            "netherlands_bsn",
            "poland_pesel",
            "sweden_personal_identity_number",
            "brazil_cpf",
            "germany_identity_card_number",
            "azure_sas_token",
            "azure_connection_string",
            "openai_api_key",
            "gitlab_token",
            "npm_token",
            "pypi_token",
            "sendgrid_api_key",
            "twilio_api_key",
            "databricks_token",
            "url_credentials",
        ]
    )


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.type)
def test_every_rule_carries_examples_both_ways(rule: Rule) -> None:
    assert rule.true_examples
    assert rule.false_examples


@pytest.mark.parametrize(("kind", "text"), TRUE_CASES)
def test_rule_finds_its_true_examples(inspector: Inspector, kind: str, text: str) -> None:
    found = {f.type: f for f in inspector.inspect_text(text).findings}
    assert kind in found, f"{kind} not found in {text!r}"
    assert found[kind].confidence >= 65


@pytest.mark.parametrize(("kind", "text"), FALSE_CASES)
def test_rule_ignores_its_false_examples(inspector: Inspector, kind: str, text: str) -> None:
    found = {f.type for f in inspector.inspect_text(text).findings}
    assert kind not in found, f"{kind} wrongly found in {text!r}"


@pytest.mark.parametrize(("kind", "text"), TRUE_CASES + FALSE_CASES)
def test_both_engines_report_the_same_findings(
    inspectors: dict[str, Inspector], kind: str, text: str
) -> None:
    results = {name: inspector.inspect_text(text) for name, inspector in inspectors.items()}
    assert results["hyperscan"] == results["python"]
