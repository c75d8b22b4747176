"""A tenant's own types, declared in its policy file: patterns, checksums, exact data."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from click.testing import CliRunner

from graphtap.hosts.cli import cli
from graphtap.inspection import InspectionSettings, Inspector, PolicyError, load_policy
from graphtap.inspection.custom import CHECKSUMS
from graphtap.inspection.findings import ValueHasher
from tests.inspection.conftest import ENGINES, KEY

EMPLOYEE = """
[custom_types.employee_id]
pattern = '(?<![A-Za-z0-9])EMP-(?P<v>[0-9]{7})(?![0-9])'
validator = "luhn"
keywords = ["employee", "staff number"]
proximity = 40
confidence = 85
confidence_alone = 70
severity = "critical"
"""

CUSTOMERS = """
[exact_data.vip_customers]
file = "vip.hmac"
pattern = '(?<![0-9])[0-9]{4}[ -]?[0-9]{4}(?![0-9])'
normalise = "digits"
keywords = ["customer"]
keyword_required = true
severity = "high"
"""


def write_policy(tmp_path: Path, text: str, listed: tuple[str, ...] = ()) -> Path:
    hasher = ValueHasher(KEY)
    lines = ["# HMAC-SHA256 of each customer number, digits only", *map(hasher, listed)]
    (tmp_path / "vip.hmac").write_text("\n".join(lines) + "\n")
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return path


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def inspector_for(path: Path, engine: str) -> Inspector:
    policy = load_policy(path)
    assert policy is not None
    return Inspector(InspectionSettings(hash_key=KEY, policy=policy, engine=engine))  # type: ignore[arg-type]


def test_a_custom_pattern_with_checksum_keywords_and_proximity(tmp_path: Path, engine: str) -> None:
    inspector = inspector_for(write_policy(tmp_path, EMPLOYEE), engine)
    # 1234566 passes Luhn, 1234567 does not; the second valid id is beyond the 40 characters.
    text = "employee EMP-1234566 and EMP-1234567. " + "x" * 60 + " EMP-7654320"
    result = inspector.inspect_text(text)
    found = [(f.type, f.confidence) for f in result.findings]
    assert found == [("employee_id", 85), ("employee_id", 70)]
    assert result.severity == "critical"
    assert all("1234566" not in str(f.to_dict()) for f in result.findings)  # (?P<v>) only


def test_exact_data_matches_only_listed_values_near_a_keyword(tmp_path: Path, engine: str) -> None:
    inspector = inspector_for(write_policy(tmp_path, CUSTOMERS, ("40012345",)), engine)
    result = inspector.inspect_text("customer 4001-2345 and customer 4001-2346; 4001 2345 again")
    (finding,) = result.findings
    assert (finding.type, finding.count, result.severity) == ("vip_customers", 2, "high")
    # The finding's hash is the very line of the list that matched.
    assert finding.value_hash == ValueHasher(KEY)("40012345")
    assert finding.value_hash in (tmp_path / "vip.hmac").read_text()
    assert inspector.inspect_text("order 4001-2345").findings == ()  # no keyword


def test_a_required_keyword_counts_however_long_the_match(tmp_path: Path, engine: str) -> None:
    """Purview's window is 300 characters either side of the match, whatever its length: a
    120-character case token with its keyword 290 characters later is found."""
    declaration = (
        "[custom_types.case_token]\npattern = 'CASE-[A-Z0-9]{120}'\n"
        'keywords = ["casefile"]\nkeyword_required = true\n'
    )
    inspector = inspector_for(write_policy(tmp_path, declaration), engine)
    value = "CASE-" + "Q7W2E9R4T1" * 12
    text = f"{value} {'word ' * 58}casefile"
    assert [f.type for f in inspector.inspect_text(text).findings] == ["case_token"]
    assert inspector.inspect_text(f"{value} {'word ' * 70}casefile").findings == ()


def test_engines_agree_and_the_policy_travels_to_workers(tmp_path: Path) -> None:
    path = write_policy(tmp_path, EMPLOYEE + CUSTOMERS, ("40012345",))
    policy = load_policy(path)
    assert policy is not None
    assert pickle.loads(pickle.dumps(policy)) == policy  # noqa: S301  (our own bytes)
    text = "employee EMP-1234566, customer 4001 2345, staff number EMP-7654320"
    results = [inspector_for(path, name).inspect_text(text) for name in ENGINES]
    assert results[0] == results[1]
    assert {f.type for f in results[0].findings} == {"employee_id", "vip_customers"}


def test_the_cli_loads_custom_types_from_the_policy(tmp_path: Path) -> None:
    path = write_policy(tmp_path, EMPLOYEE)
    source = tmp_path / "message.html"
    source.write_text("<p>employee EMP-1234566</p>")
    result = CliRunner().invoke(
        cli,
        ["inspect", "--policy", str(path), str(source)],
        env={"COLUMNS": "200", "GRAPHTAP_FINDING_HASH_KEY": KEY.hex()},
    )
    assert result.exit_code == 0, result.output
    assert "employee_id" in result.stdout
    assert "1234566" not in result.stdout


def test_edm_hash_writes_hmacs_under_the_environment_key(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"GRAPHTAP_FINDING_HASH_KEY": KEY.hex()}
    result = runner.invoke(
        cli, ["edm-hash", "--normalise", "digits"], input="4001-2345\n\n40012345\n", env=env
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [ValueHasher(KEY)("40012345")]  # once, never the value
    refused = runner.invoke(cli, ["edm-hash"], input="40012345\n", env={})
    assert refused.exit_code != 0
    assert "key" in refused.output


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        (EMPLOYEE.replace("[0-9]{7})", "[0-9]{7}"), r"\[custom_types.employee_id\] pattern"),
        (EMPLOYEE.replace('"luhn"', '"crc32"'), r"\[custom_types.employee_id\] validator"),
        (EMPLOYEE.replace("proximity = 40", "proximity = 900"), r"employee_id\] proximity"),
        (EMPLOYEE + "colour = 1\n", r"employee_id\]: unknown key\(s\) colour"),
        (EMPLOYEE.replace("employee_id]", "iban]"), r"\[custom_types.iban\]: .*already exists"),
        (
            EMPLOYEE.replace('severity = "critical"', 'severity = "dire"'),
            r"employee_id\].*severity",
        ),
        (EMPLOYEE.replace("'(?<![A-Za-z0-9])EMP-", "'(?P<id>x)?EMP-"), "only named group"),
        ("[custom_types.blank]\npattern = 'x*'\n", r"\[custom_types.blank\] pattern: .*empty"),
        # Matches between characters only, so never reports anything
        ("[custom_types.edge]\npattern = '\\b'\n", r"\[custom_types.edge\] pattern: .*empty"),
        ("[custom_types.ahead]\npattern = '(?=REF)'\n", r"ahead\] pattern: .*empty"),
        # Hyperscan would look for the byte 0xE9, which no UTF-8 text holds
        ("[custom_types.cafe]\npattern = 'caf\\xe9-[0-9]{6}'\n", r"cafe\] pattern: .*ASCII"),
        ("[custom_types.cafe]\npattern = 'caf\\u00e9-[0-9]{6}'\n", r"cafe\] pattern: .*ASCII"),
        ("[custom_types.need]\npattern = 'x'\nkeyword_required = true\n", "declares no keywords"),
        (EMPLOYEE + "[types.employee_id]\nseverity = 'low'\n", r"\[types.employee_id\]"),
        (CUSTOMERS.replace("vip.hmac", "absent.hmac"), r"\[exact_data.vip_customers\] file"),
        (CUSTOMERS.replace('"digits"', '"soundex"'), r"vip_customers\] normalise"),
        (CUSTOMERS.replace("keyword_required = true", "keyword_required = 1"), "must be bool"),
    ],
)
def test_bad_declarations_name_the_file_the_key_and_the_rule(
    tmp_path: Path, declaration: str, message: str
) -> None:
    path = write_policy(tmp_path, declaration, ("40012345",))
    with pytest.raises(PolicyError, match=message) as caught:
        load_policy(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe\x00\x01 binary", "# liste \xe9tendue\n".encode("latin-1")],
)
def test_an_exact_data_file_that_is_not_text_names_the_file(tmp_path: Path, content: bytes) -> None:
    path = write_policy(tmp_path, CUSTOMERS)
    (tmp_path / "vip.hmac").write_bytes(content)
    with pytest.raises(PolicyError, match=r"\[exact_data.vip_customers\] file: .* not UTF-8"):
        load_policy(path)


def test_custom_types_read_characters_not_bytes_in_both_engines(tmp_path: Path) -> None:
    """`.` is one character of non-ASCII text in both engines, as in `regex`."""
    declaration = "[custom_types.reference]\npattern = 'REF-.{3}-[0-9]{4}'\nconfidence_alone = 75\n"
    path = write_policy(tmp_path, declaration)
    for text in ("case REF-éab-1234 opened", "case REF-日本語-1234 opened", "REF-abc-1234"):
        results = [inspector_for(path, name).inspect_text(text) for name in ENGINES]
        assert [f.type for f in results[0].findings] == ["reference"], text
        assert results[0] == results[-1], text


def test_a_required_keyword_may_be_written_with_accents(tmp_path: Path, engine: str) -> None:
    declaration = """
