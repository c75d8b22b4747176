"""A fake Azure Resource Manager for Event Hubs namespaces and hubs, at the azure-core transport."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from azure.core.rest import HttpRequest

from tests.fakes.authorization import Authority
from tests.fakes.azure_transport import FakeAsyncTransport


@dataclass
class FakeNamespace:
    tier: str = "Standard"
    disable_local_auth: bool = True
    public_network_access: str = "Enabled"
    hubs: dict[str, int] = field(default_factory=dict)


@dataclass
class FakeEventHubManagement:
    namespaces: dict[tuple[str, str, str], FakeNamespace] = field(default_factory=dict)
    authority: Authority | None = None

    def transport(self) -> FakeAsyncTransport:
        return FakeAsyncTransport(self.handle)

    def handle(self, request: HttpRequest) -> tuple[int, Any, dict[str, str]]:
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return 401, {"error": {"code": "AuthenticationFailed", "message": "no token"}}, {}
        path = urlsplit(request.url).path
        m = re.fullmatch(
            r"/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.EventHub/"
            r"namespaces/([^/]+)(?:/eventhubs/([^/]+))?",
            path,
            flags=re.IGNORECASE,
        )
        if m is None or request.method != "GET":
            return 400, {"error": {"code": "BadRequest", "message": path}}, {}
        action = (
            "Microsoft.EventHub/namespaces/eventhubs/read"
            if m.group(4)
            else "Microsoft.EventHub/namespaces/read"
        )
        if self.authority is not None and (
            refusal := self.authority.refuse_arm(
                request.headers.get("Authorization"), call=f"GET {path}", scope=path, action=action
            )
        ):
            return refusal
        namespace = self.namespaces.get((m.group(1), m.group(2), m.group(3)))
        if namespace is None:
            return 404, _not_found("Microsoft.EventHub/namespaces", m.group(3)), {}
        if m.group(4) is None:
            return (
                200,
                {
                    "id": path,
                    "name": m.group(3),
                    "location": "westeurope",
                    "sku": {"name": namespace.tier, "tier": namespace.tier},
                    "properties": {
                        "disableLocalAuth": namespace.disable_local_auth,
                        "publicNetworkAccess": namespace.public_network_access,
                        "provisioningState": "Succeeded",
                    },
                },
                {},
            )
        partitions = namespace.hubs.get(m.group(4))
        if partitions is None:
            return 404, _not_found("Microsoft.EventHub/namespaces/eventhubs", m.group(4)), {}
        return (
            200,
            {
                "id": path,
                "name": m.group(4),
                "properties": {"partitionCount": partitions, "status": "Active"},
            },
            {},
        )


def _not_found(kind: str, name: str) -> dict[str, Any]:
    return {
        "error": {
            "code": "ResourceNotFound",
            "message": f"The Resource '{kind}/{name}' was not found.",
        }
    }
