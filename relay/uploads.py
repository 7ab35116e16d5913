"""Resume uploads waiting for Sense, kept in the outbox file beside the records.

Every change goes through the outbox's writer: an upload shares group
commits with the hooks' records, is durable once the writer answers, and a
claim sees exactly the records accepted before it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiosqlite
import orjson

from relay import resumes, sql
from relay.outbox import Ledger, Outbox


@dataclass(frozen=True, slots=True)
class PendingUpload:
    """One version of an upload waiting in the outbox file."""

    upload: resumes.Upload
    seq: int


@dataclass(slots=True)
class UploadStats:
    """What is pending, kept in memory for the uploader and the metrics."""

    uploads: int = 0
    bytes: int = 0
    oldest_accepted_at: float | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """Sense's reason for refusing an upload for good."""

    status: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class DeadUpload:
    """An upload Sense refused for good, kept until retried or purged."""

    upload: resumes.Upload
    seq: int
    failed_at: float
    status: int | None
    reason: str


class Uploads:
    """The resume uploads of one outbox file; build with ``Uploads.load``.

    ``ledger`` reconciles like the records' ledgers: ``accepted + recovered
    == delivered + coalesced + dead_lettered + stats.uploads``.
    """

    def __init__(self, box: Outbox) -> None:
        self._outbox = box
        self.stats = UploadStats()
        self.ledger = Ledger()
        self.changed = asyncio.Event()
        # The version of each upload being sent, by (candidate id, resume id).
        self._in_flight: dict[tuple[str, str], int] = {}

    @classmethod
    async def load(cls, box: Outbox) -> Uploads:
        """Reads what is pending; the pending uploads count as recovered."""
        uploads = cls(box)
        await uploads.refresh_stats()
        uploads.ledger.recovered = uploads.stats.uploads
        box.hold_beside(uploads._held)
        return uploads

    async def add(self, upload: resumes.Upload) -> None:
        """Stores an upload durably; returns only after the commit that holds it.

        A pending upload with the same candidate and resume id is replaced
        (the newer file wins); one being sent stays, and this one goes after
        it. Raises OutboxFull, storing nothing, when the outbox is at a cap.
        """
        size = len(upload.file)
        self._outbox.check_room(1, size)
        row = (
            *upload.key,
            self._outbox.next_seq(),
            time.time(),
            size,
            orjson.dumps(_stored_fields(upload)),
            upload.file,
        )

        async def store(db: aiosqlite.Connection) -> None:
            replaced = await _version(db, upload.key)
            await db.execute(sql.UPSERT_UPLOAD, row)
            self._count_added(upload.key, size, replaced)
            self.stats.oldest_accepted_at = await _oldest(db)

        await self._outbox.write(store)
        self.changed.set()

    async def claim(self) -> PendingUpload | None:
        """Returns the oldest upload free to go, or None.

        An upload is free when no version of the same upload is being sent
        and its candidate has no version in the outbox accepted before it.
        It stays stored until settled or released.
        """
        claimed: PendingUpload | None = await self._outbox.write(self._claim)
        return claimed

    async def _claim(self, db: aiosqlite.Connection) -> PendingUpload | None:
        # A writer unit, not a plain read, so that it is ordered with the
        # commits of the records it must wait for.
        limit = len(self._in_flight) + 1
        rows = await db.execute_fetchall(sql.CLAIMABLE_UPLOADS, (limit,))
        free = [(str(c), str(r)) for c, r in rows if (c, r) not in self._in_flight]
        if not free:
            return None
        key = free[0]
        [(seq, fields, file)] = await db.execute_fetchall(sql.UPLOAD, key)
        self._in_flight[key] = int(seq)
        return PendingUpload(_upload(key, fields, file), int(seq))

    def unsent(self) -> int:
        """Uploads pending and not being sent."""
        return self.stats.uploads - len(self._in_flight)

    async def settle(self, pending: PendingUpload, refusal: Refusal | None) -> None:
        """Removes a delivered upload, or moves a refused one to dead letters.

        A version replaced while it was being sent is left alone: the newer
        one stays pending and goes next.
        """
        now = time.time()
        key, seq = pending.upload.key, pending.seq

        async def remove(db: aiosqlite.Connection) -> None:
            removed = await db.execute_fetchall(sql.SETTLE_UPLOAD, (*key, seq))
            if refusal is None:
                await db.execute(sql.DROP_OLDER_DEAD_UPLOAD, (*key, seq))
                self.ledger.delivered += 1
            else:
                await db.execute(
                    sql.DEAD_LETTER_UPLOAD,
                    _dead_row(pending, now, refusal),
                )
                self.ledger.dead_lettered += 1
            self._count_removed(size for (size,) in removed)
            self.stats.oldest_accepted_at = await _oldest(db)

        await self._outbox.write(remove)
        self.release(pending)

    def release(self, pending: PendingUpload) -> None:
        """Forgets a claim without settling it (the upload stays pending)."""
        self._in_flight.pop(pending.upload.key, None)
        self.changed.set()

    async def refresh_stats(self) -> None:
        """Re-reads count, size and age, catching rows another process added."""
        await self._outbox.write(self._recount)

    async def _recount(self, db: aiosqlite.Connection) -> None:
        [(count, size, oldest)] = await db.execute_fetchall(sql.RECOUNT_UPLOADS)
        grew = count > self.stats.uploads
        self.stats.uploads, self.stats.bytes = int(count), int(size)
        self.stats.oldest_accepted_at = None if oldest is None else float(oldest)
        if grew:
            self.changed.set()

    # -- dead letters ---------------------------------------------------

    async def dead_letters(self) -> list[DeadUpload]:
        async def read(db: aiosqlite.Connection) -> list[Any]:
            return list(await db.execute_fetchall(sql.DEAD_UPLOADS))

        rows = await self._outbox.write(read)
        return [_dead_upload(row) for row in rows]

    async def retry_dead_letters(self) -> int:
        """Puts dead letters back as pending uploads; returns how many went back.

        A dead letter whose upload has a newer version pending is dropped
        instead, since that version supersedes it.
        """

        async def retry(db: aiosqlite.Connection) -> int:
            cursor = await db.execute(sql.RETRY_DEAD_UPLOADS, (time.time(),))
            moved = cursor.rowcount
            await db.execute(sql.PURGE_DEAD_UPLOADS)
            return moved

        moved = int(await self._outbox.write(retry))
        await self.refresh_stats()
        return moved

    async def purge_dead_letters(self) -> int:
        """Deletes dead letters for good; returns how many were deleted."""

        async def purge(db: aiosqlite.Connection) -> int:
            cursor = await db.execute(sql.PURGE_DEAD_UPLOADS)
            return cursor.rowcount

        return int(await self._outbox.write(purge))

    # -- internals ------------------------------------------------------

    def _held(self) -> tuple[int, int]:
        return self.stats.uploads, self.stats.bytes

    def _count_added(
        self, key: tuple[str, str], size: int, replaced: tuple[int, int] | None
    ) -> None:
        self.ledger.accepted += 1
        if replaced is None:
            self.stats.uploads += 1
            self.stats.bytes += size
            return
        replaced_seq, replaced_size = replaced
        self.stats.bytes += size - replaced_size
        # A version being sent is not lost: it is delivered, then this one.
        if self._in_flight.get(key) != replaced_seq:
            self.ledger.coalesced += 1

    def _count_removed(self, sizes: Iterable[int]) -> None:
        for size in sizes:
            self.stats.uploads -= 1
            self.stats.bytes -= size


