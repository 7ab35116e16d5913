"""The forwarder: hands stored write-backs to the ATS, oldest first.

Write-backs about one subject go one at a time, in the order received;
different subjects go side by side, up to ``delivery_concurrency``. A
transient failure is retried with the same backoff as batches to Sense (a
Retry-After from the ATS wins); a refusal that will not change, or running
out of attempts, moves the write-back to dead letters.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from relay.ats import Answer, AtsClient, Delivered, Failed, Refused
from relay.backoff import Backoff, wait_for_any
from relay.config import WritebackSettings
from relay.inbox import Inbox, Stored
from relay.metrics import Metrics

log = structlog.get_logger("relay.forwarder")

# The inbox is read again at least this often, to pick up write-backs that
# another process (``relay writebacks replay``) put back.
POLL_S = 2.0
STATS_REFRESH_S = 30.0


class Forwarder:
    """Delivers the inbox to the ATS; ``attempt`` also serves ENTITY_CREATE."""

    def __init__(
        self,
        inbox: Inbox,
        client: AtsClient,
        settings: WritebackSettings,
        backoff: Backoff,
        metrics: Metrics,
    ) -> None:
        self._inbox = inbox
        self._client = client
        self._settings = settings
        self._backoff = backoff
        self._metrics = metrics
        self._in_flight: set[str] = set()

    async def run(self, stopping: asyncio.Event) -> None:
        """Delivers until ``stopping`` is set, then lets requests in flight end.

        A write-back whose request is cut short stays pending and is sent
        after the next start.
        """
        sending: set[asyncio.Task[Answer | None]] = set()
        refreshed_at = time.monotonic()
        try:
            while not stopping.is_set():
                free = self._settings.delivery_concurrency - len(sending)
                for stored in await self._inbox.due(free, set(self._in_flight)):
                    task = asyncio.create_task(self.deliver(stored))
                    sending.add(task)
                    task.add_done_callback(sending.discard)
                if time.monotonic() - refreshed_at > STATS_REFRESH_S:
                    await self._inbox.refresh_stats()
                    refreshed_at = time.monotonic()
                await self._wait_for_work(stopping)
        finally:
            await asyncio.gather(*sending)

    async def deliver(self, stored: Stored) -> Answer | None:
        """Makes one attempt and settles it; None if it is already being sent."""
        if not self.claim(stored.id):
            return None
        try:
            return await self.attempt(stored)
        finally:
            self.release(stored.id)

    def claim(self, writeback_id: str) -> bool:
        """Reserves a write-back for one sender; False if another has it."""
        if writeback_id in self._in_flight:
            return False
        self._in_flight.add(writeback_id)
        return True

    def release(self, writeback_id: str) -> None:
        self._in_flight.discard(writeback_id)
        # The next write-back of the same subject may go now.
        self._inbox.changed.set()

    async def attempt(self, stored: Stored, timeout_s: float | None = None) -> Answer:
        """Posts a write-back the caller has claimed, and settles the answer."""
        started = time.monotonic()
        answer = await self._client.deliver(stored.type, stored.body, timeout_s)
        await self._settle(stored, answer, time.monotonic() - started)
        return answer

    async def _wait_for_work(self, stopping: asyncio.Event) -> None:
        changed = self._inbox.changed
        changed.clear()
        timeout_s = POLL_S
        next_at = await self._inbox.next_attempt_at()
        if next_at is not None:
            timeout_s = min(POLL_S, max(0.0, next_at - time.time()))
        await wait_for_any(changed, stopping, timeout_s=timeout_s)

    async def _settle(self, stored: Stored, answer: Answer, elapsed_s: float) -> None:
        attempt = stored.attempts + 1
        fields = {
            "writeback_id": stored.id,
            "type": stored.type,
            "attempt": attempt,
            "duration_ms": round(elapsed_s * 1000, 1),
        }
        # Counted before settling: once the inbox shows the outcome, so do
        # the counters.
        if isinstance(answer, Delivered):
            self._metrics.writeback_delivery_attempts.labels("delivered").inc()
            await self._inbox.delivered(stored.id, answer.status, answer.entity_id)
            log.info("writeback_delivered", status=answer.status, **fields)
        elif isinstance(answer, Refused):
            self._metrics.writeback_delivery_attempts.labels("refused").inc()
            await self._dead_letter(stored, answer.status, answer.reason, fields)
        else:
            self._metrics.writeback_delivery_attempts.labels("failed").inc()
            await self._retry_or_give_up(stored, answer, fields)

    async def _retry_or_give_up(
        self, stored: Stored, answer: Failed, fields: dict[str, object]
    ) -> None:
        attempt = stored.attempts + 1
        if attempt >= self._settings.max_attempts:
            reason = f"gave up after {attempt} attempts; last: {answer.reason}"
            await self._dead_letter(stored, answer.status, reason, fields)
            return
        delay_s = answer.retry_after_s
        if delay_s is None:
            delay_s = self._backoff.delay_s(attempt)
        await self._inbox.retry_later(stored.id, answer.status, answer.reason, delay_s)
        log.warning(
            "writeback_retry_scheduled",
            status=answer.status,
            reason=answer.reason,
            retry_in_s=round(delay_s, 3),
            **fields,
        )

    async def _dead_letter(
        self,
        stored: Stored,
        status: int | None,
        reason: str,
        fields: dict[str, object],
    ) -> None:
        self._metrics.writebacks_dead_lettered.inc()
        await self._inbox.dead_letter(stored.id, status, reason)
        log.error("writeback_dead_lettered", status=status, reason=reason, **fields)
