"""Cloud and developer-platform credentials whose issuers publish their format.

Each is high (85) on its own: a fixed prefix, a layout and (where the issuer defines one) a
decodable structure leave little room for chance. Examples are assembled at import so the
source holds no secret-shaped literal for scanners and push protection to flag.
"""

from __future__ import annotations

from graphtap.inspection import validators
from graphtap.inspection.rules.base import Evidence, Rule, joined


def _assembled(*pieces: str) -> str:
    return "".join(pieces)


# _SHORT_REPEATS: Hyperscan scans some combinations of prefilter patterns whose key
# characters repeat many times (`AIza[...]{35}` beside `dapi[0-9a-f]{32}`) in quadratic time
# on text that repeats the prefix. Such a rule gives Hyperscan its prefix and a few key
# characters instead: a superset of its matches, and `regex` decides.


def _high(evidence: Evidence) -> int:
    return 85


def _after_prefix(separator: str, check: validators.Check) -> validators.Check:
    """`check` applied to what follows the first `separator` (the random part)."""

    def validate(value: str) -> bool:
        return check(value.split(separator, 1)[-1])

    return validate


# --- Azure: SAS tokens and connection strings ---------------------------------------------

_SAS_SIG = r"(?P<v>(?:[A-Za-z0-9+/]|%2[BbFf]){43}(?:=|%3[Dd]))(?![A-Za-z0-9%+/=])"
_SAS_VERSION = r"sv=[0-9]{4}-[0-9]{2}-[0-9]{2}"

AZURE_SAS_TOKEN = Rule(
    type="azure_sas_token",
    # A shared access signature: the signed version `sv` and the signature `sig` (the
    # HMAC-SHA256 of the string to sign, URL-encoded base64) in one query string.
    pattern=rf"(?<![A-Za-z0-9_]){_SAS_VERSION}&[^\s\"'<>]{{0,400}}?(?<=[?&;])sig={_SAS_SIG}"
    rf"|(?<![A-Za-z0-9_])sig={_SAS_SIG}[^\s\"'<>]{{0,400}}?[?&;]{_SAS_VERSION}",
    hyperscan_pattern=r"sig=(?:[A-Za-z0-9+/]|%2[BbFf]){43}",  # in every match
    validate=validators.azure_sas_signature,
    score=_high,
    atoms=("sig=",),
    keywords=joined("sas", "sas token", "sas url", "shared access signature", "blob", "storage"),
    placeholders=True,
    context_matters=True,
    true_examples=(
        "https://stfinance7.blob.core.windows.net/exports/q3.csv?sv=2022-11-02&ss=b&srt=co"
        "&sp=rl&se=2026-12-31T23:59:59Z&spr=https&sig="
        + _assembled("OLTmUuRNp%2FI3DZ4mDicTZVCko6bQf1wMMy", "%2BLEiQIP9I%3D"),
        "sas token: ?sig="
        + _assembled("K5AviRHoGBj4yZ1dXZgxlXUE2Q6UXeLo9U7ngcx19jY", "=")
        + "&se=2026-06-30&sp=r&sv=2021-06-08&sr=b",
    ),
    false_examples=(
        "https://stfinance7.blob.core.windows.net/exports/q3.csv?sv=2022-11-02&sp=rl&sig=<sig>",
        "?sv=2022-11-02&sp=r&sig=" + "A" * 43 + "%3D",
        "https://contoso.blob.core.windows.net/c?sv=2022-11-02&sp=r&sig="
        + _assembled("OLTmUuRNp%2FI3DZ4mDicTZVCko6bQf1wMMy", "%2BLEiQIP9I%3D"),
        "sig=OLTmUuRNp%2FI3DZ4mDicTZVCko6bQf1wMMy%2BLEiQIP9I%3D",  # no signed version: no SAS
    ),
)

