"""Validation tokens come from the Entra ID of the cloud the deployment runs in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from graphtap.clouds import CHINA, CLOUDS, PUBLIC, US_GOVERNMENT, Cloud
from graphtap.notifications.authenticity import TokenPolicy, ValidationTokenVerifier
from graphtap.notifications.errors import NotificationError
from tests.notifications.test_authenticity import APP_ID, TENANT, _jwks, _token

ISSUERS = {
    ("public", "2.0"): f"https://login.microsoftonline.com/{TENANT}/v2.0",
    ("public", "1.0"): f"https://sts.windows.net/{TENANT}/",
    ("usgov", "2.0"): f"https://login.microsoftonline.us/{TENANT}/v2.0",
    ("usgov", "1.0"): f"https://sts.windows.net/{TENANT}/",
    ("china", "2.0"): f"https://login.partner.microsoftonline.cn/{TENANT}/v2.0",
    ("china", "1.0"): f"https://sts.chinacloudapi.cn/{TENANT}/",
}


def verifier(cloud: Cloud, tmp_path: Path) -> ValidationTokenVerifier:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(_jwks()))
    return ValidationTokenVerifier(TokenPolicy(app_ids=(APP_ID,), jwks=str(keys), cloud=cloud.name))


@pytest.mark.parametrize(("cloud", "version"), list(ISSUERS))
def test_each_clouds_issuer_is_accepted(cloud: str, version: str, tmp_path: Path) -> None:
    token = _token(version, iss=ISSUERS[cloud, version])
    verifier(CLOUDS[cloud], tmp_path).verify([token], [TENANT])


@pytest.mark.parametrize(
    ("cloud", "foreign"),
    [(US_GOVERNMENT, PUBLIC), (PUBLIC, US_GOVERNMENT), (PUBLIC, CHINA), (CHINA, PUBLIC)],
)
def test_another_clouds_v2_token_is_refused(cloud: Cloud, foreign: Cloud, tmp_path: Path) -> None:
    token = _token("2.0", iss=ISSUERS[foreign.name, "2.0"])
    with pytest.raises(NotificationError, match=f"issuer in the {cloud.name} cloud"):
        verifier(cloud, tmp_path).verify([token], [TENANT])


@pytest.mark.parametrize("cloud", list(CLOUDS.values()), ids=list(CLOUDS))
def test_the_signing_keys_default_to_the_clouds(cloud: Cloud) -> None:
    checker = ValidationTokenVerifier(TokenPolicy(app_ids=(APP_ID,), cloud=cloud.name))
    assert checker._keys._client.uri == (  # type: ignore[attr-defined]
        f"https://{cloud.authority_host}/common/discovery/v2.0/keys"
    )
