"""The Azure clouds an environment can run in, and every host name that differs between them.

Each environment chooses one profile (`cloud = "public" | "usgov" | "china"` in its stack
file). The stack builds its host names, its providers' `environment` and the web app's sign-in
from the profile; the runtime reads the profile's name from the deployment (the `cloud` fact,
`GRAPHTAP_CLOUD`) and points its credential, Resource Manager, Graph and token checks at the
same cloud. Tokens of one cloud are worthless in another, so nothing here mixes them.

Two audiences need no entry: Key Vault's clients take theirs from the vault's own
authentication challenge (checked against the vault's host), and Event Hubs' resource
(`https://eventhubs.azure.net/`) and Storage's (`https://storage.azure.com/`) are the same in
every cloud.

Stdlib only: the stacks import this module as they import `graphtap.deployment`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

CloudName = Literal["public", "usgov", "china"]
DEFAULT_CLOUD: CloudName = "public"


class UnknownCloud(ValueError):
    """A cloud name that is not one of the profiles."""


@dataclass(frozen=True, slots=True)
class GraphService:
    """One Microsoft Graph deployment of a cloud: its origin, and the name the azuread
    provider gives it (US Government has two: L4, and L5 for the Department of Defense)."""

    endpoint: str
    azuread_environment: str


@dataclass(frozen=True, slots=True)
class Cloud:
    name: CloudName
    description: str
    #: Graph deployments of this cloud; the first is the default.
    graph: tuple[GraphService, ...]
    #: Entra ID's sign-in host (`azure.identity.AzureAuthorityHosts`).
    authority_host: str
    resource_manager: str
    #: The scope Resource Manager tokens are requested for (it differs from the endpoint in
    #: US Government).
    resource_manager_scope: str
    eventhubs_suffix: str
    key_vault_suffix: str
    storage_suffix: str
    app_service_suffix: str
    #: Who issues v2.0 tokens (`iss` = https://<host>/<tenant>/v2.0) and v1.0 tokens
    #: (`iss` = https://<host>/<tenant>/).
    issuer_host: str
    issuer_v1_host: str
    #: The azurerm provider's (and the azurerm state backend's) name for this cloud.
    azurerm_environment: str
    #: Whom Logs Ingestion API tokens are for (`https://monitor.azure.com` in the public cloud).
    monitor_audience: str

    @property
    def graph_endpoint(self) -> str:
        return self.graph[0].endpoint

    @property
    def graph_endpoints(self) -> tuple[str, ...]:
        return tuple(service.endpoint for service in self.graph)

    def graph_service(self, endpoint: str) -> GraphService | None:
        """The Graph deployment at `endpoint` (an https origin), if it is one of this cloud's."""
        wanted = endpoint.rstrip("/").lower()
        return next((s for s in self.graph if s.endpoint == wanted), None)

    def eventhubs_host(self, namespace: str) -> str:
        return f"{namespace}.{self.eventhubs_suffix}"

    def key_vault_uri(self, vault: str) -> str:
        return f"https://{vault}.{self.key_vault_suffix}/"

    def storage_endpoint(self, account: str, service: str = "blob") -> str:
        """A storage account's endpoint for `service` (blob, queue, table)."""
        return f"https://{account}.{service}.{self.storage_suffix}"

    def blob_endpoint(self, account: str) -> str:
        return self.storage_endpoint(account, "blob")

    def web_app_host(self, app: str) -> str:
        return f"{app}.{self.app_service_suffix}"

    def tenant_sign_in(self, tenant_id: str) -> str:
        """Entra ID's v2.0 endpoint for one tenant (the OpenID Connect metadata lives below)."""
        return f"https://{self.authority_host}/{tenant_id}/v2.0"

    @property
    def signing_keys_url(self) -> str:
        """Entra ID's token signing keys, both token versions."""
        return f"https://{self.authority_host}/common/discovery/v2.0/keys"

    def token_issuer(self, version: str) -> tuple[str, str]:
        """What an `iss` of a token of `version` ("1.0" or "2.0") is: (prefix, suffix) around
        the tenant id."""
        if version == "2.0":
            return f"https://{self.issuer_host}/", "/v2.0"
        return f"https://{self.issuer_v1_host}/", "/"


PUBLIC = Cloud(
    name="public",
    description="Azure (public cloud)",
    graph=(GraphService("https://graph.microsoft.com", "global"),),
    authority_host="login.microsoftonline.com",
    resource_manager="https://management.azure.com",
    resource_manager_scope="https://management.azure.com/.default",
    eventhubs_suffix="servicebus.windows.net",
    key_vault_suffix="vault.azure.net",
    storage_suffix="core.windows.net",
    app_service_suffix="azurewebsites.net",
    issuer_host="login.microsoftonline.com",
    issuer_v1_host="sts.windows.net",
    azurerm_environment="public",
    monitor_audience="https://monitor.azure.com",
)

US_GOVERNMENT = Cloud(
    name="usgov",
    description="Azure Government (US)",
    graph=(
        GraphService("https://graph.microsoft.us", "usgovernmentl4"),
        GraphService("https://dod-graph.microsoft.us", "usgovernmentl5"),
    ),
    authority_host="login.microsoftonline.us",
    resource_manager="https://management.usgovcloudapi.net",
    resource_manager_scope="https://management.core.usgovcloudapi.net/.default",
    eventhubs_suffix="servicebus.usgovcloudapi.net",
    key_vault_suffix="vault.usgovcloudapi.net",
    storage_suffix="core.usgovcloudapi.net",
    app_service_suffix="azurewebsites.us",
    issuer_host="login.microsoftonline.us",
    issuer_v1_host="sts.windows.net",
    azurerm_environment="usgovernment",
    monitor_audience="https://monitor.azure.us",
)

CHINA = Cloud(
    name="china",
    description="Azure operated by 21Vianet (China)",
    graph=(GraphService("https://microsoftgraph.chinacloudapi.cn", "china"),),
    authority_host="login.chinacloudapi.cn",
    resource_manager="https://management.chinacloudapi.cn",
    resource_manager_scope="https://management.chinacloudapi.cn/.default",
    eventhubs_suffix="servicebus.chinacloudapi.cn",
    key_vault_suffix="vault.azure.cn",
    storage_suffix="core.chinacloudapi.cn",
    app_service_suffix="chinacloudsites.cn",
    issuer_host="login.partner.microsoftonline.cn",
    issuer_v1_host="sts.chinacloudapi.cn",
    azurerm_environment="china",
    monitor_audience="https://monitor.azure.cn",
)

CLOUDS: Mapping[str, Cloud] = {cloud.name: cloud for cloud in (PUBLIC, US_GOVERNMENT, CHINA)}


def cloud_named(name: str) -> Cloud:
    """The profile called `name`; raises UnknownCloud naming the choices."""
    try:
        return CLOUDS[name]
    except KeyError:
        raise UnknownCloud(f"unknown cloud {name!r} (one of: {', '.join(CLOUDS)})") from None