_CLOUD = r"(?:windows\.net|chinacloudapi\.cn|usgovcloudapi\.net)"
# The settings a connection string may hold between the ones a rule reads (the portal's
# storage string has up to seven, with its endpoints).
_SETTINGS = r"(?:[ ]?[A-Za-z ]{1,30}=[^;\s]{0,200};){0,8}?[ ]?"
_SB_KEY = _assembled("2FCZCVqjABZaZwNvm1QNa48L4hEkF5w92fc4F85uEY0", "=")
_COSMOS_KEY = _assembled(
    "JkqtbLbdIQ+vlKzTz5LBkCN8sR9dEIzyWTAmOTizcKG1dp+g8Ug/", "lakNnfLxMNYPzwS9k/UK5pUU2oxlnOKxDA=="
)
_STORAGE_KEY = _assembled(
    "zNrr+ZDRmDiw1+wLPpeBjsuWxNutvhciltUjSkKyTGuk5u0k7GNq", "isChJx5YZieSOKr4TlgFbY8vqO3QlLqXrg=="
)
# Setting names are not case-sensitive; the rest of the pattern is (far quicker for `regex`).
_SB_ENDPOINT = r"(?i:endpoint)=sb://[A-Za-z0-9.\-]{1,100}\.servicebus\." + _CLOUD
_SB_SECRET = r"(?i:sharedaccesskey)=[A-Za-z0-9+/]{43}="  # noqa: S105 (a pattern)
_COSMOS_ENDPOINT = (
    r"(?i:accountendpoint)=https://[A-Za-z0-9.\-]{1,100}\.documents\.azure\.(?:com|cn|us)"
)
_ACCOUNT_SECRET = r"(?i:accountkey)=[A-Za-z0-9+/]{86}=="  # noqa: S105 (a pattern)
# IoT Hub (a service's or a device's string) and its Device Provisioning Service.
_IOT_HOST = r"(?i:hostname)=[A-Za-z0-9.\-]{1,100}\.azure-devices(?:-provisioning)?\.(?:net|cn|us)"
_APPCONFIG_ENDPOINT = (
    r"(?i:endpoint)=https://[A-Za-z0-9.\-]{1,100}\.azconfig\.(?:io|azure\.cn|azure\.us)"
)
_APPCONFIG_SECRET = r"(?i:secret)=[A-Za-z0-9+/]{43}="  # noqa: S105 (a pattern)


def _either_order(where: str, secret: str, *, end: str = "", settings: str = _SETTINGS) -> str:
    """The setting naming the host and the one holding the secret, in either order, other
    settings between: the portal writes one order, people and tools also the other. `end`:
    what may close the host's setting when the secret follows it (a port, a slash)."""
    return f"{where}{end};{settings}{secret}|{secret};{settings}{where}"


_IOT_KEY = _assembled("LnEFW9ia6Z8D43EPuOA+Lsy/", "TYC03o74Zfhxh0qFjPo=")
_DEVICE_KEY = _assembled("eVyipn3UwE40OL4nUw3tJ6+P", "dVzLpaHcvc9faq9mCho=")
_APPCONFIG_KEY = _assembled("hou7lpk2ZaDXKB28cAP27DDf", "rzPKwgPk+rZH798vkhQ=")

