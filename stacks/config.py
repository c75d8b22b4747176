"""One typed, validated configuration per environment, read from `stacks/environments/<env>.toml`.

Every rule is checked before any construct exists, so a bad file stops synth with a message
naming the file, the key and the rule, and all problems of a file are reported together.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from graphtap.clouds import CLOUDS, DEFAULT_CLOUD, PUBLIC, Cloud
from stacks.naming import CLOUD_REGIONS, REGIONS, Names

ENVIRONMENTS_DIR = Path(__file__).resolve().parent / "environments"

ENVIRONMENT_NAME = re.compile(r"[a-z][a-z0-9]{1,7}")
PREFIX = re.compile(r"[a-z][a-z0-9]{1,11}")
DOMAIN = re.compile(r"(?=.{4,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
GRAPH_PERMISSION = re.compile(r"[A-Z][A-Za-z]*(\.[A-Z][A-Za-z]*)+")
STATE_KEY = re.compile(r"[A-Za-z0-9._/-]+\.tfstate")

EVENTHUB_SKUS = ("Standard", "Premium")
# Dedicated Linux plans (always on available); Free/Shared tiers cannot host the runtime.
APP_SERVICE_SKUS = ("B1", "B2", "B3", "S1", "S2", "S3", "P0v3", "P1v3", "P2v3", "P3v3")
PYTHON_VERSIONS = ("3.11", "3.12")
PROCESSORS = ("webapp", "function", "both")
FUNCTION_MEMORY_MB = (512, 2048, 4096)
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
    backend: BackendConfig
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
    """Every environment file in `directory`, sorted by name; adding a file adds a stack."""
    paths = sorted(directory.glob("*.toml"))
    if not paths:
        raise FileNotFoundError(f"no environment files (*.toml) in {directory}")
    return [load(path) for path in paths]


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


class _Reader:
    """Pulls typed values out of the TOML tables and records every rule broken on the way."""

    def __init__(self, path: Path, raw: dict[str, Any]) -> None:
        self.path = path
        self.raw = raw
        self.problems: list[tuple[str, str]] = []

    def fail(self, key: str, rule: str) -> None:
        self.problems.append((key, rule))

    def table(self, name: str, allowed: set[str]) -> dict[str, Any]:
        value = self.raw.get(name, {})
        if not isinstance(value, dict):
            self.fail(name, "must be a table")
            return {}
        for key in sorted(set(value) - allowed):
            self.fail(f"{name}.{key}", f"unknown key (known: {', '.join(sorted(allowed))})")
        return value

    def get(
        self,
        table: dict[str, Any],
        key: str,
        kind: type[T],
        default: T | None = None,
        check: Callable[[T], str | None] | None = None,
    ) -> T:
        value = table.get(key.rsplit(".", 1)[-1], default)
        if value is None:
            self.fail(key, f"is required ({kind.__name__})")
            return cast(T, _placeholder(kind))
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(key, f"must be {kind.__name__}, got {type(value).__name__} {value!r}")
            return cast(T, _placeholder(kind))
        if check is not None and (problem := check(value)):
            self.fail(key, problem)
        return value

    def optional(
        self, table: dict[str, Any], key: str, check: Callable[[str], str | None]
    ) -> str | None:
        """A string key that may be left out; when given, it must pass `check`."""
        if key.rsplit(".", 1)[-1] not in table:
            return None
        return self.get(table, key, str, check=check)

    def strings(self, table: dict[str, Any], key: str, default: list[str]) -> tuple[str, ...]:
        value = table.get(key.rsplit(".", 1)[-1], default)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.fail(key, "must be a list of strings")
            return ()
        return tuple(value)

    def build(self) -> EnvironmentConfig | None:
        name = self.path.stem
        if not ENVIRONMENT_NAME.fullmatch(name):
            self.fail("(file name)", "the environment name must be 2-8 lowercase letters/digits")

        top_keys = {
            "prefix",
            "cloud",
            "region",
            "tenant_domain",
            "subscription_id",
            "log_retention_days",
            "eventhubs",
            "hosting",
            "graph",
            "network",
            "access",
            "backend",
            "tags",
        }
        for key in sorted(set(self.raw) - top_keys):
            self.fail(key, f"unknown key (known: {', '.join(sorted(top_keys))})")

        root = self.raw
        prefix = self.get(
            root, "prefix", str, check=_matches(PREFIX, "2-12 lowercase letters/digits")
        )
        cloud_name = self.get(
            root, "cloud", str, DEFAULT_CLOUD, _one_of(tuple(CLOUDS), "cloud profile")
        )
        cloud = CLOUDS.get(cloud_name, PUBLIC)
        regions = CLOUD_REGIONS[cloud.name] if cloud_name in CLOUDS else REGIONS
        region = self.get(
            root,
            "region",
            str,
            check=_one_of(tuple(regions), f"Azure region of the {cloud_name} cloud"),
        )
        tenant_domain = self.get(
            root, "tenant_domain", str, check=_matches(DOMAIN, "a DNS domain, e.g. contoso.com")
        )
        subscription_id = root.get("subscription_id")
        if subscription_id is not None:
            self.get(root, "subscription_id", str, check=_matches(GUID, "a lowercase GUID"))
        retention = self.get(
            root, "log_retention_days", int, 30, _between(30, 730, "Log Analytics retention")
        )

        eh = self.table(
            "eventhubs", {"sku", "capacity", "auto_inflate_max", "partitions", "retention_hours"}
        )
        sku = self.get(eh, "eventhubs.sku", str, "Standard", _one_of(EVENTHUB_SKUS, "SKU"))
        capacity = self.get(eh, "eventhubs.capacity", int, 1, _between(1, 40, "throughput units"))
        inflate = self.get(eh, "eventhubs.auto_inflate_max", int, 0, _between(0, 40, "units"))
        if inflate and inflate < capacity:
            self.fail("eventhubs.auto_inflate_max", "must be 0 (off) or at least capacity")
        if inflate and sku != "Standard":
            self.fail("eventhubs.auto_inflate_max", "auto-inflate exists on Standard only")
        partitions = self.get(eh, "eventhubs.partitions", int, 4, _between(1, 32, "partitions"))
        hours_max = 168 if sku == "Standard" else 2160
        retention_hours = self.get(
            eh, "eventhubs.retention_hours", int, 24, _between(1, hours_max, f"{sku} retention")
        )

        ho = self.table(
            "hosting",
            {
                "processor",
                "app_service_sku",
                "python_version",
                "function_max_instances",
                "function_memory_mb",
            },
        )
        processor = self.get(ho, "hosting.processor", str, "webapp", _one_of(PROCESSORS, "value"))
        app_sku = self.get(
            ho, "hosting.app_service_sku", str, "B1", _one_of(APP_SERVICE_SKUS, "App Service SKU")
        )
        python = self.get(
            ho, "hosting.python_version", str, "3.11", _one_of(PYTHON_VERSIONS, "Python version")
        )
        max_instances = self.get(
            ho, "hosting.function_max_instances", int, 40, _between(40, 1000, "instances")
        )
        memory = self.get(
            ho, "hosting.function_memory_mb", int, 2048, _one_of(FUNCTION_MEMORY_MB, "size")
        )

        gr = self.table("graph", {"endpoint", "permissions"})
        endpoint = self.get(gr, "graph.endpoint", str, cloud.graph_endpoint, _graph_origin(cloud))
        permissions = self.strings(
            gr, "graph.permissions", ["Chat.Read.All", "ChannelMessage.Read.All"]
        )
        for permission in permissions:
            if not GRAPH_PERMISSION.fullmatch(permission):
                self.fail("graph.permissions", f"{permission!r} is not a Graph permission name")
            elif WRITE_OR_SHARED.search(permission):
                self.fail(
                    "graph.permissions",
                    f"{permission!r}: grant the .Read variant; Graph subscriptions reject "
                    "write-only and .Shared grants",
                )
        if not permissions:
            self.fail("graph.permissions", "must name at least one permission")
        if len(set(permissions)) != len(permissions):
            self.fail("graph.permissions", "lists a permission twice")

        nw = self.table("network", {"address_space", "operator_ip_ranges"})
        address_space = self.get(nw, "network.address_space", str, "10.42.0.0/24", _cidr(24))
        operator_ranges = self.strings(nw, "network.operator_ip_ranges", [])
        for cidr in operator_ranges:
            if problem := _public_cidr(cidr):
                self.fail("network.operator_ip_ranges", problem)

        ac = self.table("access", {"status_readers_group", "metrics_scraper"})
        access = AccessConfig(
            status_readers_group=self.optional(
                ac, "access.status_readers_group", _matches(GUID, "a lowercase GUID (object id)")
            ),
            metrics_scraper=self.optional(
                ac, "access.metrics_scraper", _matches(GUID, "a lowercase GUID (object id)")
            ),
        )

        be = self.table(
            "backend", {"resource_group", "storage_account", "container", "key", "use_azuread_auth"}
        )
        backend = BackendConfig(
            resource_group=self.get(be, "backend.resource_group", str),
            storage_account=self.get(
                be,
                "backend.storage_account",
                str,
                check=_matches(re.compile(r"[a-z0-9]{3,24}"), "3-24 lowercase letters/digits"),
            ),
            container=self.get(
                be,
                "backend.container",
                str,
                "tfstate",
                _matches(re.compile(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]"), "container name"),
            ),
            key=self.get(be, "backend.key", str, f"graphtap-{name}.tfstate", _state_key(name)),
            use_azuread_auth=self.get(
                be,
                "backend.use_azuread_auth",
                bool,
                True,
                lambda on: None if on else "must be true: state is read with Entra ID, no keys",
            ),
        )

        tags = self.raw.get("tags", {})
        if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
            self.fail("tags", "must be a table of strings")
            tags = {}

        if not self.problems:
            for problem in Names.derive(prefix, name, region).violations():
                self.fail("prefix", problem)
        if self.problems:
            return None
        return EnvironmentConfig(
            name=name,
            source=self.path,
            prefix=prefix,
            cloud=cloud,
            region=region,
            tenant_domain=tenant_domain,
            subscription_id=subscription_id,
            log_retention_days=retention,
            eventhubs=EventHubsConfig(sku, capacity, inflate, partitions, retention_hours),
            hosting=HostingConfig(
                cast(Processor, processor), app_sku, python, max_instances, memory
            ),
            graph=GraphConfig(endpoint.rstrip("/"), permissions),
            network=NetworkConfig(address_space, operator_ranges),
            access=access,
            backend=backend,
            tags=dict(tags),
        )


def _placeholder(kind: type[Any]) -> Any:
    return {str: "", int: 0, bool: False}.get(kind)


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
