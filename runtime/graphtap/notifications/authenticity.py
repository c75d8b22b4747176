"""Is this notification really from our subscription? clientState and validation tokens.

On Event Hubs, authenticity rests on who may send to the hub, on `clientState` and on the
HMAC that only our private key can unlock. Webhook-style deliveries of rich notifications
also carry `validationTokens`: Entra-issued JWTs, one per app and tenant, that name
Microsoft Graph Change Tracking as their publisher.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jwt

from graphtap.clouds import DEFAULT_CLOUD, PUBLIC, cloud_named
from graphtap.notifications.errors import NotificationError, Reason

#: appId of "Microsoft Graph Change Tracking", the publisher of rich notifications.
CHANGE_TRACKING_APP_ID = "0bf30f3b-4a52-48df-9a82-234910c4a086"
#: Entra's signing keys for both token versions (the common endpoint of the public cloud;
#: each cloud has its own, `Cloud.signing_keys_url`).
DEFAULT_JWKS_URL = PUBLIC.signing_keys_url


class ClientStateCheck:
    """Accepts a notification only if its clientState is one of the configured secrets.

    Several values are accepted at once so the secret can be rotated without a gap. Every
    candidate is compared, in constant time, so timing reveals neither match nor position.
    """

    def __init__(self, accepted: Iterable[str]) -> None:
        self._accepted = tuple(value.encode() for value in accepted)
        if not self._accepted:
            raise ValueError("at least one accepted clientState is required")

    def verify(self, client_state: str | None) -> None:
        if client_state is None:
            raise NotificationError(Reason.CLIENT_STATE_MISMATCH, "notification has no clientState")
        candidate = client_state.encode()
        matched = False
        for accepted in self._accepted:
            matched |= hmac.compare_digest(candidate, accepted)
        if not matched:
            raise NotificationError(
                Reason.CLIENT_STATE_MISMATCH,
                "clientState matches none of the accepted values",
            )

    def appears_in(self, text: bytes) -> bool:
        """Whether an accepted value occurs in `text` (JSON, so also in its escaped form)."""
        return any(
            value in text or json.dumps(value.decode())[1:-1].encode() in text
            for value in self._accepted
        )


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    """What a validation token must say: our app ids as audience, Graph as publisher, and
    the cloud's Entra ID as issuer."""

    app_ids: tuple[str, ...]
    jwks: str | None = None  # URL or file; None: the cloud's Entra signing keys
    publisher_app_id: str = CHANGE_TRACKING_APP_ID
    leeway_seconds: int = 300
    cloud: str = DEFAULT_CLOUD  # a `graphtap.clouds` profile name


class ValidationTokenVerifier:
    """Verifies a collection's `validationTokens` against the tenants of its items."""

    def __init__(self, policy: TokenPolicy) -> None:
        if not policy.app_ids:
            raise ValueError("validation tokens need at least one accepted app id (audience)")
        self._policy = policy
        self._cloud = cloud_named(policy.cloud)
        self._keys = _key_source(policy.jwks or self._cloud.signing_keys_url)

    def verify(self, tokens: Sequence[str], tenants: Iterable[str]) -> None:
        """Every token valid, and every tenant with rich items covered by one; else raise."""
        covered: set[str] = set()
        for position, token in enumerate(tokens):
            try:
                covered.add(self._verify_one(token))
            except (jwt.PyJWTError, ValueError) as exc:
                raise NotificationError(
                    Reason.INVALID_VALIDATION_TOKEN, f"validationTokens[{position}]: {exc}"
                ) from None
        missing = sorted(set(tenants) - covered)
        if missing:
            raise NotificationError(
                Reason.INVALID_VALIDATION_TOKEN,
                f"no valid validation token covers tenant(s) {', '.join(missing)}",
            )

    def _verify_one(self, token: str) -> str:
        """Check one token; return the tenant id its issuer names."""
        signing_key = self._keys.signing_key(token)
        claims: dict[str, Any] = jwt.decode(
            token,
            signing_key,
            algorithms=["RS256"],
            audience=list(self._policy.app_ids),
            leeway=self._policy.leeway_seconds,
            options={"require": ["exp", "nbf", "aud", "iss"]},
        )
        version = str(claims.get("ver", "1.0"))
        issuer = str(claims["iss"])
        publisher_claim = "azp" if version == "2.0" else "appid"
        prefix, suffix = self._cloud.token_issuer(version)
        if not (issuer.startswith(prefix) and issuer.endswith(suffix)):
            cloud = self._cloud.name
            raise ValueError(
                f"issuer {issuer!r} is not Entra's v{version} issuer in the {cloud} cloud"
            )
        tenant = issuer[len(prefix) : len(issuer) - len(suffix)]
        if not tenant or "/" in tenant:
            raise ValueError(f"issuer {issuer!r} names no tenant")
        publisher = claims.get(publisher_claim)
        if publisher != self._policy.publisher_app_id:
            raise ValueError(
                f"{publisher_claim} is {publisher!r}, not Microsoft Graph Change Tracking"
            )
        return tenant


class _KeySource(Protocol):
    def signing_key(self, token: str) -> Any: ...


class _UrlKeys:
    """JWKS fetched over HTTPS and cached briefly, as Entra rotates its keys often."""

    def __init__(self, url: str) -> None:
        self._client = jwt.PyJWKClient(url, cache_keys=True, lifespan=3600)

    def signing_key(self, token: str) -> Any:
        return self._client.get_signing_key_from_jwt(token).key


class _FileKeys:
    """A JWKS document on disk (air-gapped deployments, tests)."""

    def __init__(self, path: Path) -> None:
        try:
            self._keys = jwt.PyJWKSet.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, jwt.PyJWTError) as exc:
            raise ValueError(f"{path}: not a readable JWKS document: {exc}") from None

    def signing_key(self, token: str) -> Any:
        kid = jwt.get_unverified_header(token).get("kid")
        for key in self._keys.keys:
            if key.key_id == kid:
                return key.key
        raise jwt.InvalidKeyError(f"no key with kid {kid!r} in the JWKS")


def _key_source(jwks: str) -> _KeySource:
    if jwks.startswith(("https://", "http://")):
        return _UrlKeys(jwks)
    return _FileKeys(Path(jwks))
