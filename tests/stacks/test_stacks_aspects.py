"""The synth-time security invariants: each rule with an example it rejects and one it accepts,
and the Aspect stopping synth with the offending construct's path."""

from __future__ import annotations

from typing import Any

import pytest

from stacks.aspects import violations

HUB = "${azurerm_eventhub.eventhubs_notifications_1.id}"
NAMESPACE = "${azurerm_eventhub_namespace.eventhubs_namespace_1.id}"
NAMESPACE_OK = {
    "sku": "Standard",
    "local_authentication_enabled": False,
    "minimum_tls_version": "1.2",
}
STORAGE_OK = {
    "min_tls_version": "TLS1_2",
    "shared_access_key_enabled": False,
    "local_user_enabled": False,
    "allow_nested_items_to_be_public": False,
    "network_rules": {"default_action": "Deny"},
}
SITE_OK = {
    "https_only": True,
    "site_config": {"minimum_tls_version": "1.2", "scm_minimum_tls_version": "1.2"},
}


def role(scope: str, name: str = "Azure Event Hubs Data Sender") -> dict[str, Any]:
    return {"scope": scope, "role_definition_name": name, "principal_id": "x"}


# (rule, resource type, rejected config, accepted config)
RULES: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    (
        "local (SAS) authentication",
        "azurerm_eventhub_namespace",
        {**NAMESPACE_OK, "local_authentication_enabled": True},
        NAMESPACE_OK,
    ),
    (
        "local (SAS) authentication",
        "azurerm_eventhub_namespace",
        {**NAMESPACE_OK, "local_authentication_enabled": None},
        NAMESPACE_OK,
    ),
    (
        "minimum_tls_version",
        "azurerm_eventhub_namespace",
        {**NAMESPACE_OK, "minimum_tls_version": "1.1"},
        NAMESPACE_OK,
    ),
    (
        "Standard or Premium",
        "azurerm_eventhub_namespace",
        {**NAMESPACE_OK, "sku": "Basic"},
        NAMESPACE_OK,
    ),
    ("SAS authorization rules", "azurerm_eventhub_authorization_rule", {"send": True}, {}),
    (
        "SAS authorization rules",
        "azurerm_eventhub_namespace_authorization_rule",
        {"listen": True},
        {},
    ),
    (
        "shared keys",
        "azurerm_storage_account",
        {**STORAGE_OK, "shared_access_key_enabled": True},
        STORAGE_OK,
    ),
    ("TLS1_2", "azurerm_storage_account", {**STORAGE_OK, "min_tls_version": "TLS1_0"}, STORAGE_OK),
    (
        "local users",
        "azurerm_storage_account",
        {**STORAGE_OK, "local_user_enabled": True},
        STORAGE_OK,
    ),
    (
        "firewall default_action must be Deny",
        "azurerm_storage_account",
        {**STORAGE_OK, "network_rules": {"default_action": "Allow"}},
        STORAGE_OK,
    ),
    (
        "plain HTTP",
        "azurerm_storage_account",
        {**STORAGE_OK, "https_traffic_only_enabled": False},
        {**STORAGE_OK, "https_traffic_only_enabled": True},
    ),
    (
        "public blob",
        "azurerm_storage_account",
        {**STORAGE_OK, "allow_nested_items_to_be_public": True},
        STORAGE_OK,
    ),
    (
        "site_config.minimum_tls_version",
        "azurerm_linux_web_app",
        {
            **SITE_OK,
            "site_config": {"minimum_tls_version": "1.0", "scm_minimum_tls_version": "1.2"},
        },
        SITE_OK,
    ),
    (
        "site_config.scm_minimum_tls_version",
        "azurerm_function_app_flex_consumption",
        {**SITE_OK, "site_config": {"minimum_tls_version": "1.2"}},
        SITE_OK,
    ),
    ("https_only", "azurerm_linux_web_app", {**SITE_OK, "https_only": False}, SITE_OK),
    (
        "secret value in app_settings.AzureWebJobsStorage",
        "azurerm_linux_web_app",
        {
            **SITE_OK,
            "app_settings": {
                "AzureWebJobsStorage": "DefaultEndpointsProtocol=https;AccountKey=abc"
            },
        },
        {**SITE_OK, "app_settings": {"AzureWebJobsStorage__accountName": "st"}},
    ),
    (
        "secret value in value",
        "azurerm_key_vault_secret",
        {"name": "s", "value": "hunter2"},
        {"name": "s"},
    ),
    (  # an app role's value is the claim it puts in tokens, not a credential
        "secret value in password",
        "azuread_application_app_role",
        {"value": "Status.Read", "password": "x"},
        {"value": "Status.Read"},
    ),
    (
        "secret value in client_secret",
        "azuread_application",
        {"client_secret": "x"},
        {"client_id": "y"},
    ),
    ("client secrets are forbidden", "azuread_application_password", {"application_id": "x"}, {}),
    ("never a namespace", "azurerm_role_assignment", role(NAMESPACE), role(HUB)),
    (
        "never a namespace, account, resource group, subscription",
        "azurerm_role_assignment",
        role("/subscriptions/00000000-0000-0000-0000-000000000000"),
        role(
            "${azurerm_storage_container.storage_checkpoints_1.id}", "Storage Blob Data Contributor"
        ),
    ),
    (
        "or vault",
        "azurerm_role_assignment",
        role("${azurerm_key_vault.keyvault_1.id}", "Key Vault Certificates Officer"),
        role("${azurerm_key_vault.keyvault_1.id}/certificates/c", "Key Vault Certificates Officer"),
    ),
    ("not a narrow built-in role", "azurerm_role_assignment", role(HUB, "Owner"), role(HUB)),
]


