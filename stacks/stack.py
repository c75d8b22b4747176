"""One environment's stack: the constructs composed, wired to each other, and the outputs
operators and `make bootstrap` read."""

from __future__ import annotations

from typing import Any

from graphtap.deployment import APP_SETTINGS, Deployment
from stacks.aspects import SecurityInvariants
from stacks.cdk import (
    Aspects,
    AzureadProvider,
    AzurermBackend,
    AzurermProvider,
    AzurermProviderFeatures,
    AzurermProviderFeaturesKeyVault,
    Construct,
    DataAzurermClientConfig,
    ResourceGroup,
    TerraformOutput,
    TerraformStack,
    Token,
)
from stacks.config import EnvironmentConfig
from stacks.constructs import Placement
from stacks.constructs.alerts import Alerts, AlertsProps
from stacks.constructs.eventhubs import EventHubs, EventHubsProps
from stacks.constructs.graph_permissions import (
    RESYNC_PERMISSIONS,
    GraphPermissions,
    GraphPermissionsProps,
    enforcement_permissions,
    subscription_permissions,
)
from stacks.constructs.hosting import FunctionAppProps, Hosting, HostingProps, WebAppAuthProps
from stacks.constructs.identity import (
    ChangeTrackingProps,
    ChangeTrackingSender,
    RuntimeIdentity,
    RuntimeIdentityProps,
)
from stacks.constructs.keyvault import KeyVaultProps, NotificationKeyVault
from stacks.constructs.log_ingestion import NO_LOG_INGESTION, LogIngestion, LogIngestionProps
from stacks.constructs.monitoring import Monitoring, MonitoringProps
from stacks.constructs.network import Network, NetworkProps
from stacks.constructs.payload_storage import (
    NO_PAYLOAD_STORAGE,
    PayloadStorage,
    PayloadStorageProps,
)
from stacks.constructs.sentinel import Sentinel, SentinelProps
from stacks.constructs.status_access import (
    METRICS_READ,
    STATUS_READ,
    StatusAccess,
    StatusAccessProps,
)
from stacks.constructs.storage import CheckpointStorage, StorageProps


