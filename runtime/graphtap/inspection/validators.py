"""Checks a candidate must pass to count: checksums and the structure each format promises.

A regex only says a string is shaped like a value; these functions say whether it could be
one. Each takes the candidate as found (separators included) and answers True or False.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
import urllib.parse
from collections.abc import Callable

Check = Callable[[str], bool]

# --- payment cards ------------------------------------------------------------------------


def digits_of(value: str) -> str:
    if value.isdigit():
        return value
    # Numbers are grouped by spaces or dashes: removing those is four times quicker.
    grouped = value.replace(" ", "").replace("-", "")
    return grouped if grouped.isascii() and grouped.isdigit() else _NOT_DIGITS.sub("", value)


_NOT_DIGITS = re.compile(r"[^0-9]")


def luhn(number: str) -> bool:
    """Luhn mod-10 over a string of digits: summed as bytes, every second digit from the
    right doubled by a translation table (twice as quick as a loop over the digits, and a
    message may hold thousands of card-shaped numbers)."""
    doubled = number[-2::-2].translate(_LUHN_DOUBLED)
    return (sum(number[-1::-2].encode()) + sum(doubled.encode()) - 48 * len(number)) % 10 == 0


_LUHN_DOUBLED = str.maketrans("0123456789", "0246813579")  # 2d, less 9 when over 9


_MAESTRO = frozenset({5018, 5020, 5038, 5893, 6304, 6759, 6761, 6762, 6763})


def _card_lengths(number: str) -> range | tuple[int, ...]:
    """Card lengths the issuer range at the start of `number` allows (empty: no issuer)."""
    first2, first4 = int(number[:2]), int(number[:4])
    first3, first6 = int(number[:3]), int(number[:6])
    if number[0] == "4":
        return (13, 16, 19)  # Visa
    if first4 in _MAESTRO:
        return range(12, 20)
    if first4 == 5019:
        return (16,)  # Dankort
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
    compact = value.replace(" ", "").replace("-", "").upper()
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
    """Header decodes to a JSON object naming an `alg`; the payload decodes to JSON too.
    The signature part may be absent (an unsecured JWT, or one pasted without it)."""
    header, payload = value.split(".", 2)[:2]
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
# OpenPGP ASCII armor (RFC 4880, 6.2) ends its body with `=` and the CRC-24 in base64.
_ARMOR_CHECKSUM = re.compile(r"\s=([A-Za-z0-9+/]{4})\s*\Z")
_OPENSSH_MAGIC = b"openssh-key-v1\x00"


# A block inside a string literal (JSON, a service-account key file, code) writes its line
# breaks `\n` or `\r\n`, escaped again when nested (`\\n`); JSON may write `/` as `\/`.
# Base64 holds no backslash, so every one in a block is an escape.
_BACKSLASHES = re.compile(r"\\{2,}")


def unescaped(value: str) -> str:
    """A key block with its escaped line breaks (and slashes) written out."""
    if "\\" not in value:
        return value
    single = _BACKSLASHES.sub(r"\\", value)
    return (
        single.replace("\\r\\n", "\n").replace("\\n", "\n").replace("\\r", "\n").replace("\\/", "/")
    )


def private_key(value: str) -> bool:
    """PEM, OpenSSH and OpenPGP: BEGIN and END labels pair up and the body is base64 (after
    any RFC 1421 or armor headers, and escaped line breaks written out); an OpenSSH body
    starts with its magic, a PGP armor checksum matches its body. PuTTY files: see
    `putty_private_key`."""
    if value.startswith("PuTTY-User-Key-File-"):
        return putty_private_key(value)
    match = _PEM.fullmatch(unescaped(value))
    if not match or match.group(1) != match.group(3) or "PRIVATE KEY" not in match.group(1):
        return False
    body_text = match.group(2)
    checksum = _ARMOR_CHECKSUM.search(body_text) if "PGP" in match.group(1) else None
    if checksum:
        body_text = body_text[: checksum.start()]
    body = "".join(_PEM_HEADER.sub("", body_text).split())
    if len(body) < 32:
        return False
    try:
        decoded = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except binascii.Error:
        return False
    if match.group(1) == "OPENSSH PRIVATE KEY" and not decoded.startswith(_OPENSSH_MAGIC):
        return False
    if checksum and base64.b64decode(checksum.group(1)) != crc24(decoded).to_bytes(3, "big"):
        return False
    # Key bodies hold runs of zero bytes (`AAAAAAAA`): only the variety of characters counts.
    return len(set(body)) >= 16


def crc24(data: bytes) -> int:
    """The OpenPGP armor checksum (RFC 4880, 6.1)."""
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


_PUTTY = re.compile(
    r"PuTTY-User-Key-File-([1-3]):.*?Public-Lines: ?([0-9]+)\s+(.*?)\s*"
    r"(?:Key-Derivation:.*?)?Private-Lines: ?([0-9]+)\s+(.*?)\s*Private-MAC: ?([0-9a-fA-F]+)\s*\Z",
    re.S,
)


def putty_private_key(value: str) -> bool:
    """A PuTTY key file: its Public-Lines and Private-Lines counts match the base64 lines
    that follow them, and the MAC is HMAC-SHA-1 (versions 1-2) or -SHA-256 (3) in hex."""
    match = _PUTTY.fullmatch(value)
    if not match:
        return False
    version, public_count, public, private_count, private, mac = match.groups()
    if len(mac) != (64 if version == "3" else 40):
        return False
    for count, lines in ((public_count, public), (private_count, private)):
        parts = lines.split()
        if len(parts) != int(count) or not all(_BASE64_LINE.fullmatch(p) for p in parts):
            return False
    return len(set("".join(private.split()))) >= 16


_BASE64_LINE = re.compile(r"[A-Za-z0-9+/]{1,64}={0,2}")


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


# A path, a URL, or an Amazon resource name (`arn:aws:iam::aws:policy/...`).
_PATH_OR_URL = re.compile(r"(?:\.{0,2}/|~/|[A-Za-z][A-Za-z0-9+.-]*://|arn:aws[a-z\-]*:)")


def password(value: str) -> bool:
    """Eight or more characters from at least two character classes, and neither a word
    that stands in for a password nor a path, URL or ARN (`pwd: /home/lee` is a directory)."""
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
    | &lt;                        # <password> HTML-escaped
    | \$\{ | \{\{ | \$\( | \#\{   # ${VAR}, {{ var }}, $(VAR), Ruby's #{var}
    # $env:ADMIN_PASSWORD, $DB_PASSWORD, a shell or PHP variable ($db_password, $dbPassword),
    # also spliced between quotes ('$DB_PASSWORD'). `$Harbor2231` may be typed as it is.
    | (?-i:^['"]?\$(?:env:)?(?:[A-Z_][A-Z0-9_]*|[a-z_][A-Za-z0-9_]*)['"]?$)
    | ^%[A-Za-z_]+%$              # %VAR%
    | ^\{[A-Za-z_][A-Za-z0-9_ .-]*\}$  # {your_password}, {db.password}
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
_PLACEHOLDER_LITERALS = ("***", "<", "&lt;", "$", "{", "%", "[", "xxxxxxxx")
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


# --- national identifiers: each issuer's own check -----------------------------------------


def _compact(value: str) -> str:
    """Upper case without the separators people print identifiers with."""
    return _SEPARATORS.sub("", value).upper()


_SEPARATORS = re.compile(r"[\s.\-/+]")


def _weighted(digits: str, weights: tuple[int, ...]) -> int:
    return sum((ord(char) - 48) * weight for char, weight in zip(digits, weights, strict=False))


def _real_date(year: int, month: int, day: int) -> bool:
    try:
        dt.date(year, month, day)
    except ValueError:
        return False
    return True


# HMRC: the first letter is not D, F, I, Q, U or V; the second not D, F, I, O, Q, U or V;
# BG, GB, KN, NK, NT, TN and ZZ are never allocated; the suffix is A, B, C or D.
_NINO = re.compile(r"[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z][0-9]{6}[A-D]")
_NINO_UNALLOCATED = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})


def uk_nino(value: str) -> bool:
    compact = _compact(value)
    return bool(_NINO.fullmatch(compact)) and compact[:2] not in _NINO_UNALLOCATED


def uk_nhs(value: str) -> bool:
    """NHS number: ten digits, the last a modulus-11 check over weights 10 to 2 (a remainder
    giving 10 is never issued)."""
    number = digits_of(value)
    if len(number) != 10 or len(set(number)) == 1:
        return False
    check = 11 - _weighted(number, (10, 9, 8, 7, 6, 5, 4, 3, 2)) % 11
    check = 0 if check == 11 else check
    return check != 10 and check == ord(number[9]) - 48


def canada_sin(value: str) -> bool:
    """Nine digits, Luhn; the first digit 0 and 8 are not issued to people (0 is the
    Government's own example, 046 454 286)."""
    number = digits_of(value)
    return len(number) == 9 and number[0] not in "08" and luhn(number)


def australia_tfn(value: str) -> bool:
    """ATO: weights 1 4 3 7 5 8 6 9 10 (nine digits) or 10 7 8 4 6 3 5 1 (eight), the
    weighted sum a multiple of 11."""
    number = digits_of(value)
    if len(number) == 9:
        weights: tuple[int, ...] = (1, 4, 3, 7, 5, 8, 6, 9, 10)
    elif len(number) == 8:
        weights = (10, 7, 8, 4, 6, 3, 5, 1)
    else:
        return False
    return len(set(number)) > 2 and _weighted(number, weights) % 11 == 0


def australia_medicare(value: str) -> bool:
    """Services Australia: ten digits (an eleventh, the individual reference, may follow);
    the first 2-6, the ninth the weighted sum of the first eight (1 3 7 9 1 3 7 9) mod 10,
    the tenth an issue number."""
    number = digits_of(value)
    if len(number) not in (10, 11) or number[0] not in "23456":
        return False
    check = _weighted(number, (1, 3, 7, 9, 1, 3, 7, 9)) % 10
    return check == ord(number[8]) - 48 and (len(number) == 10 or number[10] != "0")


_VERHOEFF_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6), (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8), (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2), (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4), (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)  # fmt: skip
_VERHOEFF_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2), (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0), (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5), (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)  # fmt: skip


