"""Who may read the web app: the app role check behind App Service Authentication.

On Azure the stack puts App Service Authentication (Easy Auth, Entra ID) in front of the web
app. It signs browsers in, validates bearer tokens and hands every authenticated request to the
app with an `X-MS-CLIENT-PRINCIPAL` header: the caller's claims as base64 JSON. Easy Auth does
not check app roles, so `AccessGate` does: with the stack's `GRAPHTAP_STATUS_ROLE` app setting,
every path except the health probe needs a principal carrying that role (`/metrics` also
accepts `GRAPHTAP_METRICS_ROLE`, the scraper's role). No principal: 401; a principal without
the role: 403.

The header is trusted because Easy Auth fronts every path but the open ones and App Service
reaches the app only through its front end. Without the setting (a local run, bound to
127.0.0.1) no gate is installed and the app behaves as before.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

STATUS_ROLE_ENV = "GRAPHTAP_STATUS_ROLE"
METRICS_ROLE_ENV = "GRAPHTAP_METRICS_ROLE"
PRINCIPAL_HEADER = "x-ms-client-principal"
#: Paths anyone may reach: the platform's health check (Easy Auth excludes it as well).
OPEN_PATHS = frozenset({"/healthz"})
METRICS_PATH = "/metrics"
#: Claim types that carry app roles: Entra's `roles`, and the role claim URI Easy Auth may use.
ROLE_CLAIM_TYPES = frozenset(
    {"roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"}
)


@dataclass(frozen=True)
class AccessPolicy:
    """The app roles each path needs; a caller needs one of them."""

    status_role: str | None  # every gated path; None: nobody reads the status page
    metrics_role: str | None = None  # additionally admitted to /metrics
    open_paths: frozenset[str] = OPEN_PATHS

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> AccessPolicy | None:
        """The policy the stack's app settings ask for, or None when they name no role."""
        status = environ.get(STATUS_ROLE_ENV, "").strip() or None
        metrics = environ.get(METRICS_ROLE_ENV, "").strip() or None
        if status is None and metrics is None:
            return None
        return cls(status, metrics)

    def roles_for(self, path: str) -> frozenset[str]:
        """The roles that admit a caller to `path` (empty: nobody is admitted)."""
        roles = {self.status_role}
        if path == METRICS_PATH:
            roles.add(self.metrics_role)
        return frozenset(role for role in roles if role)


@dataclass(frozen=True)
class ClientPrincipal:
    """The caller Easy Auth authenticated, as far as access decisions need it."""

    identity_provider: str
    roles: frozenset[str]

    @classmethod
    def decode(cls, header: str) -> ClientPrincipal | None:
        """The principal of an `X-MS-CLIENT-PRINCIPAL` value; None when it is not one."""
        try:
            padded = header.strip() + "=" * (-len(header.strip()) % 4)
            document = json.loads(base64.b64decode(padded, validate=True))
        except (binascii.Error, ValueError, RecursionError):  # nested past the parser's depth
            return None
        if not isinstance(document, dict) or not isinstance(document.get("claims"), list):
            return None
        role_types = set(ROLE_CLAIM_TYPES)
        if isinstance(document.get("role_typ"), str):
            role_types.add(document["role_typ"])
        roles = frozenset(
            claim["val"]
            for claim in document["claims"]
            if isinstance(claim, dict)
            and claim.get("typ") in role_types
            and isinstance(claim.get("val"), str)
        )
        return cls(str(document.get("auth_typ", "")), roles)


class AccessGate:
    """ASGI middleware: refuses HTTP requests whose principal lacks the path's role."""

    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.policy.open_paths:
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get(PRINCIPAL_HEADER)
        principal = ClientPrincipal.decode(header) if header else None
        if principal is None:
            log.info("request refused", extra={"reason": "not signed in"})
            response = PlainTextResponse(
                "sign-in required", 401, headers={"WWW-Authenticate": "Bearer"}
            )
        elif not principal.roles & self.policy.roles_for(scope["path"]):
            log.info("request refused", extra={"reason": "app role missing"})
            response = PlainTextResponse("the caller lacks the app role this page needs", 403)
        else:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)
