"""Before touching Graph: is the event hub Graph will publish to really there and right?

Graph test-publishes while it creates a subscription, so a missing hub or a wrong setting
shows up as an opaque POST failure. These checks read the deployment through
azure-mgmt-eventhub instead and say exactly what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.eventhub.aio import EventHubManagementClient

from graphtap.deployment import Deployment


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


async def check_deployment(
    deployment: Deployment, credential: AsyncTokenCredential, **client_options: Any
) -> list[Check]:
    """Namespace and hub exist, local (SAS) auth is off, Graph can reach it, partitions match.

    Resource Manager is the deployment's cloud's, and so is the scope its token is for.
    """
    missing = [
        name
        for name in ("subscription_id", "resource_group", "eventhub_namespace_name")
        if not getattr(deployment, name)
    ]
    if missing:
        return [
            Check(
                "stack outputs",
                False,
                f"missing {', '.join(missing)}: run `make outputs ENV={deployment.environment}`",
            )
        ]
    subscription = str(deployment.subscription_id)
    group, name = str(deployment.resource_group), str(deployment.eventhub_namespace_name)
    hub = deployment.notifications_hub
    checks: list[Check] = []
    cloud = deployment.profile
    async with EventHubManagementClient(
        credential,
        subscription,
        base_url=cloud.resource_manager,
        credential_scopes=[cloud.resource_manager_scope],
        **client_options,
    ) as client:
        try:
            namespace = await client.namespaces.get(group, name)
        except ResourceNotFoundError:
            return [
                Check("namespace", False, f"namespace {name} not found in resource group {group}")
            ]
        except HttpResponseError as error:
            return [Check("namespace", False, f"cannot read namespace {name}: {error.message}")]
        checks.append(Check("namespace", True, f"{name} in {group}"))
        tier = _text(namespace.sku.tier or namespace.sku.name) if namespace.sku else "unknown"
        checks.append(
            Check(
                "tier",
                tier != "Basic",
                f"{tier}: Basic caps events at 256 KB and one consumer group; use Standard+"
                if tier == "Basic"
                else tier,
            )
        )
        checks.append(
            Check(
                "local auth off",
                namespace.disable_local_auth is True,
                "SAS keys are disabled; Graph publishes with its Data Sender role"
                if namespace.disable_local_auth
                else f"namespace {name} still accepts SAS keys: set disableLocalAuth = true",
            )
        )
        public = _text(namespace.public_network_access or "Enabled")
        checks.append(
            Check(
                "public network access",
                public == "Enabled",
                "enabled (Graph is not a trusted service for network rules)"
                if public == "Enabled"
                else f"{public}: Graph cannot publish through network rules; enable public access",
            )
        )
        try:
            eventhub = await client.event_hubs.get(group, name, hub)
        except ResourceNotFoundError:
            checks.append(Check("event hub", False, f"hub {hub} not found in namespace {name}"))
            return checks
        checks.append(Check("event hub", True, f"{hub} in {name}"))
        wanted = deployment.notification_partitions
        partitions = eventhub.partition_count
        checks.append(
            Check(
                "partitions",
                wanted is None or partitions == wanted,
                f"{partitions} partitions"
                if wanted is None or partitions == wanted
                else f"hub {hub} has {partitions} partitions, the stack configures {wanted}",
            )
        )
    return checks


def _text(value: object) -> str:
    """An SDK enum or a plain string, as the portal shows it."""
    return str(getattr(value, "value", value))
