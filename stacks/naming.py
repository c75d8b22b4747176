"""Every resource name, derived in one place from the prefix, the environment and the region.

Azure's naming rules differ per resource (length, allowed characters, global uniqueness); each
name here carries its rule so that a config error names the rule it breaks before any deploy.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, fields

# Azure regions and the short codes used in names (Cloud Adoption Framework abbreviations),
# per cloud profile (`graphtap.clouds`): an environment deploys into a region of its cloud.
PUBLIC_REGIONS: dict[str, str] = {
    "australiaeast": "aue",
    "australiasoutheast": "ause",
    "brazilsouth": "brs",
    "canadacentral": "cac",
    "canadaeast": "cae",
    "centralindia": "inc",
    "centralus": "cus",
    "eastasia": "ea",
    "eastus": "eus",
    "eastus2": "eus2",
    "francecentral": "frc",
    "germanywestcentral": "gwc",
    "italynorth": "itn",
    "japaneast": "jpe",
    "japanwest": "jpw",
    "koreacentral": "krc",
    "northcentralus": "ncus",
    "northeurope": "neu",
    "norwayeast": "noe",
    "polandcentral": "plc",
    "southafricanorth": "san",
    "southcentralus": "scus",
    "southeastasia": "sea",
    "spaincentral": "spc",
    "swedencentral": "sdc",
    "switzerlandnorth": "szn",
    "uaenorth": "uan",
    "uksouth": "uks",
    "ukwest": "ukw",
    "westcentralus": "wcus",
    "westeurope": "weu",
    "westus": "wus",
    "westus2": "wus2",
    "westus3": "wus3",
}
US_GOVERNMENT_REGIONS: dict[str, str] = {
    "usgovarizona": "ugaz",
    "usgovtexas": "ugtx",
    "usgovvirginia": "ugva",
}
CHINA_REGIONS: dict[str, str] = {
    "chinaeast2": "cne2",
    "chinanorth2": "cnn2",
    "chinanorth3": "cnn3",
}
CLOUD_REGIONS: dict[str, dict[str, str]] = {
    "public": PUBLIC_REGIONS,
    "usgov": US_GOVERNMENT_REGIONS,
    "china": CHINA_REGIONS,
}
REGIONS: dict[str, str] = {
    region: code for regions in CLOUD_REGIONS.values() for region, code in regions.items()
}


@dataclass(frozen=True)
class NameRule:
    """What Azure accepts for one kind of name."""

    resource: str
    pattern: re.Pattern[str]
    min_length: int
    max_length: int
    description: str

    def check(self, name: str) -> str | None:
        """The broken rule as a sentence, or None when `name` is valid."""
        if not self.min_length <= len(name) <= self.max_length:
            return (
                f"the {self.resource} name {name!r} is {len(name)} characters; "
                f"{self.resource} names are {self.min_length}-{self.max_length} characters"
            )
        if not self.pattern.fullmatch(name):
            return f"the {self.resource} name {name!r} is invalid: {self.description}"
        return None


def _rule(resource: str, pattern: str, low: int, high: int, description: str) -> NameRule:
    return NameRule(resource, re.compile(pattern), low, high, description)


_HYPHENATED = r"[a-z][a-z0-9-]*[a-z0-9]"
RULES: dict[str, NameRule] = {
    "resource_group": _rule("resource group", r"[a-zA-Z0-9._()-]*[^.]", 1, 90, "no trailing dot"),
    "log_analytics": _rule("Log Analytics workspace", _HYPHENATED, 4, 63, "letters, digits, -"),
    "app_insights": _rule("Application Insights", _HYPHENATED, 1, 255, "letters, digits, -"),
    "eventhub_namespace": _rule(
        "Event Hubs namespace", _HYPHENATED, 6, 50, "starts with a letter; letters, digits, -"
    ),
    "storage_account": _rule(
        "storage account", r"[a-z0-9]+", 3, 24, "lowercase letters and digits only"
    ),
    "payload_account": _rule(
        "storage account", r"[a-z0-9]+", 3, 24, "lowercase letters and digits only"
    ),
    "key_vault": _rule("Key Vault", _HYPHENATED, 3, 24, "starts with a letter; letters, digits, -"),
    "payload_vault": _rule(
        "Key Vault", _HYPHENATED, 3, 24, "starts with a letter; letters, digits, -"
    ),
    "service_plan": _rule("App Service plan", _HYPHENATED, 1, 60, "letters, digits, -"),
    "web_app": _rule("web app", _HYPHENATED, 2, 60, "letters, digits, -"),
    "function_plan": _rule("App Service plan", _HYPHENATED, 1, 60, "letters, digits, -"),
    "function_app": _rule("function app", _HYPHENATED, 2, 60, "letters, digits, -"),
    "runtime_identity": _rule("managed identity", _HYPHENATED, 3, 128, "letters, digits, -"),
    "virtual_network": _rule("virtual network", _HYPHENATED, 2, 64, "letters, digits, -"),
    "network_security_group": _rule(
        "network security group", _HYPHENATED, 1, 80, "letters, digits, -"
    ),
    "data_collection_endpoint": _rule(
        "data collection endpoint", _HYPHENATED, 3, 44, "letters, digits, -"
    ),
    "data_collection_rule": _rule("data collection rule", _HYPHENATED, 3, 64, "letters, digits, -"),
    "action_group": _rule("action group", _HYPHENATED, 1, 260, "letters, digits, -"),
    # The longest rule name adds "-subscription-expiry" (20 characters) to this stem.
    "alert_rule": _rule("alert rule", _HYPHENATED, 1, 240, "letters, digits, -"),
}


@dataclass(frozen=True)
class Names:
    """The names of one environment's resources."""

    resource_group: str
    log_analytics: str
    app_insights: str
    eventhub_namespace: str
    storage_account: str
    key_vault: str
    service_plan: str
    web_app: str
    function_plan: str
    function_app: str
    runtime_identity: str
    virtual_network: str
    network_security_group: str
    data_collection_endpoint: str  # where the runtime sends verdict rows (Logs Ingestion API)
    data_collection_rule: str
    action_group: str  # who the operator alerts reach
    alert_rule: str  # the stem of each alert rule's name: `<stem>-<condition>`
    workbook: str  # Azure names a workbook by a GUID: derived, so it is stable
    #: Where Graph writes payloads over 1 MB (environments with `graph.large_payloads`); two
    #: characters longer than `storage_account`, and still within 24 whenever the Key Vault
    #: name is (it is three longer than the storage account's).
    payload_account: str
    #: The vault of the one secret Graph reads (`blobStoreUrl`): one character longer than
    #: `key_vault`.
    payload_vault: str
    # Names inside a parent resource: fixed, so the runtime and operators can rely on them.
    notifications_hub: str = "notifications"
    findings_hub: str = "findings"
    consumer_group: str = "graphtap-processor"
    # With `processor = "both"` the function app reads in a consumer group of its own.
    function_consumer_group: str = "graphtap-processor-functions"
    checkpoint_container: str = "checkpoints"
    dead_letter_container: str = "dead-letters"
    verdict_ledger_container: str = "verdict-ledger"
    control_plane_container: str = "control-plane"  # the leader lease's blob
    lifecycle_queue: str = "lifecycle"
    lifecycle_poison_queue: str = "lifecycle-poison"
    function_package_container: str = "function-package"
    certificate: str = "graphtap-notifications"
    # Key Vault secrets `make bootstrap` creates and the runtime only reads.
    client_state_secret: str = "graph-client-state"  # noqa: S105 (a name, not a value)
    finding_hash_key_secret: str = "finding-hash-key"  # noqa: S105 (a name, not a value)
    #: The payload account's connection string, for Graph (`blobStoreUrl`); bootstrap writes it.
    payload_secret: str = "graph-payload-storage"  # noqa: S105 (a name, not a value)

    @classmethod
    def derive(cls, prefix: str, environment: str, region: str) -> Names:
        """Names as `<type>-<prefix>-<environment>-<region code>` (storage: no hyphens)."""
        stem = f"{prefix}-{environment}-{REGIONS[region]}"
        return cls(
            resource_group=f"rg-{stem}",
            log_analytics=f"log-{stem}",
            app_insights=f"appi-{stem}",
            eventhub_namespace=f"evhns-{stem}",
            storage_account=f"st{stem.replace('-', '')}",
            key_vault=f"kv-{stem}",
            service_plan=f"asp-{stem}",
            web_app=f"app-{stem}",
            function_plan=f"aspfn-{stem}",
            function_app=f"func-{stem}",
            runtime_identity=f"id-{stem}",
            virtual_network=f"vnet-{stem}",
            network_security_group=f"nsg-{stem}",
            data_collection_endpoint=f"dce-{stem}",
            data_collection_rule=f"dcr-{stem}",
            action_group=f"ag-{stem}",
            alert_rule=f"alr-{stem}",
            workbook=str(uuid.uuid5(uuid.NAMESPACE_URL, f"graphtap:workbook:{stem}")),
            payload_account=f"stpl{stem.replace('-', '')}",
            payload_vault=f"kvp-{stem}",
        )

    def violations(self) -> list[str]:
        """Every derived name that Azure would reject, as the rule it breaks."""
        broken = []
        for field in fields(self):
            rule = RULES.get(field.name)
            if rule is not None and (problem := rule.check(getattr(self, field.name))):
                broken.append(problem)
        return broken