def verhoeff(number: str) -> bool:
    """The Verhoeff dihedral-group check over a string of digits."""
    check = 0
    for index, char in enumerate(reversed(number)):
        check = _VERHOEFF_D[check][_VERHOEFF_P[index % 8][ord(char) - 48]]
    return check == 0


def india_aadhaar(value: str) -> bool:
    """UIDAI: twelve digits, the first never 0 or 1, the last a Verhoeff check digit."""
    number = digits_of(value)
    return len(number) == 12 and number[0] not in "01" and verhoeff(number)


# Income Tax Department: five letters (the fourth the holder's kind: Person, Company, HUF,
# Firm, AOP, Trust, BOI, Local authority, Artificial juridical person, Government), four
# digits, a letter.
_PAN = re.compile(r"[A-Z]{3}[ABCFGHJLPT][A-Z][0-9]{4}[A-Z]")


def india_pan(value: str) -> bool:
    compact = value.upper()
    return bool(_PAN.fullmatch(compact)) and compact[5:9] != "0000"


def us_itin(value: str) -> bool:
    """IRS: nine digits starting with 9, the fourth and fifth 50-65, 70-88, 90-92 or 94-99."""
    number = digits_of(value)
    if len(number) != 9 or number[0] != "9" or number[5:] == "0000":
        return False
    group = int(number[3:5])
    return 50 <= group <= 65 or 70 <= group <= 88 or 90 <= group <= 92 or 94 <= group <= 99


