"""Every CDK import of the project, in one place.

Moving to CDK Terrain (the maintained fork of CDKTF) is one edit here: `cdktf` becomes `cdktn`
and `cdktf_cdktf_provider_*` becomes `cdktn_provider_*`; the rest of `stacks/` only imports
names from this module.
"""

# ruff: noqa: E402  (the bindings are imported after their packages are registered)
from __future__ import annotations

import importlib.util
import sys
import types


def _skip_package_catalogue(package: str) -> None:
    """Register `package` without running its `__init__`, which imports all of its ~1,500
    resource modules; the modules imported below load on their own (with the jsii assembly),
    which cuts synth time by about four seconds and leaves the output unchanged."""
    if package in sys.modules:
        return
    spec = importlib.util.find_spec(package)
    if spec is None or spec.submodule_search_locations is None:
        raise ModuleNotFoundError(f"the {package} bindings are not installed", name=package)
    module = types.ModuleType(package)
    module.__path__ = list(spec.submodule_search_locations)
    module.__spec__ = spec
    sys.modules[package] = module


_skip_package_catalogue("cdktf_cdktf_provider_azurerm")
_skip_package_catalogue("cdktf_cdktf_provider_azuread")

from cdktf import (
    App,
    Aspects,
    AzurermBackend,
    DefaultTokenResolver,
    Fn,
    IAspect,
    ITerraformDependable,
    Postcondition,
    StringConcat,
    TerraformElement,
    TerraformOutput,
    TerraformResource,
    TerraformResourceLifecycle,
    TerraformStack,
    Testing,
    Token,
    Tokenization,
)
from cdktf_cdktf_provider_azuread.app_role_assignment import AppRoleAssignment
from cdktf_cdktf_provider_azuread.application_app_role import (
    ApplicationAppRoleA as ApplicationAppRole,  # "A": `application` has a struct of that name
)
from cdktf_cdktf_provider_azuread.application_identifier_uri import ApplicationIdentifierUri
from cdktf_cdktf_provider_azuread.application_redirect_uris import ApplicationRedirectUris
from cdktf_cdktf_provider_azuread.application_registration import ApplicationRegistration
from cdktf_cdktf_provider_azuread.data_azuread_service_principal import (
    DataAzureadServicePrincipal,
)
from cdktf_cdktf_provider_azuread.provider import AzureadProvider
from cdktf_cdktf_provider_azuread.service_principal import ServicePrincipal
from cdktf_cdktf_provider_azurerm.application_insights import ApplicationInsights
from cdktf_cdktf_provider_azurerm.application_insights_workbook import ApplicationInsightsWorkbook
from cdktf_cdktf_provider_azurerm.data_azurerm_client_config import DataAzurermClientConfig
from cdktf_cdktf_provider_azurerm.eventhub import Eventhub
from cdktf_cdktf_provider_azurerm.eventhub_consumer_group import EventhubConsumerGroup
from cdktf_cdktf_provider_azurerm.eventhub_namespace import EventhubNamespace
from cdktf_cdktf_provider_azurerm.eventhub_namespace_authorization_rule import (
    EventhubNamespaceAuthorizationRule,
)
from cdktf_cdktf_provider_azurerm.function_app_flex_consumption import (
    FunctionAppFlexConsumption,
    FunctionAppFlexConsumptionIdentity,
    FunctionAppFlexConsumptionSiteConfig,
)
from cdktf_cdktf_provider_azurerm.key_vault import KeyVault, KeyVaultNetworkAcls
from cdktf_cdktf_provider_azurerm.key_vault_certificate import (
    KeyVaultCertificate,
    KeyVaultCertificateCertificatePolicy,
    KeyVaultCertificateCertificatePolicyIssuerParameters,
    KeyVaultCertificateCertificatePolicyKeyProperties,
    KeyVaultCertificateCertificatePolicyLifetimeAction,
    KeyVaultCertificateCertificatePolicyLifetimeActionAction,
    KeyVaultCertificateCertificatePolicyLifetimeActionTrigger,
    KeyVaultCertificateCertificatePolicySecretProperties,
    KeyVaultCertificateCertificatePolicyX509CertificateProperties,
)
from cdktf_cdktf_provider_azurerm.linux_web_app import (
    LinuxWebApp,
    LinuxWebAppAuthSettingsV2,
    LinuxWebAppAuthSettingsV2ActiveDirectoryV2,
    LinuxWebAppAuthSettingsV2Login,
    LinuxWebAppIdentity,
    LinuxWebAppSiteConfig,
    LinuxWebAppSiteConfigApplicationStack,
)
from cdktf_cdktf_provider_azurerm.log_analytics_saved_search import LogAnalyticsSavedSearch
from cdktf_cdktf_provider_azurerm.log_analytics_workspace import LogAnalyticsWorkspace
from cdktf_cdktf_provider_azurerm.log_analytics_workspace_table_custom_log import (
    LogAnalyticsWorkspaceTableCustomLog,
    LogAnalyticsWorkspaceTableCustomLogColumn,
)
from cdktf_cdktf_provider_azurerm.monitor_action_group import (
    MonitorActionGroup,
    MonitorActionGroupEmailReceiver,
    MonitorActionGroupWebhookReceiver,
)
from cdktf_cdktf_provider_azurerm.monitor_data_collection_endpoint import (
    MonitorDataCollectionEndpoint,
)
from cdktf_cdktf_provider_azurerm.monitor_data_collection_rule import (
    MonitorDataCollectionRule,
    MonitorDataCollectionRuleDataFlow,
    MonitorDataCollectionRuleDestinations,
    MonitorDataCollectionRuleDestinationsLogAnalytics,
    MonitorDataCollectionRuleStreamDeclaration,
    MonitorDataCollectionRuleStreamDeclarationColumn,
)
from cdktf_cdktf_provider_azurerm.monitor_diagnostic_setting import (
    MonitorDiagnosticSetting,
    MonitorDiagnosticSettingEnabledLog,
    MonitorDiagnosticSettingEnabledMetric,
)
from cdktf_cdktf_provider_azurerm.monitor_scheduled_query_rules_alert_v2 import (
    MonitorScheduledQueryRulesAlertV2,
    MonitorScheduledQueryRulesAlertV2Action,
    MonitorScheduledQueryRulesAlertV2Criteria,
    MonitorScheduledQueryRulesAlertV2CriteriaDimension,
    MonitorScheduledQueryRulesAlertV2CriteriaFailingPeriods,
)
from cdktf_cdktf_provider_azurerm.network_security_group import NetworkSecurityGroup
from cdktf_cdktf_provider_azurerm.provider import (
    AzurermProvider,
    AzurermProviderFeatures,
    AzurermProviderFeaturesKeyVault,
)
from cdktf_cdktf_provider_azurerm.resource_group import ResourceGroup
from cdktf_cdktf_provider_azurerm.role_assignment import RoleAssignment
from cdktf_cdktf_provider_azurerm.sentinel_alert_rule_scheduled import (
    SentinelAlertRuleScheduled,
    SentinelAlertRuleScheduledAlertDetailsOverride,
    SentinelAlertRuleScheduledEntityMapping,
    SentinelAlertRuleScheduledEntityMappingFieldMapping,
    SentinelAlertRuleScheduledEventGrouping,
    SentinelAlertRuleScheduledIncident,
    SentinelAlertRuleScheduledIncidentGrouping,
)
from cdktf_cdktf_provider_azurerm.sentinel_log_analytics_workspace_onboarding import (
    SentinelLogAnalyticsWorkspaceOnboarding,
)
from cdktf_cdktf_provider_azurerm.service_plan import ServicePlan
from cdktf_cdktf_provider_azurerm.storage_account import (
    StorageAccount,
    StorageAccountBlobProperties,
    StorageAccountBlobPropertiesContainerDeleteRetentionPolicy,
    StorageAccountBlobPropertiesDeleteRetentionPolicy,
    StorageAccountNetworkRules,
    StorageAccountSasPolicy,
)
from cdktf_cdktf_provider_azurerm.storage_container import StorageContainer
from cdktf_cdktf_provider_azurerm.storage_management_policy import (
    StorageManagementPolicy,
    StorageManagementPolicyRule,
    StorageManagementPolicyRuleActions,
    StorageManagementPolicyRuleActionsBaseBlob,
    StorageManagementPolicyRuleFilters,
)
from cdktf_cdktf_provider_azurerm.storage_queue import StorageQueue
from cdktf_cdktf_provider_azurerm.subnet import (
    Subnet,
    SubnetDelegation,
    SubnetDelegationServiceDelegation,
)
from cdktf_cdktf_provider_azurerm.subnet_network_security_group_association import (
    SubnetNetworkSecurityGroupAssociation,
)
from cdktf_cdktf_provider_azurerm.user_assigned_identity import UserAssignedIdentity
from cdktf_cdktf_provider_azurerm.virtual_network import VirtualNetwork
from constructs import Construct, IConstruct
from jsii import implements