@pytest.mark.parametrize(("rule", "kind", "rejected", "accepted"), RULES)
def test_rule(rule: str, kind: str, rejected: dict[str, Any], accepted: dict[str, Any]) -> None:
    problems = violations(kind, rejected)
    assert any(rule in problem for problem in problems), problems
    if kind not in (
        "azurerm_eventhub_authorization_rule",
        "azurerm_eventhub_namespace_authorization_rule",
        "azuread_application_password",
    ):
        assert violations(kind, accepted) == []


def test_only_the_account_graph_writes_to_may_allow_shared_keys_and_every_network() -> None:
    graph_writes = {
        **STORAGE_OK,
        "name": "stplgtapdevweu",
        "shared_access_key_enabled": True,
        "network_rules": {"default_action": "Allow"},
    }
    assert violations("azurerm_storage_account", graph_writes, graph_writable_accounts=()) != []
    assert (
        violations(
            "azurerm_storage_account", graph_writes, graph_writable_accounts=("stplgtapdevweu",)
        )
        == []
    )
    other = {**graph_writes, "name": "stgtapdevweu"}
    problems = violations(
        "azurerm_storage_account", other, graph_writable_accounts=("stplgtapdevweu",)
    )
    assert any("shared keys" in p for p in problems)
    assert any("default_action" in p for p in problems)
    # The exemption is for keys and networks only: the other floors hold there too.
    weak = {**graph_writes, "min_tls_version": "TLS1_0", "allow_nested_items_to_be_public": True}
    assert (
        len(
            violations("azurerm_storage_account", weak, graph_writable_accounts=("stplgtapdevweu",))
        )
        == 2
    )


def test_the_aspect_stops_synth_naming_the_resource() -> None:
    from stacks.aspects import SecurityInvariants
    from stacks.cdk import Aspects, EventhubNamespaceAuthorizationRule, TerraformStack
    from stacks.cdk import Testing as CdkTesting

    app = CdkTesting.app()
    stack = TerraformStack(app, "invariants")
    EventhubNamespaceAuthorizationRule(
        stack, "graph_send", name="send", namespace_name="ns", resource_group_name="rg", send=True
    )
    Aspects.of(stack).add(SecurityInvariants())
    with pytest.raises(
        RuntimeError, match=r"invariants/graph_send \(azurerm_eventhub_namespace_authorization_rule"
    ):
        CdkTesting.synth(stack)


def test_the_shipped_stacks_pass_the_invariants(synthesized: Any) -> None:
    for stack in synthesized.stacks.values():
        for kind, resources in stack.document["resource"].items():
            for name, config in resources.items():
                graph_reaches = stack.config.graph.large_payloads
                problems = violations(
                    kind,
                    config,
                    graph_writable_accounts=(
                        (stack.config.names.payload_account,) if graph_reaches else ()
                    ),
                    graph_readable_vaults=(
                        (stack.config.names.payload_vault,) if graph_reaches else ()
                    ),
                )
                assert problems == [], f"{stack.config.name}: {kind}.{name}"


def test_only_the_vault_graph_reads_may_admit_every_network() -> None:
    vault = {
        "name": "kvp-gtap-dev-weu",
        "rbac_authorization_enabled": True,
        "purge_protection_enabled": True,
        "network_acls": {"default_action": "Allow"},
    }
    assert violations("azurerm_key_vault", vault, graph_readable_vaults=("kvp-gtap-dev-weu",)) == []
    problems = violations("azurerm_key_vault", vault, graph_readable_vaults=())
    assert any("default_action" in p for p in problems)
    # RBAC and purge protection hold for every vault
    weak = {**vault, "rbac_authorization_enabled": False, "purge_protection_enabled": False}
    assert len(violations("azurerm_key_vault", weak, graph_readable_vaults=(vault["name"],))) == 2
