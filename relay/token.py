"""One OAuth2 client-credentials token, shared by every flusher.

Sense asks integrations to reuse a token until ``expires_in`` and to call the
token endpoint only when the cached one is about to expire ("Token Caching").
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
import structlog

from relay import errors
from relay.backoff import Backoff, sleep_unless_stopping
from relay.config import SenseSettings
from relay.metrics import Metrics

log = structlog.get_logger("relay.token")


@dataclass(frozen=True, slots=True)
class Token:
    value: str
    expires_at: float

    def __repr__(self) -> str:
        return f"Token(value='[secure]', expires_at={self.expires_at:.0f})"

    def fresh(self) -> bool:
        return time.monotonic() < self.expires_at


class TokenCache:
    """Hands out a valid token, fetching a new one at most once at a time."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: SenseSettings,
        backoff: Backoff,
        metrics: Metrics,
        stopping: asyncio.Event | None = None,
    ) -> None:
        self._stopping = stopping or asyncio.Event()
        self._session = session
        self._settings = settings
        self._backoff = backoff
        self._metrics = metrics
        self._token: Token | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        """Returns a token valid for at least the safety margin.

        Retries the token endpoint with backoff until it succeeds; concurrent
        callers wait for the one request in progress.
        """
        if self._token is not None and self._token.fresh():
            return self._token.value
        async with self._lock:
            if self._token is None or not self._token.fresh():
                self._token = await self._fetch_with_retries()
            return self._token.value

    def invalidate(self, value: str) -> None:
        """Drops the token if it is still the cached one (Sense refused it)."""
        if self._token is not None and self._token.value == value:
            self._token = None

    async def _fetch_with_retries(self) -> Token:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._fetch()
            except errors.SenseUnavailable as exc:
                refused = isinstance(exc, errors.AuthRejected)
                self._metrics.token_requests.labels(
                    "refused" if refused else "error"
                ).inc()
                delay_s = self._backoff.delay_s(attempt)
                log.log(
                    40 if refused else 30,
                    "token_request_failed",
                    reason=exc.reason,
                    attempt=attempt,
                    retry_in_s=round(delay_s, 3),
                )
                await sleep_unless_stopping(delay_s, self._stopping)

    async def _fetch(self) -> Token:
        form = {
            "client_id": self._settings.client_id,
            "client_secret": self._settings.client_secret.get_secret_value(),
            "grant_type": "client_credentials",
        }
        started = time.monotonic()
        try:
            async with self._session.post(
                self._settings.token_url, data=form, timeout=self._timeout()
            ) as response:
                payload = await _token_payload(response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise errors.SenseUnavailable(
                f"token endpoint unreachable: {exc!r}"
            ) from exc

        token = self._token_from(payload, started)
        self._metrics.token_requests.labels("success").inc()
        log.info("token_refreshed", expires_in_s=payload["expires_in"])
        return token

    def _token_from(self, payload: dict[str, object], started: float) -> Token:
        expires_in = float(payload["expires_in"])  # type: ignore[arg-type]
        # Never trust a token into its last moments: keep a margin, but no
        # more than half its life, so that short-lived tokens stay usable.
        margin = min(self._settings.token_margin_seconds, expires_in / 2)
        return Token(str(payload["access_token"]), started + expires_in - margin)

    def _timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=self._settings.request_timeout_seconds)


async def _token_payload(response: aiohttp.ClientResponse) -> dict[str, object]:
    if response.status in (400, 401, 403):
        raise errors.AuthRejected(
            f"token endpoint refused the credentials (HTTP {response.status})"
        )
    if response.status != 200:
        raise errors.SenseUnavailable(f"token endpoint answered HTTP {response.status}")
    try:
        payload = await response.json(content_type=None)
        if not payload["access_token"] or float(payload["expires_in"]) <= 0:
            raise ValueError("empty token or lifetime")
    except (ValueError, KeyError, TypeError, aiohttp.ContentTypeError) as exc:
        raise errors.SenseUnavailable(
            f"token endpoint answered unreadable JSON: {exc!r}"
        ) from exc
    return dict(payload)
