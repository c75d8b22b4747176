"""Valid sensitive values per type, and the hard decoys that look like them but are not.

Check digits here are computed by small independent implementations (not the detector's
validators), so a bug in one side shows up as a disagreement instead of cancelling out.
Every generator is deterministic for a given `random.Random`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import random
import string
from collections.abc import Callable, Mapping

SENSITIVE_TYPES: tuple[str, ...] = (
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
)

_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_ALNUM = string.ascii_letters + string.digits


def _digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(count))


def _chars(rng: random.Random, alphabet: str, count: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(count))


# --- check digits -------------------------------------------------------------------------


def luhn_complete(partial: str) -> str:
    """Append the Luhn check digit to `partial`."""
    total = 0
    for index, char in enumerate(reversed(partial)):
        digit = int(char)
        if index % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return partial + str((10 - total % 10) % 10)


def luhn_ok(number: str) -> bool:
    return luhn_complete(number[:-1]) == number


def aba_ok(number: str) -> bool:
    d = [int(c) for c in number]
    weighted = 3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + (d[2] + d[5] + d[8])
    return len(d) == 9 and weighted % 10 == 0


def _aba_prefix_ok(number: str) -> bool:
    prefix = int(number[:2])
    return prefix <= 12 or 21 <= prefix <= 32 or 61 <= prefix <= 72 or prefix == 80


def _iban_remainder(iban: str) -> int:
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97


def _base62(number: int, width: int) -> str:
    out = ""
    while number:
        number, rest = divmod(number, 62)
        out = _BASE62[rest] + out
    return out.rjust(width, "0")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- true values --------------------------------------------------------------------------

_CARD_BRANDS: tuple[tuple[str, int], ...] = (
    ("4", 16),  # Visa
    ("51", 16),
    ("53", 16),
    ("55", 16),
    ("2221", 16),
    ("2720", 16),  # Mastercard 2-series
    ("34", 15),
    ("37", 15),  # American Express
    ("6011", 16),
    ("65", 16),  # Discover
    ("3528", 16),
    ("3589", 16),  # JCB
    ("36", 14),  # Diners Club
)


def credit_card_number(rng: random.Random) -> str:
    """A Luhn-valid number of a real issuer range, plain or grouped as printed on the card."""
    prefix, length = rng.choice(_CARD_BRANDS)
    number = luhn_complete(prefix + _digits(rng, length - len(prefix) - 1))
    style = rng.random()
    if style < 0.35:
        return number
    separator = " " if style < 0.75 else "-"
    if length in (14, 15):
        groups = [number[:4], number[4:10], number[10:]]
    else:
        groups = [number[i : i + 4] for i in range(0, length, 4)]
    return separator.join(groups)


_KNOWN_FAKE_SSNS = frozenset({"078051120", "123456789", "219099999", "457555462"})


def ssn_area_pre_2011(area: int) -> bool:
    """Areas the SSA had issued before randomization (June 2011)."""
    return 1 <= area <= 772 and area != 666 and not 734 <= area <= 749


def us_social_security_number(rng: random.Random) -> str:
    """A structurally valid SSN; formatted, or plain digits when its area predates 2011.

    Unformatted randomized (post-2011) numbers are left out: Purview rates them 55, below
    the default policy, so they are no finding a default deployment expects.
    """
    while True:
        formatted = rng.random() < 0.75
        if formatted and rng.random() < 0.3:
            area = rng.choice([*range(734, 750), *range(773, 900)])
        else:
            area = rng.randint(1, 772)
        if not ssn_area_pre_2011(area) and not formatted:
            continue
        if area == 666:
            continue
        group, serial = rng.randint(1, 99), rng.randint(1, 9999)
        plain = f"{area:03d}{group:02d}{serial:04d}"
        if plain in _KNOWN_FAKE_SSNS:
            continue
        if not formatted:
            return plain
        separator = rng.choice("- ")
        return separator.join((plain[:3], plain[3:5], plain[5:]))


# Country -> BBAN layout: n digits, a upper-case letters, c alphanumerics (ECBS registry).
_IBAN_LAYOUTS: Mapping[str, str] = {
    "DE": "18n",
    "GB": "4a14n",
    "FR": "10n11c2n",
    "NL": "4a10n",
    "ES": "20n",
    "IT": "1a10n12c",
    "BE": "12n",
    "CH": "5n12c",
    "AT": "16n",
    "IE": "4a14n",
    "PL": "24n",
    "SE": "20n",
    "NO": "11n",
    "DK": "14n",
    "FI": "14n",
    "PT": "21n",
    "LU": "3n13c",
    "CZ": "20n",
    "SA": "2n18c",
    "AE": "19n",
}


def _bban(rng: random.Random, layout: str) -> str:
    out, count = "", ""
    for char in layout:
        if char.isdigit():
            count += char
            continue
        alphabet = {
            "n": string.digits,
            "a": string.ascii_uppercase,
            "c": string.ascii_uppercase + string.digits,
        }[char]
        out += _chars(rng, alphabet, int(count))
        count = ""
    return out


def iban(rng: random.Random) -> str:
    """An IBAN with correct mod-97 check digits, electronic or grouped in fours."""
    country = rng.choice(sorted(_IBAN_LAYOUTS))
    bban = _bban(rng, _IBAN_LAYOUTS[country])
    check = 98 - _iban_remainder(f"{country}00{bban}")
    value = f"{country}{check:02d}{bban}"
    if rng.random() < 0.5:
        return value
    return " ".join(value[i : i + 4] for i in range(0, len(value), 4))


def _aba_number(rng: random.Random) -> str:
    prefix = rng.choice([*range(0, 13), *range(21, 33), *range(61, 73), 80])
    body = f"{prefix:02d}{_digits(rng, 6)}"
    for check in string.digits:
        if aba_ok(body + check):
            return body + check
    raise AssertionError("every 8-digit body has exactly one ABA check digit")


def aba_routing_number(rng: random.Random) -> str:
    while True:
        number = _aba_number(rng)
        if number != "000000000":
            return number


def _plain_account_digits(rng: random.Random, low: int, high: int) -> str:
    """Digits that no other digit type would claim, so the label is unambiguous."""
    while True:
        value = str(rng.randint(1, 9)) + _digits(rng, rng.randint(low, high) - 1)
        if len(value) == 9 and aba_ok(value) and _aba_prefix_ok(value):
            continue
        return value


def us_bank_account_number(rng: random.Random) -> str:
    return _plain_account_digits(rng, 8, 12)


def us_passport_number(rng: random.Random) -> str:
    """Nine digits (books issued before 2021) or a letter and eight digits (next generation)."""
    if rng.random() < 0.5:
        while True:
            value = str(rng.randint(1, 9)) + _digits(rng, 8)
            if not (aba_ok(value) and _aba_prefix_ok(value)):
                return value
    return rng.choice("ACDEFGHJKLMNPRSTUVWXYZ") + _digits(rng, 8)


def azure_storage_account_key(rng: random.Random) -> str:
    return base64.b64encode(rng.randbytes(64)).decode()


def azure_ad_client_secret(rng: random.Random) -> str:
    """Entra ID client secret: 3 characters, a digit, `Q~`, then 34 characters."""
    tail_alphabet = _ALNUM + "_~.-"
    return (
        _chars(rng, _ALNUM, 3) + rng.choice(string.digits) + "Q~" + _chars(rng, tail_alphabet, 34)
    )


def aws_access_key_id(rng: random.Random) -> str:
    prefix = rng.choice(("AKIA", "ASIA"))
    while True:
        value = prefix + _chars(rng, string.ascii_uppercase + "234567", 16)
        if "EXAMPLE" not in value:
            return value


def github_token(rng: random.Random) -> str:
    """A classic GitHub token: prefix, 30 random base62, CRC32 of those in 6 base62."""
    prefix = rng.choice(("ghp_", "gho_", "ghu_", "ghs_", "ghr_"))
    entropy = _chars(rng, _ALNUM, 30)
    return prefix + entropy + _base62(binascii.crc32(entropy.encode()), 6)


_PEM_LABELS = ("RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY")


def private_key(rng: random.Random) -> str:
    """A PEM private-key block (random DER-sized body), lines joined by newlines."""
    label = rng.choice(_PEM_LABELS)
    raw = rng.randbytes(rng.choice((48, 96, 120)))
    if label == "OPENSSH PRIVATE KEY":  # the OpenSSH format opens with its magic string
        raw = b"openssh-key-v1\x00" + raw
    body = base64.b64encode(raw).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"])


def jwt(rng: random.Random) -> str:
    header = {"alg": rng.choice(("HS256", "RS256", "ES256")), "typ": "JWT"}
    payload = {
        "sub": _chars(rng, string.digits, 10),
        "name": rng.choice(("Adele Vance", "Alex Wilber", "Lee Gu")),
        "iat": 1_700_000_000 + rng.randint(0, 50_000_000),
    }
    parts = [json.dumps(header, separators=(",", ":")), json.dumps(payload, separators=(",", ":"))]
    encoded = [_b64url(part.encode()) for part in parts]
    return ".".join([*encoded, _b64url(rng.randbytes(32))])


def slack_token(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return f"xoxb-{_digits(rng, 12)}-{_digits(rng, 13)}-{_chars(rng, _ALNUM, 24)}"
    return (
        f"xoxp-{_digits(rng, 12)}-{_digits(rng, 12)}-{_digits(rng, 13)}-"
        f"{_chars(rng, '0123456789abcdef', 32)}"
    )


def google_api_key(rng: random.Random) -> str:
    return "AIza" + _chars(rng, _ALNUM + "_-", 35)


def stripe_secret_key(rng: random.Random) -> str:
    return rng.choice(("sk_live_", "rk_live_")) + _chars(rng, _ALNUM, rng.choice((24, 99)))


def password(rng: random.Random) -> str:
    """A password a person would really type: mixed classes, 8-20 characters."""
    words = ("Summer", "Winter", "Falcon", "Orchid", "Tango", "Maple", "Cobalt", "Harbor")
    if rng.random() < 0.5:
        return rng.choice(words) + str(rng.randint(10, 9999)) + rng.choice("!#$%&*?@")
    return _chars(rng, _ALNUM + "!#$%&*?@^", rng.randint(10, 20)) + rng.choice(string.digits)


# --- identifiers outside the U.S. ----------------------------------------------------------


def _spaced(rng: random.Random, value: str, groups: tuple[int, ...], separators: str = " -") -> str:
    """`value` plain, or cut into `groups` joined by one separator."""
    if rng.random() < 0.4:
        return value
    separator = rng.choice(separators)
    parts, start = [], 0
    for size in groups:
        parts.append(value[start : start + size])
        start += size
    return separator.join(parts)


_NINO_FIRST = "ABCEGHJKLMNOPRSTWXYZ"
_NINO_SECOND = "ABCEGHJKLMNPRSTWXYZ"


def uk_national_insurance_number(rng: random.Random) -> str:
    while True:
        prefix = rng.choice(_NINO_FIRST) + rng.choice(_NINO_SECOND)
        if prefix not in {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}:
            break
    digits, suffix = _digits(rng, 6), rng.choice("ABCD")
    if rng.random() < 0.5:
        return prefix + digits + suffix
    return " ".join((prefix, digits[:2], digits[2:4], digits[4:], suffix))


def uk_nhs_number(rng: random.Random) -> str:
    while True:
        body = str(rng.randint(4, 7)) + _digits(rng, 8)
        remainder = sum(int(d) * w for d, w in zip(body, range(10, 1, -1), strict=True)) % 11
        check = (11 - remainder) % 11
        if check != 10:
            return _spaced(rng, body + str(check), (3, 3, 4), " ")


def canada_social_insurance_number(rng: random.Random) -> str:
    number = luhn_complete(rng.choice("1234567") + _digits(rng, 7))
    return _spaced(rng, number, (3, 3, 3))


def australia_tax_file_number(rng: random.Random) -> str:
    weights = (1, 4, 3, 7, 5, 8, 6, 9, 10)
    while True:
        body = _digits(rng, 8)
        partial = sum(int(d) * w for d, w in zip(body, weights, strict=False))
        for last in range(10):
            if (partial + 10 * last) % 11 == 0:
                return _spaced(rng, body + str(last), (3, 3, 3), " ")


def australia_medicare_number(rng: random.Random) -> str:
    body = str(rng.randint(2, 6)) + _digits(rng, 7)
    check = sum(int(d) * w for d, w in zip(body, (1, 3, 7, 9, 1, 3, 7, 9), strict=True)) % 10
    number = body + str(check) + str(rng.randint(1, 9))
    return number if rng.random() < 0.4 else f"{number[:4]} {number[4:9]} {number[9]}"


# Verhoeff (1969): multiplication in the dihedral group D5 and a position permutation.


def _dihedral(i: int, j: int) -> int:
    """Multiplication in D5: elements 0-4 rotations, 5-9 reflections."""
    if i < 5 and j < 5:
        return (i + j) % 5
    if i < 5:
        return 5 + (i + j - 5) % 5
    if j < 5:
        return 5 + (i - 5 - j) % 5
    return (i - j) % 5


_PERMUTATION = (1, 5, 7, 6, 2, 8, 3, 0, 9, 4)


def _verhoeff_check_digit(body: str) -> str:
    check = 0
    for index, char in enumerate(reversed(body)):
        digit = int(char)
        for _ in range(index + 1):
            digit = _PERMUTATION[digit]
        check = _dihedral(check, digit)
    inverse = next(j for j in range(10) if _dihedral(check, j) == 0)
    return str(inverse)


def india_aadhaar_number(rng: random.Random) -> str:
    body = str(rng.randint(2, 9)) + _digits(rng, 10)
    number = body + _verhoeff_check_digit(body)
    return number if rng.random() < 0.3 else f"{number[:4]} {number[4:8]} {number[8:]}"


def india_permanent_account_number(rng: random.Random) -> str:
    letters = string.ascii_uppercase
    return (
        _chars(rng, letters, 3)
        + rng.choice("PCHFATBLJG")
        + rng.choice(letters)
        + f"{rng.randint(1, 9999):04d}"
        + rng.choice(letters)
    )


def us_individual_taxpayer_identification_number(rng: random.Random) -> str:
    group = rng.choice([*range(50, 66), *range(70, 89), *range(90, 93), *range(94, 100)])
    number = f"9{_digits(rng, 2)}{group:02d}{rng.randint(1, 9999):04d}"
    return number[:3] + "-" + number[3:5] + "-" + number[5:] if rng.random() < 0.8 else number


def france_social_security_number(rng: random.Random) -> str:
    department = rng.choice([f"{rng.randint(1, 95):02d}", "2A", "2B"])
    while department == "20":
        department = f"{rng.randint(1, 95):02d}"
    parts = [
        rng.choice("12"), f"{rng.randint(0, 99):02d}", f"{rng.randint(1, 12):02d}", department,
        _digits(rng, 3), _digits(rng, 3),
    ]  # fmt: skip
    numeric = "".join(parts).replace("2A", "19").replace("2B", "18")
    parts.append(f"{97 - int(numeric) % 97:02d}")
    return " ".join(parts) if rng.random() < 0.6 else "".join(parts)


def spain_dni(rng: random.Random) -> str:
    letters = "TRWAGMYFPDXBNJZSQVHLCKE"
    if rng.random() < 0.2:
        head = rng.randrange(3)
        digits = _digits(rng, 7)
        return "XYZ"[head] + digits + letters[(head * 10**7 + int(digits)) % 23]
    digits = str(rng.randint(1, 9)) + _digits(rng, 7)
    return digits + rng.choice(("", "-")) + letters[int(digits) % 23]


_CF_ODD_VALUES = (1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10,
                  22, 25, 24, 23)  # fmt: skip


def italy_fiscal_code(rng: random.Random) -> str:
    letters = string.ascii_uppercase
    day = rng.randint(1, 28) + rng.choice((0, 40))
    body = (
        _chars(rng, letters, 6)
        + _digits(rng, 2)
        + rng.choice("ABCDEHLMPRST")
        + f"{day:02d}"
        + rng.choice(letters)
        + _digits(rng, 3)
    )
    total = 0
    for position, char in enumerate(body, start=1):
        index = int(char) if char.isdigit() else ord(char) - 65
        total += _CF_ODD_VALUES[index] if position % 2 else index
    return body + letters[total % 26]


def netherlands_bsn(rng: random.Random) -> str:
    while True:
        body = str(rng.randint(1, 9)) + _digits(rng, 7)
        last = sum(int(d) * w for d, w in zip(body, range(9, 1, -1), strict=True)) % 11
        if last < 10:
            return body + str(last)


def poland_pesel(rng: random.Random) -> str:
    born = dt.date(1930, 1, 1) + dt.timedelta(days=rng.randint(0, 33_000))
    month = born.month + (20 if born.year >= 2000 else 0)
    body = f"{born.year % 100:02d}{month:02d}{born.day:02d}{_digits(rng, 4)}"
    total = sum(int(d) * w for d, w in zip(body, (1, 3, 7, 9, 1, 3, 7, 9, 1, 3), strict=True))
    return body + str((10 - total % 10) % 10)


def sweden_personal_identity_number(rng: random.Random) -> str:
    born = dt.date(1930, 1, 1) + dt.timedelta(days=rng.randint(0, 33_000))
    body = born.strftime("%y%m%d") + _digits(rng, 3)
    number = luhn_complete(body)
    if rng.random() < 0.7:
        return number[:6] + "-" + number[6:]
    return born.strftime("%Y")[:2] + number


def brazil_cpf(rng: random.Random) -> str:
    while True:
        digits = [int(d) for d in _digits(rng, 9)]
        if len(set(digits)) > 1:
            break
    for weights_from in (10, 11):
        total = sum(d * w for d, w in zip(digits, range(weights_from, 1, -1), strict=False))
        digits.append(total * 10 % 11 % 10)
    number = "".join(map(str, digits))
    if rng.random() < 0.6:
        return f"{number[:3]}.{number[3:6]}.{number[6:9]}-{number[9:]}"
    return number


_AUSWEIS_ALPHABET = "CFGHJKLMNPRTVWXYZ0123456789"


def germany_identity_card_number(rng: random.Random) -> str:
    while True:
        number = rng.choice("CFGHJKLMNPRTVWXYZ") + _chars(rng, _AUSWEIS_ALPHABET, 8)
        if any(c.isdigit() for c in number[1:]):
            break
    values_ = [int(c) if c.isdigit() else ord(c) - 55 for c in number]
    check = sum(v * (7, 3, 1)[i % 3] for i, v in enumerate(values_)) % 10
    return number + str(check) if rng.random() < 0.7 else number


# --- more secrets -------------------------------------------------------------------------


def azure_sas_token(rng: random.Random) -> str:
    """The `sig` of a SAS URL: HMAC-SHA256 bytes in base64, URL-encoded."""
    signature = base64.b64encode(rng.randbytes(32)).decode()
    return signature.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")


def azure_connection_string(rng: random.Random) -> str:
    kind = rng.randrange(4)
    name = f"{rng.choice(('orders', 'billing', 'telemetry', 'catalog'))}{rng.randint(1, 99)}"
    if kind == 0:
        key = base64.b64encode(rng.randbytes(32)).decode()
        return (
            f"Endpoint=sb://{name}.servicebus.windows.net/;SharedAccessKeyName="
            f"RootManageSharedAccessKey;SharedAccessKey={key}"
        )
    if kind == 1:
        key = base64.b64encode(rng.randbytes(64)).decode()
        return f"AccountEndpoint=https://{name}.documents.azure.com:443/;AccountKey={key}"
    if kind == 2:
        key = base64.b64encode(rng.randbytes(64)).decode()
        return f"DefaultEndpointsProtocol=https;AccountName=st{name};AccountKey={key}"
    return (
        f"Server=tcp:sql-{name}.database.windows.net,1433;Initial Catalog={name};"
        f"User ID=svc_{name};Password={password(rng)}"
    )


def openai_api_key(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return f"sk-{_chars(rng, _ALNUM, 20)}T3BlbkFJ{_chars(rng, _ALNUM, 20)}"
    return f"sk-proj-{_chars(rng, _ALNUM + '_-', 74)}T3BlbkFJ{_chars(rng, _ALNUM + '_-', 74)}"


def gitlab_token(rng: random.Random) -> str:
    return rng.choice(("glpat-", "gldt-", "glrt-", "glptt-")) + _chars(rng, _ALNUM + "_-", 20)


def npm_token(rng: random.Random) -> str:
    return "npm_" + _chars(rng, _ALNUM, 36)


def pypi_token(rng: random.Random) -> str:
    macaroon = b"\x02\x01\x08pypi.org\x02\x01" + rng.randbytes(rng.randint(60, 120))
    return "pypi-" + _b64url(macaroon)


def sendgrid_api_key(rng: random.Random) -> str:
    return f"SG.{_chars(rng, _ALNUM + '_-', 22)}.{_chars(rng, _ALNUM + '_-', 43)}"


def twilio_api_key(rng: random.Random) -> str:
    return "SK" + _chars(rng, "0123456789abcdef", 32)


def databricks_token(rng: random.Random) -> str:
    return "dapi" + _chars(rng, "0123456789abcdef", 32)


def url_credentials(rng: random.Random) -> str:
    """A password as it sits in a URL: characters URLs reserve are percent-encoded."""
    value = password(rng)
    return "".join(f"%{ord(c):02X}" if c in "@:/?#%" else c for c in value)


TRUE_VALUES: Mapping[str, Callable[[random.Random], str]] = {
    "credit_card_number": credit_card_number,
    "us_social_security_number": us_social_security_number,
    "iban": iban,
    "aba_routing_number": aba_routing_number,
    "us_bank_account_number": us_bank_account_number,
    "us_passport_number": us_passport_number,
    "azure_storage_account_key": azure_storage_account_key,
    "azure_ad_client_secret": azure_ad_client_secret,
    "aws_access_key_id": aws_access_key_id,
    "github_token": github_token,
    "private_key": private_key,
    "jwt": jwt,
    "slack_token": slack_token,
    "google_api_key": google_api_key,
    "stripe_secret_key": stripe_secret_key,
    "password": password,
    "uk_national_insurance_number": uk_national_insurance_number,
    "uk_nhs_number": uk_nhs_number,
    "canada_social_insurance_number": canada_social_insurance_number,
    "australia_tax_file_number": australia_tax_file_number,
    "australia_medicare_number": australia_medicare_number,
    "india_aadhaar_number": india_aadhaar_number,
    "india_permanent_account_number": india_permanent_account_number,
    "us_individual_taxpayer_identification_number": us_individual_taxpayer_identification_number,
    "france_social_security_number": france_social_security_number,
    "spain_dni": spain_dni,
    "italy_fiscal_code": italy_fiscal_code,
    "netherlands_bsn": netherlands_bsn,
    "poland_pesel": poland_pesel,
    "sweden_personal_identity_number": sweden_personal_identity_number,
    "brazil_cpf": brazil_cpf,
    "germany_identity_card_number": germany_identity_card_number,
    "azure_sas_token": azure_sas_token,
    "azure_connection_string": azure_connection_string,
    "openai_api_key": openai_api_key,
    "gitlab_token": gitlab_token,
    "npm_token": npm_token,
    "pypi_token": pypi_token,
    "sendgrid_api_key": sendgrid_api_key,
    "twilio_api_key": twilio_api_key,
    "databricks_token": databricks_token,
    "url_credentials": url_credentials,
}

# --- decoys -------------------------------------------------------------------------------
# Each returns a phrase ready to drop into a sentence, context included: decoys are hard
# because they sit beside the very keywords a true value would have.

EMULATOR_STORAGE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def luhn_failing_id(rng: random.Random) -> str:
    prefix, length = rng.choice(_CARD_BRANDS)
    while True:
        number = prefix + _digits(rng, length - len(prefix))
        if not luhn_ok(number):
            break
    label = rng.choice(("Order id", "Tracking no.", "Device serial", "Card on file ref"))
    if rng.random() < 0.5:
        number = " ".join(number[i : i + 4] for i in range(0, len(number), 4))
    return f"{label} {number}"


def order_number(rng: random.Random) -> str:
    label = rng.choice(("Order #", "PO ", "Invoice INV-", "Ticket #", "Case "))
    return f"{label}{_digits(rng, rng.randint(6, 12))}"


def meeting_number(rng: random.Random) -> str:
    groups = " ".join(_digits(rng, 3) for _ in range(4))
    return rng.choice((f"Meeting ID: {groups}", f"Conference ID: {_digits(rng, 9)}#"))


def phone_number(rng: random.Random) -> str:
    area, exchange, line = rng.randint(201, 989), rng.randint(200, 999), _digits(rng, 4)
    return rng.choice(
        (
            f"call me at +1 {area} {exchange} {line}",
            f"my cell is ({area}) {exchange}-{line}",
            f"phone: {area}-{exchange}-{line}",
            f"tel. +1{area}{exchange}{line}",
        )
    )


def timestamp(rng: random.Random) -> str:
    moment = dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(
        seconds=rng.randint(0, 90_000_000)
    )
    return rng.choice(
        (
            moment.isoformat().replace("+00:00", "Z"),
            moment.strftime("%Y%m%d%H%M%S"),
            str(int(moment.timestamp() * 1000)),
            moment.strftime("%m/%d/%Y %H:%M"),
        )
    )


def version_string(rng: random.Random) -> str:
    return rng.choice(
        (
            f"build 10.0.{rng.randint(10000, 22999)}.{rng.randint(100, 4999)}",
            f"v{rng.randint(1, 30)}.{rng.randint(0, 99)}.{rng.randint(0, 999)}",
            f"version 1.{rng.randint(100, 999)}.{_digits(rng, 9)}",
        )
    )


def invalid_ssn(rng: random.Random) -> str:
    """SSN-shaped with an SSN keyword, but an area, group or serial the SSA never issues."""
    kind = rng.randint(0, 4)
    group, serial = rng.randint(1, 99), rng.randint(1, 9999)
    if kind == 0:
        value = f"000-{group:02d}-{serial:04d}"
    elif kind == 1:
        value = f"666-{group:02d}-{serial:04d}"
    elif kind == 2:
        # 9xx with group 50-65, 70-88, 90-92 or 94-99 is an ITIN, not an invalid SSN
        group = rng.choice([*range(1, 50), 66, 67, 68, 69, 89, 93])
        value = f"{rng.randint(900, 999)}-{group:02d}-{serial:04d}"
    elif kind == 3:
        value = f"{rng.randint(1, 665):03d}-00-{serial:04d}"
    else:
        value = rng.choice(
            ("078-05-1120", "123-45-6789", f"{rng.randint(1, 665):03d}-{group:02d}-0000")
        )
    return f"SSN {value}"


def bad_iban(rng: random.Random) -> str:
    valid = iban(rng).replace(" ", "")
    check = int(valid[2:4])
    wrong = (check + rng.randint(1, 96)) % 97
    wrong = wrong if wrong >= 2 else wrong + 2
    while wrong == check:
        wrong = rng.randint(2, 98)
    return f"IBAN {valid[:2]}{wrong:02d}{valid[4:]}"


def bad_aba(rng: random.Random) -> str:
    while True:
        value = _digits(rng, 9)
        if not (aba_ok(value) and _aba_prefix_ok(value)):
            return f"routing number {value}"


def bad_github_token(rng: random.Random) -> str:
    """A revoked-looking token whose CRC32 does not match (a typo or a made-up example)."""
    prefix = rng.choice(("ghp_", "gho_", "ghs_"))
    entropy = _chars(rng, _ALNUM, 30)
    good = _base62(binascii.crc32(entropy.encode()), 6)
    while True:
        bad = _chars(rng, _ALNUM, 6)
        if bad != good:
            return f"old token {prefix}{entropy}{bad} (revoked)"


def bad_jwt(rng: random.Random) -> str:
    """Three dot-separated base64url parts whose header is not a JWT header."""
    header = _b64url(json.dumps({"kind": "cursor", "page": rng.randint(1, 99)}).encode())
    return f"paging cursor {header}.{_b64url(rng.randbytes(12))}.{_b64url(rng.randbytes(8))}"


def placeholder_secret(rng: random.Random) -> str:
    return rng.choice(
        (
            "password=********",
            "Password: <your password here>",
            "password=${DB_PASSWORD}",
            "pwd={{ secrets.SQL_PASSWORD }}",
            "-Password $env:ADMIN_PASSWORD",
            "AccountKey=<storage-account-key>",
            "aws key AKIAIOSFODNN7EXAMPLE",
            "Server=tcp:contoso.database.windows.net;User ID=admin;Password=<password>;",
            f"AccountName=devstoreaccount1;AccountKey={EMULATOR_STORAGE_KEY}",
            "client secret: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "token ghp_XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
            "sk_live_************************",
            "password: [REDACTED]",
        )
    )


def identifiers(rng: random.Random) -> str:
    """Everyday machine identifiers: GUIDs, commit hashes, IP addresses, tracking numbers."""
    guid = "-".join(_chars(rng, "0123456789abcdef", n) for n in (8, 4, 4, 4, 12))
    return rng.choice(
        (
            f"subscription {guid}",
            f"fixed in commit {_chars(rng, '0123456789abcdef', 40)}",
            f"server 10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            f"UPS 1Z{_chars(rng, string.ascii_uppercase + string.digits, 16)}",
            f"sha256 {_chars(rng, '0123456789abcdef', 64)}",
        )
    )


def amounts_and_places(rng: random.Random) -> str:
    """Money, postal codes and quantities: digits people write all day."""
    return rng.choice(
        (
            f"budget ${rng.randint(1, 999)},{rng.randint(0, 999):03d},{rng.randint(0, 999):03d}",
            f"total EUR {rng.randint(100000, 9999999)}.{rng.randint(0, 99):02d}",
            f"ship to Redmond, WA {rng.randint(10000, 99999)}-{rng.randint(1000, 9999)}",
            f"{rng.randint(100000, 999999)} impressions last week",
            f"population {rng.randint(1_000_000, 9_999_999):,}",
        )
    )


def prose_password_mention(rng: random.Random) -> str:
    """The word password in ordinary conversation, with no password after it."""
    return rng.choice(
        (
            "I reset my password yesterday, the portal works again",
            "Password: expired, I requested a new one",
            "the password policy changes next week",
            "forgot password? use the self-service link",
        )
    )


# Identifiers with their keyword whose check digit (or letter) is wrong: one changed check
# character is caught by every one of these schemes.
_CHECKED_IDS: Mapping[str, str] = {
    "uk_nhs_number": "NHS number",
    "canada_social_insurance_number": "SIN",
    "australia_tax_file_number": "TFN",
    "australia_medicare_number": "Medicare card number",
    "india_aadhaar_number": "Aadhaar",
    "netherlands_bsn": "BSN",
    "poland_pesel": "PESEL",
    "sweden_personal_identity_number": "personnummer",
    "brazil_cpf": "CPF",
    "spain_dni": "DNI",
    "italy_fiscal_code": "codice fiscale",
    "france_social_security_number": "NIR",
}


def bad_national_id(rng: random.Random) -> str:
    kind = rng.choice(sorted(_CHECKED_IDS))
    value = TRUE_VALUES[kind](rng)
    if kind == "australia_medicare_number":  # the ninth digit is the check, the tenth an issue
        position = [i for i, c in enumerate(value) if c.isdigit()][8]
    elif kind == "france_social_security_number":
        key = int(value[-2:])
        return f"{_CHECKED_IDS[kind]} {value[:-2]}{(key % 97) + 1 if key < 97 else 1:02d}"
    else:
        position = len(value) - 1
    old = value[position]
    alphabet = string.digits if old.isdigit() else string.ascii_uppercase
    new = rng.choice([c for c in alphabet if c != old])
    return f"{_CHECKED_IDS[kind]} {value[:position]}{new}{value[position + 1 :]}"


def unissued_identifier(rng: random.Random) -> str:
    """Numbers issuers print as examples precisely because they are never issued, and the
    shapes their ranges exclude."""
    return rng.choice(
        (
            "National Insurance number: QQ 12 34 56 C",
            f"NI no. GB{_digits(rng, 6)}A",
            "SIN 046 454 286",
            f"ITIN 9{_digits(rng, 2)}-{rng.choice((66, 67, 68, 69, 89, 93)):02d}-{_digits(rng, 4)}",
            f"Aadhaar 1{_digits(rng, 3)} {_digits(rng, 4)} {_digits(rng, 4)}",
            f"PAN AAA{rng.choice('DEIKMNOQRSUVWXYZ')}L{_digits(rng, 4)}C",
            "codice fiscale ABCDEF12G34H567I",
        )
    )


def code_password_reference(rng: random.Random) -> str:
    """Passwords named in code and configuration without being written there."""
    return rng.choice(
        (
            "password = os.environ['DB_PASSWORD']",
            'password := os.Getenv("DB_PASS")',
            "password: process.env.DB_PASSWORD",
            "password_policy: strict-2231",
            "PASSWORD_MIN_LENGTH=12",
            "password=\nuser=admin_2231",
            "<password>${DB_PASSWORD}</password>",
            "compass: North-2231",
            "docker run -u 1000:1000 app",
        )
    )


def documentation_credentials(rng: random.Random) -> str:
    """Credentials as documentation and templates write them: placeholders, emulators."""
    return rng.choice(
        (
            "glpat-xxxxxxxxxxxxxxxxxxxx",
            "postgres://user:password@localhost:5432/db",
            "SENDGRID_API_KEY=SG.xxxxxxxxxxxxxxxxxxxxxx.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "stripe key sk_test_4eC39HqLyjWDarjtT1zdp7dc",
            "https://account.blob.core.windows.net/c/b.txt?sv=2022-11-02&sp=r&sig=<signature>",
            "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=Root;"
            "SharedAccessKey=<key>",
            "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
            "npm_XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
            f"sk-{_chars(rng, _ALNUM, 48)}",  # OpenAI-shaped without the OpenAI marker
            f"mongodb://admin:${{MONGO_PASSWORD}}@mongo-{rng.randint(1, 9)}:27017",
        )
    )


DECOYS: Mapping[str, Callable[[random.Random], str]] = {
    "luhn_failing_id": luhn_failing_id,
    "order_number": order_number,
    "meeting_number": meeting_number,
    "phone_number": phone_number,
    "timestamp": timestamp,
    "version_string": version_string,
    "invalid_ssn": invalid_ssn,
    "bad_iban": bad_iban,
    "bad_aba": bad_aba,
    "bad_github_token": bad_github_token,
    "bad_jwt": bad_jwt,
    "placeholder_secret": placeholder_secret,
    "prose_password_mention": prose_password_mention,
    "identifiers": identifiers,
    "amounts_and_places": amounts_and_places,
    "bad_national_id": bad_national_id,
    "unissued_identifier": unissued_identifier,
    "code_password_reference": code_password_reference,
    "documentation_credentials": documentation_credentials,
}
