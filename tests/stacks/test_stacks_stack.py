"""What each construct provisions in the shipped stacks, and the security properties the
design promises (cdktf Testing matchers on the once-per-session synth)."""

from __future__ import annotations

from typing import Any

import pytest

from scripts.outputs import KEYS as OUTPUT_CONTRACT
from stacks.cdk import Testing as CdkTesting
from stacks.config import load_all
from stacks.constructs.graph_permissions import (
    MICROSOFT_GRAPH_APP_ID,
    RESYNC_PERMISSIONS,
    subscription_permissions,
)
from stacks.constructs.identity import GRAPH_CHANGE_TRACKING_APP_ID

# The session fixture's SynthesizedStack (tests/stacks/conftest.py).
SynthesizedStack = Any

OUTPUT_KEYS = set(OUTPUT_CONTRACT)  # what `make outputs` saves for bootstrap
RUNTIME_SETTINGS = {
    "GRAPHTAP_ENV",
    "GRAPHTAP_EVENTHUB_NAMESPACE",
    "GRAPHTAP_NOTIFICATIONS_HUB",
    "GRAPHTAP_FINDINGS_HUB",
    "GRAPHTAP_CONSUMER_GROUP",
    "GRAPHTAP_CHECKPOINT_ACCOUNT_URL",
    "GRAPHTAP_CHECKPOINT_CONTAINER",
    "GRAPHTAP_DEAD_LETTER_CONTAINER",
    "GRAPHTAP_KEY_VAULT_URI",
    "GRAPHTAP_CERTIFICATE_NAME",
    "GRAPHTAP_TENANT_DOMAIN",
    "AZURE_CLIENT_ID",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
}


def has(stack: SynthesizedStack, kind: str, properties: dict[str, Any]) -> bool:
    return bool(CdkTesting.to_have_resource_with_properties(stack.testing_synth, kind, properties))


def only(stack: SynthesizedStack, kind: str) -> dict[str, Any]:
    resources = list(stack.resources(kind).values())
    assert len(resources) == 1, f"{kind}: {len(resources)}"
    resource: dict[str, Any] = resources[0]
    return resource


def ref(stack: SynthesizedStack, kind: str, path_suffix: str, attribute: str = "id") -> str:
    for name, config in stack.resources(kind).items():
        if config["//"]["metadata"]["path"].endswith(path_suffix):
            return f"${{{kind}.{name}.{attribute}}}"
    raise AssertionError(f"no {kind} at */{path_suffix}")


def checkpoint_account(stack: SynthesizedStack) -> dict[str, Any]:
    """The runtime's own storage account (the payload account is Graph's)."""
    (account,) = [
        a
        for a in stack.resources("azurerm_storage_account").values()
        if a["name"] == stack.config.names.storage_account
    ]
    return account


def main_vault(stack: SynthesizedStack) -> dict[str, Any]:
    """The stack's vault (the payload secret's, Graph's to read, is the other)."""
    (vault,) = [
        v
        for v in stack.resources("azurerm_key_vault").values()
        if v["name"] == stack.config.names.key_vault
    ]
    return vault


def payload_secret(stack: SynthesizedStack) -> set[tuple[str, str]]:
    """The payload account's connection-string secret, as a grant of `role` targets it."""
    return {
        ref(stack, "azurerm_key_vault", "payload_storage/vault") + "/secrets/graph-payload-storage"
    }


def grants(stack: SynthesizedStack, principal: str) -> set[tuple[str, str]]:
    return {
        (config["role_definition_name"], config["scope"])
        for config in stack.resources("azurerm_role_assignment").values()
        if config["principal_id"] == principal
    }


@pytest.fixture(params=[config.name for config in load_all()], scope="module")
def stack(request: pytest.FixtureRequest, synthesized: Any) -> SynthesizedStack:
    return synthesized.stacks[request.param]


def test_monitoring(stack: SynthesizedStack) -> None:
    names = stack.config.names
    assert has(stack, "azurerm_log_analytics_workspace", {"name": names.log_analytics})
    insights = only(stack, "azurerm_application_insights")
    assert insights["workspace_id"] == ref(stack, "azurerm_log_analytics_workspace", "workspace")


