"""Verifying the JWT bearer tokens Sense gets from an agency's OIDC provider.

An agency that registers an OAuth2/OpenID Connect provider with Sense has
Sense fetch client-credentials tokens from it and present them as bearer
tokens ("Write-back API Specification", "Authentication"). relay checks each
token's signature against the provider's published keys (JWKS), its issuer,
audience and expiry, with PyJWT. Keys are cached and fetched again when a
token names a key relay has not seen, which is how providers rotate them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import jwt
import structlog

from relay import errors

log = structlog.get_logger("relay.oidc")

KEYS_TTL_S = 600.0
# Keys are fetched at most this often, so that tokens naming unknown keys
# (forged ones, say) cannot hammer the provider.
MIN_REFETCH_S = 30.0
LEEWAY_S = 30.0
REQUIRED_CLAIMS = ["exp", "iss", "aud"]


class TokenRefused(errors.RelayError):
    """The token is not valid; ``reason`` is the metric label saying why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"token refused: {reason}")
        self.reason = reason


class KeysUnavailable(errors.RelayError):
    """The provider's keys cannot be fetched now, so no token can be checked."""


class JwtVerifier:
    """Checks JWTs against one provider's keys, issuer and audience."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        issuer: str,
        audience: str,
        algorithms: list[str],
        jwks_url: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self._session = session
        self._issuer = issuer
        self._audience = audience
        self._algorithms = algorithms
        self._jwks_url = jwks_url
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._tried_at = float("-inf")
        self._lock = asyncio.Lock()

    async def verify(self, token: str) -> dict[str, Any]:
        """Returns the token's claims; raises TokenRefused or KeysUnavailable."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise TokenRefused("invalid_jwt") from None

        key = await self._key(header.get("kid"))

        try:
            return jwt.decode(
                token,
                key=key.key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_S,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.InvalidTokenError as exc:
            raise TokenRefused(_reason(exc)) from None

    async def _key(self, key_id: Any) -> jwt.PyJWK:
        if time.monotonic() - self._fetched_at > KEYS_TTL_S:
            await self._refresh_keys()
        key = self._find(key_id)
        if key is None:
            await self._refresh_keys()
            key = self._find(key_id)
        if not self._keys:
            raise KeysUnavailable("no keys fetched from the provider yet")
        if key is None:
            raise TokenRefused("unknown_key")
        return key

    def _find(self, key_id: Any) -> jwt.PyJWK | None:
        if key_id is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(key_id)

    async def _refresh_keys(self) -> None:
        async with self._lock:
            if time.monotonic() - self._tried_at < MIN_REFETCH_S:
                return
            self._tried_at = time.monotonic()
            try:
                key_set = await self._key_set()
            except KeysUnavailable:
                if not self._keys:
                    raise
                return  # the keys last fetched serve while the provider is down
            self._keys = {key.key_id: key for key in key_set.keys}
            self._fetched_at = self._tried_at
            log.info("oidc_keys_fetched", keys=len(self._keys))

    async def _key_set(self) -> jwt.PyJWKSet:
        try:
            url = self._jwks_url or await self._discover_jwks_url()
            return jwt.PyJWKSet.from_dict(await self._get_json(url))
        except (
            aiohttp.ClientError,
            TimeoutError,
            ValueError,
            jwt.PyJWKSetError,
        ) as exc:
            log.warning("oidc_keys_unavailable", error=str(exc))
            reason = f"cannot fetch the provider's keys: {exc}"
            raise KeysUnavailable(reason) from exc

    async def _discover_jwks_url(self) -> str:
        url = self._issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = await self._get_json(url)
        jwks_uri = document.get("jwks_uri") if isinstance(document, dict) else None
        if not isinstance(jwks_uri, str):
            raise ValueError(f"{url} names no jwks_uri")
        self._jwks_url = jwks_uri
        return jwks_uri

    async def _get_json(self, url: str) -> Any:
        async with self._session.get(url, timeout=self._timeout) as response:
            response.raise_for_status()
            return await response.json(content_type=None)


def _reason(exc: jwt.InvalidTokenError) -> str:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "expired"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "wrong_audience"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "wrong_issuer"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "bad_signature"
    return "invalid_jwt"
