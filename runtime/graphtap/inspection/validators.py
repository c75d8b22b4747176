"""Checks a candidate must pass to count: checksums and the structure each format promises.

A regex only says a string is shaped like a value; these functions say whether it could be
one. Each takes the candidate as found (separators included) and answers True or False.
"""

from __future__ import annotations

import base64
import binascii
import json
import re

# --- payment cards ------------------------------------------------------------------------


def digits_of(value: str) -> str:
    return value if value.isdigit() else _NOT_DIGITS.sub("", value)


_NOT_DIGITS = re.compile(r"[^0-9]")


def luhn(number: str) -> bool:
    """Luhn mod-10 over a string of digits."""
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = ord(char) - 48
        if index % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def _card_lengths(number: str) -> range | tuple[int, ...]:
    """Card lengths the issuer range at the start of `number` allows (empty: no issuer)."""
    first2, first4 = int(number[:2]), int(number[:4])
    first3, first6 = int(number[:3]), int(number[:6])
    if number[0] == "4":
        return (13, 16, 19)  # Visa
    if 51 <= first2 <= 55 or 2221 <= first4 <= 2720:
        return (16,)  # Mastercard
    if first2 in (34, 37):
        return (15,)  # American Express
    if first4 == 6011 or first2 == 65 or 644 <= first3 <= 649 or 622126 <= first6 <= 622925:
        return range(16, 20)  # Discover
    if 3528 <= first4 <= 3589:
        return range(16, 20)  # JCB
    if first2 in (36, 38, 39) or 300 <= first3 <= 305 or first4 == 3095:
        return range(14, 20)  # Diners Club
    if first2 == 62:
        return range(16, 20)  # UnionPay
    return ()


def credit_card(value: str) -> bool:
    number = digits_of(value)
    return len(number) in _card_lengths(number) and luhn(number)


# --- U.S. Social Security numbers ---------------------------------------------------------

KNOWN_FAKE_SSNS = frozenset(
    {
        "078051120",  # the Woolworth wallet card
        "219099999",  # an SSA advertisement
        "123456789",
        "457555462",  # publicly disclosed on television
    }
)


def ssn(value: str) -> bool:
    """Area not 000, 666 or 900-999; group not 00; serial not 0000; not a known fake."""
    number = digits_of(value)
    if len(number) != 9 or number in KNOWN_FAKE_SSNS or len(set(number)) == 1:
        return False
    area, group, serial = int(number[:3]), int(number[3:5]), int(number[5:])
    return 0 < area < 900 and area != 666 and group != 0 and serial != 0


def ssn_area_issued_before_2011(value: str) -> bool:
    """Areas assigned before randomization (June 2011); 734-749 and 773+ came after."""
    area = int(digits_of(value)[:3])
    return area <= 772 and not 734 <= area <= 749


# --- bank numbers -------------------------------------------------------------------------

# ISO 13616 registry: country code -> total IBAN length.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


# ISO 13616: each letter counts as its two-digit value, A = 10 ... Z = 35.
_IBAN_LETTER_VALUES = str.maketrans({chr(ord("A") + i): str(10 + i) for i in range(26)})


def iban(value: str) -> bool:
    """Registered country, that country's length, check digits 02-98, mod-97 == 1."""
    compact = value.replace(" ", "").upper()
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum():
        return False
    if not compact[2:4].isdigit() or not 2 <= int(compact[2:4]) <= 98:
        return False
    rearranged = compact[4:] + compact[:4]
    return int(rearranged.translate(_IBAN_LETTER_VALUES)) % 97 == 1


def aba_routing(value: str) -> bool:
    """Federal Reserve prefix ranges (00-12, 21-32, 61-72, 80) and the 3-7-1 checksum."""
    number = digits_of(value)
    if len(number) != 9 or number == "000000000":
        return False
    prefix = int(number[:2])
    if not (prefix <= 12 or 21 <= prefix <= 32 or 61 <= prefix <= 72 or prefix == 80):
        return False
    d = [ord(char) - 48 for char in number]
    return (3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + d[2] + d[5] + d[8]) % 10 == 0


