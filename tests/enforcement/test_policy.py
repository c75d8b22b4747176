"""The `[enforcement]` section: parsed into rules, refused with the file, key and rule named."""

from __future__ import annotations

from pathlib import Path

import pytest

from graphtap.inspection import PolicyError, load_policy
from graphtap.inspection.enforcement import DEFAULT_TIP
from tests.enforcement.conftest import ENFORCING, TIP, URL, policy_file


def test_an_environment_without_the_section_only_reports(tmp_path: Path) -> None:
    policy = load_policy(policy_file(tmp_path, "[default]\nmin_confidence = 65\n"))
    assert policy is not None
    assert policy.enforcement.mode == "report"
    assert not policy.enforcement.acts
    assert policy.enforcement.tip == DEFAULT_TIP


def test_the_section_becomes_rules(tmp_path: Path) -> None:
    policy = load_policy(policy_file(tmp_path, ENFORCING))
    assert policy is not None
    enforcement = policy.enforcement
    assert (enforcement.mode, enforcement.lift_on_fix) == ("enforce", True)
    (rule,) = enforcement.rules
    assert (rule.name, rule.action, rule.tip, rule.compliance_url) == (
        "payment cards",
        "block",
        TIP,
        URL,
    )
    assert rule.types == {"credit_card_number"}
    assert (rule.min_severity, rule.min_confidence, rule.allow_override) == ("high", 75, True)


def test_a_rule_without_tip_or_url_takes_the_sections(tmp_path: Path) -> None:
    text = """
[enforcement]
mode = "dry_run"
tip = "Check before you share."
compliance_url = "https://contoso.example/dlp"

[[enforcement.rules]]
name = "secrets"
action = "notify_sender"
"""
    policy = load_policy(policy_file(tmp_path, text))
    assert policy is not None
    (rule,) = policy.enforcement.rules
    assert (rule.tip, rule.compliance_url, rule.types) == (
        "Check before you share.",
        "https://contoso.example/dlp",
        frozenset(),
    )


RULE = '[[enforcement.rules]]\nname = "cards"\naction = "block"\n'


@pytest.mark.parametrize(
    ("section", "named"),
    [
        ('[enforcement]\nmode = "block_everything"\n', "[enforcement] mode"),
        ('[enforcement]\nmode = "enforce"\n', "[enforcement] mode"),
        ('[enforcement]\nlift_on_fix = "yes"\n', "[enforcement]: lift_on_fix"),
        ("[enforcement]\nmodes = 1\n", "unknown key(s) modes"),
        ('[enforcement]\ncompliance_url = "http://contoso.example"\n', "compliance_url"),
        ('[enforcement]\nmode = "enforce"\n[[enforcement.rules]]\naction = "block"\n', "name"),
        (
            '[enforcement]\nmode = "enforce"\n[[enforcement.rules]]\nname = "cards"\n'
            'action = "quarantine"\n',
            "#1 (cards): action",
        ),
        (
            f'[enforcement]\nmode = "enforce"\n{RULE}types = ["credit_card"]\n',
            "#1 (cards): types: unknown type(s) credit_card",
        ),
        (
            f'[enforcement]\nmode = "enforce"\n{RULE}min_severity = "severe"\n',
            "#1 (cards): min_severity",
        ),
        (
            f'[enforcement]\nmode = "enforce"\n{RULE}min_confidence = 101\n',
            "#1 (cards): min_confidence",
        ),
        (
            f'[enforcement]\nmode = "enforce"\n{RULE}allow_override = 1\n',
            "#1 (cards): allow_override",
        ),
        (f'[enforcement]\nmode = "enforce"\n{RULE}tip = ""\n', "#1 (cards): tip"),
        (f'[enforcement]\nmode = "enforce"\n{RULE}colour = "red"\n', "#1 (cards): unknown key"),
        (f'[enforcement]\nmode = "enforce"\n{RULE}{RULE}', "#2 (cards): name"),
    ],
)
def test_a_bad_section_names_the_file_the_key_and_the_rule(
    tmp_path: Path, section: str, named: str
) -> None:
    path = policy_file(tmp_path, section)
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    message = str(raised.value)
    assert message.startswith(str(path)), message
    assert named in message, message


def test_a_rule_may_name_the_tenants_own_types(tmp_path: Path) -> None:
    text = """
[custom_types.project_code]
pattern = "PRJ-[0-9]{6}"
confidence = 85

[enforcement]
mode = "dry_run"

[[enforcement.rules]]
name = "projects"
action = "block_external"
types = ["project_code"]
"""
    policy = load_policy(policy_file(tmp_path, text))
    assert policy is not None
    assert policy.enforcement.rules[0].types == {"project_code"}
