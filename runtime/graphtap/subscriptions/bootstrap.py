"""`graphtap bootstrap`: check the deployment, make sure the secrets exist, reconcile once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from azure.core.credentials_async import AsyncTokenCredential

from graphtap.deployment import Deployment
from graphtap.subscriptions.clock import Clock
from graphtap.subscriptions.control_plane import ControlPlane, ControlPlaneSettings
from graphtap.subscriptions.desired import DesiredState
from graphtap.subscriptions.preflight import Check, check_deployment
from graphtap.subscriptions.reconcile import Outcome


@dataclass(frozen=True)
class BootstrapResult:
    checks: tuple[Check, ...]
    outcomes: tuple[Outcome, ...] = ()
    certificate_id: str | None = None
    errors: tuple[str, ...] = field(default=())

    @property
    def preflight_ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def ok(self) -> bool:
        return self.preflight_ok and not self.errors and all(o.error is None for o in self.outcomes)


async def bootstrap(
    deployment: Deployment,
    credential: AsyncTokenCredential,
    desired: DesiredState,
    *,
    clock: Clock | None = None,
    settings: ControlPlaneSettings | None = None,
    graph_transport: httpx.AsyncBaseTransport | None = None,
    keyvault_options: dict[str, Any] | None = None,
    management_options: dict[str, Any] | None = None,
) -> BootstrapResult:
    """Preflight first; only a sound deployment gets its subscriptions reconciled."""
    checks = tuple(await check_deployment(deployment, credential, **(management_options or {})))
    if not all(check.ok for check in checks):
        return BootstrapResult(checks)
    plane = ControlPlane.from_deployment(
        deployment,
        credential,
        desired=desired,
        clock=clock,
        settings=settings or ControlPlaneSettings(),
        graph_transport=graph_transport,
        keyvault_options=keyvault_options,
    )
    try:
        target = await plane.refresh_target()
        # The processors hash findings under this key; created here so they only ever read it.
        await plane.keyvault.ensure_finding_hash_key()
        outcomes = await plane.reconcile()
    finally:
        await plane.keyvault.close()
    return BootstrapResult(checks, tuple(outcomes), target.certificate_id)
