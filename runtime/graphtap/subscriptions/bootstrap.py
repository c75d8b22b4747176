"""`graphtap bootstrap`: check the deployment and create the secrets the runtime reads.

Bootstrap runs as the deploying identity (an operator's login or CI's federated identity),
which holds no Microsoft Graph permission. Graph keeps a subscription with the app that
created it, and only that app may renew it, so subscriptions are created by the web app's
control plane, as the runtime identity, at start and on every reconcile. Bootstrap's part is
what the runtime may not do: write its secrets, each exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azure.core.credentials_async import AsyncTokenCredential

from graphtap.deployment import Deployment
from graphtap.subscriptions.keyvault import KeyVault
from graphtap.subscriptions.payloadstore import payload_connection_string
from graphtap.subscriptions.preflight import Check, check_deployment

PAYLOAD_SECRET_CONTENT_TYPE = "graph-payload-storage-connection-string"  # noqa: S105


@dataclass(frozen=True)
class SecretOutcome:
    name: str
    created: bool
    #: A secret bootstrap keeps current (the payload account's connection string) was
    #: written anew because its value changed.
    updated: bool = False


@dataclass(frozen=True)
class BootstrapResult:
    checks: tuple[Check, ...]
    secrets: tuple[SecretOutcome, ...] = ()
    certificate_id: str | None = None

    @property
    def preflight_ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def ok(self) -> bool:
        return self.preflight_ok and self.certificate_id is not None


async def bootstrap(
    deployment: Deployment,
    credential: AsyncTokenCredential,
    *,
    keyvault_options: dict[str, Any] | None = None,
    management_options: dict[str, Any] | None = None,
    storage_management_options: dict[str, Any] | None = None,
) -> BootstrapResult:
    """Preflight first; only a sound deployment gets its secrets. With a payload store, the
    account's connection string too, for Graph (`storage_management_options` go to the
    Resource Manager client that reads the account key)."""
    checks = tuple(await check_deployment(deployment, credential, **(management_options or {})))
    if not all(check.ok for check in checks):
        return BootstrapResult(checks)
    keyvault = KeyVault(deployment.key_vault_uri, credential, **(keyvault_options or {}))
    try:
        certificate = await keyvault.certificate(deployment.certificate_name)
        _, state_created = await keyvault.ensure_client_state(deployment.client_state_secret)
        # The processors hash findings under this key; created here so they only ever read it.
        _, key_created = await keyvault.ensure_finding_hash_key(deployment.finding_hash_key_secret)
        outcomes = [
            SecretOutcome(deployment.client_state_secret, state_created),
            SecretOutcome(deployment.finding_hash_key_secret, key_created),
        ]
        if deployment.payload_secret and deployment.payload_vault_uri:
            value = await payload_connection_string(
                deployment, credential, **(storage_management_options or {})
            )
            # Its own vault: Graph reads it from outside the main vault's firewall.
            payload_vault = KeyVault(
                deployment.payload_vault_uri, credential, **(keyvault_options or {})
            )
            try:
                action = await payload_vault.put_secret(
                    deployment.payload_secret, value, content_type=PAYLOAD_SECRET_CONTENT_TYPE
                )
            finally:
                await payload_vault.close()
            outcomes.append(
                SecretOutcome(
                    deployment.payload_secret, action == "created", updated=action == "updated"
                )
            )
    finally:
        await keyvault.close()
    return BootstrapResult(checks, tuple(outcomes), certificate.certificate_id)
