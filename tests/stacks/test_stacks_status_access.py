"""Who may read the web app: App Service Authentication with Entra ID in front of it, the status
app registration whose roles the app checks, and the assignments each environment names."""

from __future__ import annotations

from typing import Any

import pytest

from graphtap.hosts.access import AccessPolicy
from stacks.config import load_all
from stacks.constructs.status_access import (
    METRICS_READ,
    METRICS_READ_ROLE_ID,
    STATUS_READ,
    STATUS_READ_ROLE_ID,
)
from tests.stacks.test_stacks_stack import only, ref

SynthesizedStack = Any
#: Each cloud's Entra ID sign-in host and App Service domain.
SIGN_IN_HOST = {
    "public": "login.microsoftonline.com",
    "usgov": "login.microsoftonline.us",
    "china": "login.chinacloudapi.cn",
}
APP_SERVICE_DOMAIN = {
    "public": "azurewebsites.net",
    "usgov": "azurewebsites.us",
    "china": "chinacloudsites.cn",
}


@pytest.fixture(params=[config.name for config in load_all()], scope="module")
def stack(request: pytest.FixtureRequest, synthesized: Any) -> SynthesizedStack:
    return synthesized.stacks[request.param]


def client_id(stack: SynthesizedStack) -> str:
    return ref(stack, "azuread_application_registration", "status_access/application", "client_id")


def role(stack: SynthesizedStack, name: str) -> str:
    return ref(stack, "azuread_application_app_role", f"status_access/{name}", "role_id")


def test_entra_sign_in_fronts_every_path_but_the_health_check(stack: SynthesizedStack) -> None:
    app = only(stack, "azurerm_linux_web_app")
    auth = app["auth_settings_v2"]
    assert auth["auth_enabled"] is True
    assert auth["require_authentication"] is True
    assert auth["require_https"] is True
    # browsers go to the sign-in page; scrapers send a bearer token
    assert auth["unauthenticated_action"] == "RedirectToLoginPage"
    assert auth["default_provider"] == "azureactivedirectory"
    assert auth["excluded_paths"] == [app["site_config"]["health_check_path"]] == ["/healthz"]
    assert auth["login"] == {"token_store_enabled": False}
    entra = auth["active_directory_v2"]
    assert entra["client_id"] == client_id(stack)
    host = SIGN_IN_HOST[stack.config.cloud.name]
    assert entra["tenant_auth_endpoint"] == (
        f"https://{host}/${{data.azurerm_client_config.client.tenant_id}}/v2.0"
    )
    assert entra["allowed_audiences"] == [client_id(stack), f"api://{client_id(stack)}"]
    # no client secret anywhere: the sign-in uses the ID token flow
    assert not {"client_secret_setting_name", "client_secret_certificate_thumbprint"} & set(entra)
    assert "auth_settings" not in app


def test_the_web_app_is_told_which_roles_to_admit(stack: SynthesizedStack) -> None:
    settings = only(stack, "azurerm_linux_web_app")["app_settings"]
    assert settings["GRAPHTAP_STATUS_ROLE"] == STATUS_READ
    assert settings["GRAPHTAP_METRICS_ROLE"] == METRICS_READ
    # the runtime reads exactly these settings (graphtap.hosts.access)
    assert AccessPolicy.from_environment(settings) == AccessPolicy(STATUS_READ, METRICS_READ)
    for function in stack.resources("azurerm_function_app_flex_consumption").values():
        assert "GRAPHTAP_STATUS_ROLE" not in function["app_settings"]  # serves no pages


def test_the_status_app_registration(stack: SynthesizedStack) -> None:
    names = stack.config.names
    registration = only(stack, "azuread_application_registration")
    assert registration["display_name"] == f"{stack.config.prefix}-{stack.config.name}-status"
    assert registration["sign_in_audience"] == "AzureADMyOrg"
    assert registration["requested_access_token_version"] == 2
    assert registration["implicit_id_token_issuance_enabled"] is True
    assert "implicit_access_token_issuance_enabled" not in registration
    application = ref(stack, "azuread_application_registration", "status_access/application")
    identifier = only(stack, "azuread_application_identifier_uri")
    assert identifier["application_id"] == application
    assert identifier["identifier_uri"] == f"api://{client_id(stack)}"
    redirect = only(stack, "azuread_application_redirect_uris")
    assert redirect["application_id"] == application
    assert redirect["type"] == "Web"
    domain = APP_SERVICE_DOMAIN[stack.config.cloud.name]
    assert redirect["redirect_uris"] == [
        f"https://{names.web_app}.{domain}/.auth/login/aad/callback"
    ]
    assert not any("password" in kind for kind in stack.document["resource"])


def test_the_app_roles_and_the_assignment_requirement(stack: SynthesizedStack) -> None:
    application = ref(stack, "azuread_application_registration", "status_access/application")
    roles = {
        r["value"]: r
        for r in stack.resources("azuread_application_app_role").values()
        if r["application_id"] == application
    }
    assert set(roles) == {STATUS_READ, METRICS_READ}
    assert roles[STATUS_READ]["role_id"] == STATUS_READ_ROLE_ID
    assert roles[STATUS_READ]["allowed_member_types"] == ["User", "Application"]
    assert roles[METRICS_READ]["role_id"] == METRICS_READ_ROLE_ID
    assert roles[METRICS_READ]["allowed_member_types"] == ["Application"]
    assert STATUS_READ_ROLE_ID != METRICS_READ_ROLE_ID
    (sp,) = [
        sp
        for sp in stack.resources("azuread_service_principal").values()
        if sp["client_id"] == client_id(stack)
    ]
    # Entra issues tokens and sign-ins only to principals holding one of the roles
    assert sp["app_role_assignment_required"] is True


def test_the_roles_go_to_the_principals_the_environment_names(stack: SynthesizedStack) -> None:
    access = stack.config.access
    status_sp = ref(
        stack, "azuread_service_principal", "status_access/service_principal", "object_id"
    )
    granted = {
        (a["app_role_id"], a["principal_object_id"])
        for a in stack.resources("azuread_app_role_assignment").values()
        if a["resource_object_id"] == status_sp
    }
    expected = set()
    if access.status_readers_group is not None:
        expected.add((role(stack, "status_read"), access.status_readers_group))
    if access.metrics_scraper is not None:
        expected.add((role(stack, "metrics_read"), access.metrics_scraper))
    assert granted == expected


def test_the_shipped_environments_name_their_readers(
    dev: SynthesizedStack, prod: SynthesizedStack
) -> None:
    # dev names a readers group only, prod a scraper as well: both shapes are synthesized
    assert dev.config.access.status_readers_group is not None
    assert dev.config.access.metrics_scraper is None
    assert prod.config.access.metrics_scraper is not None
