"""Sending one batch until Sense has settled every record in it.

A record is settled when Sense accepted it or refused it for good. Sense's
answers decide what happens next: a 400 naming records refuses those and
resends the rest; a 400 naming none, or a 413, halves the batch until the
refused records stand alone; anything transient is retried with backoff.
The caller decides what settling means (the outbox forgets the record, or
the sync moves its checkpoint) through a Settler.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import Protocol

import structlog

from relay import errors
from relay.backoff import Answered, Backoff, call_until_answered
from relay.batch import Batch, Packer
from relay.metrics import Metrics
from relay.outbox import Pending, Refusal
from relay.sense import Accepted, Issue, Outcome, Rejected, SenseClient, TooLarge


class Settler(Protocol):
    """What to do with records once Sense has answered for them."""

    async def accepted(self, batch: Batch, warnings: list[Issue]) -> None: ...

    async def refused(self, refusals: Sequence[Refusal]) -> None: ...

    def gave_up(self, records: Sequence[Pending]) -> None:
        """Called when a retry is abandoned because relay is stopping."""


class Delivery:
    """Delivers batches of one entity type, retrying until settled."""

    def __init__(
        self,
        entity: str,
        client: SenseClient,
        packer: Packer,
        backoff: Backoff,
        metrics: Metrics,
        settler: Settler,
        batch_log_level: str = "info",
    ) -> None:
        self.entity = entity
        self._client = client
        self._packer = packer
        self._backoff = backoff
        self._metrics = metrics
        self._settler = settler
        self._batch_log_level = batch_log_level
        self._log = structlog.get_logger("relay.delivery").bind(entity=entity)

    async def deliver(self, batch: Batch, stopping: asyncio.Event) -> None:
        """Sends a batch until Sense has settled every record in it.

        Raises Stopping, settling nothing more, if ``stopping`` is set while
        a retry is waiting.
        """
        if not batch.records:
            return
        outcome = await self._send_until_answered(batch, stopping)

        if isinstance(outcome, Accepted):
            await self._accept(batch, outcome)
        elif isinstance(outcome, Rejected):
            await self._settle_rejected(batch, outcome, stopping)
        elif isinstance(outcome, TooLarge):
            reason = "larger than Sense accepts"
            await self._split(batch, 413, reason, stopping)

    async def _send_until_answered(
        self, batch: Batch, stopping: asyncio.Event
    ) -> Accepted | Rejected | TooLarge:
        answered = await call_until_answered(
            lambda: self._client.send(batch),
            self._backoff,
            stopping,
            functools.partial(self._note_retry, batch),
            lambda: self._settler.gave_up(batch.records),
        )
        self._log_batch(batch, answered)
        return answered.value

    def _note_retry(
        self,
        batch: Batch,
        exc: errors.SenseUnavailable,
        attempt: int,
        delay_s: float,
    ) -> None:
        self._metrics.batches.labels(self.entity, "retried").inc()
        self._metrics.retries.labels(self.entity, retry_reason(exc)).inc()
        level = "error" if isinstance(exc, errors.AuthRejected) else "warning"
        getattr(self._log, level)(
            "batch_retry_scheduled",
            records=len(batch.records),
            reason=exc.reason,
            attempt=attempt,
            retry_in_s=round(delay_s, 3),
            retry_after_s=exc.retry_after_s,
        )

    async def _accept(self, batch: Batch, outcome: Accepted) -> None:
        self._metrics.batch_records.labels(self.entity).observe(len(batch.records))
        self._metrics.batch_body_bytes.labels(self.entity).observe(batch.body_bytes)
        self._metrics.sense_warnings.labels(self.entity).inc(len(outcome.warnings))
        for warning in outcome.warnings:
            self._log.warning(
                "sense_warning_received",
                record_id=warning.entity_id,
                message=warning.message,
                path=warning.path,
            )
        await self._settler.accepted(batch, outcome.warnings)

    async def _settle_rejected(
        self, batch: Batch, outcome: Rejected, stopping: asyncio.Event
    ) -> None:
        named = {issue.entity_id: issue for issue in outcome.errors if issue.entity_id}
        culprits = [p for p in batch.records if p.record_id in named]
        if not culprits:
            reason = "; ".join(i.message for i in outcome.errors) or "refused by Sense"
            await self._split(batch, 400, reason, stopping)
            return

        refusals = [
            Refusal(p, outcome.status, describe(named[p.record_id])) for p in culprits
        ]
        await self._settler.refused(refusals)
        rest = [p for p in batch.records if p.record_id not in named]
        await self._resend(rest, stopping)

    async def _split(
        self, batch: Batch, status: int, reason: str, stopping: asyncio.Event
    ) -> None:
        """Halves a refused batch until the refused records stand alone."""
        if len(batch.records) == 1:
            await self._settler.refused([Refusal(batch.records[0], status, reason)])
            return
        middle = len(batch.records) // 2
        self._log.info("batch_split", records=len(batch.records), status=status)
        await self._resend(batch.records[:middle], stopping)
        await self._resend(batch.records[middle:], stopping)

    async def _resend(
        self, records: Sequence[Pending], stopping: asyncio.Event
    ) -> None:
        remaining = list(records)
        while remaining:
            batch = await asyncio.to_thread(self._packer.pack, self.entity, remaining)
            await self.deliver(batch, stopping)
            remaining = remaining[len(batch.records) :]

    def _log_batch(self, batch: Batch, answered: Answered[Outcome]) -> None:
        status = {Accepted: 201, Rejected: 400, TooLarge: 413}[type(answered.value)]
        label = {201: "delivered", 400: "rejected", 413: "too_large"}[status]
        self._metrics.batches.labels(self.entity, label).inc()
        getattr(self._log, self._batch_log_level)(
            "batch_sent",
            records=len(batch.records),
            compressed_bytes=batch.body_bytes,
            status=status,
            attempt=answered.attempt,
            duration_ms=round(answered.duration_s * 1000, 1),
        )


def retry_reason(exc: errors.SenseUnavailable) -> str:
    """The ``reason`` label of relay_retries_total for a transient failure."""
    if isinstance(exc, errors.AuthRejected):
        return "auth"
    if exc.status is None:
        return exc.reason
    if exc.status == 429:
        return "rate_limited"
    return "server_error"


def describe(issue: Issue) -> str:
    """Sense's reason for refusing a record, with the field it names."""
    message = issue.message or "refused by Sense"
    return f"{'.'.join(issue.path)}: {message}" if issue.path else message