def france_nir(value: str) -> bool:
    """INSEE: sex, year, month (01-12, or 20 and 30-42 and 50-99 when unknown), department
    (2A and 2B for Corsica), commune, order, then the key: 97 minus the first 13 mod 97."""
    compact = _compact(value)
    if len(compact) != 15 or compact[0] not in "1278":
        return False
    month = compact[3:5]
    if not month.isdigit() or not (
        1 <= int(month) <= 12 or month == "20" or 30 <= int(month) <= 42 or int(month) >= 50
    ):
        return False
    department = compact[5:7]
    body = compact[:13]
    if department in ("2A", "2B"):
        body = body[:5] + ("19" if department == "2A" else "18") + body[7:]
    if not body.isdigit() or not compact[13:].isdigit() or department == "00":
        return False
    return 97 - int(body) % 97 == int(compact[13:])


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def spain_dni(value: str) -> bool:
    """Ministerio del Interior: eight digits (or an NIE: X, Y or Z and seven digits) and the
    letter of the number mod 23."""
    compact = _compact(value)
    if len(compact) != 9 or not compact[1:8].isdigit() or not compact[8].isalpha():
        return False
    head = compact[0]
    if head in "XYZ":
        number = "XYZ".index(head) * 10_000_000 + int(compact[1:8])
    elif head.isdigit():
        number = int(compact[:8])
    else:
        return False
    return len(set(compact[:8])) > 1 and _DNI_LETTERS[number % 23] == compact[8]


