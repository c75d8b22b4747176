"""Names come from one place, from the prefix, the environment and the region."""

from __future__ import annotations

from stacks.naming import REGIONS, RULES, Names


def test_names_follow_the_pattern() -> None:
    names = Names.derive("gtap", "dev", "westeurope")
    assert names.resource_group == "rg-gtap-dev-weu"
    assert names.eventhub_namespace == "evhns-gtap-dev-weu"
    assert names.storage_account == "stgtapdevweu"
    assert names.key_vault == "kv-gtap-dev-weu"
    assert names.web_app == "app-gtap-dev-weu"
    assert names.function_app == "func-gtap-dev-weu"
    assert names.violations() == []


def test_every_region_code_is_unique() -> None:
    assert len(set(REGIONS.values())) == len(REGIONS)


def test_storage_rule_rejects_hyphens_and_length() -> None:
    rule = RULES["storage_account"]
    assert rule.check("stgtapdevweu") is None
    assert "invalid" in (rule.check("st-gtap") or "")
    assert "25 characters" in (rule.check("s" * 25) or "")


def test_too_long_names_are_reported_with_the_resource() -> None:
    problems = Names.derive("averylongprefx", "staging", "germanywestcentral").violations()
    assert any(problem.startswith("the Key Vault name") for problem in problems)
    assert any(problem.startswith("the storage account name") for problem in problems)


def test_the_payload_account_fits_wherever_the_key_vault_does() -> None:
    """Its name is the storage account's plus two characters, the vault's is plus three: a
    prefix the vault accepts never makes the payload account too long on its own."""
    assert Names.derive("gtap", "dev", "westeurope").payload_account == "stplgtapdevweu"
    for region in REGIONS:
        for prefix_length in range(2, 13):
            names = Names.derive("p" * prefix_length, "staging", region)
            if RULES["key_vault"].check(names.key_vault) is None:
                assert RULES["payload_account"].check(names.payload_account) is None
