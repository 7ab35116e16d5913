"""The inbox: write-backs received from Sense, kept until the ATS has them.

It lives in the outbox file (tables in ``schema.sql``) and writes through the
outbox's single writer, so a write-back's commit is grouped with the hooks'
and one file holds everything relay has acknowledged. Delivered write-backs
stay, answered from here if Sense sends them again, until purged.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiosqlite

from relay import sql
from relay.outbox import Outbox
from relay.writeback import WriteBack

PENDING = "pending"
DELIVERED = "delivered"
DEAD_LETTERED = "dead_lettered"
STATES = (PENDING, DELIVERED, DEAD_LETTERED)


@dataclass(frozen=True, slots=True)
class Stored:
    """One write-back as the inbox holds it."""

    id: str
    seq: int
    type: str
    subject: str
    received_at: float
    body: bytes
    state: str
    attempts: int
    next_attempt_at: float
    status: int | None
    reason: str | None
    entity_id: str | None
    settled_at: float | None


@dataclass(frozen=True, slots=True)
class Receipt:
    """What storing a write-back found: the row, and whether it was new."""

    stored: Stored
    new: bool


@dataclass(slots=True)
class InboxStats:
    """Figures for the metrics, re-read with every change."""

    pending: int = 0
    oldest_received_at: float | None = None
    dead_letters: int = 0


class Inbox:
    """The write-backs in one outbox file. Build with ``await Inbox.load(box)``."""

    def __init__(self, box: Outbox) -> None:
        self._outbox = box
        self.stats = InboxStats()
        self.changed = asyncio.Event()

    @classmethod
    async def load(cls, box: Outbox) -> Inbox:
        inbox = cls(box)
        await inbox.refresh_stats()
        return inbox

    async def receive(self, writeback: WriteBack) -> Receipt:
        """Stores a write-back unless its id is known; returns once committed.

        A known id stores nothing: the receipt holds the row as first stored.
        """
        now = time.time()

        async def store(db: aiosqlite.Connection) -> Receipt:
            cursor = await db.execute(
                sql.INSERT_WRITEBACK,
                (writeback.id, writeback.type, writeback.subject, now, writeback.body),
            )
            return Receipt(await _row(db, writeback.id), cursor.rowcount == 1)

        receipt: Receipt = await self._change(store)
        if receipt.new:
            self.changed.set()
        return receipt

    async def due(self, limit: int, skip: set[str]) -> list[Stored]:
        """The oldest pending write-back of each subject whose attempt is due.

        Write-backs in ``skip`` (being sent) are left out, and so is every
        later write-back of their subject.
        """
        rows = await self._outbox.read(
            sql.DUE_WRITEBACKS, (time.time(), limit + len(skip))
        )
        return [s for s in map(_stored, rows) if s.id not in skip][:limit]

    async def next_attempt_at(self) -> float | None:
        [(when,)] = await self._outbox.read(sql.NEXT_ATTEMPT_AT, ())
        return None if when is None else float(when)

    async def get(self, writeback_id: str) -> Stored | None:
        rows = await self._outbox.read(sql.WRITEBACK, (writeback_id,))
        return _stored(rows[0]) if rows else None

    async def in_state(self, state: str | None = None) -> list[Stored]:
        """Write-backs in one state (all when None), in the order received."""
        rows = await self._outbox.read(sql.LIST_WRITEBACKS, (state,))
        return [_stored(row) for row in rows]

    async def delivered(
        self, writeback_id: str, status: int, entity_id: str | None
    ) -> None:
        """Marks a write-back delivered, with the ATS's id for a new entity."""
        await self._settle(writeback_id, DELIVERED, status, None, entity_id)

    async def dead_letter(
        self, writeback_id: str, status: int | None, reason: str
    ) -> None:
        """Moves a write-back to dead letters: it is not sent again unless replayed."""
        await self._settle(writeback_id, DEAD_LETTERED, status, reason, None)

    async def retry_later(
        self, writeback_id: str, status: int | None, reason: str, delay_s: float
    ) -> None:
        """Counts a failed attempt; the next one is due after ``delay_s``."""
        args = (writeback_id, status, reason, time.time() + delay_s)
        await self._change(lambda db: db.execute(sql.RETRY_WRITEBACK, args))

    async def replay(self, writeback_id: str) -> bool:
        """Puts a dead-lettered (or pending) write-back up for delivery now.

        Returns False if there is no such write-back or it was delivered.
        """

        async def replay(db: aiosqlite.Connection) -> bool:
            cursor = await db.execute(sql.REPLAY_WRITEBACK, (writeback_id, time.time()))
            return cursor.rowcount == 1

        replayed = bool(await self._change(replay))
        self.changed.set()
        return replayed

    async def purge(self, state: str, older_than_s: float) -> int:
        """Deletes write-backs settled in ``state`` more than ``older_than_s`` ago."""

        async def purge(db: aiosqlite.Connection) -> int:
            cursor = await db.execute(
                sql.PURGE_WRITEBACKS, (state, time.time() - older_than_s)
            )
            return cursor.rowcount

        return int(await self._change(purge))

    async def refresh_stats(self) -> None:
        """Re-reads the figures, catching changes made by another process."""
        await self._change(_nothing)

    async def _settle(
        self,
        writeback_id: str,
        state: str,
        status: int | None,
        reason: str | None,
        entity_id: str | None,
    ) -> None:
        args = (writeback_id, state, status, reason, entity_id, time.time())
        await self._change(lambda db: db.execute(sql.SETTLE_WRITEBACK, args))

    async def _change(self, work: Any) -> Any:
        # The figures are read in the same unit as the change and shown once
        # it has committed, so that they never run ahead of the file.
        async def change(db: aiosqlite.Connection) -> tuple[Any, InboxStats]:
            return await work(db), await _figures(db)

        result, self.stats = await self._outbox.write(change)
        return result


async def _nothing(db: aiosqlite.Connection) -> None:
    return None


async def _figures(db: aiosqlite.Connection) -> InboxStats:
    [(pending, oldest)] = await db.execute_fetchall(sql.PENDING_WRITEBACKS)
    [(dead,)] = await db.execute_fetchall(sql.DEAD_WRITEBACKS)
    oldest_received_at = None if oldest is None else float(oldest)
    return InboxStats(int(pending), oldest_received_at, int(dead))


async def _row(db: aiosqlite.Connection, writeback_id: str) -> Stored:
    [row] = await db.execute_fetchall(sql.WRITEBACK, (writeback_id,))
    return _stored(row)


def _stored(row: Any) -> Stored:
    # Columns in the order of sql.WRITEBACK_COLUMNS; the body is the sixth.
    values = list(row)
    values[5] = bytes(values[5])
    return Stored(*values)
