"""Where the runtime runs: a Linux web app (always on) and, when the environment asks for it, a
Flex Consumption function app that scales out per Event Hubs partition.

App Service Authentication (Entra ID) fronts the web app: every path but the health check needs
a sign-in or a bearer token for the status app registration, and the app itself admits only
callers holding the app role its `GRAPHTAP_STATUS_ROLE` / `GRAPHTAP_METRICS_ROLE` settings name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from graphtap.clouds import PUBLIC, Cloud
from stacks.cdk import (
    Construct,
    FunctionAppFlexConsumption,
    FunctionAppFlexConsumptionIdentity,
    FunctionAppFlexConsumptionSiteConfig,
    LinuxWebApp,
    LinuxWebAppAuthSettingsV2,
    LinuxWebAppAuthSettingsV2ActiveDirectoryV2,
    LinuxWebAppAuthSettingsV2Login,
    LinuxWebAppIdentity,
    LinuxWebAppSiteConfig,
    LinuxWebAppSiteConfigApplicationStack,
    ServicePlan,
)
from stacks.constructs import Placement

STARTUP_COMMAND = "python -m graphtap serve"
HEALTH_CHECK_PATH = "/healthz"
# The Event Hubs trigger's connection name in runtime/function_app.py.
TRIGGER_CONNECTION = "NotificationsHub"
# The app settings naming the app roles the web app admits (graphtap.hosts.access).
STATUS_ROLE_SETTING = "GRAPHTAP_STATUS_ROLE"
METRICS_ROLE_SETTING = "GRAPHTAP_METRICS_ROLE"


@dataclass(frozen=True)
class WebAppAuthProps:
    """App Service Authentication with Entra ID in front of the web app."""

    client_id: str  # the status app registration
    tenant_auth_endpoint: str  # the tenant's Entra ID v2.0 endpoint, in the environment's cloud
    audiences: Sequence[str]
    status_role: str  # may read every page
    metrics_role: str  # may read /metrics only


@dataclass(frozen=True)
class FunctionAppProps:
    plan_name: str
    app_name: str
    subnet_id: str
    package_container_url: str
    storage_account_name: str
    cloud: Cloud  # where the Functions host finds its storage account
    consumer_group: str
    max_instances: int
    memory_mb: int


@dataclass(frozen=True)
class HostingProps:
    placement: Placement
    plan_name: str
    plan_sku: str
    web_app_name: str
    python_version: str
    subnet_id: str
    identity_id: str
    identity_client_id: str
    eventhub_namespace_host: str
    app_settings: Mapping[str, str]
    web_app_processes: bool  # False when only the function app processes notifications
    auth: WebAppAuthProps
    function: FunctionAppProps | None


class Hosting(Construct):
    def __init__(self, scope: Construct, id_: str, props: HostingProps) -> None:
        super().__init__(scope, id_)
        where = props.placement
        self.plan = ServicePlan(
            self,
            "plan",
            name=props.plan_name,
            location=where.location,
            resource_group_name=where.resource_group_name,
            os_type="Linux",
            sku_name=props.plan_sku,
            tags=dict(where.tags),
        )
        self.web_app = LinuxWebApp(
            self,
            "web_app",
            name=props.web_app_name,
            location=where.location,
            resource_group_name=where.resource_group_name,
            service_plan_id=self.plan.id,
            https_only=True,
            client_affinity_enabled=False,
            ftp_publish_basic_authentication_enabled=False,
            webdeploy_publish_basic_authentication_enabled=False,
            virtual_network_subnet_id=props.subnet_id,
            identity=LinuxWebAppIdentity(type="UserAssigned", identity_ids=[props.identity_id]),
            key_vault_reference_identity_id=props.identity_id,
            app_settings={
                **props.app_settings,
                "GRAPHTAP_PROCESS_NOTIFICATIONS": str(props.web_app_processes).lower(),
                STATUS_ROLE_SETTING: props.auth.status_role,
                METRICS_ROLE_SETTING: props.auth.metrics_role,
                "SCM_DO_BUILD_DURING_DEPLOYMENT": "true",
            },
            auth_settings_v2=_authentication(props.auth),
            site_config=LinuxWebAppSiteConfig(
                always_on=True,
                app_command_line=STARTUP_COMMAND,
                health_check_path=HEALTH_CHECK_PATH,
                health_check_eviction_time_in_min=5,
                ftps_state="Disabled",
                http2_enabled=True,
                minimum_tls_version="1.2",
                scm_minimum_tls_version="1.2",
                remote_debugging_enabled=False,
                vnet_route_all_enabled=True,
                application_stack=LinuxWebAppSiteConfigApplicationStack(
                    python_version=props.python_version
                ),
            ),
            logs={
                "detailed_error_messages": True,
                "failed_request_tracing": True,
                "http_logs": {"file_system": {"retention_in_days": 7, "retention_in_mb": 35}},
            },
            tags=dict(where.tags),
        )
        self.function_plan: ServicePlan | None = None
        self.function_app: FunctionAppFlexConsumption | None = None
        if props.function is not None:
            self._function_app(props, props.function)

    def _function_app(self, props: HostingProps, function: FunctionAppProps) -> None:
        where = props.placement
        self.function_plan = ServicePlan(
            self,
            "function_plan",
            name=function.plan_name,
            location=where.location,
            resource_group_name=where.resource_group_name,
            os_type="Linux",
            sku_name="FC1",
            tags=dict(where.tags),
        )
        identity = {
            "credential": "managedidentity",
            "clientId": props.identity_client_id,
        }
        settings = {
            **props.app_settings,
            "GRAPHTAP_CONSUMER_GROUP": function.consumer_group,
            f"{TRIGGER_CONNECTION}__fullyQualifiedNamespace": props.eventhub_namespace_host,
            **{f"{TRIGGER_CONNECTION}__{key}": value for key, value in identity.items()},
            **{
                f"AzureWebJobsStorage__{key}": value
                for key, value in _host_storage(function).items()
            },
            **{f"AzureWebJobsStorage__{key}": value for key, value in identity.items()},
        }
        self.function_app = FunctionAppFlexConsumption(
            self,
            "function_app",
            name=function.app_name,
            location=where.location,
            resource_group_name=where.resource_group_name,
            service_plan_id=self.function_plan.id,
            runtime_name="python",
            runtime_version=props.python_version,
            storage_container_type="blobContainer",
            storage_container_endpoint=function.package_container_url,
            storage_authentication_type="UserAssignedIdentity",
            storage_user_assigned_identity_id=props.identity_id,
            maximum_instance_count=function.max_instances,
            instance_memory_in_mb=function.memory_mb,
            https_only=True,
            webdeploy_publish_basic_authentication_enabled=False,
            virtual_network_subnet_id=function.subnet_id,
            identity=FunctionAppFlexConsumptionIdentity(
                type="UserAssigned", identity_ids=[props.identity_id]
            ),
            app_settings=settings,
            site_config=FunctionAppFlexConsumptionSiteConfig(
                minimum_tls_version="1.2",
                scm_minimum_tls_version="1.2",
                http2_enabled=True,
                remote_debugging_enabled=False,
                vnet_route_all_enabled=True,
            ),
            tags=dict(where.tags),
        )


def _host_storage(function: FunctionAppProps) -> dict[str, str]:
    """Where the Functions host keeps its locks, keys and trigger checkpoints. Given only the
    account name, the host assumes the public cloud's storage suffix; in any other cloud it
    needs the service endpoints."""
    account, cloud = function.storage_account_name, function.cloud
    if cloud == PUBLIC:
        return {"accountName": account}
    return {
        "blobServiceUri": cloud.storage_endpoint(account, "blob"),
        "queueServiceUri": cloud.storage_endpoint(account, "queue"),
    }


def _authentication(auth: WebAppAuthProps) -> LinuxWebAppAuthSettingsV2:
    """Entra ID sign-in for every path but the health check: browsers are sent to the sign-in
    page, bearer tokens for the status API are accepted, and no token store keeps them."""
    return LinuxWebAppAuthSettingsV2(
        auth_enabled=True,
        require_authentication=True,
        require_https=True,
        unauthenticated_action="RedirectToLoginPage",
        default_provider="azureactivedirectory",
        excluded_paths=[HEALTH_CHECK_PATH],
        active_directory_v2=LinuxWebAppAuthSettingsV2ActiveDirectoryV2(
            client_id=auth.client_id,
            tenant_auth_endpoint=auth.tenant_auth_endpoint,
            allowed_audiences=list(auth.audiences),
        ),
        login=LinuxWebAppAuthSettingsV2Login(token_store_enabled=False),
    )