AZURE_CONNECTION_STRING = Rule(
    type="azure_connection_string",
    # Service Bus and Event Hubs (Endpoint=sb://...;SharedAccessKey=), IoT Hub
    # (HostName=...azure-devices.net;SharedAccessKey=), App Configuration
    # (Endpoint=https://...azconfig.io;Id=...;Secret=), Cosmos DB (AccountEndpoint=...;
    # AccountKey=) and storage (DefaultEndpointsProtocol=...;AccountKey=), settings in any
    # order and any case.
    pattern=r"(?P<v>"
    + "|".join(
        (
            _either_order(_SB_ENDPOINT, _SB_SECRET, end="/?"),
            _either_order(_IOT_HOST, _SB_SECRET),
            _either_order(_APPCONFIG_ENDPOINT, _APPCONFIG_SECRET, end="/?"),
            _either_order(_COSMOS_ENDPOINT, _ACCOUNT_SECRET, end="(?::443)?/?"),
            r"(?i:defaultendpointsprotocol)=https?;" + _SETTINGS + _ACCOUNT_SECRET,
        )
    )
    + ")",
    # The key (or App Configuration's host) every match holds: the full pattern is slow for
    # Hyperscan to compile.
    hyperscan_pattern=_SB_SECRET + "|" + _ACCOUNT_SECRET + r"|\.azconfig\.",
    validate=validators.azure_connection_string,
    score=_high,
    normalise=validators.connection_secret,
    atoms=("sharedaccesskey", "accountkey", ".azconfig."),
    keywords=joined("connection string", "service bus", "event hubs", "cosmos"),
    placeholders=True,
    context_matters=True,
    true_examples=(
        "Endpoint=sb://orders-prod.servicebus.windows.net/;SharedAccessKeyName="
        "RootManageSharedAccessKey;SharedAccessKey=" + _SB_KEY,
        "EVENTHUB=Endpoint=sb://telemetry7.servicebus.windows.net/;SharedAccessKeyName=send;"
        "SharedAccessKey=" + _SB_KEY + ";EntityPath=clicks",
        "SharedAccessKey=" + _SB_KEY + ";SharedAccessKeyName=send;"
        "Endpoint=sb://telemetry7.servicebus.windows.net/",
        "endpoint=sb://telemetry7.servicebus.windows.net/;sharedaccesskeyname=send;"
        "sharedaccesskey=" + _SB_KEY,
        "AccountEndpoint=https://catalog-db.documents.azure.com:443/;AccountKey="
        + _COSMOS_KEY
        + ";",
        "AccountEndpoint=https://catalog-db.documents.azure.com:443/;Database=catalog;"
        "AccountKey=" + _COSMOS_KEY,
        "DefaultEndpointsProtocol=https;AccountName=stfinance7;AccountKey="
        + _STORAGE_KEY
        + ";EndpointSuffix=core.windows.net",
        "DefaultEndpointsProtocol=https;BlobEndpoint=https://stfinance7.blob.core.windows.net/;"
        "QueueEndpoint=https://stfinance7.queue.core.windows.net/;"
        "TableEndpoint=https://stfinance7.table.core.windows.net/;"
        "FileEndpoint=https://stfinance7.file.core.windows.net/;AccountName=stfinance7;"
        "AccountKey=" + _STORAGE_KEY,
        "IOTHUB_CONNECTION_STRING=HostName=plant-telemetry-hub.azure-devices.net;"
        "SharedAccessKeyName=iothubowner;SharedAccessKey=" + _IOT_KEY,
        # A device's own string, and a module's
        "HostName=plant-telemetry-hub.azure-devices.net;DeviceId=press-line-04;"
        "SharedAccessKey=" + _DEVICE_KEY,
        "SharedAccessKey=" + _DEVICE_KEY + ";DeviceId=press-line-04;ModuleId=vision;"
        "HostName=plant-telemetry-hub.azure-devices.net",
        "HostName=plant-dps.azure-devices-provisioning.net;"
        "SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=" + _IOT_KEY,
        '"AppConfig": "Endpoint=https://appcs-orders-prod.azconfig.io;Id=Q7rX-l0-s0:'
        "Vb2nK8pZ4wT1mS6dF9hJ;Secret=" + _APPCONFIG_KEY + '"',
        "secret=" + _APPCONFIG_KEY + ";id=Q7rX-l0-s0:Vb2nK8pZ4wT1mS6dF9hJ;"
        "endpoint=https://appcs-orders-prod.azconfig.io",
    ),
    false_examples=(
        "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=Root;"
        "SharedAccessKey=" + _SB_KEY,
        "Endpoint=sb://orders-prod.servicebus.windows.net/;SharedAccessKeyName=Root;"
        "SharedAccessKey=<key>",
        "Endpoint=sb://orders-prod.servicebus.windows.net/;SharedAccessKeyName=Root;"
        "SharedAccessKey=" + "A" * 43 + "=",
        "DefaultEndpointsProtocol=https;AccountName=devstoreaccount1;AccountKey="
        + validators.EMULATOR_STORAGE_KEY,
        "HostName=contoso-hub.azure-devices.net;DeviceId=sensor-01;SharedAccessKey=" + _DEVICE_KEY,
        "HostName=plant-telemetry-hub.azure-devices.net;DeviceId=press-line-04;"
        "SharedAccessKey=" + "A" * 43 + "=",
        "az appconfig kv list --connection-string "
        "Endpoint=https://appcs-orders-prod.azconfig.io;Id=xxx;Secret=xxx",
        # the key, but no host says which service it opens
        "DeviceId=press-line-04;SharedAccessKey=" + _DEVICE_KEY,
    ),
)

