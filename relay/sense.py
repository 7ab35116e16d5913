"""The Sense partner API as relay uses it: batch upserts and lookups."""

from __future__ import annotations

import asyncio
import email.utils
import io
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import structlog

from relay import errors, resumes
from relay.backoff import PauseGate
from relay.batch import Batch
from relay.config import SenseSettings
from relay.metrics import Metrics
from relay.token import TokenCache

log = structlog.get_logger("relay.sense")

# aiohttp warns that writing a body this large in one piece may stall the
# event loop; a resume upload can be 4 MB, so such bodies go in chunks.
LARGE_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Issue:
    """One entry of Sense's ``errors[]`` or ``warnings[]``."""

    entity_id: str | None
    message: str
    path: list[str] | None


@dataclass(frozen=True, slots=True)
class Accepted:
    """201: Sense took the batch for processing."""

    warnings: list[Issue]


@dataclass(frozen=True, slots=True)
class Rejected:
    """Sense refused the whole batch; ``errors`` may name the culprits."""

    errors: list[Issue]
    status: int = 400


@dataclass(frozen=True, slots=True)
class TooLarge:
    """413: the body was over Sense's size limit."""


Outcome = Accepted | Rejected | TooLarge


@dataclass
class Health:
    """What the last call to Sense said, for the readiness check."""

    last_ok: bool | None = None
    last_status: int | None = None
    last_at: float | None = None