def test_eventhubs(stack: SynthesizedStack) -> None:
    sizing = stack.config.eventhubs
    assert has(
        stack,
        "azurerm_eventhub_namespace",
        {
            "name": stack.config.names.eventhub_namespace,
            "sku": sizing.sku,
            "capacity": sizing.capacity,
            "local_authentication_enabled": False,
            "minimum_tls_version": "1.2",
            "public_network_access_enabled": True,
            "auto_inflate_enabled": sizing.auto_inflate_max > 0,
        },
    )
    for hub in ("notifications", "findings"):
        assert has(
            stack,
            "azurerm_eventhub",
            {
                "name": hub,
                "partition_count": sizing.partitions,
                "retention_description": {"retention_time_in_hours": sizing.retention_hours},
            },
        )
    groups = {g["name"]: g for g in stack.resources("azurerm_eventhub_consumer_group").values()}
    expected = {"graphtap-processor"}
    if stack.config.hosting.processor == "both":
        expected.add("graphtap-processor-functions")
    assert set(groups) == expected
    notifications = ref(stack, "azurerm_eventhub", "notifications", "name")
    assert all(group["eventhub_name"] == notifications for group in groups.values())


def test_network_gives_the_apps_a_path_through_the_firewalls(stack: SynthesizedStack) -> None:
    subnets = {s["name"]: s for s in stack.resources("azurerm_subnet").values()}
    expected = {"apps": "Microsoft.Web/serverFarms"}
    if stack.config.hosting.function_app:
        expected["functions"] = "Microsoft.App/environments"
    assert {
        name: s["delegation"][0]["service_delegation"]["name"] for name, s in subnets.items()
    } == (expected)
    for subnet in subnets.values():
        assert set(subnet["service_endpoints"]) == {"Microsoft.KeyVault", "Microsoft.Storage"}
    subnet_ids = {ref(stack, "azurerm_subnet", f"{name}_subnet") for name in expected}
    vault = main_vault(stack)
    account = checkpoint_account(stack)
    assert set(vault["network_acls"]["virtual_network_subnet_ids"]) == subnet_ids
    assert set(account["network_rules"]["virtual_network_subnet_ids"]) == subnet_ids
    web_app = only(stack, "azurerm_linux_web_app")
    assert web_app["virtual_network_subnet_id"] == ref(stack, "azurerm_subnet", "apps_subnet")
    associations = stack.resources("azurerm_subnet_network_security_group_association").values()
    assert {a["subnet_id"] for a in associations} == subnet_ids


def test_storage(stack: SynthesizedStack) -> None:
    assert has(
        stack,
        "azurerm_storage_account",
        {
            "name": stack.config.names.storage_account,
            "shared_access_key_enabled": False,
            "local_user_enabled": False,
            "min_tls_version": "TLS1_2",
            "allow_nested_items_to_be_public": False,
            "network_rules": {"default_action": "Deny"},
        },
    )
    assert has(
        stack,
        "azurerm_storage_container",
        {"name": "checkpoints", "container_access_type": "private"},
    )
    assert has(
        stack,
        "azurerm_storage_container",
        {"name": "dead-letters", "container_access_type": "private"},
    )


def test_keyvault_generates_the_certificate_inside_the_vault(stack: SynthesizedStack) -> None:
    vault = main_vault(stack)
    assert vault["rbac_authorization_enabled"] is True
    assert vault["purge_protection_enabled"] is True
    assert vault["network_acls"]["default_action"] == "Deny"
    assert "enable_rbac_authorization" not in vault  # removed in azurerm 5
    certificate = only(stack, "azurerm_key_vault_certificate")
    policy = certificate["certificate_policy"]
    assert policy["issuer_parameters"]["name"] == "Self"
    assert policy["key_properties"]["key_type"] == "RSA"
    assert policy["key_properties"]["key_size"] >= 2048
    assert policy["key_properties"]["exportable"] is True
    assert policy["lifetime_action"][0]["action"]["action_type"] == "AutoRenew"
    assert "certificate" not in certificate  # nothing imported: no key material in config/state


