"""One typed, validated configuration per environment, read from
`runtime/environments/<env>/stack.toml`: an environment is one folder, its stack settings beside
the runtime's policy and subscriptions.

Every rule is checked before any construct exists, so a bad file stops synth with a message
naming the file, the key and the rule, and all problems of a file are reported together.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from graphtap.clouds import CLOUDS, DEFAULT_CLOUD, PUBLIC, Cloud
from graphtap.deployment import DESTINATIONS, FINDINGS_HUB, LOG_ANALYTICS
from stacks.naming import CLOUD_REGIONS, REGIONS, Names

ENVIRONMENTS_DIR = Path(__file__).resolve().parents[1] / "runtime" / "environments"
STACK_FILE = "stack.toml"

ENVIRONMENT_NAME = re.compile(r"[a-z][a-z0-9]{1,7}")
PREFIX = re.compile(r"[a-z][a-z0-9]{1,11}")
DOMAIN = re.compile(r"(?=.{4,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,63}")
GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
GRAPH_PERMISSION = re.compile(r"[A-Z][A-Za-z]*(\.[A-Z][A-Za-z]*)+")
STATE_KEY = re.compile(r"[A-Za-z0-9._/-]+\.tfstate")

EVENTHUB_SKUS = ("Standard", "Premium")
# Dedicated Linux plans (always on available); Free/Shared tiers cannot host the runtime.
APP_SERVICE_SKUS = ("B1", "B2", "B3", "S1", "S2", "S3", "P0v3", "P1v3", "P2v3", "P3v3")
PYTHON_VERSIONS = ("3.11", "3.12")
PROCESSORS = ("webapp", "function", "both")
FUNCTION_MEMORY_MB = (512, 2048, 4096)
#: The windows Azure Monitor allows a log alert, in minutes (15 and up).
ALERT_WINDOWS = (15, 30, 45, 60, 120, 180, 240, 300, 360, 1440)
# Graph rejects write-only grants for subscriptions; `.Shared` variants cannot subscribe.
WRITE_OR_SHARED = re.compile(r"\.(ReadWrite|Write|Shared)\b")

Processor = Literal["webapp", "function", "both"]


class ConfigError(ValueError):
    """An environment file breaks one or more rules."""

    def __init__(self, path: Path, problems: list[tuple[str, str]]) -> None:
        self.path = path
        self.problems = problems
        lines = [f"{path}: {key}: {rule}" for key, rule in problems]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class EventHubsConfig:
    sku: str
    capacity: int
    auto_inflate_max: int  # 0 turns auto-inflate off
    partitions: int
    retention_hours: int

    @property
    def retention_days(self) -> int:
        """Whole days an event can still be read (a partial day counts)."""
        return -(-self.retention_hours // 24)


@dataclass(frozen=True)
class HostingConfig:
    processor: Processor  # where notifications are processed; the web app always runs
    app_service_sku: str
    python_version: str
    function_max_instances: int
    function_memory_mb: int

    @property
    def function_app(self) -> bool:
        return self.processor in ("function", "both")


@dataclass(frozen=True)
class GraphConfig:
    endpoint: str  # one of the cloud's Graph origins (`Cloud.graph_endpoints`)
    permissions: tuple[str, ...]
    #: A storage account Graph writes rich payloads over 1 MB into (`blobStoreUrl`); without
    #: one, such a notification cannot be delivered whole and is dead-lettered.
    large_payloads: bool = False


@dataclass(frozen=True)
class NetworkConfig:
    address_space: str
    operator_ip_ranges: tuple[str, ...]  # who may reach Key Vault and storage besides the apps


@dataclass(frozen=True)
class AccessConfig:
    """Who may read the web app; App Service Authentication (Entra ID) fronts every page but
    /healthz, and the status app registration's roles decide who gets in."""

    status_readers_group: str | None  # Entra group object id: Status.Read (page, JSON, metrics)
    metrics_scraper: str | None  # service principal object id: Metrics.Read (/metrics only)


@dataclass(frozen=True)
class FindingsConfig:
    """Where verdicts go: the findings hub, Log Analytics (the verdict table), or both."""

    destinations: tuple[str, ...]

    @property
    def log_analytics(self) -> bool:
        return LOG_ANALYTICS in self.destinations

    @property
    def findings_hub(self) -> bool:
        return FINDINGS_HUB in self.destinations


