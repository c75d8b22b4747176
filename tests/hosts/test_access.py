"""The app role gate behind App Service Authentication: anonymous callers and callers without the
role are refused, an allowed principal gets the status page, /status.json and /metrics, and
/healthz stays open."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from graphtap.hosts.access import (
    METRICS_ROLE_ENV,
    STATUS_ROLE_ENV,
    AccessPolicy,
    ClientPrincipal,
)
from graphtap.hosts.commands.serve import build_app
from graphtap.hosts.webapp import create_app
from tests.hosts.test_serve_app import IdleService
from tests.hosts.test_webapp import sources

POLICY = AccessPolicy(status_role="Status.Read", metrics_role="Metrics.Read")
GATED = ("/", "/status.json", "/metrics", "/readyz", "/no-such-page")
ROLE_URI = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"


def principal(*roles: str, role_typ: str = ROLE_URI, role_claim: str = "roles") -> str:
    """An `X-MS-CLIENT-PRINCIPAL` value as Easy Auth builds it for an Entra ID caller."""
    document: dict[str, Any] = {
        "auth_typ": "aad",
        "name_typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
        "role_typ": role_typ,
        "claims": [
            {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": "o"},
            {"typ": "name", "val": "Status Reader"},
            *({"typ": role_claim, "val": role} for role in roles),
        ],
    }
    return base64.b64encode(json.dumps(document).encode()).decode()


def get(app: Starlette, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async def request() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path, headers=headers)

    return asyncio.run(request())


def signed_in(*roles: str) -> dict[str, str]:
    return {"X-MS-CLIENT-PRINCIPAL": principal(*roles)}


@pytest.fixture
def gated() -> Starlette:
    return create_app(sources(), access=POLICY)


@pytest.mark.parametrize("path", GATED)
def test_anonymous_requests_are_refused(gated: Starlette, path: str) -> None:
    response = get(gated, path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "graphtap" not in response.text  # nothing of the page leaks


@pytest.mark.parametrize("path", GATED)
def test_a_principal_without_the_role_is_refused(gated: Starlette, path: str) -> None:
    for headers in (signed_in(), signed_in("Some.Other.Role"), signed_in("status.read")):
        response = get(gated, path, headers)
        assert response.status_code == 403
        assert "graphtap" not in response.text


def test_the_status_role_reads_the_page_the_json_and_the_metrics(gated: Starlette) -> None:
    headers = signed_in("Other.Role", "Status.Read")
    page = get(gated, "/", headers)
    assert page.status_code == 200
    assert "<h1>graphtap status</h1>" in page.text
    status = get(gated, "/status.json", headers)
    assert status.status_code == 200
    assert status.json()["summary"]["events"] == 12
    metrics = get(gated, "/metrics", headers)
    assert metrics.status_code == 200
    assert 'graphtap_findings_total{type="credit_card_number"} 4.0' in metrics.text
    assert get(gated, "/readyz", headers).text == "ready"


def test_the_metrics_role_scrapes_metrics_and_nothing_else(gated: Starlette) -> None:
    headers = signed_in("Metrics.Read")
    assert get(gated, "/metrics", headers).status_code == 200
    for path in ("/", "/status.json", "/readyz"):
        assert get(gated, path, headers).status_code == 403


def test_healthz_is_open_to_anyone(gated: Starlette) -> None:
    assert get(gated, "/healthz").text == "ok"
    assert get(gated, "/healthz", signed_in("Nothing")).text == "ok"
    # only the exact path: a variant Easy Auth might let through is still gated
    assert get(gated, "/healthz/").status_code == 401
    assert get(gated, "/HEALTHZ").status_code == 401


@pytest.mark.parametrize(
    "header",
    [
        "not base64!",
        base64.b64encode(b"not json").decode(),
        base64.b64encode(b'["a list"]').decode(),
        base64.b64encode(b'{"auth_typ": "aad"}').decode(),
        base64.b64encode(b"[" * 6000 + b"]" * 6000).decode(),  # past the parser's depth
    ],
)
def test_a_malformed_principal_counts_as_no_sign_in(gated: Starlette, header: str) -> None:
    assert ClientPrincipal.decode(header) is None
    assert get(gated, "/", {"X-MS-CLIENT-PRINCIPAL": header}).status_code == 401


def test_roles_are_read_from_the_role_claim_easy_auth_names() -> None:
    custom = principal("Status.Read", role_typ="urn:roles", role_claim="urn:roles")
    assert ClientPrincipal.decode(custom) == ClientPrincipal("aad", frozenset({"Status.Read"}))
    via_uri = principal("Status.Read", role_claim=ROLE_URI)
    assert ClientPrincipal.decode(via_uri) == ClientPrincipal("aad", frozenset({"Status.Read"}))
    # another claim type never counts as a role
    other = principal("Status.Read", role_typ="roles", role_claim="groups")
    assert ClientPrincipal.decode(other) == ClientPrincipal("aad", frozenset())
    # unpadded base64 as some proxies forward it
    assert ClientPrincipal.decode(principal("Status.Read").rstrip("=")) is not None


def test_the_policy_comes_from_the_app_settings() -> None:
    assert AccessPolicy.from_environment({}) is None
    assert AccessPolicy.from_environment({STATUS_ROLE_ENV: " "}) is None
    assert AccessPolicy.from_environment({STATUS_ROLE_ENV: "Status.Read"}) == AccessPolicy(
        "Status.Read"
    )
    both = AccessPolicy.from_environment(
        {STATUS_ROLE_ENV: "Status.Read", METRICS_ROLE_ENV: "Metrics.Read"}
    )
    assert both == POLICY
    assert POLICY.roles_for("/metrics") == {"Status.Read", "Metrics.Read"}
    assert POLICY.roles_for("/") == {"Status.Read"}
    # a metrics role alone still closes the status page to everyone
    metrics_only = AccessPolicy.from_environment({METRICS_ROLE_ENV: "Metrics.Read"})
    assert metrics_only == AccessPolicy(None, "Metrics.Read")
    assert metrics_only.roles_for("/") == frozenset()
    app = create_app(sources(), access=metrics_only)
    assert get(app, "/", signed_in("Status.Read", "Metrics.Read")).status_code == 403
    assert get(app, "/metrics", signed_in("Metrics.Read")).status_code == 200


def test_serve_gates_the_app_when_the_stack_names_a_role(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(STATUS_ROLE_ENV, raising=False)
    monkeypatch.delenv(METRICS_ROLE_ENV, raising=False)
    assert get(build_app(IdleService(), None), "/status.json").status_code == 200  # local: open
    monkeypatch.setenv(STATUS_ROLE_ENV, "Status.Read")
    app = build_app(IdleService(), None)
    assert get(app, "/status.json").status_code == 401
    assert get(app, "/status.json", signed_in("Status.Read")).json()["mode"] == "test"
    assert get(app, "/healthz").status_code == 200