def test_web_app(stack: SynthesizedStack) -> None:
    app = only(stack, "azurerm_linux_web_app")
    site = app["site_config"]
    assert app["https_only"] is True
    assert app["ftp_publish_basic_authentication_enabled"] is False
    assert app["webdeploy_publish_basic_authentication_enabled"] is False
    assert site["always_on"] is True
    assert site["health_check_path"] == "/healthz"
    assert site["app_command_line"] == "python -m graphtap serve"
    assert site["minimum_tls_version"] == "1.2"
    assert site["ftps_state"] == "Disabled"
    assert site["application_stack"]["python_version"] == stack.config.hosting.python_version
    assert set(app["app_settings"]) >= RUNTIME_SETTINGS
    assert app["app_settings"]["AZURE_CLIENT_ID"] == ref(
        stack, "azurerm_user_assigned_identity", "identity", "client_id"
    )
    assert app["identity"]["type"] == "UserAssigned"
    processes = stack.config.hosting.processor != "function"
    assert app["app_settings"]["GRAPHTAP_PROCESS_NOTIFICATIONS"] == str(processes).lower()


def test_function_app_only_where_configured(dev: SynthesizedStack, prod: SynthesizedStack) -> None:
    assert dev.resources("azurerm_function_app_flex_consumption") == {}
    function = only(prod, "azurerm_function_app_flex_consumption")
    settings = function["app_settings"]
    assert set(settings) >= RUNTIME_SETTINGS
    assert settings["NotificationsHub__credential"] == "managedidentity"
    # prod processes in both hosts: each reads in a consumer group of its own
    assert settings["GRAPHTAP_CONSUMER_GROUP"] == "graphtap-processor-functions"
    assert (
        settings["NotificationsHub__fullyQualifiedNamespace"]
        == "evhns-gtap-prod-weu.servicebus.windows.net"
    )
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert function["storage_authentication_type"] == "UserAssignedIdentity"
    assert function["https_only"] is True


def test_runtime_identity_holds_exactly_the_roles_it_uses(stack: SynthesizedStack) -> None:
    principal = ref(stack, "azurerm_user_assigned_identity", "identity", "principal_id")
    expected = {
        ("Azure Event Hubs Data Receiver", ref(stack, "azurerm_eventhub", "notifications")),
        ("Azure Event Hubs Data Sender", ref(stack, "azurerm_eventhub", "findings")),
        ("Storage Blob Data Contributor", ref(stack, "azurerm_storage_container", "checkpoints")),
        ("Storage Blob Data Contributor", ref(stack, "azurerm_storage_container", "dead_letters")),
        (
            "Storage Blob Data Contributor",
            ref(stack, "azurerm_storage_container", "verdict_ledger"),
        ),
        # The leader lease, and the shared lifecycle queue and its poison queue.
        (
            "Storage Blob Data Contributor",
            ref(stack, "azurerm_storage_container", "control_plane"),
        ),
        *(
            (role, ref(stack, "azurerm_storage_queue", queue, "resource_manager_id"))
            for queue, roles in (
                ("lifecycle_queue", ("Message Sender", "Message Processor")),
                # set aside, then only peeked: nobody takes the evidence
                ("lifecycle_poison_queue", ("Message Sender", "Reader")),
            )
            for role in (f"Storage Queue Data {name}" for name in roles)
        ),
        (
            "Key Vault Certificate User",
            ref(
                stack,
                "azurerm_key_vault_certificate",
                "certificate",
                "resource_manager_versionless_id",
            ),
        ),
        *(
            (
                "Key Vault Secrets User",
                ref(stack, "azurerm_key_vault", "keyvault/vault") + f"/secrets/{name}",
            )
            # the certificate's private key, then the two secrets bootstrap creates
            for name in ("graphtap-notifications", "graph-client-state", "finding-hash-key")
        ),
    }
    if stack.config.hosting.function_app:
        for container in stack.resources("azurerm_storage_container").values():
            if container["name"] not in (
                "checkpoints",
                "dead-letters",
                "verdict-ledger",
                "control-plane",
                "microsoft-graph-change-notifications",
            ):
                expected.add(
                    (
                        "Storage Blob Data Contributor",
                        ref(
                            stack, "azurerm_storage_container", container["name"].replace("-", "_")
                        ),
                    )
                )
    if stack.config.findings.log_analytics:
        rule = ref(stack, "azurerm_monitor_data_collection_rule", "rule")
        expected.add(("Monitoring Metrics Publisher", rule))
    if stack.config.graph.large_payloads:  # Graph's payloads over 1 MB: read only
        payloads = ref(stack, "azurerm_storage_container", "payload_storage/container")
        expected.add(("Storage Blob Data Reader", payloads))
    assert grants(stack, principal) == expected


