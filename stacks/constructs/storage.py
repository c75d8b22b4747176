"""The runtime's storage account: checkpoints, dead letters, the verdict ledger and the
leader lease (and the Function App's containers), Entra ID only (no shared keys, no local
users)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from graphtap.clouds import Cloud
from stacks.cdk import (
    Construct,
    StorageAccount,
    StorageAccountBlobProperties,
    StorageAccountBlobPropertiesContainerDeleteRetentionPolicy,
    StorageAccountBlobPropertiesDeleteRetentionPolicy,
    StorageAccountNetworkRules,
    StorageAccountSasPolicy,
    StorageContainer,
    StorageManagementPolicy,
    StorageManagementPolicyRule,
    StorageManagementPolicyRuleActions,
    StorageManagementPolicyRuleActionsBaseBlob,
    StorageManagementPolicyRuleFilters,
    StorageQueue,
)
from stacks.constructs import DeploymentFacts, Placement

# Containers the Functions host uses through identity-based AzureWebJobsStorage; created here so
# the host never needs the right to create containers.
FUNCTION_HOST_CONTAINERS = (
    "azure-webjobs-hosts",
    "azure-webjobs-secrets",
    "azure-webjobs-eventhub",
)


@dataclass(frozen=True)
class StorageProps:
    placement: Placement
    account_name: str
    checkpoint_container: str
    dead_letter_container: str
    verdict_ledger_container: str
    #: Days a verdict key is remembered: past the hub's retention no event comes again.
    verdict_ledger_days: int
    function_package_container: str
    subnet_ids: Sequence[str]
    operator_ip_ranges: Sequence[str]
    function_containers: bool
    cloud: Cloud  # the blob endpoint's host name is the cloud's
    #: Holds the `leader` blob whose lease elects the one control plane that writes to Graph.
    control_plane_container: str
    #: The lifecycle events every host's processor enqueues and the leader drains, and where
    #: those that keep failing are set aside.
    lifecycle_queue: str
    lifecycle_poison_queue: str


def hardened_account(
    scope: Construct,
    id_: str,
    *,
    name: str,
    placement: Placement,
    shared_keys: bool,
    network_rules: StorageAccountNetworkRules,
    sas_policy: StorageAccountSasPolicy | None = None,
) -> StorageAccount:
    """A StorageV2 account with the stack's defaults: TLS 1.2, HTTPS only, Entra ID by
    default, no local users, SFTP, public containers or cross-tenant replication, double
    encryption, and deleted blobs and containers kept a week. Shared keys only if asked."""
    return StorageAccount(
        scope,
        id_,
        name=name,
        location=placement.location,
        resource_group_name=placement.resource_group_name,
        account_kind="StorageV2",
        account_tier="Standard",
        account_replication_type="ZRS",
        min_tls_version="TLS1_2",
        https_traffic_only_enabled=True,
        shared_access_key_enabled=shared_keys,
        default_to_oauth_authentication=True,
        local_user_enabled=False,
        sftp_enabled=False,
        allow_nested_items_to_be_public=False,
        cross_tenant_replication_enabled=False,
        infrastructure_encryption_enabled=True,
        network_rules=network_rules,
        sas_policy=sas_policy,
        blob_properties=StorageAccountBlobProperties(
            versioning_enabled=False,
            delete_retention_policy=StorageAccountBlobPropertiesDeleteRetentionPolicy(days=7),
            container_delete_retention_policy=(
                StorageAccountBlobPropertiesContainerDeleteRetentionPolicy(days=7)
            ),
        ),
        tags=dict(placement.tags),
    )


def forget_blobs(
    scope: Construct, account: StorageAccount, *, rule: str, container: str, days: int
) -> StorageManagementPolicy:
    """The account's lifecycle policy: block blobs in `container` are deleted `days` after
    they last changed (past them, nothing can ask for them again)."""
    return StorageManagementPolicy(
        scope,
        "lifecycle",
        storage_account_id=account.id,
        rule=[
            StorageManagementPolicyRule(
                name=rule,
                enabled=True,
                filters=StorageManagementPolicyRuleFilters(
                    blob_types=["blockBlob"], prefix_match=[f"{container}/"]
                ),
                actions=StorageManagementPolicyRuleActions(
                    base_blob=StorageManagementPolicyRuleActionsBaseBlob(
                        delete_after_days_since_modification_greater_than=days
                    )
                ),
            )
        ],
    )


class CheckpointStorage(Construct):
    def __init__(self, scope: Construct, id_: str, props: StorageProps) -> None:
        super().__init__(scope, id_)
        where = props.placement
        self.account = hardened_account(
            self,
            "account",
            name=props.account_name,
            placement=where,
            shared_keys=False,
            network_rules=StorageAccountNetworkRules(
                default_action="Deny",
                bypass=["AzureServices", "Logging", "Metrics"],
                virtual_network_subnet_ids=list(props.subnet_ids),
                ip_rules=[cidr.removesuffix("/32") for cidr in props.operator_ip_ranges],
            ),
        )
        self.checkpoints = self._container("checkpoints", props.checkpoint_container)
        # Outlives every instance, so a dead letter is never lost once its batch is checkpointed.
        self.dead_letters = self._container("dead_letters", props.dead_letter_container)
        # One small blob per verdict key: which host sends it (`graphtap.processing.sinks.ledger`).
        self.verdict_ledger = self._container("verdict_ledger", props.verdict_ledger_container)
        self.control_plane = self._container("control_plane", props.control_plane_container)
        # Created through Resource Manager (storage_account_id): shared keys stay disabled.
        self.lifecycle_queue = StorageQueue(
            self, "lifecycle_queue", name=props.lifecycle_queue, storage_account_id=self.account.id
        )
        self.lifecycle_poison_queue = StorageQueue(
            self,
            "lifecycle_poison_queue",
            name=props.lifecycle_poison_queue,
            storage_account_id=self.account.id,
        )
        self.lifecycle = forget_blobs(
            self,
            self.account,
            rule="forget-old-verdict-keys",
            container=props.verdict_ledger_container,
            days=props.verdict_ledger_days,
        )
        self.function_containers: dict[str, StorageContainer] = {}
        if props.function_containers:
            for name in (*FUNCTION_HOST_CONTAINERS, props.function_package_container):
                self.function_containers[name] = self._container(name.replace("-", "_"), name)
        self.blob_endpoint = props.cloud.blob_endpoint(props.account_name)
        self.deployment: DeploymentFacts = {
            "checkpoint_account_url": self.blob_endpoint,
            "checkpoint_container": props.checkpoint_container,
            "dead_letter_container": props.dead_letter_container,
            "verdict_ledger_container": props.verdict_ledger_container,
            "control_plane_container": props.control_plane_container,
            "lifecycle_queue_account_url": props.cloud.storage_endpoint(
                props.account_name, "queue"
            ),
            "lifecycle_queue": props.lifecycle_queue,
            "lifecycle_poison_queue": props.lifecycle_poison_queue,
        }

    def _container(self, id_: str, name: str) -> StorageContainer:
        return StorageContainer(
            self,
            id_,
            name=name,
            storage_account_id=self.account.id,
            container_access_type="private",
        )