class SenseClient:
    """Sends batches to Sense with the shared token and pause gate."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: SenseSettings,
        tokens: TokenCache,
        gate: PauseGate,
        metrics: Metrics,
    ) -> None:
        self._session = session
        self._settings = settings
        self._tokens = tokens
        self._gate = gate
        self._metrics = metrics
        self.health = Health()

    async def authenticate(self, deadline_s: float) -> None:
        """Makes sure a token is at hand, fetching one if needed.

        For commands a person waits on: raises SenseUnavailable when no token
        comes within ``deadline_s`` (wrong credentials, a wrong token URL),
        rather than retry for ever as the daemon does.
        """
        try:
            async with asyncio.timeout(deadline_s):
                await self._tokens.get()
        except TimeoutError:
            raise errors.SenseUnavailable(
                f"no token from {self._settings.token_url} within {deadline_s:g} s"
            ) from None

    async def send(self, batch: Batch) -> Outcome:
        """Sends one batch, or one patch; returns Sense's verdict on it.

        Raises SenseUnavailable for anything worth retrying unchanged:
        429, 5xx, timeouts, broken connections and refused credentials.
        """
        base = self._settings.base_url.rstrip("/")
        headers = {"Content-Type": "application/json"}
        if batch.compressed:
            headers["Content-Encoding"] = "gzip"
        if batch.kind == "patch":
            record_id = quote(batch.records[0].record_id, safe="")
            url, method = f"{base}/{batch.entity}/{record_id}", "PATCH"
        else:
            url, method = f"{base}/{batch.entity}", "POST"

        status, payload = await self._call(batch.kind, method, url, batch.body, headers)

        if status in (200, 201):
            return Accepted(_issues(payload, "warnings"))
        if status == 400:
            return Rejected(_issues(payload, "errors"))
        if status == 413:
            return TooLarge()
        if status == 404 and batch.kind == "patch":
            # Sense cannot patch an entity it does not have; retrying would
            # only hold the flusher's slot for ever.
            record_id = batch.records[0].record_id
            issue = Issue(record_id, "Sense has no entity with this id", None)
            return Rejected([issue], status=404)
        # Any other answer (404 from a wrong base URL, say) says nothing about
        # the records: retry rather than dead-letter the whole outbox.
        raise errors.SenseUnavailable(f"Sense answered HTTP {status}", status=status)

    async def upload_resume(self, upload: resumes.Upload) -> Outcome:
        """Sends one resume upload; returns Sense's verdict on it.

        Raises SenseUnavailable for anything worth retrying unchanged, as
        ``send`` does.
        """
        base = self._settings.base_url.rstrip("/")
        candidate_id = quote(upload.candidate_id, safe="")
        url = f"{base}/candidates/{candidate_id}/resume"
        body, content_type = await resumes.encode(upload)
        headers = {"Content-Type": content_type}

        status, payload = await self._call("resume", "POST", url, body, headers)

        if status in (200, 201):
            return Accepted(_issues(payload, "warnings"))
        if status == 413:
            return TooLarge()
        if status in (400, 404):
            # A 404 here means Sense has no such candidate (the uploader
            # waits for the candidate's pending versions first).
            issues = _issues(payload, "errors") or [
                Issue(upload.candidate_id, _REFUSED_UPLOAD[status], None)
            ]
            return Rejected(issues, status=status)
        raise errors.SenseUnavailable(f"Sense answered HTTP {status}", status=status)

    async def fetch(self, entity: str, record_id: str) -> tuple[int, Any]:
        """Fetches one entity; returns Sense's status (200, 400 or 404) and body.

        Raises SenseUnavailable when Sense cannot answer now.
        """
        base = self._settings.base_url.rstrip("/")
        url = f"{base}/{entity}/{quote(record_id, safe='')}"
        status, payload = await self._call("fetch", "GET", url, b"", {})
        if status in (200, 400, 404):
            return status, payload
        raise errors.SenseUnavailable(f"Sense answered HTTP {status}", status=status)

    async def possible_values(
        self, entity: str, field: str, values: list[dict[str, Any]] | None = None
    ) -> tuple[int, Any]:
        """Reads a field's picklist, or replaces it when ``values`` is given.

        Returns Sense's status and body; raises SenseUnavailable when Sense
        cannot answer now.
        """
        base = self._settings.base_url.rstrip("/")
        url = f"{base}/{entity}/possible-values/{quote(field, safe='')}"
        if values is None:
            return await self._call("picklist", "GET", url, b"", {})
        body = orjson.dumps(values)
        headers = {"Content-Type": "application/json"}
        return await self._call("picklist", "PUT", url, body, headers)

    async def _call(
        self,
        operation: str,
        method: str,
        url: str,
        body: bytes,
        headers: dict[str, str],
    ) -> tuple[int, Any]:
        for attempt in (1, 2):
            await self._gate.wait()
            token = await self._tokens.get()
            authorized = {**headers, "Authorization": f"Bearer {token}"}
            status, payload, retry_after_s = await self._request(
                operation, method, url, body, authorized
            )
            if status == 401 and attempt == 1:
                # The token may have been revoked early: one fresh try.
                self._tokens.invalidate(token)
                continue
            return self._screen(status, payload, retry_after_s)
        raise AssertionError("unreachable")

    def _screen(
        self, status: int, payload: Any, retry_after_s: float | None
    ) -> tuple[int, Any]:
        self._record_health(status)
        if retry_after_s is not None and (status == 429 or status >= 500):
            self._gate.pause(retry_after_s)
        if status == 401:
            raise errors.AuthRejected("Sense refused a fresh token", status=401)
        if status == 429 or status >= 500:
            raise errors.SenseUnavailable(
                f"Sense answered HTTP {status}", retry_after_s, status
            )
        return status, payload

    async def _request(
        self,
        operation: str,
        method: str,
        url: str,
        body: bytes,
        headers: dict[str, str],
    ) -> tuple[int, Any, float | None]:
        started = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=self._settings.request_timeout_seconds)
        data = io.BytesIO(body) if len(body) > LARGE_BODY_BYTES else body or None
        try:
            async with self._session.request(
                method, url, data=data, headers=headers, timeout=timeout
            ) as response:
                payload = await _json_or_none(response)
                retry_after_s = parse_retry_after(response.headers.get("Retry-After"))
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._record_health(None)
            reason = "timeout" if isinstance(exc, TimeoutError) else "connection"
            raise errors.SenseUnavailable(reason) from exc
        finally:
            elapsed = time.monotonic() - started
            self._metrics.sense_request_seconds.labels(operation).observe(elapsed)
        return status, payload, retry_after_s

    def _record_health(self, status: int | None) -> None:
        self.health.last_status = status
        self.health.last_ok = status is not None and status < 500 and status != 429
        self.health.last_at = time.time()


_REFUSED_UPLOAD = {
    400: "Sense refused the upload",
    404: "Sense has no candidate with this id",
}


async def _json_or_none(response: aiohttp.ClientResponse) -> Any:
    try:
        return await response.json(content_type=None)
    except (ValueError, aiohttp.ContentTypeError):
        return None


def parse_retry_after(header: str | None) -> float | None:
    """Reads Retry-After, given either in seconds or as an HTTP date."""
    if header is None:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _issues(payload: Any, key: str) -> list[Issue]:
    items = payload.get(key) if isinstance(payload, dict) else None
    if not isinstance(items, list):
        return []
    return [
        Issue(
            str(item["entity_id"]) if item.get("entity_id") is not None else None,
            str(item.get("message") or ""),
            item.get("path") if isinstance(item.get("path"), list) else None,
        )
        for item in items
        if isinstance(item, dict)
    ]