def test_the_deploying_identity_writes_only_the_secrets_bootstrap_creates(
    stack: SynthesizedStack,
) -> None:
    vault = ref(stack, "azurerm_key_vault", "keyvault/vault")
    expected = {
        # creates and rotates the certificate
        ("Key Vault Certificates Officer", f"{vault}/certificates/graphtap-notifications"),
        ("Key Vault Secrets Officer", f"{vault}/secrets/graph-client-state"),
        ("Key Vault Secrets Officer", f"{vault}/secrets/finding-hash-key"),
    }
    if stack.config.graph.large_payloads:  # the payload account's connection string
        expected |= {("Key Vault Secrets Officer", s) for s in payload_secret(stack)}
    assert grants(stack, "${data.azurerm_client_config.client.object_id}") == expected


def test_change_tracking_principal_sends_to_the_notifications_hub_and_nothing_else(
    stack: SynthesizedStack,
) -> None:
    sps = stack.resources("azuread_service_principal")
    (name,) = [n for n, sp in sps.items() if sp["client_id"] == GRAPH_CHANGE_TRACKING_APP_ID]
    assert sps[name]["use_existing"] is True
    principal = f"${{azuread_service_principal.{name}.object_id}}"
    expected = {("Azure Event Hubs Data Sender", ref(stack, "azurerm_eventhub", "notifications"))}
    if stack.config.graph.large_payloads:  # blobStoreUrl: the connection string, nothing else
        expected |= {("Key Vault Secrets User", s) for s in payload_secret(stack)}
    assert grants(stack, principal) == expected
    assigned = [
        c
        for c in stack.resources("azurerm_role_assignment").values()
        if c["principal_id"] == principal
    ]
    assert all(c["principal_type"] == "ServicePrincipal" for c in assigned)


def test_graph_permissions_are_app_role_assignments_for_the_runtime(
    stack: SynthesizedStack,
) -> None:
    data = stack.document["data"]["azuread_service_principal"]
    (graph_name,) = [n for n, sp in data.items() if sp.get("client_id") == MICROSOFT_GRAPH_APP_ID]
    (runtime_name,) = [n for n in data if n != graph_name]
    runtime_sp = data[runtime_name]
    principal_id = ref(stack, "azurerm_user_assigned_identity", "identity", "principal_id")
    assert runtime_sp["object_id"] == principal_id
    # deploy fails unless the identity's SP accepts Graph without an app role assignment
    (check,) = runtime_sp["lifecycle"]["postcondition"]
    assert check["condition"] == "${self.app_role_assignment_required == false}"
    # the service principals the stack manages: Graph Change Tracking's and the status API's
    status_api = ref(
        stack, "azuread_application_registration", "status_access/application", "client_id"
    )
    assert sorted(
        sp["client_id"] for sp in stack.resources("azuread_service_principal").values()
    ) == sorted([GRAPH_CHANGE_TRACKING_APP_ID, status_api])
    # every other app role assignment grants a role of the status API (test_stacks_status_access)
    status_sp = ref(
        stack, "azuread_service_principal", "status_access/service_principal", "object_id"
    )
    assignments = [
        a
        for a in stack.resources("azuread_app_role_assignment").values()
        if a["resource_object_id"] != status_sp
    ]
    # the subscribed resources' permissions, what gap resync lists users and teams with, and
    # Mail.Read where subscriptions.toml declares mailboxes
    granted = (*stack.config.graph.permissions, *RESYNC_PERMISSIONS)
    declared = subscription_permissions(stack.config.source, stack.config.name, granted)
    assert {a["app_role_id"] for a in assignments} == {
        f'${{data.azuread_service_principal.{graph_name}.app_role_ids["{p}"]}}'
        for p in (*granted, *declared)
    }
    # through the checked data source, so nothing is granted before the check passed
    assert {a["principal_object_id"] for a in assignments} == {
        f"${{data.azuread_service_principal.{runtime_name}.object_id}}"
    }
    assert {a["resource_object_id"] for a in assignments} == {
        f"${{data.azuread_service_principal.{graph_name}.object_id}}"
    }
    assert not any(kind.endswith("_password") for kind in stack.document["resource"])