__all__ = [
    "App",
    "AppRoleAssignment",
    "ApplicationAppRole",
    "ApplicationIdentifierUri",
    "ApplicationInsights",
    "ApplicationInsightsWorkbook",
    "ApplicationRedirectUris",
    "ApplicationRegistration",
    "Aspects",
    "AzureadProvider",
    "AzurermBackend",
    "AzurermProvider",
    "AzurermProviderFeatures",
    "AzurermProviderFeaturesKeyVault",
    "Construct",
    "DataAzureadServicePrincipal",
    "DataAzurermClientConfig",
    "DefaultTokenResolver",
    "Eventhub",
    "EventhubConsumerGroup",
    "EventhubNamespace",
    "EventhubNamespaceAuthorizationRule",
    "Fn",
    "FunctionAppFlexConsumption",
    "FunctionAppFlexConsumptionIdentity",
    "FunctionAppFlexConsumptionSiteConfig",
    "IAspect",
    "IConstruct",
    "ITerraformDependable",
    "KeyVault",
    "KeyVaultCertificate",
    "KeyVaultCertificateCertificatePolicy",
    "KeyVaultCertificateCertificatePolicyIssuerParameters",
    "KeyVaultCertificateCertificatePolicyKeyProperties",
    "KeyVaultCertificateCertificatePolicyLifetimeAction",
    "KeyVaultCertificateCertificatePolicyLifetimeActionAction",
    "KeyVaultCertificateCertificatePolicyLifetimeActionTrigger",
    "KeyVaultCertificateCertificatePolicySecretProperties",
    "KeyVaultCertificateCertificatePolicyX509CertificateProperties",
    "KeyVaultNetworkAcls",
    "LinuxWebApp",
    "LinuxWebAppAuthSettingsV2",
    "LinuxWebAppAuthSettingsV2ActiveDirectoryV2",
    "LinuxWebAppAuthSettingsV2Login",
    "LinuxWebAppIdentity",
    "LinuxWebAppSiteConfig",
    "LinuxWebAppSiteConfigApplicationStack",
    "LogAnalyticsSavedSearch",
    "LogAnalyticsWorkspace",
    "LogAnalyticsWorkspaceTableCustomLog",
    "LogAnalyticsWorkspaceTableCustomLogColumn",
    "MonitorActionGroup",
    "MonitorActionGroupEmailReceiver",
    "MonitorActionGroupWebhookReceiver",
    "MonitorDataCollectionEndpoint",
    "MonitorDataCollectionRule",
    "MonitorDataCollectionRuleDataFlow",
    "MonitorDataCollectionRuleDestinations",
    "MonitorDataCollectionRuleDestinationsLogAnalytics",
    "MonitorDataCollectionRuleStreamDeclaration",
    "MonitorDataCollectionRuleStreamDeclarationColumn",
    "MonitorDiagnosticSetting",
    "MonitorDiagnosticSettingEnabledLog",
    "MonitorDiagnosticSettingEnabledMetric",
    "MonitorScheduledQueryRulesAlertV2",
    "MonitorScheduledQueryRulesAlertV2Action",
    "MonitorScheduledQueryRulesAlertV2Criteria",
    "MonitorScheduledQueryRulesAlertV2CriteriaDimension",
    "MonitorScheduledQueryRulesAlertV2CriteriaFailingPeriods",
    "NetworkSecurityGroup",
    "Postcondition",
    "ResourceGroup",
    "RoleAssignment",
    "SentinelAlertRuleScheduled",
    "SentinelAlertRuleScheduledAlertDetailsOverride",
    "SentinelAlertRuleScheduledEntityMapping",
    "SentinelAlertRuleScheduledEntityMappingFieldMapping",
    "SentinelAlertRuleScheduledEventGrouping",
    "SentinelAlertRuleScheduledIncident",
    "SentinelAlertRuleScheduledIncidentGrouping",
    "SentinelLogAnalyticsWorkspaceOnboarding",
    "ServicePlan",
    "ServicePrincipal",
    "StorageAccount",
    "StorageAccountBlobProperties",
    "StorageAccountBlobPropertiesContainerDeleteRetentionPolicy",
    "StorageAccountBlobPropertiesDeleteRetentionPolicy",
    "StorageAccountNetworkRules",
    "StorageAccountSasPolicy",
    "StorageContainer",
    "StorageManagementPolicy",
    "StorageManagementPolicyRule",
    "StorageManagementPolicyRuleActions",
    "StorageManagementPolicyRuleActionsBaseBlob",
    "StorageManagementPolicyRuleFilters",
    "StorageQueue",
    "StringConcat",
    "Subnet",
    "SubnetDelegation",
    "SubnetDelegationServiceDelegation",
    "SubnetNetworkSecurityGroupAssociation",
    "TerraformElement",
    "TerraformOutput",
    "TerraformResource",
    "TerraformResourceLifecycle",
    "TerraformStack",
    "Testing",
    "Token",
    "Tokenization",
    "UserAssignedIdentity",
    "VirtualNetwork",
    "implements",
]
