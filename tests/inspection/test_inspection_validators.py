"""Validators against published vectors: what a checksum accepts and what it rejects."""

from __future__ import annotations

import base64
import json
import random
from unittest import mock

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from graphtap.inspection import validators
from graphtap.simulation import values


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("4111111111111111", True),  # Visa test number
        ("5500 0000 0000 0004", True),  # Mastercard
        ("3782 822463 10005", True),  # American Express
        ("6011000990139424", True),  # Discover
        ("36227206271667", True),  # Diners Club
        ("4111111111111112", False),  # Luhn fails
        ("9111111111111119", False),  # no issuer starts with 9
        ("3782822463100050", False),  # Amex is 15 digits, not 16
    ],
)
def test_credit_card_needs_luhn_and_an_issuer_length(number: str, valid: bool) -> None:
    assert validators.credit_card(number) is valid


@pytest.mark.parametrize(
    ("iban", "valid"),
    [
        ("DE89 3704 0044 0532 0130 00", True),
        ("GB82WEST12345698765432", True),
        ("NL91ABNA0417164300", True),
        ("NO9386011117947", True),
        ("DE88 3704 0044 0532 0130 00", False),  # wrong check digits
        ("GB82WEST1234569876543", False),  # one character short for GB
        ("NL91ABNA04171643001", False),  # one too many for NL
        ("QQ82WEST12345698765432", False),  # no such country
    ],
)
def test_iban_mod97_with_country_length(iban: str, valid: bool) -> None:
    assert validators.iban(iban) is valid


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("021000021", True),  # JPMorgan Chase
        ("011000015", True),  # Federal Reserve Bank of Boston
        ("0110-0001-5", True),
        ("021000022", False),  # checksum
        ("991000026", False),  # prefix 99 is not assigned
        ("000000000", False),
    ],
)
def test_aba_prefix_ranges_and_checksum(number: str, valid: bool) -> None:
    assert validators.aba_routing(number) is valid


@pytest.mark.parametrize(
    ("ssn", "valid"),
    [
        ("536-22-1844", True),
        ("812-44-1234", True),  # randomized era area, still valid
        ("000-12-3456", False),
        ("666-12-3456", False),
        ("912-12-3456", False),
        ("536-00-1234", False),
        ("536-22-0000", False),
        ("078-05-1120", False),  # the Woolworth card
        ("123-45-6789", False),
        ("111-11-1111", False),
    ],
)
def test_ssn_area_group_serial_and_known_fakes(ssn: str, valid: bool) -> None:
    assert validators.ssn(ssn) is valid


def test_ssn_issuing_era() -> None:
    assert validators.ssn_area_issued_before_2011("536221844")
    assert not validators.ssn_area_issued_before_2011("812441234")
    assert not validators.ssn_area_issued_before_2011("740441234")


def test_github_token_crc32() -> None:
    token = values.github_token(random.Random(1))
    assert validators.github_token(token)
    broken = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert not validators.github_token(broken)


