"""The cloud profiles: every host name per cloud, and agreement with the Azure SDKs' own tables."""

from __future__ import annotations

import pytest
from azure.core import AzureClouds
from azure.identity import AzureAuthorityHosts
from azure.mgmt.core.tools import get_arm_endpoints
from msgraph_core import NationalClouds

from graphtap.clouds import CHINA, CLOUDS, PUBLIC, US_GOVERNMENT, Cloud, UnknownCloud, cloud_named

#: cloud -> (Event Hubs host, Key Vault URI, blob endpoint, web app host, sign-in endpoint)
HOSTS = {
    "public": (
        "evhns-x.servicebus.windows.net",
        "https://kv-x.vault.azure.net/",
        "https://stx.blob.core.windows.net",
        "app-x.azurewebsites.net",
        "https://login.microsoftonline.com/t1/v2.0",
    ),
    "usgov": (
        "evhns-x.servicebus.usgovcloudapi.net",
        "https://kv-x.vault.usgovcloudapi.net/",
        "https://stx.blob.core.usgovcloudapi.net",
        "app-x.azurewebsites.us",
        "https://login.microsoftonline.us/t1/v2.0",
    ),
    "china": (
        "evhns-x.servicebus.chinacloudapi.cn",
        "https://kv-x.vault.azure.cn/",
        "https://stx.blob.core.chinacloudapi.cn",
        "app-x.chinacloudsites.cn",
        "https://login.chinacloudapi.cn/t1/v2.0",
    ),
}


@pytest.mark.parametrize("name", list(HOSTS))
def test_each_cloud_builds_its_own_host_names(name: str) -> None:
    cloud = cloud_named(name)
    assert (
        cloud.eventhubs_host("evhns-x"),
        cloud.key_vault_uri("kv-x"),
        cloud.blob_endpoint("stx"),
        cloud.web_app_host("app-x"),
        cloud.tenant_sign_in("t1"),
    ) == HOSTS[name]


def test_the_profiles_are_the_three_clouds() -> None:
    assert list(CLOUDS) == ["public", "usgov", "china"]
    assert [CLOUDS[name] for name in CLOUDS] == [PUBLIC, US_GOVERNMENT, CHINA]


@pytest.mark.parametrize(
    ("cloud", "authority"),
    [
        (PUBLIC, AzureAuthorityHosts.AZURE_PUBLIC_CLOUD),
        (US_GOVERNMENT, AzureAuthorityHosts.AZURE_GOVERNMENT),
        (CHINA, AzureAuthorityHosts.AZURE_CHINA),
    ],
)
def test_authority_is_azure_identitys(cloud: Cloud, authority: str) -> None:
    assert cloud.authority_host == authority
    assert cloud.signing_keys_url == f"https://{authority}/common/discovery/v2.0/keys"


@pytest.mark.parametrize(
    ("cloud", "endpoints"),
    [
        (PUBLIC, [NationalClouds.Global]),
        (US_GOVERNMENT, [NationalClouds.US_GOV, NationalClouds.US_DoD]),
        (CHINA, [NationalClouds.China]),
    ],
)
def test_graph_endpoints_are_msgraphs_national_clouds(
    cloud: Cloud, endpoints: list[NationalClouds]
) -> None:
    assert cloud.graph_endpoints == tuple(e.value for e in endpoints)
    assert cloud.graph_endpoint == endpoints[0].value


@pytest.mark.parametrize(
    ("cloud", "setting"),
    [
        (PUBLIC, AzureClouds.AZURE_PUBLIC_CLOUD),
        (US_GOVERNMENT, AzureClouds.AZURE_US_GOVERNMENT),
        (CHINA, AzureClouds.AZURE_CHINA_CLOUD),
    ],
)
def test_resource_manager_and_its_scope_are_azure_mgmt_cores(
    cloud: Cloud, setting: AzureClouds
) -> None:
    endpoints = get_arm_endpoints(setting)
    assert f"{cloud.resource_manager}/" == endpoints["resource_manager"]
    assert [cloud.resource_manager_scope] == endpoints["credential_scopes"]


def test_us_government_has_the_dod_graph_as_well() -> None:
    dod = US_GOVERNMENT.graph_service("https://dod-graph.microsoft.us/")
    assert dod is not None
    assert dod.azuread_environment == "usgovernmentl5"
    assert US_GOVERNMENT.graph_service(US_GOVERNMENT.graph_endpoint) is not None
    assert US_GOVERNMENT.graph_service(PUBLIC.graph_endpoint) is None
    assert PUBLIC.graph_service("https://graph.microsoft.us") is None


@pytest.mark.parametrize(
    ("cloud", "v2", "v1"),
    [
        (PUBLIC, "https://login.microsoftonline.com/", "https://sts.windows.net/"),
        (US_GOVERNMENT, "https://login.microsoftonline.us/", "https://sts.windows.net/"),
        (CHINA, "https://login.partner.microsoftonline.cn/", "https://sts.chinacloudapi.cn/"),
    ],
)
def test_token_issuers(cloud: Cloud, v2: str, v1: str) -> None:
    assert cloud.token_issuer("2.0") == (v2, "/v2.0")
    assert cloud.token_issuer("1.0") == (v1, "/")


@pytest.mark.parametrize(
    ("cloud", "environment"),
    [(PUBLIC, "public"), (US_GOVERNMENT, "usgovernment"), (CHINA, "china")],
)
def test_azurerm_environment(cloud: Cloud, environment: str) -> None:
    assert cloud.azurerm_environment == environment


def test_an_unknown_cloud_names_the_choices() -> None:
    with pytest.raises(UnknownCloud, match=r"'germany'.*public, usgov, china"):
        cloud_named("germany")
