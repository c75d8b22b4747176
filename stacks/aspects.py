"""Security invariants checkov cannot see, enforced on every resource at synth.

The rules are plain functions over a resource's resolved Terraform configuration, so they read
(and test) like data; `SecurityInvariants` is the CDKTF Aspect that applies them and stops synth
with the construct path of the first offending resource.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from stacks.cdk import (
    DefaultTokenResolver,
    IAspect,
    IConstruct,
    StringConcat,
    TerraformResource,
    Tokenization,
    implements,
)

FORBIDDEN_TYPES = {
    "azurerm_eventhub_authorization_rule": "SAS authorization rules are forbidden (RBAC only)",
    "azurerm_eventhub_namespace_authorization_rule": "SAS authorization rules are forbidden",
    "azurerm_servicebus_namespace_authorization_rule": "SAS authorization rules are forbidden",
    "azurerm_storage_account_local_user": "storage local users are forbidden (Entra ID only)",
    "azuread_application_password": "client secrets are forbidden (managed identity only)",
    "azuread_service_principal_password": "client secrets are forbidden (managed identity only)",
}
# Attribute names whose value is a credential, wherever they appear in a resource.
SECRET_ATTRIBUTES = {
    "access_key",
    "admin_password",
    "certificate_password",
    "client_secret",
    "password",
    "primary_access_key",
    "private_key_pem",
    "sas_token",
    "secondary_access_key",
    "storage_access_key",
    "storage_account_access_key",
    "value",
    "value_wo",
}
# Attributes of that name that are no credential in these resource types.
NOT_SECRETS = {
    "azuread_application_app_role": {"value"},  # the role's claim value, e.g. "Status.Read"
}
SECRET_IN_TEXT = re.compile(r"AccountKey=|SharedAccessKey=|SharedAccessSignature|[?&]sig=", re.I)
SITES = {
    "azurerm_linux_web_app",
    "azurerm_linux_function_app",
    "azurerm_function_app_flex_consumption",
}
TLS_FLOOR = {"1.2", "1.3"}
# A grant may target one hub, container, queue, Key Vault object (secret or certificate) or
# data collection rule, never anything broader: not even a vault.
NARROW_SCOPE = re.compile(
    r"\$\{(azurerm_eventhub|azurerm_storage_container|azurerm_monitor_data_collection_rule)"
    r"\.[\w-]+\.id\}"
    r"|\$\{azurerm_key_vault_certificate\.[\w-]+\.resource_manager_versionless_id\}"
    r"|\$\{azurerm_storage_queue\.[\w-]+\.resource_manager_id\}"
    r"|\$\{azurerm_key_vault\.[\w-]+\.id\}/(secrets|certificates)/[\w-]+"
)
BROAD_ROLES = {"Owner", "Contributor", "User Access Administrator"}


def violations(
    kind: str,
    config: Mapping[str, Any],
    *,
    graph_writable_accounts: Collection[str] = (),
    graph_readable_vaults: Collection[str] = (),
) -> list[str]:
    """Every invariant `config` (a resource's resolved Terraform arguments) breaks.

    `graph_writable_accounts` names the storage accounts Microsoft Graph writes large
    payloads into: Graph authenticates with the account key, so those alone may allow shared
    keys (checkov's CKV2_AZURE_40 is skipped for them, in .checkov.yaml).
    `graph_readable_vaults` names the vaults whose secret Graph reads for them (`blobStoreUrl`),
    from the internet: those alone may admit every network (CKV_AZURE_109 and 189 are skipped
    in .checkov.yaml; this holds every other vault to its firewall)."""
    problems = []
    if kind in FORBIDDEN_TYPES:
        problems.append(FORBIDDEN_TYPES[kind])
    public = NOT_SECRETS.get(kind, set())
    problems.extend(
        f"secret value in {path}" for path in _secret_paths(config) if path not in public
    )
    if kind == "azurerm_eventhub_namespace":
        if config.get("local_authentication_enabled") is not False:
            problems.append("Event Hubs local (SAS) authentication must be disabled")
        if config.get("minimum_tls_version") not in TLS_FLOOR:
            problems.append("Event Hubs minimum_tls_version must be 1.2 or higher")
        if config.get("sku") not in ("Standard", "Premium"):
            problems.append("Event Hubs must be Standard or Premium (Basic caps events at 256 KB)")
    elif kind == "azurerm_storage_account":
        if config.get("min_tls_version") != "TLS1_2":
            problems.append("storage min_tls_version must be TLS1_2")
        if config.get("https_traffic_only_enabled") is False:
            problems.append("storage must refuse plain HTTP")
        if config.get("name") in graph_writable_accounts:
            pass  # Graph writes with the account key, from the internet
        else:
            if config.get("shared_access_key_enabled") is not False:
                problems.append("storage shared keys must be disabled")
            if _block(config.get("network_rules")).get("default_action") != "Deny":
                problems.append("storage firewall default_action must be Deny")
        if config.get("local_user_enabled") is not False:
            problems.append("storage local users must be disabled")
        if config.get("allow_nested_items_to_be_public") is not False:
            problems.append("storage public blob access must be disabled")
    elif kind == "azurerm_key_vault":
        if config.get("rbac_authorization_enabled") is not True:
            problems.append("Key Vault must authorize with RBAC, not access policies")
        if config.get("purge_protection_enabled") is not True:
            problems.append("Key Vault purge protection must be on")
        graph_reads_it = config.get("name") in graph_readable_vaults
        if (
            not graph_reads_it
            and _block(config.get("network_acls")).get("default_action") != "Deny"
        ):
            problems.append("Key Vault firewall default_action must be Deny")
    elif kind in SITES:
        site = _block(config.get("site_config"))
        if config.get("https_only") is not True:
            problems.append("https_only must be true")
        for key in ("minimum_tls_version", "scm_minimum_tls_version"):
            if site.get(key) not in TLS_FLOOR:
                problems.append(f"site_config.{key} must be 1.2 or higher")
        if config.get("connection_string"):
            problems.append("connection strings are forbidden: use identity-based settings")
    elif kind == "azurerm_role_assignment":
        problems.extend(_role_problems(config))
    return problems


def _role_problems(config: Mapping[str, Any]) -> Iterator[str]:
    scope, role = str(config.get("scope", "")), str(config.get("role_definition_name", ""))
    if role in BROAD_ROLES or not role:
        yield f"role {role or config.get('role_definition_id')!r} is not a narrow built-in role"
    if not NARROW_SCOPE.fullmatch(scope):
        yield (
            f"role {role!r} is scoped to {scope!r}: grants must target one hub, container, "
            "queue, Key Vault object or data collection rule, never a namespace, account, resource "
            "group, subscription or vault"
        )


def _secret_paths(value: Any, path: str = "") -> Iterator[str]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if key in SECRET_ATTRIBUTES and item not in (None, "", False):
                yield where
            else:
                yield from _secret_paths(item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _secret_paths(item, f"{path}[{index}]")
    elif isinstance(value, str) and SECRET_IN_TEXT.search(value):
        yield path


def _block(value: Any) -> Mapping[str, Any]:
    if isinstance(value, list):
        return value[0] if value else {}
    return value if isinstance(value, Mapping) else {}


class InvariantViolation(Exception):
    """A resource breaks a security invariant; synth stops."""


@implements(IAspect)
class SecurityInvariants:
    """Applies `violations` to every Terraform resource of the stack it is added to."""

    def __init__(
        self,
        *,
        graph_writable_accounts: Collection[str] = (),
        graph_readable_vaults: Collection[str] = (),
    ) -> None:
        self.graph_writable_accounts = tuple(graph_writable_accounts)
        self.graph_readable_vaults = tuple(graph_readable_vaults)

    def visit(self, node: IConstruct) -> None:
        if not isinstance(node, TerraformResource):
            return
        kind = node.terraform_resource_type
        config = Tokenization.resolve(
            node.to_terraform(), scope=node, resolver=DefaultTokenResolver(StringConcat())
        )
        arguments = next(iter(config["resource"][kind].values()))
        problems = violations(
            kind,
            arguments,
            graph_writable_accounts=self.graph_writable_accounts,
            graph_readable_vaults=self.graph_readable_vaults,
        )
        if problems:
            address = f"{kind}.{node.friendly_unique_id}"
            raise InvariantViolation(f"{node.node.path} ({address}): " + "; ".join(problems))