_SQL_SERVER = (
    r"(?:(?:server|data source)\s*=\s*(?:tcp:)?|jdbc:sqlserver://)[A-Za-z0-9.\-]{1,100}"
    r"\.database\." + _CLOUD + r"(?:[,:][0-9]{1,5})?"
)
_SQL_PASSWORD = (
    r"(?:password|pwd)\s*=\s*"  # noqa: S105 (a pattern)
    r"(?:'[^'\r\n]{1,128}'|\"[^\"\r\n]{1,128}\"|\{[^}\r\n]{1,128}\}|[^;\s'\"]{1,128})"
)
_SQL_SETTINGS = r"(?:[^;\r\n]{1,200};){0,16}?[ ]?"

AZURE_SQL_CONNECTION_STRING = Rule(
    type="azure_connection_string",
    # Azure SQL (ADO.NET, ODBC or JDBC): a server in database.windows.net and a password, in
    # either order; keys in any case.
    pattern=r"(?P<v>" + _either_order(_SQL_SERVER, _SQL_PASSWORD, settings=_SQL_SETTINGS) + ")",
    hyperscan_pattern=r"\.database\." + _CLOUD,  # in every match; quick to compile
    ignore_case=True,
    validate=validators.azure_connection_string,
    score=_high,
    normalise=validators.connection_secret,
    atoms=(".database.",),
    keywords=joined("connection string", "sql", "azure sql"),
    placeholders=True,
    context_matters=True,
    preview_chars=2,
    true_examples=(
        "Server=tcp:sql-orders-4.database.windows.net,1433;Initial Catalog=orders;"
        "User ID=svc_orders;Password=h7Gq!x2pLm9z;Encrypt=True;",
        "server=sql-orders-4.database.windows.net;database=orders;uid=svc;pwd=Kd8#wQ2mZ5",
        # The JDBC string the portal offers
        "jdbc:sqlserver://sql-orders-4.database.windows.net:1433;database=orders;"
        "user=svc_orders@sql-orders-4;password=h7Gq!x2pLm9z;encrypt=true;"
        "trustServerCertificate=false;hostNameInCertificate=*.database.windows.net;"
        "loginTimeout=30;",
        "Server = tcp:sql-orders-4.database.windows.net,1433; Database = orders; "
        "User Id = svc_orders; Password = h7Gq!x2pLm9z;",
        "Password=h7Gq!x2pLm9z;User ID=svc_orders;Initial Catalog=orders;"
        "Server=tcp:sql-orders-4.database.windows.net,1433",
    ),
    false_examples=(
        "Server=tcp:sql-orders-4.database.windows.net,1433;User ID=svc;Password={your_password};",
        "Server=tcp:contoso.database.windows.net;User ID=admin;Password=Pa55word!;",
        "Server=sql01.corp.local;User ID=svc;Password=h7Gq!x2pLm9z;",  # not Azure SQL
    ),
)

# --- AI and developer platforms -----------------------------------------------------------