@dataclass(frozen=True)
class AlertsConfig:
    """Who the operator alerts reach and when they fire (README "Sentinel and alerts")."""

    emails: tuple[str, ...]
    webhook_url: str | None  # https, and no token in it: it is kept in the repo and the state
    expiry_hours: int  # a subscription this close to expiry (the control plane renews earlier)
    lag_events: int  # a partition at least this far behind for a whole window
    dead_letter_percent: float  # of the items of the last hour
    silence_minutes: int  # this long without a verdict while the hub receives


@dataclass(frozen=True)
class BackendConfig:
    resource_group: str
    storage_account: str
    container: str
    key: str
    use_azuread_auth: bool


@dataclass(frozen=True)
class EnvironmentConfig:
    name: str
    source: Path
    prefix: str
    cloud: Cloud  # the cloud profile: every host name, the providers' environment, sign-in
    region: str
    tenant_domain: str
    subscription_id: str | None
    log_retention_days: int
    eventhubs: EventHubsConfig
    hosting: HostingConfig
    graph: GraphConfig
    network: NetworkConfig
    access: AccessConfig
    findings: FindingsConfig
    alerts: AlertsConfig
    backend: BackendConfig
    sentinel: bool = False  # Microsoft Sentinel on the workspace: analytics rule, workbook
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def names(self) -> Names:
        return Names.derive(self.prefix, self.name, self.region)

    @property
    def azuread_environment(self) -> str:
        """The azuread provider's name for the Graph deployment the environment uses."""
        service = self.cloud.graph_service(self.graph.endpoint)
        assert service is not None, "graph.endpoint is checked against the cloud when read"
        return service.azuread_environment


def load_all(directory: Path = ENVIRONMENTS_DIR) -> list[EnvironmentConfig]:
    """Every environment folder's `stack.toml` in `directory`, sorted by name; adding a
    folder adds a stack."""
    paths = sorted(directory.glob(f"*/{STACK_FILE}"))
    if not paths:
        raise FileNotFoundError(f"no environments (*/{STACK_FILE}) in {directory}")
    return [load(path) for path in paths]


def environment_name(path: Path) -> str:
    """`<env>/stack.toml` names its environment by its folder (any other file by its stem)."""
    return path.parent.name if path.name == STACK_FILE else path.stem


