"""clientState and validation tokens: only Graph, for our subscriptions, gets through."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from graphtap.notifications.authenticity import (
    CHANGE_TRACKING_APP_ID,
    ClientStateCheck,
    TokenPolicy,
    ValidationTokenVerifier,
)
from graphtap.notifications.errors import NotificationError, Reason

APP_ID = "11111111-2222-3333-4444-555555555555"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
SIGNING_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ROGUE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_client_state_accepts_any_configured_value() -> None:
    check = ClientStateCheck(["old-secret", "new-secret"])
    check.verify("old-secret")
    check.verify("new-secret")


@pytest.mark.parametrize("value", [None, "", "new-secre", "new-secret ", "NEW-SECRET"])
def test_client_state_rejects_missing_or_wrong(value: str | None) -> None:
    with pytest.raises(NotificationError) as error:
        ClientStateCheck(["new-secret"]).verify(value)
    assert error.value.reason is Reason.CLIENT_STATE_MISMATCH
    assert "new-secret" not in error.value.message  # the secret never reaches a dead letter


def test_client_state_needs_a_value() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ClientStateCheck([])


def _jwks() -> dict[str, Any]:
    key = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(SIGNING_KEY.public_key()))
    key.update(kid="k1", use="sig", alg="RS256")
    return {"keys": [key]}


def _token(version: str = "2.0", *, key: rsa.RSAPrivateKey = SIGNING_KEY, **overrides: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "aud": APP_ID,
        "exp": now + 3600,
        "nbf": now - 60,
        "iat": now - 60,
        "ver": version,
    }
    if version == "2.0":
        claims.update(
            iss=f"https://login.microsoftonline.com/{TENANT}/v2.0", azp=CHANGE_TRACKING_APP_ID
        )
    else:
        claims.update(iss=f"https://sts.windows.net/{TENANT}/", appid=CHANGE_TRACKING_APP_ID)
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture(scope="module")
def jwks_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("jwks") / "keys.json"
    path.write_text(json.dumps(_jwks()))
    return path


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    body = json.dumps(_jwks()).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/discovery/v2.0/keys"
    server.shutdown()


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_valid_tokens_of_both_versions_pass(jwks_file: Path, version: str) -> None:
    verifier = ValidationTokenVerifier(TokenPolicy(app_ids=(APP_ID,), jwks=str(jwks_file)))
    verifier.verify([_token(version)], {TENANT})


def test_keys_can_come_from_a_jwks_url(jwks_url: str) -> None:
    verifier = ValidationTokenVerifier(TokenPolicy(app_ids=(APP_ID,), jwks=jwks_url))
    verifier.verify([_token("2.0"), _token("1.0")], {TENANT})


@pytest.mark.parametrize(
    ("token", "why"),
    [
        (lambda: _token(exp=int(time.time()) - 3600), "expired"),
        (lambda: _token(nbf=int(time.time()) + 3600), "not yet valid"),
        (lambda: _token(aud="someone-else"), "audience"),
        (lambda: _token(key=ROGUE_KEY), "signature"),
        (lambda: _token(azp="00000000-0000-0000-0000-000000000000"), "azp"),
        (lambda: _token("1.0", appid="00000000-0000-0000-0000-000000000000"), "appid"),
        (lambda: _token(iss="https://evil.example/tenant/v2.0"), "issuer"),
        (lambda: _token("1.0", iss=f"https://login.microsoftonline.com/{TENANT}/v2.0"), "issuer"),
        (lambda: _token(exp=None), "exp"),
        (lambda: "not.a.jwt", "token"),
    ],
)
def test_bad_tokens_fail(jwks_file: Path, token: Any, why: str) -> None:
    verifier = ValidationTokenVerifier(
        TokenPolicy(app_ids=(APP_ID,), jwks=str(jwks_file), leeway_seconds=0)
    )
    with pytest.raises(NotificationError) as error:
        verifier.verify([_token(), token()], {TENANT})
    assert error.value.reason is Reason.INVALID_VALIDATION_TOKEN
    assert "validationTokens[1]" in error.value.message


def test_every_tenant_must_be_covered_by_a_token(jwks_file: Path) -> None:
    verifier = ValidationTokenVerifier(TokenPolicy(app_ids=(APP_ID,), jwks=str(jwks_file)))
    other_tenant = "0f0f0f0f-0000-0000-0000-000000000000"
    with pytest.raises(NotificationError, match=other_tenant):
        verifier.verify([_token()], {TENANT, other_tenant})