OPENAI_API_KEY = Rule(
    type="openai_api_key",
    # `sk-` (or sk-proj-, sk-svcacct-, sk-admin-) with `T3BlbkFJ` (base64 of "OpenAI") inside.
    pattern=r"(?<![A-Za-z0-9_\-])(?P<v>sk-(?:(?:proj|svcacct|admin)-)?[A-Za-z0-9_\-]{16,200}"
    r"T3BlbkFJ[A-Za-z0-9_\-]{16,200})(?![A-Za-z0-9_\-])",
    # What every match holds: Hyperscan scans the full pattern's runs of key characters
    # in quadratic time when the text repeats `sk-...`.
    hyperscan_pattern=r"T3BlbkFJ[A-Za-z0-9_\-]{16}",
    validate=_after_prefix("T3BlbkFJ", validators.token_like),
    score=_high,
    atoms=("t3blbkfj",),
    keywords=joined("openai", "api key", "gpt", "chatgpt"),
    placeholders=True,
    true_examples=(
        "OPENAI_API_KEY="
        + _assembled("sk-LGlkoMXGjtEkDnNfribx", "T3BlbkFJ", "Udl7dXTPyLsxPFkThf4V"),
        _assembled(
            "sk-proj-ucSmEHgaKwVJ7faC9qEwjky40UVsWmflzdE1F8ResqEDusTpkr0cStY4qWB8dWKnHfDNxSIvPZ",
            "T3BlbkFJ",
            "Z63fFKcZjR4I0b3jRtaWr4Y9OJFLJOqOAf1lLQSAJaiXnkU8Is2g8nprvDd53x83rzjZZZZGeo",
        ),
    ),
    false_examples=(
        "sk-LGlkoMXGjtEkDnNfribxUdl7dXTPyLsxPFkThf4V",  # no OpenAI marker
        "sk-xxxxxxxxxxxxxxxxxxxxT3BlbkFJxxxxxxxxxxxxxxxxxxxx",
    ),
)

_GITLAB_PREFIXES = (
    "glpat", "gldt", "glrt", "glcbt", "glptt", "glft", "glimt", "glagent", "gloas", "glsoat",
    "glffct",
)  # fmt: skip

GITLAB_TOKEN = Rule(
    type="gitlab_token",
    # GitLab's token prefixes (personal, deploy, runner, CI job, trigger, feed, incoming
    # mail, agent, OAuth secret, service account, feature flags), the routable form's
    # `.01.` and CRC suffix, and the runner registration token prefix GR1348941.
    pattern=rf"(?<![A-Za-z0-9_\-])(?P<v>(?:{'|'.join(_GITLAB_PREFIXES)})-[0-9A-Za-z_\-]{{20,64}}"
    r"(?:\.[0-9a-z]{2}\.[0-9a-z]{9})?|GR1348941[0-9A-Za-z_\-]{20})(?![A-Za-z0-9_\-])",
    # A superset for Hyperscan: the alternation of prefixes scans in quadratic time on text
    # that repeats one of them.
    hyperscan_pattern=r"gl[a-z]{2,5}-[0-9A-Za-z_\-]{20}|GR1348941[0-9A-Za-z_\-]{20}",
    validate=lambda value: validators.token_like(value[9:] if value[:2] == "GR" else value),
    score=_high,
    atoms=(*(f"{prefix}-" for prefix in _GITLAB_PREFIXES), "gr1348941"),
    keywords=("gitlab", "token", "private-token"),
    placeholders=True,
    true_examples=(
        "PRIVATE-TOKEN: " + _assembled("gl", "pat-ZDMENcKHVmDGAkJiG8Xn"),
        "runner " + _assembled("gl", "rt-t1_ZDMENcKHVmDGAkJiG8XnqW7e"),
        _assembled("GR13", "48941", "ZDMENcKHVmDGAkJiG8Xn"),
    ),
    false_examples=("glpat-xxxxxxxxxxxxxxxxxxxx", "glpat-short", "glpat-<your_access_token>"),
)


def _npm_token(value: str) -> bool:
    if value.startswith("npm_"):
        return validators.token_like(value[4:])
    return validators.hex_token(value.replace("-", ""))  # a legacy token: a UUID


