"""Policy files: what they may say, and the errors for what they may not."""

from __future__ import annotations

from pathlib import Path

import pytest

from graphtap.inspection import Policy, PolicyError, TypePolicy, load_policy
from graphtap.inspection.rules import TYPES

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return path


def test_default_reports_every_type_at_65() -> None:
    policy = Policy.default()
    for kind in TYPES:
        assert policy.for_type(kind).min_confidence == 65
        assert policy.for_type(kind).min_count == 1


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_environment_policies_load(env: str) -> None:
    policy = load_policy(ROOT / "runtime" / "environments" / env / "policy.toml")
    assert policy is not None
    assert policy.for_type("private_key").severity == "critical"


def test_types_inherit_unspecified_keys_from_default(tmp_path: Path) -> None:
    policy = load_policy(
        write(
            tmp_path,
            '[default]\nmin_confidence = 75\nseverity = "low"\n[types.iban]\nseverity = "high"\n',
        )
    )
    assert policy == Policy(
        fallback=TypePolicy(min_confidence=75, severity="low"),
        types={"iban": TypePolicy(min_confidence=75, severity="high")},
    )
    assert hash(policy) == hash(policy)


def test_no_path_means_none_so_callers_fall_back() -> None:
    assert load_policy(None) is None
    assert (load_policy(None) or Policy.default()) == Policy.default()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[types.credit_card]\nseverity = 'high'\n", "unknown type.*credit_card"),
        ("[default]\nmin_confidence = 'high'\n", r"\[default\].*min_confidence"),
        ("[default]\nmin_confidence = 101\n", "0-100"),
        ("[default]\nmin_count = 0\n", "min_count"),
        ("[default]\nmin_confidence = true\n", "0-100"),  # TOML's true is no number
        ("[default]\nmin_count = true\n", "min_count"),
        ("[types.iban]\nseverity = 'severe'\n", r"\[types.iban\].*severity"),
        ("[types.iban]\nthreshold = 3\n", "unknown key.*threshold"),
        ("[rules]\n", "unknown section"),
        ("[default\n", "not valid TOML"),
    ],
)
def test_bad_policies_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PolicyError, match=message) as caught:
        load_policy(path)
    if "unknown type" not in message:
        assert str(path) in str(caught.value)


def test_a_policy_that_is_not_a_text_file_is_named(tmp_path: Path) -> None:
    latin = tmp_path / "latin.toml"
    latin.write_bytes("[types.iban]\n# s\xe9v\xe9rit\xe9\nseverity = 'low'\n".encode("latin-1"))
    with pytest.raises(PolicyError, match=f"{latin} is not UTF-8"):
        load_policy(latin)
    with pytest.raises(PolicyError, match=f"{tmp_path} cannot be read"):
        load_policy(tmp_path)


def test_missing_file_is_an_error_not_a_silent_default(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="does not exist"):
        load_policy(tmp_path / "absent.toml")
