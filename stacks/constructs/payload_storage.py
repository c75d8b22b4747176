"""Where Graph writes rich notifications over 1 MB: a storage account of their own.

Event Hubs caps an event at 1 MB. For a larger payload Graph writes the item's `resource`,
`resourceData` and `encryptedContent` into the container `microsoft-graph-change-notifications`
of the account whose connection string the subscription's `blobStoreUrl` names (a Key Vault
secret), and the event carries only its `additionalPayloadStorageId`.

Graph authenticates with that connection string, so this account alone allows shared keys;
it holds nothing but Graph's container, whose blobs are still encrypted for the
notification certificate and are deleted once the hub's retention has passed. Graph writes
from the internet and is no trusted Microsoft service, so the account's firewall admits every
network; the account key is the only credential that writes, and it lives only in the secret
`graphtap bootstrap` writes, which only Graph's Change Tracking principal reads. The runtime
reads the container with its managed identity and nothing else.

That secret has a vault of its own: Graph reads it from the internet too, and is no trusted
Microsoft service for a vault's firewall either, while the stack's main vault (the
notification certificate's private key) admits only the apps' subnets. This one holds the
one secret, is RBAC-only and purge-protected, and its firewall admits every network.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphtap.clouds import Cloud
from graphtap.processing.fetch.payloads import PAYLOAD_CONTAINER
from stacks.cdk import (
    Construct,
    KeyVaultNetworkAcls,
    RoleAssignment,
    StorageAccountNetworkRules,
    StorageAccountSasPolicy,
    StorageContainer,
)
from stacks.constructs import DeploymentFacts, Placement
from stacks.constructs.identity import KEY_VAULT_SECRETS_USER, grant
from stacks.constructs.keyvault import hardened_vault
from stacks.constructs.storage import forget_blobs, hardened_account

BLOB_DATA_READER = "Storage Blob Data Reader"
KEY_VAULT_SECRETS_OFFICER = "Key Vault Secrets Officer"

#: What the runtime is told when an environment has no payload store.
NO_PAYLOAD_STORAGE: DeploymentFacts = {
    "payload_account_url": None,
    "payload_account": None,
    "payload_vault_uri": None,
    "payload_secret": None,
}


@dataclass(frozen=True)
class PayloadStorageProps:
    placement: Placement
    account_name: str
    #: The Key Vault secret holding the account's connection string, and the vault of its own
    #: it is kept in (Graph reads it).
    secret_name: str
    vault_name: str
    tenant_id: str
    #: Days a payload is kept: the hub's retention, past which its event is gone too.
    retention_days: int
    cloud: Cloud  # the blob endpoint's host name is the cloud's
    runtime_principal_id: str  # reads the container
    change_tracking_object_id: str  # Graph: reads the secret, then writes with the key
    deployer_object_id: str  # `graphtap bootstrap` writes the secret


class PayloadStorage(Construct):
    """The payload account, Graph's container, its lifecycle rule and the three grants."""

    def __init__(self, scope: Construct, id_: str, props: PayloadStorageProps) -> None:
        super().__init__(scope, id_)
        if props.retention_days < 1:
            raise ValueError(f"payloads are kept at least a day, got {props.retention_days}")
        where = props.placement
        self.account = hardened_account(
            self,
            "store",
            name=props.account_name,
            placement=where,
            # Graph writes with the connection string from `blobStoreUrl`'s secret: the one
            # account of the stack that allows shared keys (stacks/aspects.py holds it so).
            shared_keys=True,
            # Graph writes from the internet and is not a trusted Microsoft service.
            network_rules=StorageAccountNetworkRules(default_action="Allow"),
            # Nothing here signs a SAS; one signed with the key anyway is refused past an hour.
            sas_policy=StorageAccountSasPolicy(
                expiration_period="0.01:00:00", expiration_action="Block"
            ),
        )
        self.container = StorageContainer(
            self,
            "container",
            name=PAYLOAD_CONTAINER,
            storage_account_id=self.account.id,
            container_access_type="private",
        )
        self.lifecycle = forget_blobs(
            self,
            self.account,
            rule="forget-payloads-past-hub-retention",
            container=PAYLOAD_CONTAINER,
            days=props.retention_days,
        )
        self.vault = hardened_vault(
            self,
            "vault",
            name=props.vault_name,
            placement=where,
            tenant_id=props.tenant_id,
            # Graph reads the secret from the internet, as it writes the payloads.
            network_acls=KeyVaultNetworkAcls(default_action="Allow", bypass="None"),
        )
        secret = f"{self.vault.id}/secrets/{props.secret_name}"
        self.runtime_reader = grant(
            self,
            "runtime_reads_payloads",
            props.runtime_principal_id,
            BLOB_DATA_READER,
            self.container.id,
        )
        # Graph reads the connection string when it writes a payload (as it reads an Event
        # Hubs connection string in the Key Vault delivery mode): this one secret, no other.
        self.change_tracking_reader = grant(
            self,
            "change_tracking_reads_secret",
            props.change_tracking_object_id,
            KEY_VAULT_SECRETS_USER,
            secret,
        )
        # Bootstrap writes the secret from the account's key (listKeys is the deploying
        # identity's Contributor right, which deploying the stack needs anyway).
        self.bootstrap_access = RoleAssignment(  # a user or a service principal
            self,
            "deployer_writes_secret",
            scope=secret,
            role_definition_name=KEY_VAULT_SECRETS_OFFICER,
            principal_id=props.deployer_object_id,
        )
        self.blob_endpoint = props.cloud.blob_endpoint(props.account_name)
        self.deployment: DeploymentFacts = {
            "payload_account_url": self.blob_endpoint,
            "payload_account": props.account_name,
            "payload_vault_uri": props.cloud.key_vault_uri(props.vault_name),
            "payload_secret": props.secret_name,
        }
