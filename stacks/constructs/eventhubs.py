"""The Event Hubs namespace Graph delivers into, its hubs and the processor's consumer group."""

from __future__ import annotations

from dataclasses import dataclass

from graphtap.clouds import Cloud
from stacks.cdk import (
    Construct,
    Eventhub,
    EventhubConsumerGroup,
    EventhubNamespace,
)
from stacks.config import EventHubsConfig
from stacks.constructs import DeploymentFacts, Placement


@dataclass(frozen=True)
class EventHubsProps:
    placement: Placement
    namespace_name: str
    notifications_hub: str
    findings_hub: str
    consumer_group: str
    sizing: EventHubsConfig
    cloud: Cloud  # the namespace's host name is the cloud's
    # Further readers of the notifications hub, one consumer group each.
    extra_consumer_groups: tuple[str, ...] = ()


class EventHubs(Construct):
    """RBAC-only (no SAS keys), TLS 1.2, publicly reachable because Graph writes from the internet
    and is not a trusted service for the Event Hubs firewall."""

    def __init__(self, scope: Construct, id_: str, props: EventHubsProps) -> None:
        super().__init__(scope, id_)
        where, sizing = props.placement, props.sizing
        inflate = sizing.auto_inflate_max > 0
        self.namespace = EventhubNamespace(
            self,
            "namespace",
            name=props.namespace_name,
            location=where.location,
            resource_group_name=where.resource_group_name,
            sku=sizing.sku,
            capacity=sizing.capacity,
            auto_inflate_enabled=inflate,
            maximum_throughput_units=sizing.auto_inflate_max if inflate else None,
            local_authentication_enabled=False,
            minimum_tls_version="1.2",
            public_network_access_enabled=True,
            tags=dict(where.tags),
        )
        self.notifications = self._hub("notifications", props.notifications_hub, sizing)
        self.findings = self._hub("findings", props.findings_hub, sizing)
        self.consumer_group = self._consumer_group("processor", props.consumer_group, where)
        self.extra_consumer_groups = {
            name: self._consumer_group(name.replace("-", "_"), name, where)
            for name in props.extra_consumer_groups
        }
        self.host = props.cloud.eventhubs_host(props.namespace_name)
        self.notifications_name = props.notifications_hub
        self.deployment: DeploymentFacts = {
            "eventhub_namespace_name": props.namespace_name,
            "eventhub_namespace_host": self.host,
            "notifications_hub": props.notifications_hub,
            "findings_hub": props.findings_hub,
            "consumer_group": props.consumer_group,
            "notification_partitions": props.sizing.partitions,
        }

    def _consumer_group(self, id_: str, name: str, where: Placement) -> EventhubConsumerGroup:
        return EventhubConsumerGroup(
            self,
            id_,
            name=name,
            namespace_name=self.namespace.name,
            eventhub_name=self.notifications.name,
            resource_group_name=where.resource_group_name,
        )

    def _hub(self, id_: str, name: str, sizing: EventHubsConfig) -> Eventhub:
        return Eventhub(
            self,
            id_,
            name=name,
            namespace_id=self.namespace.id,
            partition_count=sizing.partitions,
            retention_description={
                "cleanup_policy": "Delete",
                "retention_time_in_hours": sizing.retention_hours,
            },
        )

    def notification_url(self, tenant_domain: str) -> str:
        """Graph's RBAC form: `eventhubname/` is a literal path segment, tenantId a domain."""
        hub = self.notifications_name
        return f"EventHub:https://{self.host}/eventhubname/{hub}?tenantId={tenant_domain}"
