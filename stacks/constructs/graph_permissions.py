"""Microsoft Graph application permissions for the runtime identity, as app role assignments on
Graph's service principal: the runtime calls Graph with its managed identity, no secret exists.
Granting them needs an admin who may consent (Privileged Role Administrator or higher)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stacks.cdk import AppRoleAssignment, Construct, DataAzureadServicePrincipal

MICROSOFT_GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
#: Gap resync reads messages back through the export APIs, which take a user or a team:
#: it lists users (`GET /users`) and teams (`GET /teams`) with the least that allows each.
RESYNC_PERMISSIONS = ("User.Read.All", "Team.ReadBasic.All")


@dataclass(frozen=True)
class GraphPermissionsProps:
    principal_object_id: str
    permissions: Sequence[str]


class GraphPermissions(Construct):
    def __init__(self, scope: Construct, id_: str, props: GraphPermissionsProps) -> None:
        super().__init__(scope, id_)
        self.graph = DataAzureadServicePrincipal(
            self, "microsoft_graph", client_id=MICROSOFT_GRAPH_APP_ID
        )
        self.assignments = {
            permission: AppRoleAssignment(
                self,
                permission.replace(".", "_"),
                app_role_id=self.graph.app_role_ids.lookup(permission),
                principal_object_id=props.principal_object_id,
                resource_object_id=self.graph.object_id,
            )
            for permission in props.permissions
        }
