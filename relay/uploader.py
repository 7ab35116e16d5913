"""The uploader: sends stored resume uploads to Sense, one request each.

A cycle reads as claim → send → settle, like a flush. An upload goes only
once its candidate has no version in the outbox accepted before it (Sense
needs the candidate first). Transient failures are retried with backoff and
never drop an upload; what Sense refuses for good becomes a dead letter.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from relay import errors
from relay.backoff import Backoff, sleep_unless_stopping
from relay.flusher import retry_reason
from relay.metrics import Metrics
from relay.outbox import Outbox
from relay.sense import Accepted, Issue, Outcome, Rejected, SenseClient
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
        self._failure: Exception | None = None
        self._log = structlog.get_logger("relay.uploader")

    async def run(self, stopping: asyncio.Event) -> None:
        """Uploads until ``stopping`` is set.

        A request in flight is finished, but an upload waiting to be retried
        is given up: it stays pending for the next start.
        """
        self._stopping = stopping
        slots = asyncio.Semaphore(self._concurrency)
        sending: set[asyncio.Task[None]] = set()
        try:
            while not stopping.is_set():
                if self._failure is not None:
                    raise self._failure
                await slots.acquire()
                pending = await self._next_upload()
                if pending is None:
                    slots.release()
                    continue
                task = asyncio.create_task(self._deliver_in_slot(pending, slots))
                sending.add(task)
                task.add_done_callback(sending.discard)
        finally:
            await asyncio.gather(*sending)

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
        events = (self._uploads.changed, self._outbox.removed, self._stopping)
        waiters = [asyncio.ensure_future(event.wait()) for event in events]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _deliver_in_slot(
        self, pending: PendingUpload, slots: asyncio.Semaphore
    ) -> None:
        try:
            await self._deliver(pending)
        except errors.Stopping:
            self._log.info("resume_left_for_next_start", **_ids(pending))
        except Exception as exc:
            self._failure = exc  # re-raised by the run loop: a crash is loud
        finally:
            slots.release()
            self._uploads.changed.set()

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
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            try:
                outcome = await self._client.upload_resume(pending.upload)
            except errors.Stopping:
                self._uploads.release(pending)
                raise
            except errors.SenseUnavailable as exc:
                await self._wait_to_retry(pending, attempt, exc)
                continue
            self._log_sent(pending, outcome, attempt, started)
            return outcome

    async def _wait_to_retry(
        self, pending: PendingUpload, attempt: int, exc: errors.SenseUnavailable
    ) -> None:
        delay_s = self._backoff.delay_s(attempt)
        if exc.retry_after_s is not None:
            delay_s = 0.0  # the shared pause gate already holds every sender back
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
        try:
            await sleep_unless_stopping(delay_s, self._stopping)
        except errors.Stopping:
            self._uploads.release(pending)
            raise

    def _log_sent(
        self, pending: PendingUpload, outcome: Outcome, attempt: int, started: float
    ) -> None:
        status = outcome.status if isinstance(outcome, Rejected) else None
        if status is None:
            status = 201 if isinstance(outcome, Accepted) else 413
        self._log.info(
            "resume_sent",
            **_ids(pending),
            file_bytes=len(pending.upload.file),
            status=status,
            attempt=attempt,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )


def _refusal(outcome: Outcome) -> Refusal:
    if isinstance(outcome, Rejected):
        return Refusal(outcome.status, "; ".join(map(_describe, outcome.errors)))
    return Refusal(413, "larger than Sense accepts")


def _describe(issue: Issue) -> str:
    message = issue.message or "refused by Sense"
    return f"{'.'.join(issue.path)}: {message}" if issue.path else message


def _ids(pending: PendingUpload) -> dict[str, str]:
    candidate_id, resume_id = pending.upload.key
    return {"candidate_id": candidate_id, "resume_id": resume_id}
