"""Key Vault and the notification encryption certificate, generated inside the vault.

The key pair is created by Key Vault from a self-signed policy, so no private key ever exists in
Terraform's configuration or state; Graph gets only the public certificate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from graphtap.clouds import Cloud
from stacks.cdk import (
    Construct,
    KeyVault,
    KeyVaultCertificate,
    KeyVaultCertificateCertificatePolicy,
    KeyVaultCertificateCertificatePolicyIssuerParameters,
    KeyVaultCertificateCertificatePolicyKeyProperties,
    KeyVaultCertificateCertificatePolicyLifetimeAction,
    KeyVaultCertificateCertificatePolicyLifetimeActionAction,
    KeyVaultCertificateCertificatePolicyLifetimeActionTrigger,
    KeyVaultCertificateCertificatePolicySecretProperties,
    KeyVaultCertificateCertificatePolicyX509CertificateProperties,
    KeyVaultNetworkAcls,
    RoleAssignment,
)
from stacks.constructs import DeploymentFacts, Placement

CERTIFICATE_KEY_SIZE = 2048
CERTIFICATE_VALIDITY_MONTHS = 12
RENEW_DAYS_BEFORE_EXPIRY = 30


@dataclass(frozen=True)
class KeyVaultProps:
    placement: Placement
    vault_name: str
    tenant_id: str
    certificate_name: str
    certificate_subject: str
    subnet_ids: Sequence[str]
    operator_ip_ranges: Sequence[str]
    deployer_object_id: str  # creates the certificate: a data-plane call during deploy
    #: Secrets `make bootstrap` creates as the deploying identity and the runtime reads:
    #: the clientState's and the finding hash key's.
    runtime_secrets: tuple[str, str]
    cloud: Cloud  # the vault's URI is the cloud's


def hardened_vault(
    scope: Construct,
    id_: str,
    *,
    name: str,
    placement: Placement,
    tenant_id: str,
    network_acls: KeyVaultNetworkAcls,
) -> KeyVault:
    """A vault with the stack's defaults: RBAC only, purge protection, 90 days of soft
    delete; reachable as `network_acls` says (private endpoints are not part of the
    blueprint, so its public endpoint stays on behind that firewall)."""
    return KeyVault(
        scope,
        id_,
        name=name,
        location=placement.location,
        resource_group_name=placement.resource_group_name,
        tenant_id=tenant_id,
        sku_name="standard",
        rbac_authorization_enabled=True,
        purge_protection_enabled=True,
        soft_delete_retention_days=90,
        public_network_access_enabled=True,
        network_acls=network_acls,
        tags=dict(placement.tags),
    )


class NotificationKeyVault(Construct):
    def __init__(self, scope: Construct, id_: str, props: KeyVaultProps) -> None:
        super().__init__(scope, id_)
        self.vault = hardened_vault(
            self,
            "vault",
            name=props.vault_name,
            placement=props.placement,
            tenant_id=props.tenant_id,
            network_acls=KeyVaultNetworkAcls(
                default_action="Deny",
                bypass="AzureServices",
                virtual_network_subnet_ids=list(props.subnet_ids),
                ip_rules=list(props.operator_ip_ranges),
            ),
        )
        # Deploy creates the certificate and `graphtap keys rotate` renews it: on that one
        # certificate only, and without its private key (Officers cannot read secrets).
        self.deployer_access = RoleAssignment(
            self,
            "deployer_certificates_officer",
            scope=f"{self.vault.id}/certificates/{props.certificate_name}",
            role_definition_name="Key Vault Certificates Officer",
            principal_id=props.deployer_object_id,
        )
        self.certificate = KeyVaultCertificate(
            self,
            "certificate",
            name=props.certificate_name,
            key_vault_id=self.vault.id,
            certificate_policy=KeyVaultCertificateCertificatePolicy(
                issuer_parameters=KeyVaultCertificateCertificatePolicyIssuerParameters(name="Self"),
                key_properties=KeyVaultCertificateCertificatePolicyKeyProperties(
                    key_type="RSA",
                    key_size=CERTIFICATE_KEY_SIZE,
                    exportable=True,  # the runtime decrypts locally with the private key
                    reuse_key=False,
                ),
                secret_properties=KeyVaultCertificateCertificatePolicySecretProperties(
                    content_type="application/x-pkcs12"
                ),
                lifetime_action=[
                    KeyVaultCertificateCertificatePolicyLifetimeAction(
                        action=KeyVaultCertificateCertificatePolicyLifetimeActionAction(
                            action_type="AutoRenew"
                        ),
                        trigger=KeyVaultCertificateCertificatePolicyLifetimeActionTrigger(
                            days_before_expiry=RENEW_DAYS_BEFORE_EXPIRY
                        ),
                    )
                ],
                x509_certificate_properties=(
                    KeyVaultCertificateCertificatePolicyX509CertificateProperties(
                        subject=props.certificate_subject,
                        validity_in_months=CERTIFICATE_VALIDITY_MONTHS,
                        key_usage=["digitalSignature", "keyEncipherment", "dataEncipherment"],
                    )
                ),
            ),
            depends_on=[self.deployer_access],
        )
        self.uri = props.cloud.key_vault_uri(props.vault_name)
        self.certificate_name = props.certificate_name
        # Bootstrap writes each runtime secret once; the grant covers that secret alone, so
        # the deploying identity can never read the certificate's private key.
        self.bootstrap_access = {
            name: RoleAssignment(
                self,
                f"deployer_secret_{name.replace('-', '_')}",
                scope=self.secret_scope(name),
                role_definition_name="Key Vault Secrets Officer",
                principal_id=props.deployer_object_id,
            )
            for name in props.runtime_secrets
        }
        client_state, hash_key = props.runtime_secrets
        self.deployment: DeploymentFacts = {
            "key_vault_uri": self.uri,
            "certificate_name": props.certificate_name,
            "client_state_secret": client_state,
            "finding_hash_key_secret": hash_key,
        }

    def secret_scope(self, name: str) -> str:
        """A secret of this vault as an Azure RBAC scope (its resource-manager id)."""
        return f"{self.vault.id}/secrets/{name}"

    @property
    def certificate_secret_scope(self) -> str:
        """The certificate's backing secret (the PFX) as an Azure RBAC scope."""
        return self.secret_scope(self.certificate_name)
