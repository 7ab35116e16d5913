"""The uploader: sends stored resume uploads to Sense, one request each.

A cycle reads as claim → send → settle, like a flush. An upload goes only
once its candidate has no version in the outbox accepted before it (Sense
needs the candidate first). Transient failures are retried with backoff and
never drop an upload; what Sense refuses for good becomes a dead letter.
"""

from __future__ import annotations

import asyncio
import functools

import structlog

from relay import errors
from relay.backoff import Answered, Backoff, call_until_answered, wait_for_any
from relay.delivery import describe, retry_reason
from relay.inflight import deliver_until
from relay.metrics import Metrics
from relay.outbox import Outbox
from relay.sense import Accepted, Outcome, Rejected, SenseClient
from relay.uploads import PendingUpload, Refusal, Uploads


class Uploader:
    """Delivers pending resume uploads, up to ``concurrency`` at a time."""

    def __init__(
        self,
        uploads: Uploads,
        box: Outbox,
        client: SenseClient,
        backoff: Backoff,
        metrics: Metrics,
        concurrency: int,
    ) -> None:
        self._uploads = uploads
        self._outbox = box
        self._client = client
        self._backoff = backoff
        self._metrics = metrics
        self._concurrency = concurrency
        self._stopping = asyncio.Event()
        self._log = structlog.get_logger("relay.uploader")

    async def run(self, stopping: asyncio.Event) -> None:
        """Uploads until ``stopping`` is set.

        A request in flight is finished, but an upload waiting to be retried
        is given up: it stays pending for the next start.
        """
        self._stopping = stopping
        await deliver_until(
            stopping, self._concurrency, self._next_upload, self._deliver_one
        )

    async def _next_upload(self) -> PendingUpload | None:
        """Claims an upload free to go, or waits for a change and returns None."""
        # Cleared before the claim, so that a change made while it runs
        # still ends the wait below.
        self._uploads.changed.clear()
        self._outbox.removed.clear()
        if self._uploads.unsent() > 0:
            claimed = await self._uploads.claim()
            if claimed is not None:
                return claimed

        await self._wait_for_change()
        return None

    async def _wait_for_change(self) -> None:
        """Waits for a new upload, a record leaving the outbox, or stopping.

        Uploads another process adds (a dead-letter retry) count as new once
        the daemon's periodic refresh has seen them.
        """
        await wait_for_any(self._uploads.changed, self._outbox.removed, self._stopping)

    async def _deliver_one(self, pending: PendingUpload) -> None:
        try:
            await self._deliver(pending)
        except errors.Stopping:
            self._log.info("resume_left_for_next_start", **_ids(pending))
        finally:
            self._uploads.changed.set()  # wakes the loop, after a crash too

    async def _deliver(self, pending: PendingUpload) -> None:
        """Sends an upload until Sense has settled it."""
        outcome = await self._send_until_answered(pending)

        if isinstance(outcome, Accepted):
            await self._uploads.settle(pending, None)
            return
        refusal = _refusal(outcome)
        await self._uploads.settle(pending, refusal)
        self._log.error(
            "resume_dead_lettered",
            **_ids(pending),
            status=refusal.status,
            reason=refusal.reason,
        )

    async def _send_until_answered(self, pending: PendingUpload) -> Outcome:
        answered = await call_until_answered(
            lambda: self._client.upload_resume(pending.upload),
            self._backoff,
            self._stopping,
            functools.partial(self._note_retry, pending),
            lambda: self._uploads.release(pending),
        )
        self._log_sent(pending, answered)
        return answered.value

    def _note_retry(
        self,
        pending: PendingUpload,
        exc: errors.SenseUnavailable,
        attempt: int,
        delay_s: float,
    ) -> None:
        self._metrics.resume_retries.labels(retry_reason(exc)).inc()
        level = "error" if isinstance(exc, errors.AuthRejected) else "warning"
        getattr(self._log, level)(
            "resume_retry_scheduled",
            **_ids(pending),
            reason=exc.reason,
            attempt=attempt,
            retry_in_s=round(delay_s, 3),
            retry_after_s=exc.retry_after_s,
        )

    def _log_sent(self, pending: PendingUpload, answered: Answered[Outcome]) -> None:
        outcome = answered.value
        status = outcome.status if isinstance(outcome, Rejected) else None
        if status is None:
            status = 201 if isinstance(outcome, Accepted) else 413
        self._log.info(
            "resume_sent",
            **_ids(pending),
            file_bytes=len(pending.upload.file),
            status=status,
            attempt=answered.attempt,
            duration_ms=round(answered.duration_s * 1000, 1),
        )


def _refusal(outcome: Outcome) -> Refusal:
    if isinstance(outcome, Rejected):
        return Refusal(outcome.status, "; ".join(map(describe, outcome.errors)))
    return Refusal(413, "larger than Sense accepts")


def _ids(pending: PendingUpload) -> dict[str, str]:
    candidate_id, resume_id = pending.upload.key
    return {"candidate_id": candidate_id, "resume_id": resume_id}