[custom_types.numero]
pattern = '(?<![0-9])[0-9]{6}(?![0-9])'
keywords = ["número de sócio"]
keyword_required = true
"""
    inspector = inspector_for(write_policy(tmp_path, declaration), engine)
    for text in ("número de sócio 123456", "NÚMERO DE SÓCIO: 123456"):
        assert [f.type for f in inspector.inspect_text(text).findings] == ["numero"], text
    assert inspector.inspect_text("numero 123456").findings == ()


def test_an_exact_data_file_never_holds_raw_values(tmp_path: Path) -> None:
    path = write_policy(tmp_path, CUSTOMERS)
    (tmp_path / "vip.hmac").write_text("40012345\n")
    with pytest.raises(PolicyError, match="line 1 is not an HMAC-SHA256"):
        load_policy(path)


@pytest.mark.parametrize(
    ("checksum", "valid", "invalid"),
    [
        ("luhn", "79927398713", "79927398710"),
        ("mod97", "DE89370400440532013000"[4:] + "DE89", "DE88370400440532013000"[4:] + "DE88"),
        ("mod11", "1234567892", "1234567893"),
        ("mod11_descending", "9434765919", "9434765918"),
        ("mod11_proof", "111222333", "111222334"),
        ("verhoeff", "2363", "2364"),
    ],
)
def test_the_named_checksums(checksum: str, valid: str, invalid: str) -> None:
    assert CHECKSUMS[checksum](valid)
    assert not CHECKSUMS[checksum](invalid)
    assert CHECKSUMS["none"](invalid)
