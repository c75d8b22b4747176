"""Who may do what: the runtime's managed identity and Graph's Change Tracking principal.

Every grant is scoped to the one hub, container, certificate or secret it is for; nothing is
granted on a namespace, account, resource group or subscription.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from stacks.cdk import (
    Construct,
    DataAzureadServicePrincipal,
    Postcondition,
    RoleAssignment,
    ServicePrincipal,
    TerraformResourceLifecycle,
    UserAssignedIdentity,
)
from stacks.constructs import DeploymentFacts, Placement

GRAPH_CHANGE_TRACKING_APP_ID = "0bf30f3b-4a52-48df-9a82-234910c4a086"

EVENT_HUBS_DATA_SENDER = "Azure Event Hubs Data Sender"
EVENT_HUBS_DATA_RECEIVER = "Azure Event Hubs Data Receiver"
BLOB_DATA_CONTRIBUTOR = "Storage Blob Data Contributor"
QUEUE_DATA_SENDER = "Storage Queue Data Message Sender"
QUEUE_DATA_PROCESSOR = "Storage Queue Data Message Processor"
QUEUE_DATA_READER = "Storage Queue Data Reader"
KEY_VAULT_SECRETS_USER = "Key Vault Secrets User"
KEY_VAULT_CERTIFICATE_USER = "Key Vault Certificate User"


@dataclass(frozen=True)
class RuntimeIdentityProps:
    placement: Placement
    name: str
    notifications_hub_id: str
    findings_hub_id: str
    checkpoint_container_id: str
    dead_letter_container_id: str
    verdict_ledger_container_id: str
    control_plane_container_id: str  # the leader lease (`graphtap.subscriptions.leadership`)
    lifecycle_queue_id: str  # resource-manager ids of the two queues
    lifecycle_poison_queue_id: str
    certificate_id: str  # versionless resource-manager id
    certificate_secret_id: str  # the certificate's PFX secret as an RBAC scope
    #: Secret name -> its RBAC scope: the runtime reads each one (clientState, hash key).
    secret_ids: Mapping[str, str]
    function_container_ids: Mapping[str, str]  # empty when no function app is deployed


class RuntimeIdentity(Construct):
    """The user-assigned identity both hosts run as, with exactly the roles the runtime uses."""

    def __init__(self, scope: Construct, id_: str, props: RuntimeIdentityProps) -> None:
        super().__init__(scope, id_)
        where = props.placement
        self.identity = UserAssignedIdentity(
            self,
            "identity",
            name=props.name,
            location=where.location,
            resource_group_name=where.resource_group_name,
            tags=dict(where.tags),
        )
        # Rich notifications need the subscribing app's service principal to accept Graph's
        # Change Tracking app without an app role assignment. A managed identity's service
        # principal is created that way and cannot be modified, so deploy checks it instead.
        self.service_principal = DataAzureadServicePrincipal(
            self,
            "service_principal",
            object_id=self.identity.principal_id,
            lifecycle=TerraformResourceLifecycle(
                postcondition=[
                    Postcondition(
                        condition="${self.app_role_assignment_required == false}",
                        error_message=(
                            "The runtime identity's service principal requires app role "
                            "assignments; Graph cannot then encrypt rich notifications for it."
                        ),
                    )
                ]
            ),
        )
        grants = {
            "receive_notifications": (EVENT_HUBS_DATA_RECEIVER, props.notifications_hub_id),
            "send_findings": (EVENT_HUBS_DATA_SENDER, props.findings_hub_id),
            "checkpoints": (BLOB_DATA_CONTRIBUTOR, props.checkpoint_container_id),
            "dead_letters": (BLOB_DATA_CONTRIBUTOR, props.dead_letter_container_id),
            "verdict_ledger": (BLOB_DATA_CONTRIBUTOR, props.verdict_ledger_container_id),
            "control_plane": (BLOB_DATA_CONTRIBUTOR, props.control_plane_container_id),
            # Processors enqueue; the leader receives and deletes, and moves poison aside,
            # whose messages the status page peeks (read only: the evidence is not taken).
            "lifecycle_send": (QUEUE_DATA_SENDER, props.lifecycle_queue_id),
            "lifecycle_process": (QUEUE_DATA_PROCESSOR, props.lifecycle_queue_id),
            "lifecycle_poison_send": (QUEUE_DATA_SENDER, props.lifecycle_poison_queue_id),
            "lifecycle_poison_read": (QUEUE_DATA_READER, props.lifecycle_poison_queue_id),
            "read_certificate": (KEY_VAULT_CERTIFICATE_USER, props.certificate_id),
            "read_certificate_key": (KEY_VAULT_SECRETS_USER, props.certificate_secret_id),
        }
        for secret, secret_id in props.secret_ids.items():
            grants[f"read_{secret.replace('-', '_')}"] = (KEY_VAULT_SECRETS_USER, secret_id)
        for container, container_id in props.function_container_ids.items():
            grants[f"functions_{container.replace('-', '_')}"] = (
                BLOB_DATA_CONTRIBUTOR,
                container_id,
            )
        self.roles = {
            key: grant(self, key, self.identity.principal_id, role, scope)
            for key, (role, scope) in grants.items()
        }
        self.deployment: DeploymentFacts = {"runtime_client_id": self.identity.client_id}


@dataclass(frozen=True)
class ChangeTrackingProps:
    notifications_hub_id: str


class ChangeTrackingSender(Construct):
    """Microsoft Graph Change Tracking: adopted if the tenant has it, created if missing, and
    allowed to send into the notifications hub only."""

    def __init__(self, scope: Construct, id_: str, props: ChangeTrackingProps) -> None:
        super().__init__(scope, id_)
        self.service_principal = ServicePrincipal(
            self,
            "service_principal",
            client_id=GRAPH_CHANGE_TRACKING_APP_ID,
            use_existing=True,
        )
        self.sender = grant(
            self,
            "send_notifications",
            self.service_principal.object_id,
            EVENT_HUBS_DATA_SENDER,
            props.notifications_hub_id,
        )


def grant(scope: Construct, id_: str, principal_id: str, role: str, on: str) -> RoleAssignment:
    """One built-in role for one service principal on one resource."""
    return RoleAssignment(
        scope,
        id_,
        scope=on,
        role_definition_name=role,
        principal_id=principal_id,
        principal_type="ServicePrincipal",
    )