def load(path: Path) -> EnvironmentConfig:
    """Read and validate one environment file; raises ConfigError listing every problem."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [("(file)", f"not valid TOML: {exc}")]) from exc
    reader = _Reader(path, raw)
    config = reader.build()
    if reader.problems:
        raise ConfigError(path, reader.problems)
    assert config is not None
    return config


T = TypeVar("T")
Check = Callable[[Any], str | None]
#: A key without a default: the file must give it.
REQUIRED: Any = object()


@dataclass(frozen=True)
class Key:
    """One key of an environment file: its type, its default and the rule its value obeys."""

    kind: type
    default: Any = REQUIRED
    rule: Check | None = None
    each: Check | None = None  # lists: the rule every item obeys
    optional: bool = False  # may be left out: None (a rule in `RULES` may then supply it)


def _schema() -> dict[str, dict[str, Key]]:
    """Every key of an environment file, table by table ("" is the top level). A new key is
    one line here and its field in the dataclass the table builds; a rule that needs another
    key's value is in `RULES`."""
    guid_object = _matches(GUID, "a lowercase GUID (object id)")
    return {
        "": {
            "prefix": Key(str, rule=_matches(PREFIX, "2-12 lowercase letters/digits")),
            "cloud": Key(str, DEFAULT_CLOUD, _one_of(tuple(CLOUDS), "cloud profile")),
            "region": Key(str),  # one of the cloud's regions: `_region`
            "tenant_domain": Key(str, rule=_matches(DOMAIN, "a DNS domain, e.g. contoso.com")),
            "subscription_id": Key(str, optional=True, rule=_matches(GUID, "a lowercase GUID")),
            "log_retention_days": Key(int, 30, _between(30, 730, "Log Analytics retention")),
            "tags": Key(dict, {}, _string_table),
            "sentinel": Key(bool, False),  # needs the verdict table: `_sentinel`
        },
        "eventhubs": {
            "sku": Key(str, "Standard", _one_of(EVENTHUB_SKUS, "SKU")),
            "capacity": Key(int, 1, _between(1, 40, "throughput units")),
            "auto_inflate_max": Key(int, 0, _between(0, 40, "units")),  # and `_auto_inflate`
            "partitions": Key(int, 4, _between(1, 32, "partitions")),
            "retention_hours": Key(int, 24),  # its ceiling is the SKU's: `_retention`
        },
        "hosting": {
            "processor": Key(str, "webapp", _one_of(PROCESSORS, "value")),
            "app_service_sku": Key(str, "B1", _one_of(APP_SERVICE_SKUS, "App Service SKU")),
            "python_version": Key(str, "3.11", _one_of(PYTHON_VERSIONS, "Python version")),
            "function_max_instances": Key(int, 40, _between(40, 1000, "instances")),
            "function_memory_mb": Key(int, 2048, _one_of(FUNCTION_MEMORY_MB, "size")),
        },
        "graph": {
            "endpoint": Key(str, optional=True),  # the cloud's by default: `_graph_endpoint`
            "permissions": Key(
                list, ["Chat.Read.All", "ChannelMessage.Read.All"], _permissions, _permission
            ),
            "large_payloads": Key(bool, False),
        },
        "network": {
            "address_space": Key(str, "10.42.0.0/24", _cidr(24)),
            "operator_ip_ranges": Key(list, [], each=_public_cidr),
        },
        "access": {
            "status_readers_group": Key(str, optional=True, rule=guid_object),
            "metrics_scraper": Key(str, optional=True, rule=guid_object),
        },
        "findings": {
            "destinations": Key(list, [FINDINGS_HUB], _destinations, _destination),
        },
        "alerts": {  # at least one receiver: `_receivers`
            "emails": Key(list, [], each=_matches(EMAIL, "an email address")),
            "webhook_url": Key(str, optional=True, rule=_webhook),
            "expiry_hours": Key(int, 6, _between(1, 12, "hours before a subscription expires")),
            "lag_events": Key(int, 10_000, _between(100, 10_000_000, "events behind")),
            "dead_letter_percent": Key(float, 5.0, _percent),
            "silence_minutes": Key(int, 60, _one_of(ALERT_WINDOWS, "log alert window (minutes)")),
        },
        "backend": {
            "resource_group": Key(str),
            "storage_account": Key(
                str, rule=_matches(re.compile(r"[a-z0-9]{3,24}"), "3-24 lowercase letters/digits")
            ),
            "container": Key(
                str,
                "tfstate",
                _matches(re.compile(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]"), "container name"),
            ),
            "key": Key(str, optional=True),  # graphtap-<env>.tfstate by default: `_state`
            "use_azuread_auth": Key(
                bool,
                True,
                lambda on: None if on else "must be true: state is read with Entra ID, no keys",
            ),
        },
    }


#: A file's values as read: table -> key -> value ("" is the top level).
Values = dict[str, dict[str, Any]]


class _Reader:
    """Reads every key the schema declares, records every rule broken on the way, then runs
    the rules that relate keys (`RULES`) and builds the typed configuration."""

    def __init__(self, path: Path, raw: dict[str, Any]) -> None:
        self.path = path
        self.raw = raw
        self.problems: list[tuple[str, str]] = []

    def fail(self, key: str, rule: str) -> None:
        self.problems.append((key, rule))

    def read(self, schema: Mapping[str, Mapping[str, Key]]) -> Values:
        tables = [name for name in schema if name]
        known = {*schema[""], *tables}
        for key in sorted(set(self.raw) - known):
            self.fail(key, f"unknown key (known: {', '.join(sorted(known))})")
        values: Values = {"": self._table("", self.raw, schema[""])}
        for name in tables:
            table = self.raw.get(name, {})
            if not isinstance(table, dict):
                self.fail(name, "must be a table")
                table = {}
            for key in sorted(set(table) - set(schema[name])):
                self.fail(
                    f"{name}.{key}", f"unknown key (known: {', '.join(sorted(schema[name]))})"
                )
            values[name] = self._table(name, table, schema[name])
        return values

    def _table(
        self, name: str, table: Mapping[str, Any], keys: Mapping[str, Key]
    ) -> dict[str, Any]:
        return {
            key: self._value(f"{name}.{key}" if name else key, table.get(key, spec.default), spec)
            for key, spec in keys.items()
        }

    def _value(self, where: str, value: Any, key: Key) -> Any:
        if value is None or value is REQUIRED:
            if key.optional:
                return None
            self.fail(where, f"is required ({key.kind.__name__})")
            return _placeholder(key.kind)
        if key.kind is list:
            if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                self.fail(where, "must be a list of strings")
                return ()
            for item in value:
                if key.each is not None and (problem := key.each(item)):
                    self.fail(where, problem)
            value = tuple(value)
        elif key.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)  # TOML writes 5 for 5.0
        elif not isinstance(value, key.kind) or (key.kind is int and isinstance(value, bool)):
            self.fail(where, f"must be {key.kind.__name__}, got {type(value).__name__} {value!r}")
            return _placeholder(key.kind)
        if key.rule is not None and (problem := key.rule(value)):
            self.fail(where, problem)
        return value

    def build(self) -> EnvironmentConfig | None:
        name = environment_name(self.path)
        if not ENVIRONMENT_NAME.fullmatch(name):
            self.fail("(file name)", "the environment name must be 2-8 lowercase letters/digits")
        values = self.read(_schema())
        for rule in RULES:
            for key, problem in rule(values, name):
                self.fail(key, problem)
        top = values[""]
        if not self.problems:
            for problem in Names.derive(top["prefix"], name, top["region"]).violations():
                self.fail("prefix", problem)
        if self.problems:
            return None
        tables = {t: v for t, v in values.items() if t}
        return EnvironmentConfig(
            name=name,
            source=self.path,
            prefix=top["prefix"],
            cloud=CLOUDS[top["cloud"]],
            region=top["region"],
            tenant_domain=top["tenant_domain"],
            subscription_id=top["subscription_id"],
            log_retention_days=top["log_retention_days"],
            eventhubs=EventHubsConfig(**tables["eventhubs"]),
            hosting=HostingConfig(**tables["hosting"]),
            graph=GraphConfig(**tables["graph"]),
            network=NetworkConfig(**tables["network"]),
            access=AccessConfig(**tables["access"]),
            findings=FindingsConfig(**tables["findings"]),
            alerts=AlertsConfig(**tables["alerts"]),
            backend=BackendConfig(**tables["backend"]),
            sentinel=top["sentinel"],
            tags=dict(top["tags"]),
        )


