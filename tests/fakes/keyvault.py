"""A fake Key Vault (secrets and certificates) at the azure-core transport.

It answers the real azure-keyvault clients: the bearer challenge first, then secrets
(get, set) and certificates with versions (get, create a new version, list versions),
and each certificate's private key as the PKCS#12 secret Key Vault keeps beside it.

Given an `Authority` and the vault's ARM id, every call is authorized as an RBAC vault
does: the data action of the operation on the secret or certificate, or 403 `Forbidden`
with the inner code `ForbiddenByRbac` and the body Key Vault sends.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from azure.core.rest import HttpRequest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from tests.fakes.authorization import Authority
from tests.fakes.azure_transport import FakeAsyncTransport

TENANT = "11111111-2222-3333-4444-555555555555"
CHALLENGE = (
    f'Bearer authorization="https://login.microsoftonline.com/{TENANT}", '
    'resource="https://vault.azure.net"'
)


@dataclass
class CertificateVersion:
    version: str
    key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    created: float


@dataclass
class FakeKeyVault:
    vault_url: str = "https://graphtap-dev.vault.azure.net"
    secrets: dict[str, list[tuple[str, str, str | None]]] = field(default_factory=dict)
    certificates: dict[str, list[CertificateVersion]] = field(default_factory=dict)
    secret_reads: list[str] = field(default_factory=list)
    authority: Authority | None = None
    resource_id: str = ""  # the vault's ARM id, the scope its role assignments name

    def transport(self) -> FakeAsyncTransport:
        return FakeAsyncTransport(self.handle)

    def add_certificate_version(self, name: str) -> CertificateVersion:
        """What AutoRenew (or an operator) does: a new key pair under the same name."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365))
            .sign(key, hashes.SHA256())
        )
        version = CertificateVersion(uuid.uuid4().hex, key, certificate, now.timestamp())
        self.certificates.setdefault(name, []).append(version)
        pfx = pkcs12.serialize_key_and_certificates(
            name.encode(), key, certificate, None, serialization.NoEncryption()
        )
        self.secrets.setdefault(name, []).append(
            (version.version, base64.b64encode(pfx).decode(), "application/x-pkcs12")
        )
        return version

    def handle(self, request: HttpRequest) -> tuple[int, Any, dict[str, str]]:
        if not request.headers.get("Authorization"):
            return 401, {"error": {"code": "Unauthorized"}}, {"WWW-Authenticate": CHALLENGE}
        path = urlsplit(request.url).path
        method = request.method
        if self.authority is not None and (denied := self._authorize(request, method, path)):
            return denied
        if m := re.fullmatch(r"/secrets/([^/]+)(?:/([^/]*))?", path):
            name, version = m.group(1), m.group(2) or ""
            if method == "PUT":
                body = json.loads(request.content)
                new = uuid.uuid4().hex
                self.secrets.setdefault(name, []).append(
                    (new, body["value"], body.get("contentType"))
                )
                return 200, self._secret(name, new, body["value"], body.get("contentType")), {}
            self.secret_reads.append(name)
            versions = self.secrets.get(name, [])
            chosen = [v for v in versions if not version or v[0] == version]
            if not chosen:
                return 404, _not_found("Secret", name), {}
            ver, value, content_type = chosen[-1]
            return 200, self._secret(name, ver, value, content_type), {}
        if m := re.fullmatch(r"/certificates/([^/]+)/versions", path):
            listed = self.certificates.get(m.group(1), [])
            return 200, {"value": [self._certificate_item(m.group(1), v) for v in listed]}, {}
        if m := re.fullmatch(r"/certificates/([^/]+)/create", path):
            version = self.add_certificate_version(m.group(1))
            return 202, self._operation(m.group(1), version), {}
        if m := re.fullmatch(r"/certificates/([^/]+)/pending", path):
            version = self.certificates[m.group(1)][-1]
            return 200, self._operation(m.group(1), version), {}
        if m := re.fullmatch(r"/certificates/([^/]+)/policy", path):
            return 200, _policy(m.group(1), self.vault_url), {}
        if m := re.fullmatch(r"/certificates/([^/]+)(?:/([^/]*))?", path):
            name, wanted = m.group(1), m.group(2) or ""
            matching = [
                v for v in self.certificates.get(name, []) if not wanted or v.version == wanted
            ]
            if not matching:
                return 404, _not_found("Certificate", name), {}
            return 200, self._certificate(name, matching[-1]), {}
        return 400, {"error": {"code": "BadParameter", "message": f"{method} {path}"}}, {}

    def _authorize(
        self, request: HttpRequest, method: str, path: str
    ) -> tuple[int, Any, dict[str, str]] | None:
        assert self.authority is not None
        kind, _, rest = path.strip("/").partition("/")
        name = rest.split("/")[0]
        verb = {
            ("secrets", "GET"): "getSecret/action",
            ("secrets", "PUT"): "setSecret/action",
            ("certificates", "GET"): "read",
            ("certificates", "POST"): "create/action",
        }.get((kind, method))
        if verb is None or not name:
            return None
        action = f"Microsoft.KeyVault/vaults/{kind}/{verb}"
        resource = f"{self.resource_id}/{kind}/{name}"
        denial = self.authority.check(
            request.headers.get("Authorization"),
            service="Key Vault",
            call=f"{method} {path}",
            resource=resource,
            data_action=action,
        )
        if denial is None:
            return None
        vault = self.resource_id.rsplit("/", 1)[-1]
        message = "\r\n".join(
            (
                "Caller is not authorized to perform action on resource.",
                "If role assignments, deny assignments or role definitions were changed "
                "recently, please observe propagation time.",
                f"Caller: oid={denial.principal};iss=https://sts.windows.net/{TENANT}/",
                f"Action: '{action}'",
                f"Resource: '{resource.lower()}'",
                "Assignment: (not found)",
                "DenyAssignmentId: null",
                "DecisionReason: 'DeniedWithNoValidRBAC' ",
                f"Vault: {vault};location=westeurope",
                "",
            )
        )
        body = {
            "error": {
                "code": "Forbidden",
                "message": message,
                "innererror": {"code": "ForbiddenByRbac"},
            }
        }
        return 403, body, {"Content-Type": "application/json; charset=utf-8"}

    def _secret(
        self, name: str, version: str, value: str, content_type: str | None
    ) -> dict[str, Any]:
        return {
            "value": value,
            "id": f"{self.vault_url}/secrets/{name}/{version}",
            "contentType": content_type,
            "attributes": {"enabled": True, "created": 1_700_000_000, "updated": 1_700_000_000},
        }

    def _certificate_item(self, name: str, version: CertificateVersion) -> dict[str, Any]:
        return {
            "id": f"{self.vault_url}/certificates/{name}/{version.version}",
            "x5t": _x5t(version.certificate),
            "attributes": {
                "enabled": True,
                "created": int(version.created),
                "updated": int(version.created),
            },
        }

    def _certificate(self, name: str, version: CertificateVersion) -> dict[str, Any]:
        return {
            **self._certificate_item(name, version),
            "kid": f"{self.vault_url}/keys/{name}/{version.version}",
            "sid": f"{self.vault_url}/secrets/{name}/{version.version}",
            "cer": base64.b64encode(
                version.certificate.public_bytes(serialization.Encoding.DER)
            ).decode(),
            "policy": _policy(name, self.vault_url),
        }

    def _operation(self, name: str, version: CertificateVersion) -> dict[str, Any]:
        return {
            "id": f"{self.vault_url}/certificates/{name}/pending",
            "status": "completed",
            "target": f"{self.vault_url}/certificates/{name}",
            "request_id": uuid.uuid4().hex,
        }


def _policy(name: str, vault_url: str) -> dict[str, Any]:
    return {
        "id": f"{vault_url}/certificates/{name}/policy",
        "key_props": {"exportable": True, "kty": "RSA", "key_size": 2048, "reuse_key": False},
        "secret_props": {"contentType": "application/x-pkcs12"},
        "x509_props": {"subject": f"CN={name}", "validity_months": 12},
        "issuer": {"name": "Self"},
        "lifetime_actions": [
            {"trigger": {"lifetime_percentage": 80}, "action": {"action_type": "AutoRenew"}}
        ],
        "attributes": {"enabled": True},
    }


def _not_found(kind: str, name: str) -> dict[str, Any]:
    return {
        "error": {
            "code": f"{kind}NotFound",
            "message": f"A {kind.lower()} with (name/id) {name} was not found in this key vault.",
        }
    }


def _x5t(certificate: x509.Certificate) -> str:
    digest = certificate.fingerprint(hashes.SHA1())  # noqa: S303 (Key Vault's x5t is SHA-1)
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