NPM_TOKEN = Rule(
    type="npm_token",
    # Access tokens (npm_ + 36), and the UUIDs npm issued before them, recognised by where
    # they are written: `_authToken=` in .npmrc (`//registry.npmjs.org/:_authToken=...`),
    # or after it in `npm config set`.
    pattern=r"(?<![A-Za-z0-9_])(?P<v>npm_[A-Za-z0-9]{36})(?![A-Za-z0-9_])"
    r"|(?<![A-Za-z0-9])_authToken(?:[ \t]*=[ \t]*|[ \t]+)[\"']?(?P<v>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}"
    r"-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(?![A-Za-z0-9_\-])",
    hyperscan_pattern=r"npm_[A-Za-z0-9]{8}|_authToken[ \t=]",  # see _SHORT_REPEATS
    validate=_npm_token,
    score=_high,
    atoms=("npm_", "_authtoken"),
    keywords=("npm", "npmrc", "_authtoken", "registry.npmjs.org"),
    placeholders=True,
    true_examples=(
        "//registry.npmjs.org/:_authToken="
        + _assembled("np", "m_BE3NnYJoQ9WmXeHH2fdeeTFJGvVvQe1sKhBN"),
        "//registry.npmjs.org/:_authToken="
        + _assembled("c2f7a9d4-3b1e-4f", "86-9a5d-e07b4c81f3a2"),
        "npm config set //npm.corp.local/:_authToken "
        "'" + _assembled("5e8b1d3f-a7c2-4e9", "0-b614-2d9f07ac58e3") + "'",
    ),
    false_examples=(
        "npm_XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        "npm_install_dependencies_for_the_build",
        "//registry.npmjs.org/:_authToken=${NPM_TOKEN}",
        "//registry.npmjs.org/:_authToken=00000000-0000-0000-0000-000000000000",
        # a UUID anywhere else is an id, not a token
        "NPM_PACKAGE_ID=" + _assembled("c2f7a9d4-3b1e-4f", "86-9a5d-e07b4c81f3a2"),
    ),
)

PYPI_TOKEN = Rule(
    type="pypi_token",
    # A macaroon (base64url) whose first caveat is its location, pypi.org or test.pypi.org.
    pattern=r"(?<![A-Za-z0-9_\-])(?P<v>pypi-Ag[A-Za-z0-9_\-]{60,400})(?![A-Za-z0-9_\-])",
    hyperscan_pattern=r"pypi-Ag[A-Za-z0-9_\-]{8}",  # see _SHORT_REPEATS
    validate=validators.pypi_token,
    score=_high,
    atoms=("pypi-ag",),
    keywords=("pypi", "twine", "__token__"),
    placeholders=True,
    true_examples=(
        "TWINE_PASSWORD="
        + _assembled(
            "pypi-AgEIcHlwaS5vcmcCAQhVfarGRm-WzKd0WSYf6h4scDU9JDbVNnk3a32eLkS",
            "muV1hzh7fL3WOyjHPD-WQc1OwRK2uVICyhLeu3Yc",
        ),
        _assembled(
            "pypi-AgENdGVzdC5weXBpLm9yZwIBQXAxjtFEhHuyFMbIKw7Ixpn8KRvKNxviX5Fvj5Ts",
            "iw75Up0_WHD5MJAJ5Ebhi80KWueyxZHVBRlSi_mB",
        ),
    ),
    false_examples=(
        # base64url of something other than a PyPI macaroon
        "pypi-AgFvdGhlci5leGFtcGxlLm9yZwIBQXAxjtFEhHuyFMbIKw7Ixpn8KRvKNxviX5Fvj5Ts",
    ),
)

SENDGRID_API_KEY = Rule(
    type="sendgrid_api_key",
    # SG. + a 22-character key id + . + a 43-character secret (base64url).
    pattern=r"(?<![A-Za-z0-9_\-.])(?P<v>SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43})"
    r"(?![A-Za-z0-9_\-])",
    validate=_after_prefix(".", lambda rest: all(map(validators.token_like, rest.split(".")))),
    score=_high,
    atoms=("sg.",),
    keywords=joined("sendgrid", "api key", "smtp"),
    placeholders=True,
    true_examples=(
        "SENDGRID_API_KEY="
        + _assembled(
            "SG", ".88hXJsi6BwhTp3Fs2QhX6K.", "WxOiixgVoOnzyw2MzP0ZvzOMhfWuBByReQMsm9Wcz7u"
        ),
    ),
    false_examples=(
        "SG.xxxxxxxxxxxxxxxxxxxxxx.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "SG.88hXJsi6BwhTp3Fs2QhX6K.short",
    ),
)

