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
    body = base64.b64encode(rng.randbytes(rng.choice((48, 96, 120)))).decode()
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
}
