"""Secrets: self-identifying formats (prefix or checksum) are high without a keyword."""

from __future__ import annotations

import re
from collections.abc import Iterator

from graphtap.inspection import validators
from graphtap.inspection.rules.base import Evidence, Rule


def _assembled(*pieces: str) -> str:
    """An example secret joined at import, so the source never holds a secret-shaped literal
    for secret scanners and push protection to flag (as gitleaks does with its own rules)."""
    return "".join(pieces)


def _high(evidence: Evidence) -> int:
    return 85


def _no_whitespace(value: str) -> str:
    return "".join(value.split())


# --- Azure storage account key ------------------------------------------------------------


def _storage_key_score(evidence: Evidence) -> int | None:
    if evidence.match[:10].lower() == "accountkey":
        return 85
    return 75 if evidence.keyword else None


_KEY = _assembled(
    "3EegSYNMG3VYQhEkJKdg4LtJEaW1vTe0EP9mt3AE0pMd", "ihpPllBVBokLCdngEvu1kplsXp0aEV1C2Qh2KXIWbA=="
)

AZURE_STORAGE_KEY = Rule(
    type="azure_storage_account_key",
    # The optional prefix first, then the boundary: far quicker for `regex` than alternatives.
    pattern=r"(?:AccountKey\s{0,8}=\s{0,8})?(?<![A-Za-z0-9+/])(?P<v>[A-Za-z0-9+/]{86}==)"
    r"(?![A-Za-z0-9+/=])",
    ignore_case=True,
    validate=validators.azure_storage_key,
    score=_storage_key_score,
    atoms=("==",),
    keywords=(
        "accountkey",
        "account key",
        "storage key",
        "storage account",
        "storage account key",
        "access key",
        "primary key",
        "secondary key",
        "azure storage",
    ),
    placeholders=True,
    context_matters=True,
    true_examples=(
        f"DefaultEndpointsProtocol=https;AccountName=stfinance7;AccountKey={_KEY};"
        "EndpointSuffix=core.windows.net",
        f"storage key: {_KEY}",
    ),
    false_examples=(
        "AccountName=devstoreaccount1;AccountKey=" + validators.EMULATOR_STORAGE_KEY,
        "AccountKey=<storage-account-key>",
        _KEY,  # 64 random bytes alone, with no word saying what they are
        f"AccountName=contoso;AccountKey={_KEY}",
    ),
)

# --- Entra ID (Azure AD) client secret: `Q~` after three characters and a digit -------------

_ENTRA_CHARS = r"A-Za-z0-9_~.\-"