def _cloud(values: Values) -> Cloud | None:
    return CLOUDS.get(values[""]["cloud"])


def _region(values: Values, name: str) -> Iterator[tuple[str, str]]:
    """The region must be one of the file's cloud's (any known region if the cloud is bad)."""
    cloud_name = values[""]["cloud"]
    cloud = _cloud(values)
    regions = CLOUD_REGIONS[cloud.name] if cloud is not None else REGIONS
    check = _one_of(tuple(regions), f"Azure region of the {cloud_name} cloud")
    region = values[""]["region"]
    if region and (problem := check(region)):
        yield "region", problem


def _auto_inflate(values: Values, name: str) -> Iterator[tuple[str, str]]:
    hubs = values["eventhubs"]
    inflate = hubs["auto_inflate_max"]
    if inflate and inflate < hubs["capacity"]:
        yield "eventhubs.auto_inflate_max", "must be 0 (off) or at least capacity"
    if inflate and hubs["sku"] != "Standard":
        yield "eventhubs.auto_inflate_max", "auto-inflate exists on Standard only"


def _retention(values: Values, name: str) -> Iterator[tuple[str, str]]:
    hubs = values["eventhubs"]
    ceiling = 168 if hubs["sku"] == "Standard" else 2160
    if problem := _between(1, ceiling, f"{hubs['sku']} retention")(hubs["retention_hours"]):
        yield "eventhubs.retention_hours", problem


def _graph_endpoint(values: Values, name: str) -> Iterator[tuple[str, str]]:
    """Defaults to the cloud's Graph; one given must belong to the cloud."""
    graph = values["graph"]
    cloud = _cloud(values) or PUBLIC
    if graph["endpoint"] is None:
        graph["endpoint"] = cloud.graph_endpoint
    elif problem := _graph_origin(cloud)(graph["endpoint"]):
        yield "graph.endpoint", problem
    graph["endpoint"] = graph["endpoint"].rstrip("/")


def _state(values: Values, name: str) -> Iterator[tuple[str, str]]:
    """One state key per environment: `graphtap-<env>.tfstate` unless the file names one."""
    backend = values["backend"]
    if backend["key"] is None:
        backend["key"] = f"graphtap-{name}.tfstate"
    elif problem := _state_key(name)(backend["key"]):
        yield "backend.key", problem


def _sentinel(values: Values, name: str) -> Iterator[tuple[str, str]]:
    """Sentinel's analytics rule and workbook read the verdict table."""
    if values[""]["sentinel"] and LOG_ANALYTICS not in values["findings"]["destinations"]:
        yield (
            "sentinel",
            f'needs findings.destinations to include "{LOG_ANALYTICS}": the analytics rule and '
            "the workbook read the verdict table",
        )