class GraphtapStack(TerraformStack):
    """Everything one environment needs in Azure and Entra ID, named from its config."""

    def __init__(self, scope: Construct, config: EnvironmentConfig) -> None:
        super().__init__(scope, config.name)
        names, function_app, cloud = config.names, config.hosting.function_app, config.cloud
        # Every provider is pinned to the environment's cloud, whatever ARM_ENVIRONMENT says.
        AzurermBackend(
            self,
            environment=cloud.azurerm_environment,
            resource_group_name=config.backend.resource_group,
            storage_account_name=config.backend.storage_account,
            container_name=config.backend.container,
            key=config.backend.key,
            use_azuread_auth=config.backend.use_azuread_auth,
        )
        AzurermProvider(
            self,
            "azurerm",
            features=[
                AzurermProviderFeatures(
                    key_vault=[
                        AzurermProviderFeaturesKeyVault(
                            purge_soft_delete_on_destroy=False,
                            purge_soft_deleted_certificates_on_destroy=False,
                        )
                    ]
                )
            ],
            environment=cloud.azurerm_environment,
            storage_use_azuread=True,
            subscription_id=config.subscription_id,
        )
        AzureadProvider(self, "azuread", environment=config.azuread_environment)
        client = DataAzurermClientConfig(self, "client")

        tags = {"application": "graphtap", "environment": config.name, **config.tags}
        self.resource_group = ResourceGroup(
            self, "rg", name=names.resource_group, location=config.region, tags=tags
        )
        where = Placement(self.resource_group.name, config.region, tags)

        self.monitoring = Monitoring(
            self,
            "monitoring",
            MonitoringProps(
                where, names.log_analytics, names.app_insights, config.log_retention_days
            ),
        )
        self.network = Network(
            self,
            "network",
            NetworkProps(
                where,
                names.virtual_network,
                names.network_security_group,
                config.network.address_space,
                functions_subnet=function_app,
            ),
        )
        self.eventhubs = EventHubs(
            self,
            "eventhubs",
            EventHubsProps(
                where,
                names.eventhub_namespace,
                names.notifications_hub,
                names.findings_hub,
                names.consumer_group,
                config.eventhubs,
                cloud=cloud,
                extra_consumer_groups=(names.function_consumer_group,)
                if config.hosting.processor == "both"
                else (),
            ),
        )
        self.storage = CheckpointStorage(
            self,
            "storage",
            StorageProps(
                where,
                names.storage_account,
                names.checkpoint_container,
                names.dead_letter_container,
                names.verdict_ledger_container,
                # The hub's retention plus a day for a resync of the oldest gap.
                config.eventhubs.retention_days + 1,
                names.function_package_container,
                self.network.subnet_ids,
                config.network.operator_ip_ranges,
                function_containers=function_app,
                cloud=cloud,
                control_plane_container=names.control_plane_container,
                lifecycle_queue=names.lifecycle_queue,
                lifecycle_poison_queue=names.lifecycle_poison_queue,
            ),
        )
        self.keyvault = NotificationKeyVault(
            self,
            "keyvault",
            KeyVaultProps(
                where,
                names.key_vault,
                client.tenant_id,
                names.certificate,
                f"CN=graphtap-notifications-{config.name}",
                self.network.subnet_ids,
                config.network.operator_ip_ranges,
                deployer_object_id=client.object_id,
                runtime_secrets=(names.client_state_secret, names.finding_hash_key_secret),
                cloud=cloud,
            ),
        )
        self.runtime = RuntimeIdentity(
            self,
            "runtime",
            RuntimeIdentityProps(
                where,
                names.runtime_identity,
                notifications_hub_id=self.eventhubs.notifications.id,
                findings_hub_id=self.eventhubs.findings.id,
                checkpoint_container_id=self.storage.checkpoints.id,
                dead_letter_container_id=self.storage.dead_letters.id,
                verdict_ledger_container_id=self.storage.verdict_ledger.id,
                control_plane_container_id=self.storage.control_plane.id,
                lifecycle_queue_id=self.storage.lifecycle_queue.resource_manager_id,
                lifecycle_poison_queue_id=self.storage.lifecycle_poison_queue.resource_manager_id,
                certificate_id=self.keyvault.certificate.resource_manager_versionless_id,
                certificate_secret_id=self.keyvault.certificate_secret_scope,
                secret_ids={
                    name: self.keyvault.secret_scope(name)
                    for name in (names.client_state_secret, names.finding_hash_key_secret)
                },
                function_container_ids={
                    name: container.id
                    for name, container in self.storage.function_containers.items()
                },
            ),
        )
        self.change_tracking = ChangeTrackingSender(
            self,
            "graph_change_tracking",
            ChangeTrackingProps(notifications_hub_id=self.eventhubs.notifications.id),
        )
        granted = (
            *config.graph.permissions,
            *RESYNC_PERMISSIONS,
            *enforcement_permissions(config.source, processor=config.hosting.processor),
        )
        self.graph_permissions = GraphPermissions(
            self,
            "graph_permissions",
            GraphPermissionsProps(
                principal_object_id=self.runtime.service_principal.object_id,
                permissions=tuple(
                    dict.fromkeys(
                        (
                            *granted,
                            *subscription_permissions(config.source, config.name, granted),
                        )
                    )
                ),
            ),
        )
        self.log_ingestion = (
            LogIngestion(
                self,
                "log_ingestion",
                LogIngestionProps(
                    where,
                    workspace_id=self.monitoring.workspace.id,
                    endpoint_name=names.data_collection_endpoint,
                    rule_name=names.data_collection_rule,
                    runtime_principal_id=self.runtime.identity.principal_id,
                    retention_days=config.log_retention_days,
                ),
            )
            if config.findings.log_analytics
            else None
        )

        self.payload_storage = (
            PayloadStorage(
                self,
                "payload_storage",
                PayloadStorageProps(
                    where,
                    account_name=names.payload_account,
                    secret_name=names.payload_secret,
                    vault_name=names.payload_vault,
                    tenant_id=client.tenant_id,
                    retention_days=config.eventhubs.retention_days,
                    cloud=cloud,
                    runtime_principal_id=self.runtime.identity.principal_id,
                    change_tracking_object_id=self.change_tracking.service_principal.object_id,
                    deployer_object_id=client.object_id,
                ),
            )
            if config.graph.large_payloads
            else None
        )

        identity = self.runtime.identity
        # What the runtime is told about this deployment: every construct's facts, plus the
        # environment's own. Each `Deployment` field becomes an output; those the hosts read
        # become app settings too (`graphtap.deployment.APP_SETTINGS`).
        self.deployment: dict[str, Any] = {
            "environment": config.name,
            "tenant_id": client.tenant_id,
            "tenant_domain": config.tenant_domain,
            "subscription_id": client.subscription_id,
            "resource_group": names.resource_group,
            "notification_url": self.eventhubs.notification_url(config.tenant_domain),
            "graph_endpoint": config.graph.endpoint,
            "cloud": cloud.name,
            "findings_destinations": ",".join(config.findings.destinations),
            "web_app_name": names.web_app,
            "function_app_name": names.function_app if function_app else Token.null_value(),
            **self.eventhubs.deployment,
            **self.storage.deployment,
            **self.keyvault.deployment,
            **self.runtime.deployment,
            **(self.log_ingestion.deployment if self.log_ingestion else NO_LOG_INGESTION),
            **(self.payload_storage.deployment if self.payload_storage else NO_PAYLOAD_STORAGE),
        }
        if missing := set(Deployment.field_names()) ^ set(self.deployment):
            raise ValueError(f"the stack and graphtap.deployment.Deployment disagree on {missing}")
        settings = {
            APP_SETTINGS[fact]: value
            for fact, value in self.deployment.items()
            if fact in APP_SETTINGS and value is not None
        }
        settings["APPLICATIONINSIGHTS_CONNECTION_STRING"] = (
            self.monitoring.app_insights.connection_string
        )
        function = None
        if function_app:
            assert self.network.functions_subnet is not None
            function = FunctionAppProps(
                plan_name=names.function_plan,
                app_name=names.function_app,
                subnet_id=self.network.functions_subnet.id,
                package_container_url=(
                    f"{self.storage.blob_endpoint}/{names.function_package_container}"
                ),
                storage_account_name=names.storage_account,
                cloud=cloud,
                consumer_group=names.function_consumer_group
                if config.hosting.processor == "both"
                else names.consumer_group,
                max_instances=config.hosting.function_max_instances,
                memory_mb=config.hosting.function_memory_mb,
            )
        self.status_access = StatusAccess(
            self,
            "status_access",
            StatusAccessProps(
                display_name=f"{config.prefix}-{config.name}-status",
                web_app_hostname=cloud.web_app_host(names.web_app),
                readers_group_object_id=config.access.status_readers_group,
                metrics_scraper_object_id=config.access.metrics_scraper,
            ),
        )
        self.hosting = Hosting(
            self,
            "hosting",
            HostingProps(
                where,
                plan_name=names.service_plan,
                plan_sku=config.hosting.app_service_sku,
                web_app_name=names.web_app,
                python_version=config.hosting.python_version,
                subnet_id=self.network.apps_subnet.id,
                identity_id=identity.id,
                identity_client_id=identity.client_id,
                eventhub_namespace_host=self.eventhubs.host,
                app_settings=settings,
                web_app_processes=config.hosting.processor != "function",
                auth=WebAppAuthProps(
                    client_id=self.status_access.client_id,
                    tenant_auth_endpoint=cloud.tenant_sign_in(client.tenant_id),
                    audiences=self.status_access.audiences,
                    status_role=STATUS_READ,
                    metrics_role=METRICS_READ,
                ),
                function=function,
            ),
        )

        monitor = self.monitoring.diagnose
        monitor("eventhubs", self.eventhubs.namespace.id)
        monitor("keyvault", self.keyvault.vault.id)
        monitor("storage", self.storage.account.id, logs=False, metric="Transaction")
        monitor(
            "storage_blob", f"{self.storage.account.id}/blobServices/default", metric="Transaction"
        )
        monitor("web_app", self.hosting.web_app.id)
        if self.hosting.function_app is not None:
            monitor("function_app", self.hosting.function_app.id)
        if self.payload_storage is not None:  # who reads and writes Graph's payloads
            monitor(
                "payload_storage_blob",
                f"{self.payload_storage.account.id}/blobServices/default",
                metric="Transaction",
            )

        self.alerts = Alerts(
            self,
            "alerts",
            AlertsProps(
                where,
                action_group_name=names.action_group,
                rule_stem=names.alert_rule,
                short_name=f"{config.prefix}-{config.name}",
                workspace_id=self.monitoring.workspace.id,
                config=config.alerts,
            ),
        )
        self.sentinel = None
        if config.sentinel:
            assert self.log_ingestion is not None, "config: sentinel needs the verdict table"
            self.sentinel = Sentinel(
                self,
                "sentinel",
                SentinelProps(
                    where,
                    workspace_id=self.monitoring.workspace.id,
                    environment=config.name,
                    workbook_name=names.workbook,
                    verdicts=(self.log_ingestion.table, self.log_ingestion.function),
                ),
            )

        for name, value in self.deployment.items():
            TerraformOutput(self, name, value=Token.null_value() if value is None else value)

        # The payload account alone allows shared keys and every network: Graph writes to it;
        # its vault alone admits every network: Graph reads the account's key from there.
        Aspects.of(self).add(
            SecurityInvariants(
                graph_writable_accounts=(names.payload_account,) if self.payload_storage else (),
                graph_readable_vaults=(names.payload_vault,) if self.payload_storage else (),
            )
        )