def bank_account(value: str) -> bool:
    """No checksum exists: reject repeated digits, valid card numbers and timestamps."""
    number = digits_of(value)
    return len(set(number)) > 2 and not credit_card(number) and not timestamp_like(number)


_EPOCH_2001, _EPOCH_2040 = 978_307_200, 2_208_988_800


def timestamp_like(number: str) -> bool:
    """Unix time in milliseconds or a compact date-time, between 2001 and 2040.

    Ten-digit Unix seconds are left alone: one ten-digit account number in eight would
    look like one."""
    length = len(number)
    if length == 13:
        return _EPOCH_2001 * 1000 <= int(number) < _EPOCH_2040 * 1000
    if length in (8, 12, 14):  # YYYYMMDD[hhmm[ss]]
        year, month, day = int(number[:4]), int(number[4:6]), int(number[6:8])
        if not (1990 <= year <= 2040 and 1 <= month <= 12 and 1 <= day <= 31):
            return False
        return length == 8 or (int(number[8:10]) < 24 and int(number[10:12]) < 60)
    return False


def passport(value: str) -> bool:
    digits = digits_of(value)
    return len(set(digits)) > 2


# --- self-identifying secrets -------------------------------------------------------------

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def github_token(value: str) -> bool:
    """Classic tokens end in a CRC32 of their 30 random characters, base62 in 6 characters.

    Fine-grained `github_pat_` tokens carry no public checksum: their fixed layout is all
    there is to check.
    """
    if value.startswith("github_pat_"):
        return _varied(value[11:])
    entropy, checksum = value[4:-6], value[-6:]
    expected = 0
    for char in checksum:
        expected = expected * 62 + _BASE62.index(char)
    return binascii.crc32(entropy.encode()) == expected


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def jwt(value: str) -> bool:
    """Header decodes to a JSON object naming an `alg`; the payload decodes to JSON too."""
    header, payload, _signature = value.split(".", 2)
    try:
        decoded_header = json.loads(_b64url_decode(header))
        decoded_payload = json.loads(_b64url_decode(payload))
    except (ValueError, binascii.Error):
        return False
    return (
        isinstance(decoded_header, dict)
        and isinstance(decoded_header.get("alg"), str)
        and isinstance(decoded_payload, dict)
    )


_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]*)-----(.*?)-----END ([A-Z0-9 ]*)-----", re.S)
_PEM_HEADER = re.compile(r"^[A-Za-z-]+:.*$", re.M)


def private_key(value: str) -> bool:
    """BEGIN and END labels pair up, and the body is base64 (after any RFC 1421 headers)."""
    match = _PEM.fullmatch(value)
    if not match or match.group(1) != match.group(3) or "PRIVATE KEY" not in match.group(1):
        return False
    body = "".join(_PEM_HEADER.sub("", match.group(2)).split())
    if len(body) < 32:
        return False
    try:
        base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except binascii.Error:
        return False
    return _varied(body)


EMULATOR_STORAGE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def azure_storage_key(value: str) -> bool:
    """Storage account keys are 64 random bytes in base64; the emulator's key is public."""
    if value == EMULATOR_STORAGE_KEY:
        return False
    try:
        return len(base64.b64decode(value, validate=True)) == 64 and _varied(value)
    except binascii.Error:
        return False


def token_like(value: str) -> bool:
    """For formats with no checksum: enough distinct characters to be random."""
    return _varied(value)