async def _version(
    db: aiosqlite.Connection, key: tuple[str, str]
) -> tuple[int, int] | None:
    rows = list(await db.execute_fetchall(sql.UPLOAD_VERSION, key))
    return (int(rows[0][0]), int(rows[0][1])) if rows else None


async def _oldest(db: aiosqlite.Connection) -> float | None:
    [(oldest,)] = await db.execute_fetchall(sql.OLDEST_UPLOAD)
    return None if oldest is None else float(oldest)


def _stored_fields(upload: resumes.Upload) -> dict[str, str | None]:
    return {
        "file_name": upload.file_name,
        "file_extension": upload.file_extension,
        "date_created": upload.date_created,
        "date_updated": upload.date_updated,
    }


def _upload(key: tuple[str, str], fields: bytes, file: bytes) -> resumes.Upload:
    stored = orjson.loads(fields)
    return resumes.Upload(
        candidate_id=key[0],
        resume_id=key[1],
        file_extension=stored["file_extension"],
        date_created=stored["date_created"],
        date_updated=stored["date_updated"],
        file=bytes(file),
        file_name=stored["file_name"],
    )


def _dead_row(pending: PendingUpload, now: float, refusal: Refusal) -> tuple[Any, ...]:
    upload = pending.upload
    return (
        *upload.key,
        pending.seq,
        now,
        refusal.status,
        refusal.reason,
        orjson.dumps(_stored_fields(upload)),
        upload.file,
    )


def _dead_upload(row: Any) -> DeadUpload:
    candidate_id, resume_id, seq, failed_at, status, reason, fields, file = row
    upload = _upload((candidate_id, resume_id), fields, file)
    return DeadUpload(upload, int(seq), float(failed_at), status, str(reason))