# Agenzia delle Entrate: characters in odd positions (1st, 3rd, ...) and even positions
# count differently; the sum mod 26 is the check letter.
_CF_ODD = dict(
    zip(
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        (1, 0, 5, 7, 9, 13, 15, 17, 19, 21,  # digits, then A-Z
         1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25,
         24, 23),
        strict=True,
    )
)  # fmt: skip
_CF_EVEN = {char: (int(char) if char.isdigit() else ord(char) - 65) for char in _CF_ODD}
_CODICE_FISCALE = re.compile(
    r"[A-Z]{6}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z]"
)


# Omocodia: where two people would share a code, digits are replaced by these letters.
_CF_DIGITS = str.maketrans("LMNPQRSTUV", "0123456789")
_CF_MONTHS = "ABCDEHLMPRST"


def italy_fiscal_code(value: str) -> bool:
    """Agenzia delle Entrate: a real birth date (day 1-31, plus 40 for women; the month a
    letter), digits possibly replaced by letters (omocodia), and the check letter."""
    code = value.upper()
    if not _CODICE_FISCALE.fullmatch(code):
        return False
    year, day = int(code[6:8].translate(_CF_DIGITS)), int(code[9:11].translate(_CF_DIGITS))
    day = day - 40 if day > 40 else day
    month = _CF_MONTHS.index(code[8]) + 1
    if not (_real_date(2000 + year, month, day) or _real_date(1900 + year, month, day)):
        return False
    total = sum((_CF_ODD if i % 2 == 0 else _CF_EVEN)[char] for i, char in enumerate(code[:15]))
    return chr(65 + total % 26) == code[15]


def netherlands_bsn(value: str) -> bool:
    """The 11-proof: 9*d1 + 8*d2 + ... + 2*d8 - d9 is a multiple of 11 (and not zero)."""
    number = digits_of(value)
    if len(number) == 8:
        number = "0" + number
    if len(number) != 9 or len(set(number)) == 1:
        return False
    total = _weighted(number, (9, 8, 7, 6, 5, 4, 3, 2)) - (ord(number[8]) - 48)
    return total > 0 and total % 11 == 0


_PESEL_CENTURY = {0: 1900, 20: 2000, 40: 2100, 60: 2200, 80: 1800}