def _receivers(values: Values, name: str) -> Iterator[tuple[str, str]]:
    alerts = values["alerts"]
    if not alerts["emails"] and alerts["webhook_url"] is None:
        yield "alerts", "name at least one receiver: alerts.emails or alerts.webhook_url"


#: The rules that relate keys, run once every key has been read on its own.
RULES: tuple[Callable[[Values, str], Iterator[tuple[str, str]]], ...] = (
    _region,
    _auto_inflate,
    _retention,
    _graph_endpoint,
    _state,
    _sentinel,
    _receivers,
)


def _permission(permission: str) -> str | None:
    if not GRAPH_PERMISSION.fullmatch(permission):
        return f"{permission!r} is not a Graph permission name"
    if WRITE_OR_SHARED.search(permission):
        return (
            f"{permission!r}: grant the .Read variant; Graph subscriptions reject write-only "
            "and .Shared grants"
        )
    return None


def _destination(destination: str) -> str | None:
    if destination in DESTINATIONS:
        return None
    return f"{destination!r} is not a verdict destination (one of: {', '.join(DESTINATIONS)})"


def _destinations(destinations: tuple[str, ...]) -> str | None:
    if not destinations:
        return "must name at least one destination: verdicts have to go somewhere"
    if len(set(destinations)) != len(destinations):
        return "lists a destination twice"
    return None


def _permissions(permissions: tuple[str, ...]) -> str | None:
    if not permissions:
        return "must name at least one permission"
    if len(set(permissions)) != len(permissions):
        return "lists a permission twice"
    return None


def _webhook(url: str) -> str | None:
    """An https endpoint with nothing secret in the URL: the URL is kept in the repo and in
    Terraform state, so a token in its query or user part would leak there."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return f"{url!r} must be an https URL"
    if parts.username or parts.password or parts.query or parts.fragment:
        return (
            f"{url!r} must carry no credentials, query or fragment: the URL is kept in the repo "
            "and the Terraform state (authenticate the endpoint otherwise)"
        )
    return None


def _percent(value: float) -> str | None:
    return (
        None if 0 < value <= 100 else f"a percentage must be above 0 and at most 100, got {value}"
    )


def _string_table(value: dict[str, Any]) -> str | None:
    if all(isinstance(v, str) for v in value.values()):
        return None
    return "must be a table of strings"


def _placeholder(kind: type[Any]) -> Any:
    return {str: "", int: 0, float: 0.0, bool: False}.get(kind)


def _matches(pattern: re.Pattern[str], what: str) -> Callable[[str], str | None]:
    return lambda value: None if pattern.fullmatch(value) else f"{value!r} must be {what}"


def _one_of(choices: tuple[T, ...], what: str) -> Callable[[T], str | None]:
    def check(value: T) -> str | None:
        if value in choices:
            return None
        return f"{value!r} is not a valid {what} (one of: {', '.join(map(str, choices))})"

    return check


def _between(low: int, high: int, what: str) -> Callable[[int], str | None]:
    return lambda value: (
        None if low <= value <= high else f"{what} must be {low}-{high}, got {value}"
    )


def _graph_origin(cloud: Cloud) -> Callable[[str], str | None]:
    """An https origin, and one of the cloud's: a token of one cloud is refused by another."""
    origin = re.compile(r"https://[a-z0-9.-]+/?")

    def check(value: str) -> str | None:
        if not origin.fullmatch(value):
            return f"{value!r} must be an https origin without a path"
        if cloud.graph_service(value) is None:
            return (
                f"{value!r} is not a Graph endpoint of the {cloud.name} cloud (one of: "
                f"{', '.join(cloud.graph_endpoints)}); set `cloud` to the cloud it belongs to"
            )
        return None

    return check


def _cidr(max_prefix: int) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        try:
            network = ipaddress.ip_network(value)
        except ValueError as exc:
            return f"{value!r} is not a CIDR range: {exc}"
        if not network.is_private or network.prefixlen > max_prefix:
            return f"{value!r} must be a private range of /{max_prefix} or larger"
        return None

    return check


def _public_cidr(value: str) -> str | None:
    try:
        network = ipaddress.ip_network(value)
    except ValueError as exc:
        return f"{value!r} is not an IP range: {exc}"
    if network.version != 4 or network.is_private or network.prefixlen < 16:
        return f"{value!r} must be a public IPv4 range of /16 or smaller (a firewall IP rule)"
    return None


def _state_key(environment: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if not STATE_KEY.fullmatch(value):
            return f"{value!r} must end in .tfstate"
        if environment not in value:
            return f"{value!r} must contain the environment name {environment!r} (one key each)"
        return None

    return check