AZURE_AD_CLIENT_SECRET = Rule(
    type="azure_ad_client_secret",
    pattern=rf"(?<![{_ENTRA_CHARS}])(?P<v>[A-Za-z0-9_~.\-]{{3}}[0-9]Q~[{_ENTRA_CHARS}]{{31,34}})"
    r"(?![A-Za-z0-9_~\-]|\.[A-Za-z0-9_~\-])",
    validate=validators.token_like,
    score=_high,
    atoms=("q~",),
    keywords=("client secret", "clientsecret", "client_secret", "secret", "app registration"),
    placeholders=True,
    true_examples=(
        "AZURE_CLIENT_SECRET=" + _assembled("zGw9Q", "~T6IaX-qA2h9Uz.0_T1SaQ6dDwxlGejkc5b"),
        f"new secret {_assembled('fz59Q', '~~o2._YH19-dCqgn28s9Dp68GZN.9Z3zLIb')} (expires soon)",
    ),
    false_examples=(
        "client secret: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "abc8Q~short",
        "secret abc8Q~xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    ),
)

# --- AWS access key id --------------------------------------------------------------------

AWS_ACCESS_KEY_ID = Rule(
    type="aws_access_key_id",
    pattern=r"(?<![A-Za-z0-9])(?P<v>(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16})(?![A-Za-z0-9])",
    validate=validators.token_like,
    score=_high,
    atoms=("akia", "asia", "abia", "acca"),
    keywords=("aws", "access key", "aws_access_key_id"),
    placeholders=True,
    true_examples=(
        "aws_access_key_id = " + _assembled("AK", "IAJ57XMQ7573CSU5G4"),
        "key " + _assembled("AS", "IAY34FZKBOKMUTVV7A"),
    ),
    false_examples=(
        "AKIAIOSFODNN7EXAMPLE",  # the key id in AWS's own documentation
        _assembled("AK", "IAJ57XMQ7573CSU5G41"),
        "akiaj57xmq7573csu5g4",
    ),
)

# --- GitHub tokens: classic tokens end in a CRC32 -----------------------------------------

GITHUB_TOKEN = Rule(
    type="github_token",
    pattern=r"(?<![A-Za-z0-9_])(?P<v>gh[pousr]_[A-Za-z0-9]{36}"
    r"|github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59})(?![A-Za-z0-9_])",
    validate=validators.github_token,
    score=_high,
    atoms=("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    keywords=("github", "token", "pat"),
    placeholders=True,
    true_examples=(
        "GITHUB_TOKEN=" + _assembled("gh", "p_uG8GP38g4o5MNJAYKJ1UXXFWXLCpaN1phXek"),
        _assembled(
            "github",
            "_pat_11ABCDEFG0abcdefghijkl_mnopqrstuvwxyz",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghi",
        ),
    ),
    false_examples=(
        _assembled("gh", "p_uG8GP38g4o5MNJAYKJ1UXXFWXLCpaN1phXel"),  # checksum off by one
        "ghp_XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        "ghx_uG8GP38g4o5MNJAYKJ1UXXFWXLCpaN1phXek",
    ),
)

# --- PEM private keys: BEGIN and END must pair ----------------------------------------------

PRIVATE_KEY = Rule(
    type="private_key",
    pattern=r"(?P<v>-----BEGIN (?P<label>[A-Z0-9 ]{0,40}?)PRIVATE KEY-----"
    r"[A-Za-z0-9+/=\s:,.\-]{20,16000}?-----END (?P=label)PRIVATE KEY-----)",
    hyperscan_pattern=r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----",
    preview_chars=0,  # the tail of a PEM block is its END line
    validate=validators.private_key,
    score=_high,
    normalise=_no_whitespace,
    atoms=("private key-----",),
    true_examples=(
        _assembled(
            "-----BEGIN ",
            "RSA PRIVATE KEY-----\n",
            "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n",
            "KUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ==\n-----END ",
            "RSA PRIVATE KEY-----",
        ),
        _assembled(
            "-----BEGIN ",
            "PRIVATE KEY----- MIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAk",
            "EAq7BFUpkGp3+L -----END ",
            "PRIVATE KEY-----",
        ),
    ),
    false_examples=(
        _assembled(
            "-----BEGIN ",
            "RSA PRIVATE KEY-----\n",
            "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeK\n-----END ",
            "EC PRIVATE KEY-----",
        ),
        "-----BEGIN PUBLIC KEY-----\nMFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAKj34GkxFhD90vcNLYLInFEX6P\n"
        "-----END PUBLIC KEY-----",
        _assembled("-----BEGIN ", "RSA PRIVATE KEY-----\n...\n-----END ", "RSA PRIVATE KEY-----"),
    ),
)

# --- JWT: the header must decode to JSON naming an algorithm --------------------------------

JWT = Rule(
    type="jwt",
    pattern=r"(?<![A-Za-z0-9_\-])(?P<v>ey[A-Za-z0-9_\-]{10,}\.ey[A-Za-z0-9_\-]{10,}"
    r"\.[A-Za-z0-9_\-]*)(?![A-Za-z0-9_\-])",
    validate=validators.jwt,
    score=_high,
    atoms=("ey",),
    keywords=("bearer", "token", "jwt", "authorization"),
    true_examples=(
        "Authorization: Bearer "
        + _assembled(
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
            ".",
            "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ",
            ".",
            "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        ),
    ),
    false_examples=(
        _assembled("eyJraW5kIjogImN1cnNvciJ9", ".", "eyJwYWdlIjogMTIzNDV9.c2lnbmF0dXJl"),
        _assembled("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9", ".", "eyJub3QganNvbg.SflKxwRJSMeK"),
    ),
)

# --- Slack, Google, Stripe ----------------------------------------------------------------

SLACK_TOKEN = Rule(
    type="slack_token",
    pattern=r"(?<![A-Za-z0-9])(?P<v>xox[abposr]-(?:[0-9]{8,13}-){1,3}[A-Za-z0-9]{20,40})"
    r"(?![A-Za-z0-9\-])",
    validate=lambda token: validators.token_like(token.rsplit("-", 1)[1]),  # the secret part
    score=_high,
    atoms=("xox",),
    keywords=("slack", "token", "bot"),
    placeholders=True,
    true_examples=(
        "SLACK_BOT_TOKEN="
        + _assembled("xo", "xb-263594206564-2343594206574-FGqddMF8t08v8N7Oq4i57vs1"),
        _assembled(
            "xo", "xp-742892000000-817603399106-8770940650875-de3f7a0815dc1e83ad76474d0d400c0f"
        ),
    ),
    false_examples=(
        "xoxb-263594206564-2343594206574-XXXXXXXXXXXXXXXXXXXXXXXX",
        "xoxb-not-a-token",
    ),
)

GOOGLE_API_KEY = Rule(
    type="google_api_key",
    pattern=r"(?<![A-Za-z0-9_\-])(?P<v>AIza[0-9A-Za-z_\-]{35})(?![A-Za-z0-9_\-])",
    validate=validators.token_like,
    score=_high,
    atoms=("aiza",),
    keywords=("google", "api key", "maps", "gcp", "firebase"),
    placeholders=True,
    true_examples=("key=" + _assembled("AI", "zaSyD3hF7kL9mN2pQ4rS6tU8vW0xY1zA3bC5d"),),
    false_examples=(
        "AIzaSyD3hF7kL9mN2pQ4rS6tU8vW0xY1zA3bC",
        "AIzaXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
    ),
)

STRIPE_SECRET_KEY = Rule(
    type="stripe_secret_key",
    pattern=r"(?<![A-Za-z0-9_])(?P<v>[sr]k_live_[0-9A-Za-z]{24,99})(?![A-Za-z0-9])",
    validate=validators.token_like,
    score=_high,
    atoms=("k_live_",),
    keywords=("stripe", "secret key", "api key"),
    placeholders=True,
    true_examples=(
        "STRIPE_SECRET_KEY=" + _assembled("sk", "_live_51HqLyjWDarjtT1zdp7dcX4Dk"),
        _assembled("rk", "_live_duMmYm5q549cWsFUjAvkhHenpFosy81bQUqwxZYkxWTqCrq1HaKJmFXlyc8apn5C"),
    ),
    false_examples=("sk_test_51HqLyjWDarjtT1zdp7dcX4Dk", "sk_live_************************"),
)

# --- passwords in credential forms ----------------------------------------------------------

_CREDENTIAL_VALUE = (
    r"(?:'(?P<v>[^'\r\n]{1,128})'|\"(?P<v>[^\"\r\n]{1,128})\"|(?P<v>[^\s;'\"<>]{1,128}))"
)
_ASSIGNED = re.compile(r"=|-password|convertto-securestring", re.I)


def _password_score(evidence: Evidence) -> int:
    if _ASSIGNED.search(evidence.match[: len(evidence.match) - len(evidence.value)]):
        return 85
    return 85 if evidence.keyword else 75


def _password_trims(value: str) -> Iterator[str]:
    """Sentence punctuation after an unquoted password belongs to the sentence."""
    yield value.rstrip(".,)!?") if value[-1:] in ".,)" else value


PASSWORD = Rule(
    type="password",
    pattern=r"(?:(?:password|passwd|pwd|passphrase)\s*[=:]\s*|-password\s+"
    r"|(?:password|passphrase)\s+is\s*:?\s*|convertto-securestring\s+(?:-string\s+)?)"
    + _CREDENTIAL_VALUE,
    ignore_case=True,
    validate=validators.password,
    score=_password_score,
    trims=_password_trims,
    preview_chars=2,
    atoms=("password", "passwd", "pwd", "passphrase", "convertto-securestring"),
    keywords=("user", "username", "user id", "userid", "uid", "login", "credentials", "account"),
    placeholders=True,
    context_matters=True,
    true_examples=(
        "password=Falcon2231!",
        "Server=tcp:sql-orders-4.database.windows.net,1433;User ID=svc;Pwd=h7Gq!x2pLm9z;",
        "New-ADUser -Name svc_backup -Password 'Orchid77#'",
        "the wifi password is Tango4411$",
        "login: jdoe / pwd: Maple3020&.",
    ),
    false_examples=(
        "password=********",
        "Password: <your password here>",
        "password=${DB_PASSWORD}",
        "-Password $env:ADMIN_PASSWORD",
        "password: [REDACTED]",
        "Password: expired, I requested a new one",
        "forgot password? use the self-service link",
        "SavePassword=true",
        "pwd: /home/lee/projects",
        "password reset link: https://aka.ms/sspr",
        "Server=tcp:contoso.database.windows.net;User ID=admin;Password=Pa55word!;",
    ),
)

RULES: tuple[Rule, ...] = (
    PRIVATE_KEY,
    AZURE_STORAGE_KEY,
    GITHUB_TOKEN,
    AWS_ACCESS_KEY_ID,
    SLACK_TOKEN,
    STRIPE_SECRET_KEY,
    GOOGLE_API_KEY,
    AZURE_AD_CLIENT_SECRET,
    JWT,
    PASSWORD,
)
