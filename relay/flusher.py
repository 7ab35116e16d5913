"""One flusher per entity type: drains the outbox to Sense in full batches.

A flush cycle reads as claim → pack → send → settle. A batch goes when the
pending records reach the record limit, would pass the byte limit once
compressed, or when the oldest has waited ``max_age_seconds`` (Sense's
"500 updates, 256 kb after compression or 5 minutes, whichever comes first").
Records wait, whatever the trigger, for the records of preceding entity types
accepted before them (relay.ordering).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import structlog

from relay import errors, outbox
from relay.backoff import Backoff, wait_for_any
from relay.batch import Batch, Packer
from relay.config import FlushSettings
from relay.delivery import Delivery
from relay.inflight import deliver_until
from relay.metrics import Metrics
from relay.ordering import DependencyOrder
from relay.outbox import Outbox, Pending, Refusal
from relay.sense import Issue, SenseClient

# Until a batch has been compressed, assume JSON shrinks to a quarter.
INITIAL_COMPRESSION_RATIO = 0.25
# While held back, look again this often even if no preceding type settled:
# another process may have changed the outbox.
HELD_BACK_RECHECK_S = 1.0
# Held back this long with nothing moving, a flusher urges the types it waits
# for. Under a steady load they flush on their own well within it; urging
# them at once would only make their batches leave part full.
URGE_AFTER_S = 1.0


class Flusher:
    """Delivers one entity type's pending records, batch after batch."""

    def __init__(
        self,
        entity: str,
        box: Outbox,
        client: SenseClient,
        packer: Packer,
        settings: FlushSettings,
        backoff: Backoff,
        metrics: Metrics,
        order: DependencyOrder,
    ) -> None:
        self.entity = entity
        self._outbox = box
        self._packer = packer
        self._settings = settings
        self._order = order
        self._settler = _OutboxSettler(entity, box, order)
        self._delivery = Delivery(
            entity, client, packer, backoff, metrics, self._settler
        )
        # The barrier at which records were last held back, since when, the
        # oldest version held, and whether some that could have gone were
        # kept to make a fuller batch.
        self._held_at: float | None = None
        self._held_since = 0.0
        self._held_seq = 0
        self._withheld = False
        self._ratio = INITIAL_COMPRESSION_RATIO
        self._trial_raw = 0
        self._stopping = asyncio.Event()
        self._log = structlog.get_logger("relay.flusher").bind(entity=entity)

    async def run(self, stopping: asyncio.Event) -> None:
        """Flushes until ``stopping`` is set.

        A request in flight is finished, but a batch waiting to be retried is
        given up: its records stay in the outbox for the next start.
        """
        self._stopping = stopping
        await deliver_until(
            stopping, self._settings.concurrency, self._next_due_batch, self._deliver
        )

    async def _next_due_batch(self) -> Batch | None:
        if not await self._wait_until_due(self._stopping):
            return None
        return await self._next_batch()

    async def _next_batch(self) -> Batch | None:
        """Claims and packs the next batch; None if it should not go yet."""
        claimed = await self._claim()
        if not claimed:
            if self._held_at is None:
                # The figures said records were waiting; they were out of date.
                await self._outbox.refresh_stats()
            return None
        batch = await self._pack(claimed)
        self._withheld = self._worth_waiting(batch, claimed)
        urged = self._order.urged(self.entity)
        if self._withheld or (not urged and self._only_maybe_full(batch, claimed)):
            self._outbox.release(batch.records)
            return None
        if not batch.records:
            return None
        return batch

    async def _claim(self) -> list[Pending]:
        """Claims what may go now, noting what waits for preceding types."""
        limit = self._settings.max_records
        barrier = self._order.barrier(self.entity)
        if barrier is None:
            self._stop_holding()
            return await self._outbox.claim(self.entity, limit)

        claimed, held_seq = await self._outbox.claim_before(self.entity, limit, barrier)
        if held_seq is None:
            self._stop_holding()
        else:
            self._hold(barrier, held_seq)
        return claimed

    def _hold(self, barrier: float, held_seq: int) -> None:
        if barrier != self._held_at:
            self._held_since = time.monotonic()
        self._held_at, self._held_seq = barrier, held_seq
        self._order.hold(self.entity)
        self._urge_if_stuck()

    def _urge_if_stuck(self) -> None:
        # A type that others wait for passes the urge on at once.
        stuck = time.monotonic() - self._held_since >= URGE_AFTER_S
        if stuck or self._order.urged(self.entity):
            self._order.urge(self.entity, self._held_seq)

    def _held_timeout_s(self) -> float:
        until_stuck_s = self._held_since + URGE_AFTER_S - time.monotonic()
        return until_stuck_s if until_stuck_s > 0 else HELD_BACK_RECHECK_S

    def _stop_holding(self) -> None:
        if self._held_at is not None:
            self._held_at, self._withheld = None, False
            self._order.unhold(self.entity)

    def _worth_waiting(self, batch: Batch, claimed: list[Pending]) -> bool:
        """True if held back and what may go would not fill a batch yet.

        The preceding types flush soon, on their own or urged, and the rest
        can follow then.
        """
        if self._held_at is None or self._order.urged(self.entity):
            return False
        full = (
            len(claimed) >= self._settings.max_records
            or len(batch.records) < len(claimed)
            or batch.body_bytes >= self._packer.max_body_bytes * 0.9
        )
        return not full and self._seconds_until_too_old() != 0

    async def _deliver(self, batch: Batch) -> None:
        try:
            await self._delivery.deliver(batch, self._stopping)
        except errors.Stopping:
            self._log.info("batch_left_for_next_start", records=len(batch.records))
        finally:
            # Its records are free again, or it crashed: either way the
            # loop waiting for a due batch must look again.
            self._outbox.changed[self.entity].set()

    async def _wait_until_due(self, stopping: asyncio.Event) -> bool:
        changed = self._outbox.changed[self.entity]
        changed.clear()
        if self._due():
            return True
        timeout_s = self._seconds_until_too_old()
        if self._held_at is not None:
            timeout_s = self._held_timeout_s()
        await wait_for_any(changed, stopping, timeout_s=timeout_s)
        return not stopping.is_set() and self._due()

    def _due(self) -> bool:
        stats = self._outbox.stats[self.entity]
        unsent = self._outbox.unsent(self.entity)
        if unsent <= 0:
            self._stop_holding()
            return False
        if self._held_at is not None:
            if self._order.barrier(self.entity) == self._held_at:
                # Nothing more may go until a preceding type has sent, unless
                # records kept back for a fuller batch are wanted now.
                self._urge_if_stuck()
                return self._withheld and self._order.urged(self.entity)
            self._stop_holding()
        return (
            unsent >= self._settings.max_records
            or stats.bytes * self._ratio >= self._packer.max_body_bytes
            or self._seconds_until_too_old() == 0
            or self._worth_a_trial_pack()
            or self._order.urged(self.entity)
        )

    def _worth_a_trial_pack(self) -> bool:
        # The compression ratio is only an estimate: once the raw bytes alone
        # pass the limit, pack for real to learn whether a batch is full,
        # again each time another tenth of the limit has arrived.
        raw = self._outbox.stats[self.entity].bytes
        step = self._packer.max_body_bytes // 10
        return raw >= self._packer.max_body_bytes and raw >= self._trial_raw + step

    def _only_maybe_full(self, batch: Batch, claimed: list[Pending]) -> bool:
        """True if the batch was packed on trial and turned out not full."""
        stats = self._outbox.stats[self.entity]
        not_full = (
            len(batch.records) == len(claimed)
            and len(claimed) < self._settings.max_records
            and batch.body_bytes < self._packer.max_body_bytes * 0.9
            and self._seconds_until_too_old() != 0
        )
        self._trial_raw = stats.bytes if not_full else 0
        return not_full

    def _seconds_until_too_old(self) -> float | None:
        oldest = self._outbox.stats[self.entity].oldest_accepted_at
        if oldest is None:
            return None
        return max(0.0, oldest + self._settings.max_age_seconds - time.time())

    async def _pack(self, claimed: list[Pending]) -> Batch:
        readable: list[Pending] = []
        unreadable: list[Pending] = []
        for pending in claimed:
            (readable if outbox.body_is_readable(pending) else unreadable).append(
                pending
            )
        if unreadable:
            await self._dead_letter(unreadable, None, "unreadable row in the outbox")
        if not readable:
            return Batch(self.entity, [], b"", self._packer.compress)

        batch = await asyncio.to_thread(self._packer.pack, self.entity, readable)

        self._outbox.release(readable[len(batch.records) :])
        self._learn_ratio(batch)
        return batch

    def _learn_ratio(self, batch: Batch) -> None:
        raw = sum(len(p.body) for p in batch.records)
        if raw:
            self._ratio = batch.body_bytes / raw

    async def _dead_letter(
        self, records: Sequence[Pending], status: int | None, reason: str
    ) -> None:
        await self._settler.refused([Refusal(p, status, reason) for p in records])


class _OutboxSettler:
    """Settles one entity type's batches in the outbox: Delivery's Settler."""

    def __init__(self, entity: str, box: Outbox, order: DependencyOrder) -> None:
        self._entity = entity
        self._outbox = box
        self._order = order
        self._log = structlog.get_logger("relay.flusher").bind(entity=entity)

    async def accepted(self, batch: Batch, warnings: list[Issue]) -> None:
        await self._outbox.settle(batch.records)
        self._order.settled(self._entity)

    async def refused(self, refusals: Sequence[Refusal]) -> None:
        await self._outbox.settle([], refusals)
        self._order.settled(self._entity)
        for refusal in refusals:
            self._log.error(
                "record_dead_lettered",
                record_id=refusal.pending.record_id,
                status=refusal.status,
                reason=refusal.reason,
            )

    def gave_up(self, records: Sequence[Pending]) -> None:
        self._outbox.release(records)