def poland_pesel(value: str) -> bool:
    """Eleven digits: a birth date (the month carries the century: +80 1800s, +20 2000s),
    a serial, and a check digit over weights 1 3 7 9 1 3 7 9 1 3."""
    number = digits_of(value)
    if len(number) != 11:
        return False
    month = int(number[2:4])
    century = _PESEL_CENTURY[month // 20 * 20]
    if not _real_date(century + int(number[:2]), month % 20, int(number[4:6])):
        return False
    check = (10 - _weighted(number, (1, 3, 7, 9, 1, 3, 7, 9, 1, 3)) % 10) % 10
    return check == ord(number[10]) - 48


def sweden_personnummer(value: str) -> bool:
    """Skatteverket: YYMMDD (or YYYYMMDD), a serial of three and a Luhn check digit over the
    ten digits; a coordination number adds 60 to the day. (The separator, `-` or `+` from
    the year a person turns 100, is not part of the check.)"""
    number = digits_of(value)
    centuries: tuple[int, ...] = (2000, 1900)  # two-digit years: any century
    if len(number) == 12:
        if number[:2] not in ("18", "19", "20"):
            return False
        centuries = (int(number[:2]) * 100,)
        number = number[2:]
    if len(number) != 10:
        return False
    year, month, day = int(number[:2]), int(number[2:4]), int(number[4:6])
    day = day - 60 if day > 60 else day
    if not any(_real_date(century + year, month, day) for century in centuries):
        return False
    return luhn(number)


def brazil_cpf(value: str) -> bool:
    """Receita Federal: nine digits and two check digits, each the weighted sum (10..2, then
    11..2) times 10 mod 11 (10 counts as 0); repeated digits are never issued."""
    number = digits_of(value)
    if len(number) != 11 or len(set(number)) == 1:
        return False
    first = _weighted(number, (10, 9, 8, 7, 6, 5, 4, 3, 2)) * 10 % 11 % 10
    second = _weighted(number, (11, 10, 9, 8, 7, 6, 5, 4, 3, 2)) * 10 % 11 % 10
    return number[9:] == f"{first}{second}"


def _seven_three_one(chars: str) -> int:
    """ICAO 9303 check digit: weights 7 3 1, digits as themselves, A = 10 ... Z = 35."""
    total = 0
    for index, char in enumerate(chars):
        digit = ord(char) - 48 if char.isdigit() else ord(char) - 55
        total += digit * (7, 3, 1)[index % 3]
    return total % 10


# Bundesdruckerei (since November 2010): nine characters from a reduced alphabet (no vowels,
# no B, D, Q, S), the first a letter; printed with the check digit as a tenth character.
_AUSWEIS = re.compile(r"[CFGHJKLMNPRTVWXYZ][CFGHJKLMNPRTVWXYZ0-9]{8}[0-9]?")


def germany_identity_card(value: str) -> bool:
    """The card number, with its 7-3-1 check digit when the tenth character is given; the
    earlier cards (1987-2010) are ten digits, the tenth the 7-3-1 check digit."""
    code = value.upper()
    if code.isdigit():
        return len(code) == 10 and len(set(code)) > 2 and _seven_three_one(code[:9]) == int(code[9])
    if not _AUSWEIS.fullmatch(code) or not any(char.isdigit() for char in code[1:9]):
        return False
    return len(code) == 9 or _seven_three_one(code[:9]) == int(code[9])


# --- more self-identifying secrets --------------------------------------------------------


def _base64_bytes(value: str) -> int:
    """The decoded length of standard base64, or -1 when it is not base64."""
    try:
        return len(base64.b64decode(value, validate=True))
    except binascii.Error:
        return -1


def azure_sas_signature(value: str) -> bool:
    """A SAS `sig` is the HMAC-SHA256 of the string to sign: 32 bytes in URL-encoded base64."""
    decoded = urllib.parse.unquote(value)
    return _base64_bytes(decoded) == 32 and _varied(decoded)


_CONNECTION_SECRET = re.compile(
    r"(?:SharedAccessKey|AccountKey|(?<![A-Za-z])Secret)\s*=\s*([A-Za-z0-9+/=]+)"
    r"|(?:Password|Pwd)\s*=\s*('[^']*'|\"[^\"]*\"|\{[^}]*\}|[^;]*[^;\s])",
    re.I,
)


def connection_secret(value: str) -> str:
    """The secret inside an Azure connection string (the key, or the SQL password)."""
    match = _CONNECTION_SECRET.search(value)
    if not match:
        return value
    secret = match.group(1) or match.group(2)
    return secret.strip("'\"{}") if match.group(2) else secret


def azure_connection_string(value: str) -> bool:
    """Service Bus, Event Hubs, IoT Hub and App Configuration keys are 32 bytes, storage and
    Cosmos DB keys 64, all in base64; an Azure SQL connection string needs a real password."""
    secret = connection_secret(value)
    lowered = value.lower()
    if "sharedaccesskey" in lowered or ".azconfig." in lowered:
        return _base64_bytes(secret) == 32 and _varied(secret)
    if "accountkey" in lowered:
        return azure_storage_key(secret)
    return password(secret)


def pypi_token(value: str) -> bool:
    """A PyPI API token is a macaroon whose location is pypi.org (or test.pypi.org)."""
    body = value[5:]
    try:
        head = _b64url_decode(body[:24])
    except (ValueError, binascii.Error):
        return False
    # Macaroon v2: field 1 (location), its length, then the location itself.
    return (head[:3] == b"\x02\x01\x08" and head[3:11] == b"pypi.org") or (
        head[:3] == b"\x02\x01\x0d" and head[3:16] == b"test.pypi.org"
    )


def hex_token(value: str) -> bool:
    """Random hex after a fixed prefix: varied, and not a run of one digit."""
    return len(set(value)) >= 8 and not _RUN.search(value)


# Values that are code, not a password: a dotted name (`config.db.password`), a call or an
# index (`os.environ['DB_PASSWORD']`), a constant's name, the next assignment (`password=
# user=admin`, where the password was left empty), a CSS selector (`#add-password`) or a
# route's `controller#action`. A dotted name's parts carry digits at most at their end
# (`db2.password`): `Kx9.vLq2Zr` and `Summer.Breeze.2024` are passwords.
_CODE_VALUE = re.compile(
    r"[(\[!]*[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*[(\[].*"
    r"|[(\[!]*[A-Za-z_$]+[0-9]*(?:\.[A-Za-z_$]+[0-9]*)+"
    r"|[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+"
    r"|[A-Za-z_][\w.\-]*=[^=].*"  # (base64 padding is not an assignment)
    r"|[#.][a-z][a-z_\-]*|[a-z][a-z0-9_/]*#[a-z_]+",
    re.S,
)


def assigned_password(value: str) -> bool:
    """`password` for a value a program assigns: not an expression of the program itself,
    nor a sentence describing it (`"password": "rotated monthly by the vault"`)."""
    if not password(value) or value.count(" ") >= 3 or _CODE_VALUE.fullmatch(value):
        return False
    # A name, not a value: `username, password = proxy_auth`, `"password": "adminPassword"`,
    # `password: HiddenText` (a type). A password of letters and digits alone has a digit.
    if _IDENTIFIER.fullmatch(value):
        return (
            any(char.isdigit() for char in value)
            and "_" not in value
            and not (_PASSWORD_IN_NAME.search(value) and _NAME_SHAPE.fullmatch(value))
        )
    return True


def key_as_user(value: str) -> bool:
    """An API key sent as the user name: a password in form and random, its digits mixed
    in with its letters (`svc-deploy-01` is an account's name)."""
    return assigned_password(value) and _varied(value) and bool(_DIGIT_THEN_LETTER.search(value))


_DIGIT_THEN_LETTER = re.compile(r"[0-9][A-Za-z]")


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PASSWORD_IN_NAME = re.compile(r"passw|passcode|pwd|secret", re.IGNORECASE)
# How a variable named for a password is written: camelCase or upper case, a counter at
# most at its end (`newPassword2`, `PWD1`). `Secret123`, `MySecret2024` and `Passw0rd2024`
# are not: they are values.
_NAME_SHAPE = re.compile(r"(?:[a-z]+(?:[A-Z][a-z]*)*|[A-Z]+)[0-9]{0,2}")


def url_password(value: str) -> bool:
    """The password of `scheme://user:password@host`, percent-decoded. A port and JDBC
    properties (`host:1433;user=name@server`) are no password."""
    return not _PORT_AND_PROPERTIES.match(value) and password(urllib.parse.unquote(value))


_PORT_AND_PROPERTIES = re.compile(r"[0-9]{1,5};[A-Za-z]+=")


def slack_token(value: str) -> bool:
    """The secret part (the last after a dash or a slash) is random."""
    return token_like(re.split(r"[-/]", value)[-1])


# Keys printed in Stripe's own API reference, for anyone to copy.
_STRIPE_DOCUMENTATION_KEYS = frozenset(
    {"sk_test_4eC39HqLyjWDarjtT1zdp7dc", "sk_test_BQokikJOvBiI2HlWgH4olfQ2"}
)


def stripe_key(value: str) -> bool:
    return value not in _STRIPE_DOCUMENTATION_KEYS and token_like(value.split("_", 2)[2])


# --- checksums a custom type may name -------------------------------------------------------


def mod97(value: str) -> bool:
    """ISO/IEC 7064 MOD 97-10 (as in IBANs and LEIs): letters count A = 10 ... Z = 35, and the
    whole number is 1 mod 97."""
    compact = "".join(char for char in value.upper() if char.isalnum())
    if len(compact) < 3 or not compact.isascii():
        return False
    return int(compact.translate(_IBAN_LETTER_VALUES)) % 97 == 1


def mod11(number: str) -> bool:
    """Weights 2, 3, 4, 5, 6, 7 repeating from the right of the body; the check digit is
    11 minus the sum mod 11 (11 gives 0; 10 is never issued)."""
    if len(number) < 2 or not number.isdigit():
        return False
    body = number[:-1]
    total = sum((ord(char) - 48) * (2 + index % 6) for index, char in enumerate(reversed(body)))
    check = (11 - total % 11) % 11
    return check < 10 and check == ord(number[-1]) - 48


def mod11_descending(number: str) -> bool:
    """Weights from the body's length + 1 down to 2, as the NHS number uses."""
    if len(number) < 2 or not number.isdigit():
        return False
    body = number[:-1]
    check = (11 - _weighted(body, tuple(range(len(body) + 1, 1, -1))) % 11) % 11
    return check < 10 and check == ord(number[-1]) - 48


def mod11_proof(number: str) -> bool:
    """The "11-proof": weights from the length down to 2, the last digit weighing -1; the sum
    is a positive multiple of 11 (the Dutch BSN)."""
    if len(number) < 2 or not number.isdigit():
        return False
    total = _weighted(number[:-1], tuple(range(len(number), 1, -1))) - (ord(number[-1]) - 48)
    return total > 0 and total % 11 == 0