def _varied(value: str) -> bool:
    return len(set(value)) >= min(8, max(3, len(value) // 4)) and not _RUN.search(value)


# Eight of one character: a mask, not a random value. Spelt out, the backreference runs
# in half the time of `\1{7}`.
_RUN = re.compile(r"(.)\1\1\1\1\1\1\1")

# --- passwords ----------------------------------------------------------------------------

_NOT_PASSWORDS = frozenset(
    {
        "password", "passw0rd", "yourpassword", "your_password", "mypassword", "changeme",
        "secret", "example", "redacted", "hidden", "none", "null", "true", "false", "required",
        "optional", "undefined", "empty", "removed", "masked", "xxxxxxxx",
    }
)  # fmt: skip


_PATH_OR_URL = re.compile(r"(?:\.{0,2}/|~/|[A-Za-z][A-Za-z0-9+.-]*://)")


def password(value: str) -> bool:
    """Eight or more characters from at least two character classes, and neither a word
    that stands in for a password nor a path or URL (`pwd: /home/lee` is a directory)."""
    if len(value) < 8 or value.lower() in _NOT_PASSWORDS or _RUN.search(value):
        return False
    if _PATH_OR_URL.match(value):
        return False
    classes = (
        any(c.islower() for c in value)
        + any(c.isupper() for c in value)
        + any(c.isdigit() for c in value)
        + any(not c.isalnum() for c in value)
    )
    return classes >= 2


# --- mock values and placeholders ---------------------------------------------------------

_PLACEHOLDER = re.compile(
    r"""
      \*{3,}                      # ******** masking
    | <[^>]*>?                    # <password>, <storage-account-key>
    | \$\{ | \{\{ | \$\(        # ${VAR}, {{ var }}, $(VAR)
    | (?-i:^\$(?:env:)?[A-Z_][A-Z0-9_]*$)  # $env:ADMIN_PASSWORD, $DB_PASSWORD
    | ^%[A-Za-z_]+%$              # %VAR%
    | \[[A-Za-z _-]*\]            # [REDACTED]
    | (?:x|X){8,}
    """,
    re.X | re.I,
)
# Written as words ("EXAMPLE", "example", "Contoso"), not letters that happen to spell one
# inside a random token ("duMmY").
_EXAMPLE_WORDS = re.compile(
    r"example|sample|dummy|placeholder|contoso|fabrikam|northwind", re.IGNORECASE
)
_EXAMPLE_CONTEXT = re.compile(
    r"contoso|fabrikam|northwind|adventure-?works|example\.(?:com|org|net)|localhost"
    r"|127\.0\.0\.1|devstoreaccount1|<[a-z][a-z -]*>",
    re.I,
)


# Literals every match of the pattern beside them contains, lower-cased. `re` tries each
# alternative at every position (a 32-character token costs microseconds); a few substring
# tests rule out the common case first. Exact for ASCII text only, where lower-casing is
# all that IGNORECASE does; other text always goes to the pattern.
_PLACEHOLDER_LITERALS = ("***", "<", "$", "{{", "%", "[", "xxxxxxxx")
_EXAMPLE_WORD_LITERALS = ("example", "sample", "dummy", "placeholder", "contoso", "fabrikam",
                          "northwind")  # fmt: skip
_EXAMPLE_CONTEXT_LITERALS = ("contoso", "fabrikam", "northwind", "adventure", "example.",
                             "localhost", "127.0.0.1", "devstoreaccount1", "<")  # fmt: skip


def placeholder(value: str, context: str = "") -> bool:
    """True for documentation values: masks, template variables, example names.

    `context` is the line around the value (for instance the rest of a connection string),
    checked for example tenant and host names.
    """
    if _may_contain(value, _PLACEHOLDER_LITERALS) and _PLACEHOLDER.search(value):
        return True
    if (
        context
        and _may_contain(context, _EXAMPLE_CONTEXT_LITERALS)
        and _EXAMPLE_CONTEXT.search(context)
    ):
        return True
    if not _may_contain(value, _EXAMPLE_WORD_LITERALS):
        return False
    return any(
        word.islower() or word.isupper() or word.istitle() for word in _EXAMPLE_WORDS.findall(value)
    )


def _may_contain(text: str, literals: tuple[str, ...]) -> bool:
    """False only when `text` is ASCII and contains none of `literals`, in any case."""
    if not text.isascii():
        return True
    lowered = text.lower()
    # A plain loop: `any()` over a generator costs twice as much.
    for literal in literals:  # noqa: SIM110
        if literal in lowered:
            return True
    return False
