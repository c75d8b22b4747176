"""What a deployed environment looks like to the runtime: the stack's outputs.

`make outputs ENV=<env>` saves them to `.outputs/<env>.json` for operators' commands
(`graphtap bootstrap`, `graphtap doctor`); on App Service and Functions the same facts
arrive as app settings (`GRAPHTAP_*`). Nothing here is secret.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphtap.clouds import DEFAULT_CLOUD, PUBLIC, Cloud, UnknownCloud, cloud_named

OUTPUTS_DIR = Path(".outputs")
DEFAULT_GRAPH_ENDPOINT = PUBLIC.graph_endpoint
DEFAULT_CLIENT_STATE_SECRET = "graph-client-state"  # noqa: S105 (a name, not a value)
#: The per-environment key findings are hashed under, so every instance correlates alike.
DEFAULT_FINDING_HASH_KEY_SECRET = "finding-hash-key"  # noqa: S105 (a name, not a value)


#: The app setting each field of `Deployment` travels in on App Service and Functions; the
#: stack writes these from the same map, and every field is also a stack output. A field not
#: named here (the resource group, the app names...) is for operators' commands only.
APP_SETTINGS: Mapping[str, str] = {
    "environment": "GRAPHTAP_ENV",
    "tenant_id": "GRAPHTAP_TENANT_ID",
    "tenant_domain": "GRAPHTAP_TENANT_DOMAIN",
    "eventhub_namespace_host": "GRAPHTAP_EVENTHUB_NAMESPACE",
    "notifications_hub": "GRAPHTAP_NOTIFICATIONS_HUB",
    "findings_hub": "GRAPHTAP_FINDINGS_HUB",
    "consumer_group": "GRAPHTAP_CONSUMER_GROUP",
    "notification_url": "GRAPHTAP_NOTIFICATION_URL",
    "key_vault_uri": "GRAPHTAP_KEY_VAULT_URI",
    "certificate_name": "GRAPHTAP_CERTIFICATE_NAME",
    "client_state_secret": "GRAPHTAP_CLIENT_STATE_SECRET",
    "finding_hash_key_secret": "GRAPHTAP_FINDING_HASH_KEY_SECRET",
    "runtime_client_id": "AZURE_CLIENT_ID",
    "checkpoint_account_url": "GRAPHTAP_CHECKPOINT_ACCOUNT_URL",
    "checkpoint_container": "GRAPHTAP_CHECKPOINT_CONTAINER",
    "dead_letter_container": "GRAPHTAP_DEAD_LETTER_CONTAINER",
    "verdict_ledger_container": "GRAPHTAP_VERDICT_LEDGER_CONTAINER",
    "control_plane_container": "GRAPHTAP_CONTROL_PLANE_CONTAINER",
    "lifecycle_queue_account_url": "GRAPHTAP_LIFECYCLE_QUEUE_ACCOUNT_URL",
    "lifecycle_queue": "GRAPHTAP_LIFECYCLE_QUEUE",
    "lifecycle_poison_queue": "GRAPHTAP_LIFECYCLE_POISON_QUEUE",
    "graph_endpoint": "GRAPHTAP_GRAPH_ENDPOINT",
    "cloud": "GRAPHTAP_CLOUD",
    "findings_destinations": "GRAPHTAP_FINDINGS_DESTINATIONS",
    "logs_ingestion_endpoint": "GRAPHTAP_LOGS_INGESTION_ENDPOINT",
    "logs_dcr_id": "GRAPHTAP_LOGS_DCR_ID",
    "logs_stream": "GRAPHTAP_LOGS_STREAM",
    "payload_account_url": "GRAPHTAP_PAYLOAD_ACCOUNT_URL",
    "payload_vault_uri": "GRAPHTAP_PAYLOAD_VAULT_URI",
    "payload_secret": "GRAPHTAP_PAYLOAD_SECRET",
}

#: Where verdicts can go (`[findings] destinations` in an environment's stack.toml).
FINDINGS_HUB = "findings_hub"
LOG_ANALYTICS = "log_analytics"
DESTINATIONS = (FINDINGS_HUB, LOG_ANALYTICS)


class DeploymentError(ValueError):
    """Stack outputs or app settings that are missing or malformed; the message says which."""


@dataclass(frozen=True)
class Deployment:
    environment: str
    tenant_id: str
    tenant_domain: str
    eventhub_namespace_host: str
    notifications_hub: str
    findings_hub: str
    consumer_group: str
    notification_url: str
    key_vault_uri: str
    certificate_name: str
    runtime_client_id: str
    checkpoint_account_url: str
    checkpoint_container: str
    #: Where dead letters are kept, in the checkpoint storage account; None keeps them on the
    #: instance's own disk (deployments from before the stack created the container).
    dead_letter_container: str | None = None
    #: Where the hosts agree on one sender per verdict key (`sinks.ledger`), in the same
    #: account; None sends every verdict each host produces (deployments from before it).
    verdict_ledger_container: str | None = None
    #: Holds the leader lease that lets one web host at a time run the control plane, in the
    #: same account; None: every web host runs it (deployments from before the lease).
    control_plane_container: str | None = None
    #: The Storage queue the hosts share for lifecycle events, and where events that keep
    #: failing are set aside; None keeps them in each instance's SQLite queue.
    lifecycle_queue_account_url: str | None = None
    lifecycle_queue: str | None = None
    lifecycle_poison_queue: str | None = None
    subscription_id: str | None = None
    resource_group: str | None = None
    eventhub_namespace_name: str | None = None
    notification_partitions: int | None = None
    web_app_name: str | None = None
    function_app_name: str | None = None
    graph_endpoint: str = DEFAULT_GRAPH_ENDPOINT
    #: The cloud profile (`graphtap.clouds`): which authority, Resource Manager and token
    #: issuers the runtime talks to.
    cloud: str = DEFAULT_CLOUD
    #: Key Vault secrets `graphtap bootstrap` creates and the runtime may only read.
    client_state_secret: str = DEFAULT_CLIENT_STATE_SECRET
    finding_hash_key_secret: str = DEFAULT_FINDING_HASH_KEY_SECRET
    #: Where verdicts go, comma-separated `DESTINATIONS`: the findings hub, Log Analytics or
    #: both (deployments from before the choice send to the hub).
    findings_destinations: str = FINDINGS_HUB
    #: Log Analytics through the Logs Ingestion API: the data collection endpoint, the
    #: rule's immutable id and its stream; set when `log_analytics` is a destination.
    logs_ingestion_endpoint: str | None = None
    logs_dcr_id: str | None = None
    logs_stream: str | None = None
    #: Payloads over 1 MB: the storage account Graph writes them into (its blob endpoint,
    #: which the runtime reads with its identity, and its name, for `graphtap bootstrap`)
    #: and the Key Vault secret holding that account's connection string for Graph (the
    #: subscriptions' `blobStoreUrl`), in a vault of its own that Graph can reach. None: the
    #: deployment has no payload store.
    payload_account_url: str | None = None
    payload_account: str | None = None
    payload_vault_uri: str | None = None
    payload_secret: str | None = None

    @property
    def blob_store_url(self) -> str | None:
        """Graph's `blobStoreUrl`: the secret's URL, versionless, with the tenant's domain
        (as the Event Hubs notificationUrl carries it)."""
        if not self.payload_secret or not self.payload_vault_uri:
            return None
        vault = self.payload_vault_uri.rstrip("/")
        return f"{vault}/secrets/{self.payload_secret}?tenantId={self.tenant_domain}"

    @property
    def destinations(self) -> tuple[str, ...]:
        """The verdict destinations, in `DESTINATIONS` order (checked when read)."""
        named = {d.strip() for d in self.findings_destinations.split(",")}
        return tuple(d for d in DESTINATIONS if d in named)

    @property
    def profile(self) -> Cloud:
        """The cloud this deployment runs in (checked when the deployment was read)."""
        return cloud_named(self.cloud)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Every fact a deployment has: the stack's outputs, one each."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, Any], *, source: str) -> Deployment:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        required = [
            name
            for name, f in fields.items()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [name for name in required if not outputs.get(name)]
        if missing:
            raise DeploymentError(f"{source}: missing {', '.join(missing)}")
        values: dict[str, Any] = {}
        for name in fields:
            value = outputs.get(name)
            if value is None:
                continue
            if name == "notification_partitions":
                try:
                    value = int(value)
                except (TypeError, ValueError):
                    raise DeploymentError(f"{source}: {name} is not a number: {value!r}") from None
            elif not isinstance(value, str):
                raise DeploymentError(f"{source}: {name} is not a string: {value!r}")
            values[name] = value
        try:
            profile = cloud_named(values.get("cloud", DEFAULT_CLOUD))
        except UnknownCloud as exc:
            raise DeploymentError(f"{source}: {exc}") from None
        # Outputs from before the cloud fact carry their Graph endpoint; else the cloud's.
        values.setdefault("graph_endpoint", profile.graph_endpoint)
        _check_destinations(values, source)
        if not values["notification_url"].startswith("EventHub:https://"):
            raise DeploymentError(
                f"{source}: notification_url {values['notification_url']!r} is not an "
                "EventHub:https://... URL"
            )
        return cls(**values)

    @classmethod
    def load(cls, environment: str, *, directory: Path = OUTPUTS_DIR) -> Deployment:
        """The outputs `make outputs ENV=<environment>` saved."""
        path = directory / f"{environment}.json"
        if not path.exists():
            raise DeploymentError(
                f"{path} not found: deploy the stack, then run `make outputs ENV={environment}`"
            )
        try:
            outputs = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DeploymentError(f"{path}: not JSON: {exc}") from None
        if not isinstance(outputs, dict):
            raise DeploymentError(f"{path}: expected a JSON object of stack outputs")
        return cls.from_outputs(outputs, source=str(path))

    @classmethod
    def from_app_settings(cls, settings: Mapping[str, str] = os.environ) -> Deployment:
        """The same facts from the app settings the stack puts on the web and function apps."""
        outputs = {field: settings.get(variable) for field, variable in APP_SETTINGS.items()}
        if not outputs["notification_url"] and outputs["eventhub_namespace_host"]:
            outputs["notification_url"] = notification_url(
                str(outputs["eventhub_namespace_host"]),
                str(outputs["notifications_hub"]),
                str(outputs["tenant_domain"]),
            )
        return cls.from_outputs(outputs, source="app settings")


def _check_destinations(values: Mapping[str, Any], source: str) -> None:
    """Known destinations only, at least one, and Log Analytics only with its three facts."""
    named = [d.strip() for d in str(values.get("findings_destinations", FINDINGS_HUB)).split(",")]
    unknown = [d for d in named if d not in DESTINATIONS]
    if unknown or not named:
        raise DeploymentError(
            f"{source}: findings_destinations {values.get('findings_destinations')!r} must name "
            f"one or more of: {', '.join(DESTINATIONS)}"
        )
    if LOG_ANALYTICS in named:
        facts = ("logs_ingestion_endpoint", "logs_dcr_id", "logs_stream")
        if missing := [fact for fact in facts if not values.get(fact)]:
            raise DeploymentError(
                f"{source}: findings_destinations names {LOG_ANALYTICS} but "
                f"{', '.join(missing)} is missing"
            )


def notification_url(namespace_host: str, hub: str, tenant_domain: str) -> str:
    """Graph's RBAC form of an Event Hubs notificationUrl (tenantId is the tenant's domain)."""
    return f"EventHub:https://{namespace_host}/eventhubname/{hub}?tenantId={tenant_domain}"
