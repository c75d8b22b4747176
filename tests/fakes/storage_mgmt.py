"""A fake Azure Resource Manager for storage account keys (`listKeys`), at the azure-core
transport: what `graphtap bootstrap` reads to give Graph the payload account's connection
string. It refuses a caller without `Microsoft.Storage/storageAccounts/listkeys/action` on the
account (or above), as Resource Manager does."""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from azure.core.rest import HttpRequest

from tests.fakes.authorization import Authority
from tests.fakes.azure_transport import FakeAsyncTransport

LIST_KEYS = "Microsoft.Storage/storageAccounts/listkeys/action"


def _key() -> str:
    return base64.b64encode(secrets.token_bytes(64)).decode()


@dataclass
class FakeAccount:
    keys: dict[str, str] = field(default_factory=lambda: {"key1": _key(), "key2": _key()})

    def renew(self, name: str) -> None:
        """A key rotation (`az storage account keys renew`)."""
        self.keys[name] = _key()


@dataclass
class FakeStorageManagement:
    #: (subscription, resource group, account name) -> its keys.
    accounts: dict[tuple[str, str, str], FakeAccount] = field(default_factory=dict)
    authority: Authority | None = None
    calls: list[str] = field(default_factory=list)

    def transport(self) -> FakeAsyncTransport:
        return FakeAsyncTransport(self.handle)

    def handle(self, request: HttpRequest) -> tuple[int, Any, dict[str, str]]:
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return 401, {"error": {"code": "AuthenticationFailed", "message": "no token"}}, {}
        path = urlsplit(request.url).path
        self.calls.append(f"{request.method} {path}")
        m = re.fullmatch(
            r"/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.Storage/"
            r"storageAccounts/([^/]+)/listKeys",
            path,
            flags=re.IGNORECASE,
        )
        if m is None or request.method != "POST":
            return 400, {"error": {"code": "BadRequest", "message": path}}, {}
        resource = path.rsplit("/", 1)[0]
        if self.authority is not None and (
            refusal := self.authority.refuse_arm(
                request.headers.get("Authorization"),
                call=f"POST {path}",
                scope=resource,
                action=LIST_KEYS,
            )
        ):
            return refusal
        account = self.accounts.get((m.group(1), m.group(2), m.group(3)))
        if account is None:
            message = (
                f"The Resource 'Microsoft.Storage/storageAccounts/{m.group(3)}' was not found."
            )
            return 404, {"error": {"code": "ResourceNotFound", "message": message}}, {}
        keys = [
            {"keyName": name, "value": value, "permissions": "FULL"}
            for name, value in account.keys.items()
        ]
        return 200, {"keys": keys}, {}
