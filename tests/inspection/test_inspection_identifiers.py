"""Issuers' checks against the values their own documentation prints, and the near misses."""

from __future__ import annotations

import base64

import pytest

from graphtap.inspection import validators

CASES = [
    # U.K.: HMRC never issues the QQ prefix its examples use; NHS Digital's example number
    (validators.uk_nino, "AB 12 34 56 C", True),
    (validators.uk_nino, "QQ 12 34 56 C", False),
    (validators.uk_nino, "GB123456A", False),
    (validators.uk_nino, "AO123456A", False),  # O is never a second letter
    (validators.uk_nhs, "943 476 5919", True),
    (validators.uk_nhs, "943 476 5918", False),
    (validators.uk_nhs, "1000000010", False),  # the check would be 10: never issued
    # Canada: Service Canada's 046 454 286 passes Luhn but 0 is not issued
    (validators.canada_sin, "130 692 544", True),
    (validators.canada_sin, "046 454 286", False),
    (validators.canada_sin, "130 692 545", False),
    # Australia: the ATO's worked example; Services Australia's card layout
    (validators.australia_tfn, "123 456 782", True),
    (validators.australia_tfn, "123 456 789", False),
    (validators.australia_medicare, "2123 45670 1", True),
    (validators.australia_medicare, "2123 45671 1", False),
    (validators.australia_medicare, "1123 45670 1", False),
    # India: Verhoeff's own example (236 -> 2363); the PAN layout
    (validators.verhoeff, "2363", True),
    (validators.verhoeff, "2364", False),
    (validators.india_aadhaar, "2345 6789 0124", True),
    (validators.india_aadhaar, "2345 6789 0123", False),
    (validators.india_aadhaar, "0345 6789 0124", False),
    (validators.india_pan, "AAAPL1234C", True),
    (validators.india_pan, "AAAXL1234C", False),
    # IRS ITIN groups
    (validators.us_itin, "912-70-1234", True),
    (validators.us_itin, "912-50-1234", True),
    (validators.us_itin, "912-93-1234", False),
    (validators.us_itin, "912-66-1234", False),
    (validators.us_itin, "812-70-1234", False),
    # INSEE: key = 97 - (number mod 97); Corsica 2A counts as 19
    (validators.france_nir, "1 84 12 76 451 089 46", True),
    (validators.france_nir, "1 85 05 2A 123 456 33", True),
    (validators.france_nir, "1 84 12 76 451 089 47", False),
    (validators.france_nir, "1 84 13 76 451 089 46", False),
    # Spain: DNI and NIE letters
    (validators.spain_dni, "12345678Z", True),
    (validators.spain_dni, "X1234567L", True),
    (validators.spain_dni, "12345678A", False),
    # Agenzia delle Entrate
    (validators.italy_fiscal_code, "RSSMRA85T10A562S", True),
    (validators.italy_fiscal_code, "MRTMTT25D09F205Z", True),
    (validators.italy_fiscal_code, "RSSMRA85T10A562T", False),
    # 11-proof
    (validators.netherlands_bsn, "111222333", True),
    (validators.netherlands_bsn, "1234.56.782", True),
    (validators.netherlands_bsn, "111222334", False),
    (validators.netherlands_bsn, "000000000", False),
    # PESEL: dates by century and the check digit
    (validators.poland_pesel, "44051401359", True),
    (validators.poland_pesel, "02070803628", True),
    (validators.poland_pesel, "44051401358", False),
    (validators.poland_pesel, "44023001358", False),  # February 30
    # Skatteverket's examples
    (validators.sweden_personnummer, "811228-9874", True),
    (validators.sweden_personnummer, "670919-9530", True),
    (validators.sweden_personnummer, "19811228-9874", True),
    (validators.sweden_personnummer, "811228-9875", False),
    # Receita Federal
    (validators.brazil_cpf, "111.444.777-35", True),
    (validators.brazil_cpf, "111.444.777-36", False),
    (validators.brazil_cpf, "000.000.000-00", False),
    # Bundesdruckerei: the specimen cards (2010, 2021) and a 1987-2010 number
    (validators.germany_identity_card, "T220001293", True),
    (validators.germany_identity_card, "L01X00T47", True),
    (validators.germany_identity_card, "1220001297", True),
    (validators.germany_identity_card, "T220001294", False),
    (validators.germany_identity_card, "A220001293", False),
]


@pytest.mark.parametrize(
    ("check", "value", "valid"), CASES, ids=[f"{c[0].__name__}-{c[1]}" for c in CASES]
)
def test_issuer_checks(check: validators.Check, value: str, valid: bool) -> None:
    assert check(value) is valid


def test_openpgp_armor_checksum() -> None:
    """RFC 4880, 6.1: the CRC-24 of no bytes is its initial value."""
    assert validators.crc24(b"") == 0xB704CE
    assert validators.crc24(b"a") != validators.crc24(b"b")


def test_putty_files_need_consistent_line_counts_and_a_mac() -> None:
    public = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519" + bytes(range(32))).decode()
    private = base64.b64encode(bytes(range(40, 76))).decode()
    good = (
        "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: build\n"
        f"Public-Lines: 1\n{public}\nPrivate-Lines: 1\n{private}\nPrivate-MAC: {'ab' * 32}"
    )
    assert validators.putty_private_key(good)
    assert not validators.putty_private_key(good.replace("Public-Lines: 1", "Public-Lines: 2"))
    assert not validators.putty_private_key(good.replace("ab" * 32, "ab" * 20))  # SHA-1 in v3


def test_azure_secrets_decode_to_their_sizes() -> None:
    key32 = base64.b64encode(bytes(range(100, 132))).decode()
    assert validators.azure_sas_signature(key32.replace("+", "%2B").replace("/", "%2F"))
    assert not validators.azure_sas_signature(base64.b64encode(bytes(31)).decode())
    service_bus = "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKey=" + key32
    assert validators.azure_connection_string(service_bus)
    assert validators.connection_secret(service_bus) == key32
    sql = "Server=tcp:x.database.windows.net;User ID=a;Password='Pq8#vL3nW5'"
    assert validators.connection_secret(sql) == "Pq8#vL3nW5"


def test_pypi_tokens_name_pypi_as_their_location() -> None:
    def token(location: bytes) -> str:
        body = b"\x02\x01" + bytes([len(location)]) + location + bytes(range(60))
        return "pypi-" + base64.urlsafe_b64encode(body).decode().rstrip("=")

    assert validators.pypi_token(token(b"pypi.org"))
    assert validators.pypi_token(token(b"test.pypi.org"))
    assert not validators.pypi_token(token(b"evil.org"))


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("Falcon2231!", True),
        ("os.environ['DB_PASSWORD']", False),
        ("process.env.DB_PASSWORD", False),
        ("get_password()", False),
        ("DB_PASSWORD_FROM_VAULT", False),
        ("user=admin_2231", False),  # the next assignment, not a value
        ("proxy_auth_token", False),  # a variable's name
        ("administratorPassword", False),
        ("Summer2024", True),
        ("Q2hhbmdlTWUyMDI0=", True),  # base64 padding, not an assignment
        ("client secrets are forbidden here", False),  # a sentence
    ],
)
def test_assigned_passwords_are_not_code(value: str, valid: bool) -> None:
    assert validators.assigned_password(value) is valid