def _b64url(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_jwt_header_must_name_an_algorithm() -> None:
    payload = _b64url({"sub": "1"})
    assert validators.jwt(f"{_b64url({'alg': 'HS256', 'typ': 'JWT'})}.{payload}.sig")
    assert not validators.jwt(f"{_b64url({'typ': 'JWT'})}.{payload}.sig")
    assert not validators.jwt(f"eyJub3QganNvbg.{payload}.sig")


def test_pem_begin_and_end_must_pair() -> None:
    body = base64.b64encode(bytes(range(96))).decode()
    ec, rsa = "EC PRIVATE" + " KEY", "RSA PRIVATE" + " KEY"
    assert validators.private_key(f"-----BEGIN {ec}-----\n{body}\n-----END {ec}-----")
    assert not validators.private_key(f"-----BEGIN {ec}-----\n{body}\n-----END {rsa}-----")
    assert not validators.private_key(
        f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----"
    )


def test_storage_key_decodes_to_64_bytes_and_is_not_the_emulator_key() -> None:
    assert validators.azure_storage_key(base64.b64encode(random.Random(2).randbytes(64)).decode())
    assert not validators.azure_storage_key(base64.b64encode(bytes(48)).decode())
    assert not validators.azure_storage_key(validators.EMULATOR_STORAGE_KEY)


@pytest.mark.parametrize(
    "value",
    [
        "AKIAIOSFODNN7EXAMPLE",
        "********",
        "<password>",
        "${DB_PASSWORD}",
        "{{ secrets.PASSWORD }}",
        "$env:ADMIN_PASSWORD",
        "[REDACTED]",
        "contoso-secret-1",
        "xxxxxxxxxxxxxxxx",
    ],
)
def test_placeholders_are_documentation_values(value: str) -> None:
    assert validators.placeholder(value)


def test_placeholder_words_must_be_words_not_letters_inside_a_token() -> None:
    assert validators.placeholder("AKIAIOSFODNN7EXAMPLE")
    assert validators.placeholder("Sample-Secret-123")
    assert not validators.placeholder("duMmYm5q549cWsFUjAvkhHenpFosy81bQUq")


def test_placeholder_context_catches_example_hosts() -> None:
    assert validators.placeholder("Pa55word!", "Server=tcp:contoso.database.windows.net;Pwd=")
    assert not validators.placeholder("Pa55word!", "Server=tcp:sql-orders.database.windows.net;")
    assert not validators.placeholder("$8av0T$xUhTpjD1")


# Pieces that make or nearly make a placeholder, in several cases, among random characters.
_PLACEHOLDER_PIECES = st.sampled_from(
    ["***", "**", "<", ">", "$", "${", "$(", "{{", "{", "%", "[", "]", "env:", "X" * 8, "xXxXxXxX",
     "xxxxxxx", "example", "EXAMPLE", "Example", "eXample", "sample", "Dummy", "placeholder",
     "contoso", "Contoso", "fabrikam", "NORTHWIND", "adventure-works", "AdventureWorks",
     "example.com", "Example.org", "localhost", "127.0.0.1", "devstoreaccount1", "<a b>",
     "%VAR%", "[REDACTED]", "[ x ]", "$DB_PASSWORD", "\u017fample", "\u212aontoso",
     "fabr\u0131kam", "\u00e9"]
)  # fmt: skip
_PLACEHOLDER_TEXT = st.lists(_PLACEHOLDER_PIECES | st.text(max_size=4), max_size=8).map("".join)


@settings(max_examples=800, deadline=None)
@given(value=_PLACEHOLDER_TEXT, context=_PLACEHOLDER_TEXT)
@example(value="\u017fample", context="")  # long s: IGNORECASE matches it as "s"
@example(value="p", context="fabr\u0131kam")  # dotless i matches "i" likewise
@example(value="A_xxxxxxxx", context="")
@example(value="%ADMIN_PASSWORD%", context="")
@example(value="[REDACTED]", context="")
@example(value="{{ secrets.PASSWORD }}", context="")
@example(value="********", context="")
def test_placeholder_literal_checks_agree_with_the_patterns(value: str, context: str) -> None:
    """The substring checks only skip the patterns where they cannot match."""
    with mock.patch.object(validators, "_may_contain", return_value=True):
        expected = validators.placeholder(value, context)
    assert validators.placeholder(value, context) is expected


def test_bank_account_rejects_timestamps_and_card_numbers() -> None:
    assert validators.bank_account("4402987751")
    assert not validators.bank_account("1774885435000")  # Unix milliseconds
    assert not validators.bank_account("20260407123131")  # compact date-time
    assert not validators.bank_account("4111111111111111")


@pytest.mark.parametrize("kind", sorted(values.TRUE_VALUES))
def test_generated_true_values_pass_their_validators(kind: str) -> None:
    """The simulator's values are valid by the detector's rules (independently computed)."""
    from graphtap.inspection.rules import RULES

    rule = next(r for r in RULES if r.type == kind)
    rng = random.Random(kind)
    for _ in range(200):
        assert rule.validate(values.TRUE_VALUES[kind](rng))
