"""The ATS's write-back endpoint as relay uses it: one POST per write-back.

relay posts the envelope exactly as Sense sent it, with the configured
bearer token. Any 2xx means delivered; for ENTITY_CREATE the ATS answers
``{"entity_id": "..."}``. The answer becomes a value the caller settles on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from relay.config import WritebackSettings
from relay.metrics import Metrics
from relay.sense import parse_retry_after
from relay.writeback import ENTITY_CREATE

# 4xx answers that a fix on the ATS side, or time, can change: a wrong
# token, a wrong URL, rate limiting. Retried rather than dead-lettered, so
# that a misconfiguration cannot empty the inbox into dead letters.
RETRYABLE_CLIENT_ERRORS = frozenset({401, 403, 404, 408, 425, 429})
REASON_CHARS = 300


@dataclass(frozen=True, slots=True)
class Delivered:
    """The ATS took the write-back (for ENTITY_CREATE, with the new id)."""

    status: int
    entity_id: str | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    """The ATS refused the write-back for good; retrying would not help."""

    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class Failed:
    """A transient failure: no answer, a 5xx, or a 4xx that may change."""

    status: int | None
    reason: str
    retry_after_s: float | None = None


Answer = Delivered | Refused | Failed


class AtsClient:
    """Posts write-backs to the ATS with its token."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: WritebackSettings,
        metrics: Metrics,
    ) -> None:
        self._session = session
        self._settings = settings
        self._metrics = metrics

    async def deliver(
        self, type_name: str, body: bytes, timeout_s: float | None = None
    ) -> Answer:
        """Posts one envelope; never raises for what the ATS or network does."""
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self._settings.ats_token.get_secret_value()}",
        }
        seconds = timeout_s or self._settings.ats_timeout_seconds
        started = time.monotonic()
        try:
            async with self._session.post(
                self._settings.ats_url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=seconds),
            ) as response:
                payload = await _json_or_text(response)
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                status = response.status
        except TimeoutError:
            return Failed(None, f"no answer within {seconds:g} s")
        except aiohttp.ClientError as exc:
            return Failed(None, f"connection failed: {type(exc).__name__}")
        finally:
            elapsed = time.monotonic() - started
            self._metrics.ats_request_seconds.observe(elapsed)
        return _answer(type_name, status, payload, retry_after)


def _answer(
    type_name: str, status: int, payload: Any, retry_after: float | None
) -> Answer:
    if 200 <= status < 300:
        return _delivered(type_name, status, payload)
    reason = f"the ATS answered HTTP {status}: {_reason(payload)}"
    if 400 <= status < 500 and status not in RETRYABLE_CLIENT_ERRORS:
        return Refused(status, reason)
    return Failed(status, reason, retry_after)


def _delivered(type_name: str, status: int, payload: Any) -> Answer:
    if type_name != ENTITY_CREATE:
        return Delivered(status)
    entity_id = payload.get("entity_id") if isinstance(payload, dict) else None
    if isinstance(entity_id, bool) or not str(entity_id or "").strip():
        # Sending it again could create the entity twice: a person must look.
        reason = f"the ATS answered HTTP {status} without an entity_id"
        return Refused(status, reason)
    return Delivered(status, str(entity_id))


def _reason(payload: Any) -> str:
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        text = payload["error"]
    else:
        text = payload if isinstance(payload, str) else orjson.dumps(payload).decode()
    return text[:REASON_CHARS] or "no explanation"


async def _json_or_text(response: aiohttp.ClientResponse) -> Any:
    text = await response.text(errors="replace")
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text.strip()