def test_diagnostics_cover_namespace_vault_sites_and_storage(stack: SynthesizedStack) -> None:
    targets = {
        c["target_resource_id"]
        for c in stack.resources("azurerm_monitor_diagnostic_setting").values()
    }
    expected = {
        ref(stack, "azurerm_eventhub_namespace", "namespace"),
        ref(stack, "azurerm_key_vault", "keyvault/vault"),
        ref(stack, "azurerm_storage_account", "account"),
        ref(stack, "azurerm_storage_account", "account") + "/blobServices/default",
        ref(stack, "azurerm_linux_web_app", "web_app"),
    }
    if stack.config.hosting.function_app:
        expected.add(ref(stack, "azurerm_function_app_flex_consumption", "function_app"))
    if stack.config.graph.large_payloads:
        expected.add(
            ref(stack, "azurerm_storage_account", "payload_storage/store") + "/blobServices/default"
        )
    assert targets == expected


#: Each cloud's Event Hubs domain and default Graph endpoint.
EVENTHUBS_AND_GRAPH = {
    "public": ("servicebus.windows.net", "https://graph.microsoft.com"),
    "usgov": ("servicebus.usgovcloudapi.net", "https://graph.microsoft.us"),
    "china": ("servicebus.chinacloudapi.cn", "https://microsoftgraph.chinacloudapi.cn"),
}


def test_outputs_for_bootstrap(stack: SynthesizedStack) -> None:
    outputs = {name: value["value"] for name, value in stack.document["output"].items()}
    assert set(outputs) == OUTPUT_KEYS
    config, names = stack.config, stack.config.names
    suffix, graph = EVENTHUBS_AND_GRAPH[config.cloud.name]
    assert outputs["notification_url"] == (
        f"EventHub:https://{names.eventhub_namespace}.{suffix}/eventhubname/"
        f"notifications?tenantId={config.tenant_domain}"
    )
    assert outputs["eventhub_namespace_host"] == f"{names.eventhub_namespace}.{suffix}"
    assert outputs["cloud"] == config.cloud.name
    assert outputs["notification_partitions"] == config.eventhubs.partitions
    assert outputs["function_app_name"] == (
        names.function_app if config.hosting.function_app else None
    )
    assert outputs["graph_endpoint"] == graph
    assert not any(value.get("sensitive") for value in stack.document["output"].values())


def test_backend_is_per_environment_with_entra_auth(stack: SynthesizedStack) -> None:
    backend = stack.document["terraform"]["backend"]["azurerm"]
    assert backend["use_azuread_auth"] is True
    assert backend["key"] == f"graphtap-{stack.config.name}.tfstate"
    assert "access_key" not in backend
    assert "sas_token" not in backend


# Arguments azurerm 4 deprecates and azurerm 5 (CDK Terrain's provider) removes.
REMOVED_IN_AZURERM_5 = {
    "azurerm_key_vault": {"enable_rbac_authorization"},
    "azurerm_eventhub": {"namespace_name", "resource_group_name"},
    "azurerm_storage_container": {"storage_account_name"},
    "azurerm_storage_account": {"enable_https_traffic_only"},
    "azurerm_monitor_diagnostic_setting": {"metric", "log"},
    "azurerm_linux_web_app": {"site_config.application_stack.docker_image"},
}


def test_only_arguments_azurerm_5_keeps(stack: SynthesizedStack) -> None:
    for kind, removed in REMOVED_IN_AZURERM_5.items():
        for name, config in stack.resources(kind).items():
            assert not removed & set(config), f"{kind}.{name} uses {removed & set(config)}"


def test_the_verdict_ledger_forgets_a_key_only_after_no_event_can_come_again(
    stack: SynthesizedStack,
) -> None:
    account = ref(stack, "azurerm_storage_account", "storage/account")
    (policy,) = [
        p
        for p in stack.resources("azurerm_storage_management_policy").values()
        if p["storage_account_id"] == account
    ]
    (rule,) = policy["rule"]
    assert rule["enabled"] is True
    assert rule["filters"]["prefix_match"] == ["verdict-ledger/"]
    days = rule["actions"]["base_blob"]["delete_after_days_since_modification_greater_than"]
    # Past the hub's retention (a partial day counts) with a day to spare for a resync.
    assert days * 24 >= stack.config.eventhubs.retention_hours + 24
    assert days == stack.config.eventhubs.retention_days + 1


