"""The apps' private path to Key Vault and storage: VNet integration subnets with service
endpoints, so both can keep their firewalls on default Deny."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from stacks.cdk import (
    Construct,
    NetworkSecurityGroup,
    Subnet,
    SubnetDelegation,
    SubnetDelegationServiceDelegation,
    SubnetNetworkSecurityGroupAssociation,
    VirtualNetwork,
)
from stacks.constructs import Placement

SERVICE_ENDPOINTS = ["Microsoft.KeyVault", "Microsoft.Storage"]


@dataclass(frozen=True)
class NetworkProps:
    placement: Placement
    vnet_name: str
    nsg_name: str
    address_space: str
    functions_subnet: bool


class Network(Construct):
    def __init__(self, scope: Construct, id_: str, props: NetworkProps) -> None:
        super().__init__(scope, id_)
        where = props.placement
        apps_range, functions_range, *_ = ipaddress.ip_network(props.address_space).subnets(
            new_prefix=26
        )
        self.vnet = VirtualNetwork(
            self,
            "vnet",
            name=props.vnet_name,
            location=where.location,
            resource_group_name=where.resource_group_name,
            address_space=[props.address_space],
            tags=dict(where.tags),
        )
        self.nsg = NetworkSecurityGroup(
            self,
            "nsg",
            name=props.nsg_name,
            location=where.location,
            resource_group_name=where.resource_group_name,
            tags=dict(where.tags),
        )
        self.apps_subnet = self._subnet(
            "apps", str(apps_range), "Microsoft.Web/serverFarms", where.resource_group_name
        )
        self.functions_subnet = (
            self._subnet(
                "functions",
                str(functions_range),
                "Microsoft.App/environments",
                where.resource_group_name,
            )
            if props.functions_subnet
            else None
        )

    @property
    def subnet_ids(self) -> list[str]:
        subnets = [self.apps_subnet, self.functions_subnet]
        return [subnet.id for subnet in subnets if subnet is not None]

    def _subnet(self, name: str, prefix: str, delegate_to: str, resource_group: str) -> Subnet:
        subnet = Subnet(
            self,
            f"{name}_subnet",
            name=name,
            resource_group_name=resource_group,
            virtual_network_name=self.vnet.name,
            address_prefixes=[prefix],
            service_endpoints=SERVICE_ENDPOINTS,
            delegation=[
                SubnetDelegation(
                    name=delegate_to.replace("/", "."),
                    service_delegation=SubnetDelegationServiceDelegation(
                        name=delegate_to,
                        actions=["Microsoft.Network/virtualNetworks/subnets/action"],
                    ),
                )
            ],
        )
        SubnetNetworkSecurityGroupAssociation(
            self, f"{name}_nsg", subnet_id=subnet.id, network_security_group_id=self.nsg.id
        )
        return subnet
