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
    "graph_endpoint": "GRAPHTAP_GRAPH_ENDPOINT",
    "cloud": "GRAPHTAP_CLOUD",
}


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


def notification_url(namespace_host: str, hub: str, tenant_domain: str) -> str:
    """Graph's RBAC form of an Event Hubs notificationUrl (tenantId is the tenant's domain)."""
    return f"EventHub:https://{namespace_host}/eventhubname/{hub}?tenantId={tenant_domain}"