TWILIO_API_KEY = Rule(
    type="twilio_api_key",
    # An API key SID: SK and 32 lower-case hex digits.
    pattern=r"(?<![A-Za-z0-9])(?P<v>SK[0-9a-f]{32})(?![A-Za-z0-9])",
    validate=lambda value: validators.hex_token(value[2:]),
    score=lambda evidence: 85 if evidence.keyword else 75,
    atoms=("sk",),
    keywords=joined("twilio", "api key", "sid", "auth token"),
    placeholders=True,
    true_examples=(
        "TWILIO_API_KEY=" + _assembled("SK", "bb2737f6a6f0fb23c6f5da2cec255404"),
        "twilio key " + _assembled("SK", "e4fb440034d6608697a8d41bed440e50"),
    ),
    false_examples=(
        "SK00000000000000000000000000000000",
        "SKU 12345",
        "SKBB2737F6A6F0FB23C6F5DA2CEC255404",
    ),
)

DATABRICKS_TOKEN = Rule(
    type="databricks_token",
    pattern=r"(?<![A-Za-z0-9_])(?P<v>dapi[0-9a-f]{32}(?:-[0-9]{1,2})?)(?![A-Za-z0-9_\-])",
    hyperscan_pattern=r"dapi[0-9a-f]{8}",  # see _SHORT_REPEATS
    validate=lambda value: validators.hex_token(value[4:36]),
    score=_high,
    atoms=("dapi",),
    keywords=("databricks", "token", "pat"),
    placeholders=True,
    true_examples=(
        "DATABRICKS_TOKEN=" + _assembled("da", "pie4fb440034d6608697a8d41bed440e50"),
        "Authorization: Bearer " + _assembled("da", "pibb2737f6a6f0fb23c6f5da2cec255404-2"),
    ),
    false_examples=("dapi00000000000000000000000000000000", "dapi_version 2"),
)

# --- credentials in URLs ------------------------------------------------------------------

URL_CREDENTIALS = Rule(
    type="url_credentials",
    # RFC 3986 userinfo: scheme://user:password@host; the password is the value.
    # (RFC 3986 wants `#` percent-encoded; people paste passwords with it raw.)
    pattern=r"(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]{1,20}://[^\s:/?#@'\"<>]{0,64}:"
    r"(?P<v>[^\s:/?@'\"<>]{1,128})@(?=[A-Za-z0-9\[])",
    validate=validators.url_password,
    score=_high,
    atoms=("://",),
    keywords=("url", "connection", "dsn", "database", "uri"),
    placeholders=True,
    context_matters=True,
    preview_chars=2,
    true_examples=(
        "DATABASE_URL=postgres://app:Wq7!zN3kP9@db-prod.internal:5432/orders",
        "git clone https://deploy:Tr5%23mK8vL2@git.corp.local/team/repo.git",
        "jdbc:mysql://report:Xb6$hQ2nJ7@10.20.4.17:3306/sales",
        "redis://:Mz4%40pR8wC1@cache-01.corp.local:6379/0",
        "postgresql://billing:Nq5#kR2vX8m@pg-prod.corp.local:5432/billing",
    ),
    false_examples=(
        "postgres://user:password@localhost:5432/db",
        "https://user:pass@example.com/",
        "mongodb://admin:${MONGO_PASSWORD}@mongo:27017",
        "http://proxy.corp.local:8080/path@v2",
        "amqp://guest:guest@rabbit.corp.local:5672",
        # A port and JDBC properties up to the user's `@server`: no userinfo
        "jdbc:sqlserver://sql-orders-4.database.windows.net:1433;database=orders;"
        "user=svc_orders@sql-orders-4;password=h7Gq!x2pLm9z",
    ),
)

RULES: tuple[Rule, ...] = (
    AZURE_CONNECTION_STRING,
    AZURE_SQL_CONNECTION_STRING,
    AZURE_SAS_TOKEN,
    OPENAI_API_KEY,
    GITLAB_TOKEN,
    NPM_TOKEN,
    PYPI_TOKEN,
    SENDGRID_API_KEY,
    TWILIO_API_KEY,
    DATABRICKS_TOKEN,
    URL_CREDENTIALS,
)
