"""The payload account's connection string, for Microsoft Graph (`blobStoreUrl`).

Graph writes rich payloads over 1 MB into the payload account with the connection string a
Key Vault secret holds; the subscriptions name that secret. The value never passes through
Terraform: `graphtap bootstrap`, as the deploying identity, reads the account key through
Resource Manager (`listKeys`, which the deploying identity's Contributor role allows) and
writes the secret, again whenever the key has changed (a rotation). Nothing prints the value.
"""

from __future__ import annotations

from typing import Any

from azure.core.credentials_async import AsyncTokenCredential
from azure.mgmt.storage.aio import StorageManagementClient

from graphtap.deployment import Deployment, DeploymentError

#: The key Graph is given; the other stays free for a rotation (`az storage account keys
#: renew --key key2`, then point Graph at it by rerunning bootstrap after renewing key1).
ACCOUNT_KEY = "key1"


def connection_string(account: str, key: str, storage_suffix: str) -> str:
    """Azure Storage's connection string, for the cloud whose storage host suffix is given."""
    return (
        f"DefaultEndpointsProtocol=https;AccountName={account};AccountKey={key};"
        f"EndpointSuffix={storage_suffix}"
    )


async def payload_connection_string(
    deployment: Deployment, credential: AsyncTokenCredential, **client_options: Any
) -> str:
    """The payload account's connection string, from its key (Resource Manager, the
    deployment's cloud); raises DeploymentError when the outputs do not name the account."""
    missing = [
        name
        for name in ("subscription_id", "resource_group", "payload_account")
        if not getattr(deployment, name)
    ]
    if missing:
        raise DeploymentError(f"the stack outputs lack {', '.join(missing)}")
    cloud = deployment.profile
    account = str(deployment.payload_account)
    async with StorageManagementClient(
        credential,
        str(deployment.subscription_id),
        base_url=cloud.resource_manager,
        credential_scopes=[cloud.resource_manager_scope],
        **client_options,
    ) as client:
        listed = await client.storage_accounts.list_keys(str(deployment.resource_group), account)
    keys = {k.key_name: k.value for k in listed.keys_property or [] if k.key_name and k.value}
    if ACCOUNT_KEY not in keys:
        raise DeploymentError(f"storage account {account} has no {ACCOUNT_KEY}")
    return connection_string(account, keys[ACCOUNT_KEY], cloud.storage_suffix)