def test_graph_writes_large_payloads_into_an_account_of_their_own(stack: SynthesizedStack) -> None:
    config, names = stack.config, stack.config.names
    outputs = {name: value["value"] for name, value in stack.document["output"].items()}
    settings = only(stack, "azurerm_linux_web_app")["app_settings"]
    if not config.graph.large_payloads:
        assert outputs["payload_account_url"] is None
        assert "GRAPHTAP_PAYLOAD_ACCOUNT_URL" not in settings
        return
    account_ref = ref(stack, "azurerm_storage_account", "payload_storage/store")
    (account,) = [
        a
        for a in stack.resources("azurerm_storage_account").values()
        if a["name"] == names.payload_account
    ]
    assert account["shared_access_key_enabled"] is True  # Graph writes with the key
    assert account["min_tls_version"] == "TLS1_2"
    assert account["https_traffic_only_enabled"] is True
    assert account["allow_nested_items_to_be_public"] is False
    assert account["local_user_enabled"] is False
    assert account["infrastructure_encryption_enabled"] is True
    assert account["sas_policy"]["expiration_action"] == "Block"
    (container,) = [
        c
        for c in stack.resources("azurerm_storage_container").values()
        if c["storage_account_id"] == account_ref
    ]
    assert container["name"] == "microsoft-graph-change-notifications"
    assert container["container_access_type"] == "private"
    (policy,) = [
        p
        for p in stack.resources("azurerm_storage_management_policy").values()
        if p["storage_account_id"] == account_ref
    ]
    (rule,) = policy["rule"]
    assert rule["filters"]["prefix_match"] == ["microsoft-graph-change-notifications/"]
    days = rule["actions"]["base_blob"]["delete_after_days_since_modification_greater_than"]
    assert days == config.eventhubs.retention_days  # the hub's retention, then gone
    # The secret's value never reaches Terraform: no secret resource, only its name.
    assert "azurerm_key_vault_secret" not in stack.document["resource"]
    suffix = {"public": "windows.net", "usgov": "usgovcloudapi.net", "china": "chinacloudapi.cn"}
    url = f"https://{names.payload_account}.blob.core.{suffix[config.cloud.name]}"
    assert outputs["payload_account_url"] == url
    assert outputs["payload_account"] == names.payload_account
    assert outputs["payload_secret"] == "graph-payload-storage"
    assert settings["GRAPHTAP_PAYLOAD_ACCOUNT_URL"] == url
    assert settings["GRAPHTAP_PAYLOAD_SECRET"] == "graph-payload-storage"


def test_graph_reads_the_payload_secret_from_a_vault_of_its_own(stack: SynthesizedStack) -> None:
    """Graph is no trusted Microsoft service for a vault's firewall: the one secret it reads
    (`blobStoreUrl`) is in a vault that admits every network, RBAC-only and purge-protected,
    holding nothing else; the main vault keeps its default-Deny firewall."""
    vaults = {v["name"]: v for v in stack.resources("azurerm_key_vault").values()}
    names = stack.config.names
    assert main_vault(stack)["network_acls"]["default_action"] == "Deny"
    if not stack.config.graph.large_payloads:
        assert set(vaults) == {names.key_vault}
        return
    assert set(vaults) == {names.key_vault, names.payload_vault}
    payload = vaults[names.payload_vault]
    assert payload["rbac_authorization_enabled"] is True
    assert payload["purge_protection_enabled"] is True
    assert payload["network_acls"]["default_action"] == "Allow"
    scope = ref(stack, "azurerm_key_vault", "payload_storage/vault")
    in_it = {
        (r["role_definition_name"], r["scope"])
        for r in stack.resources("azurerm_role_assignment").values()
        if r["scope"].startswith(scope)
    }
    secret = f"{scope}/secrets/graph-payload-storage"
    assert in_it == {("Key Vault Secrets User", secret), ("Key Vault Secrets Officer", secret)}
    outputs = stack.document["output"]
    assert names.payload_vault in outputs["payload_vault_uri"]["value"]
