"""The durable outbox: what the ATS sent and Sense has not yet accepted.

All writes go through one connection and one writer task, which commits
whatever has queued up since its last commit in a single transaction (group
commit): concurrent hooks share an fsync instead of waiting for one each.
Reads use a second connection, which WAL lets run beside the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite
import orjson
import structlog

from relay import entities, errors, fingerprints, salvage, sql
from relay.records import Record
from relay.writer import GroupCommitWriter, Work

log = structlog.get_logger("relay.outbox")

OUTBOX_FULL_RETRY_AFTER_S = 5
# A version's seq is wall-clock nanoseconds read just after its commit took
# accepted_at, or higher, so "accepted before t" reads "seq below t in ns".
# The margin absorbs the rounding of accepted_at (a float) and errs on the
# side of waiting.
ORDER_MARGIN_NS = 10_000


@dataclass(frozen=True, slots=True)
class Pending:
    """One version of a record waiting in the outbox."""

    entity: str
    record_id: str
    seq: int
    body: bytes
    kind: str = "upsert"


@dataclass(slots=True)
class EntityStats:
    """What is pending for one entity type, kept in memory for the flushers."""

    records: int = 0
    bytes: int = 0
    oldest_accepted_at: float | None = None


@dataclass(slots=True)
class Ledger:
    """What became of the versions of one entity type since start-up.

    Each figure changes in the same writer unit as the rows it counts, so
    that at any instant ``accepted + recovered == delivered + coalesced +
    dead_lettered + unchanged + pending``.
    """

    accepted: int = 0
    recovered: int = 0
    delivered: int = 0
    coalesced: int = 0
    dead_lettered: int = 0
    unchanged: int = 0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    entity: str
    record_id: str
    seq: int
    failed_at: float
    status: int | None
    reason: str
    body: bytes
    kind: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """A version Sense refused for good, with Sense's reason."""

    pending: Pending
    status: int | None
    reason: str


class Outbox:
    """The SQLite outbox file. Use ``async with Outbox.open(...)``."""

    def __init__(
        self, path: Path, max_records: int, max_bytes: int, skip_unchanged: bool
    ) -> None:
        self.path = path
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.skip_unchanged = skip_unchanged
        self.stats: dict[str, EntityStats] = defaultdict(EntityStats)
        self.changed: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        # Set whenever settled versions leave the outbox, for work that waits
        # on a record being delivered first (resume uploads).
        self.removed = asyncio.Event()
        self._held_beside: list[Callable[[], tuple[int, int]]] = []
        # Per entity type, the version of each record in a batch being sent.
        self._in_flight: dict[str, dict[str, int]] = defaultdict(dict)
        # Per entity type, when the first version after the one in flight
        # came, for records that changed while being sent.
        self._next_accepted_at: dict[str, dict[str, float]] = defaultdict(dict)
        self.ledger: dict[str, Ledger] = defaultdict(Ledger)
        self._queued_rows: list[tuple[Any, ...]] = []
        self._queued_commit: asyncio.Future[None] | None = None
        self._last_seq = 0
        self._writer: GroupCommitWriter | None = None
        self._reader: aiosqlite.Connection | None = None
        self._connections: list[aiosqlite.Connection] = []

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        path: Path,
        durability: str = "full",
        max_records: int = 5_000_000,
        max_bytes: int = 4 * 1024**3,
        skip_unchanged: bool = True,
    ) -> AsyncIterator[Outbox]:
        """Opens (creating if needed) and checks the outbox file.

        With ``skip_unchanged``, a whole version identical to the one Sense
        last accepted for its record is acknowledged but not stored.
        """
        outbox = cls(path, max_records, max_bytes, skip_unchanged)
        try:
            await outbox._connect(durability)
        except (sqlite3.DatabaseError, OSError) as exc:
            await outbox._close()
            raise errors.OutboxError(f"cannot open outbox {path}: {exc}") from exc
        try:
            yield outbox
        finally:
            await outbox._close()

    async def add(self, records: Sequence[Record]) -> None:
        """Stores records durably; returns only after the commit that holds them.

        Raises OutboxFull, storing nothing, when the records would take the
        outbox past its configured size.
        """
        self._check_room(records)
        now = time.time()
        self._queued_rows.extend(
            (
                r.entity_type,
                r.record_id,
                self._next_seq(),
                now,
                len(r.body),
                r.body,
                r.kind,
            )
            for r in records
        )
        if self._queued_commit is None:
            self._queued_commit = asyncio.ensure_future(self._commit_queued_rows())
        # Shielded: a hook whose client hangs up must not cancel the commit
        # that other hooks are waiting for too.
        await asyncio.shield(self._queued_commit)

    async def _commit_queued_rows(self) -> None:
        """Upserts every row queued until the writer gets to it, in one statement.

        Rows of concurrent hooks travel together, so a commit costs a few
        round trips to the SQLite thread however many hooks share it.
        """

        async def upsert(db: aiosqlite.Connection) -> set[str]:
            rows, self._queued_rows = self._queued_rows, []
            self._queued_commit = None
            rows = await self._merge_patches(db, rows)
            replaced, unchanged = await self._replaced_and_unchanged(db, rows)
            stored = _without(rows, unchanged) if unchanged else rows
            await sql.insert(db, stored)
            self._count_added(rows, replaced, unchanged)
            if unchanged:
                await self._count_as_delivered(db, rows, unchanged)
            return {row[0] for row in stored}

        for entity in await self._write(upsert):
            self.changed[entity].set()

    async def claim(self, entity: str, limit: int) -> list[Pending]:
        """Returns up to ``limit`` pending records of one type, oldest first.

        Records already in flight are skipped, so that two batches never
        carry the same record and a newer version always waits for the older
        one. Claimed records stay in the outbox until settled or released.
        """
        # A writer unit, not a plain read: the claim must be ordered with
        # the upserts, or a version replaced between reading it and marking
        # it in flight would be counted as coalesced and delivered.
        return list(await self._write(lambda db: self._claim(db, entity, limit)))

    async def _claim(
        self, db: aiosqlite.Connection, entity: str, limit: int
    ) -> list[Pending]:
        in_flight = self._in_flight[entity]
        rows = await db.execute_fetchall(sql.CLAIM, (entity, limit + len(in_flight)))
        claimed = [
            Pending(entity, record_id, seq, body, kind)
            for record_id, seq, body, kind in rows
            if record_id not in in_flight
        ][:limit]
        for pending in claimed:
            in_flight[pending.record_id] = pending.seq
        return claimed

    async def claim_before(
        self, entity: str, limit: int, before: float
    ) -> tuple[list[Pending], int | None]:
        """Claims like ``claim``, only versions accepted before ``before``.

        A pending version that coalesced versions accepted on both sides of
        ``before`` is passed over too. Also returns the lowest seq among the
        unsent records passed over (a lower bound when not all were read),
        or None if nothing was passed over.
        """
        claim: tuple[list[Pending], int | None] = await self._write(
            lambda db: self._claim_before(db, entity, limit, before)
        )
        return claim

    async def _claim_before(
        self, db: aiosqlite.Connection, entity: str, limit: int, before: float
    ) -> tuple[list[Pending], int | None]:
        in_flight = self._in_flight[entity]
        rows = await db.execute_fetchall(
            sql.CLAIM_BEFORE, (entity, before, limit + len(in_flight))
        )
        below = seq_before(before)
        free = [row for row in rows if row[0] not in in_flight]
        claimed = [
            Pending(entity, record_id, seq, body, kind)
            for record_id, seq, body, kind in free
            if seq < below
        ][:limit]
        for pending in claimed:
            in_flight[pending.record_id] = pending.seq
        if len(claimed) == limit or self.unsent(entity) <= 0:
            return claimed, None
        return claimed, min((row[1] for row in free if row[1] >= below), default=below)

    def unsent(self, entity: str) -> int:
        """Records of one type pending and not in a batch being sent."""
        return self.stats[entity].records - len(self._in_flight[entity])

    async def settle(
        self, delivered: Sequence[Pending], refused: Sequence[Refusal] = ()
    ) -> None:
        """Removes delivered versions and moves refused ones to dead letters.

        A version replaced while it was in flight is left alone: the newer
        version stays pending and is delivered after it.
        """
        now = time.time()

        async def remove(db: aiosqlite.Connection) -> None:
            restarted = self._restarted_chains(
                [*delivered, *(r.pending for r in refused)]
            )
            removed = await sql.settle(db, delivered, refused, now)
            # A refused version leaves Sense as it was: only deliveries count.
            await sql.remember_delivered(db, *fingerprints.of_delivered(delivered))
            if restarted:
                await db.executemany(sql.RESTART_CHAIN, restarted)
            # Pending figures and ledger change together, with no await in
            # between, so that a scrape never sees one without the other.
            for pending in delivered:
                self.ledger[pending.entity].delivered += 1
            for refusal in refused:
                self.ledger[refusal.pending.entity].dead_lettered += 1
            await self._count_removed(db, removed, {e for _, e, _ in restarted})

        await self._write(remove)
        self.release([*delivered, *(r.pending for r in refused)])
        self.removed.set()

    def release(self, claimed: Iterable[Pending]) -> None:
        """Forgets a claim without settling it (the records stay pending)."""
        for pending in claimed:
            self._in_flight[pending.entity].pop(pending.record_id, None)
            # Its changes now travel in the pending version, which keeps the
            # older acceptance time.
            self._next_accepted_at[pending.entity].pop(pending.record_id, None)

    def next_seq(self) -> int:
        """A version number above every one given out or stored so far."""
        return self._next_seq()

    def hold_beside(self, held: Callable[[], tuple[int, int]]) -> None:
        """Counts rows kept beside the records (rows, bytes) against the caps."""
        self._held_beside.append(held)

    def check_room(self, rows: int, size: int) -> None:
        """Raises OutboxFull if ``rows`` more rows of ``size`` bytes pass a cap."""
        beside = [held() for held in self._held_beside]
        held_rows = self.total_records() + sum(count for count, _ in beside)
        held_bytes = self.total_bytes() + sum(size for _, size in beside)
        if held_rows + rows > self.max_records or held_bytes + size > self.max_bytes:
            raise errors.OutboxFull(OUTBOX_FULL_RETRY_AFTER_S)

    def total_records(self) -> int:
        return sum(stats.records for stats in self.stats.values())

    def total_bytes(self) -> int:
        return sum(stats.bytes for stats in self.stats.values())

    async def check_writable(self) -> bool:
        """True if the writer task is alive and a trivial write commits."""
        if self._writer is None or not self._writer.alive:
            return False
        try:
            await self._write(lambda db: db.execute("SELECT 1"))
        except errors.OutboxError:
            return False
        return True

    async def refresh_stats(self) -> None:
        """Re-reads depth, size and age per entity type from the file.

        Catches rows added by another process, such as a dead-letter retry
        run from the command line while the daemon is serving.
        """
        await self._write(self._recount)

    async def _recount(self, db: aiosqlite.Connection) -> None:
        # Runs as a unit of the writer, like every change the figures track,
        # so that no change is counted twice or missed.
        rows = await db.execute_fetchall(sql.RECOUNT)
        seen = set()
        for entity, count, size, oldest in rows:
            seen.add(entity)
            stats = self.stats[entity]
            grew = count > stats.records
            stats.records, stats.bytes = int(count), int(size)
            stats.oldest_accepted_at = float(oldest)
            if grew:
                self.changed[entity].set()
        for entity, stats in self.stats.items():
            if entity not in seen:
                stats.records, stats.bytes, stats.oldest_accepted_at = 0, 0, None

    # -- dead letters ---------------------------------------------------

    async def dead_letters(self, entity: str | None = None) -> list[DeadLetter]:
        # Read by the writer, after every change already queued: the pending
        # figures change in the writer's unit, so a caller that saw a record
        # leave them also sees the dead letter it became.
        rows = await self._write(
            lambda db: db.execute_fetchall(sql.DEAD_LETTERS, (entity,))
        )
        return [_dead_letter(row) for row in rows]

    async def retry_dead_letters(self, entity: str | None = None) -> int:
        """Puts dead letters back in the outbox; returns how many went back.

        A dead letter whose record has a newer version pending is dropped
        instead, since that newer version supersedes it.
        """
        returned = await self._write(lambda db: sql.retry_dead_letters(db, entity))
        await self.refresh_stats()
        return int(returned)

    async def clear_fingerprints(self, entity: str | None = None) -> int:
        """Forgets what Sense was last sent, so that every next version goes.

        Returns how many fingerprints were cleared.
        """
        return int(await self._write(lambda db: sql.clear_fingerprints(db, entity)))

    async def purge_dead_letters(self, entity: str | None = None) -> int:
        """Deletes dead letters for good; returns how many were deleted."""

        async def purge(db: aiosqlite.Connection) -> int:
            cursor = await db.execute(sql.PURGE_DEAD_LETTERS, (entity,))
            return cursor.rowcount

        return int(await self._write(purge))

    # -- shared with rows kept beside the records --------------------------

    async def write(self, work: Work) -> Any:
        """Runs ``work`` in the writer's next group commit; returns once committed.

        Resume uploads and write-backs, kept in their own tables of the same
        file, write through here: the file keeps a single writer, their
        commits are grouped with the hooks', and they are ordered with them.
        """
        return await self._write(work)

    async def read(self, statement: str, args: tuple[Any, ...]) -> list[Any]:
        """Runs one query on the reading connection, beside the writer."""
        return await self._read(statement, args)

    # -- internals ------------------------------------------------------

    async def _connect(self, durability: str) -> None:
        await self._check_integrity()
        synchronous = "FULL" if durability == "full" else "NORMAL"
        connection = await aiosqlite.connect(self.path, isolation_level=None)
        self._connections.append(connection)
        await connection.execute("PRAGMA journal_mode=WAL")
        await connection.execute(f"PRAGMA synchronous={synchronous}")
        await connection.execute("PRAGMA busy_timeout=10000")
        schema = resources.files("relay").joinpath("schema.sql").read_text("utf-8")
        await connection.executescript(schema)
        await _add_kind_column(connection)
        self._reader = await aiosqlite.connect(self.path)
        self._connections.append(self._reader)
        await self._reader.execute("PRAGMA busy_timeout=10000")
        await self._load_state(connection)
        self._writer = GroupCommitWriter(connection, str(self.path))

    async def _check_integrity(self) -> None:
        found = await asyncio.to_thread(salvage.problems, self.path)
        if not found:
            return
        log.error("outbox_damaged", path=str(self.path), problems=found[:10])
        if not salvage.is_sqlite_file(self.path):
            raise errors.OutboxError(
                f"{self.path} is not an SQLite database ({found[0]}); relay will "
                "not touch it: check setting outbox.path"
            )
        report = await asyncio.to_thread(salvage.salvage, self.path)
        log.error(
            "outbox_salvaged",
            damaged_copy=str(report.damaged_copy),
            rows_kept=report.rows_kept,
            rows_unreadable=report.rows_unreadable,
        )

    async def _load_state(self, connection: aiosqlite.Connection) -> None:
        await self._recount(connection)
        for entity, stats in self.stats.items():
            self.ledger[entity].recovered = stats.records
        rows = await self._read(sql.HIGHEST_SEQ, ())
        self._last_seq = int(rows[0][0] or 0)

    async def _close(self) -> None:
        if self._writer is not None:
            await self._writer.close()
        for connection in self._connections:
            await connection.close()

    def _next_seq(self) -> int:
        # Versions must grow across restarts too: wall-clock nanoseconds,
        # never below the highest version already stored.
        self._last_seq = max(self._last_seq + 1, time.time_ns())
        return self._last_seq

    def _check_room(self, records: Sequence[Record]) -> None:
        self.check_room(len(records), sum(len(record.body) for record in records))

    async def _merge_patches(
        self, db: aiosqlite.Connection, rows: list[tuple[Any, ...]]
    ) -> list[tuple[Any, ...]]:
        """Folds each patch into the version it follows, if that is unsent.

        A patch after a pending whole entity becomes that entity with the
        patch applied (still sent whole); a patch after a pending patch
        becomes one patch. After a version in flight, it waits as it is.
        """
        if all(row[6] == "upsert" for row in rows):
            return rows
        latest: dict[tuple[str, str], tuple[str, bytes]] = {}
        merged = []
        for entity, record_id, seq, accepted_at, _, body, kind in rows:
            key = (entity, record_id)
            if kind == "patch":
                base = latest.get(key) or await self._unsent_version(db, *key)
                if base is not None:
                    kind, body = base[0], _merged(entity, base[1], body)
            latest[key] = (kind, body)
            merged.append((entity, record_id, seq, accepted_at, len(body), body, kind))
        return merged

    def _restarted_chains(
        self, settled: Sequence[Pending]
    ) -> list[tuple[float, str, str]]:
        """New acceptance times of records that changed while being sent.

        Once the version in flight is settled, the pending version is the
        oldest change of its record left, so its acceptance time counts.
        """
        restarted = []
        for pending in settled:
            accepted_at = self._next_accepted_at[pending.entity].pop(
                pending.record_id, None
            )
            if accepted_at is not None:
                restarted.append((accepted_at, pending.entity, pending.record_id))
        return restarted

    async def _replaced_and_unchanged(
        self, db: aiosqlite.Connection, rows: list[tuple[Any, ...]]
    ) -> tuple[dict[tuple[str, str], tuple[int, int]], set[tuple[str, str]]]:
        """The pending rows replaced, and the records Sense holds unchanged."""
        if not self.skip_unchanged:
            return await sql.pending_versions(db, rows), set()
        replaced, delivered = await sql.pending_and_delivered(db, rows)
        return replaced, fingerprints.unchanged(rows, replaced, delivered)

    async def _count_as_delivered(
        self,
        db: aiosqlite.Connection,
        rows: list[tuple[Any, ...]],
        unchanged: set[tuple[str, str]],
    ) -> None:
        # Sense holds this version already, so an older dead letter of the
        # record must not be replayed over it, as if it had been delivered.
        newest = {(r[0], r[1]): r[2] for r in rows if (r[0], r[1]) in unchanged}
        versions = [(entity, rid, seq) for (entity, rid), seq in newest.items()]
        await sql.drop_older_dead_letters(db, versions)

    async def _unsent_version(
        self, db: aiosqlite.Connection, entity: str, record_id: str
    ) -> tuple[str, bytes] | None:
        rows = list(await db.execute_fetchall(sql.PENDING_BODY, (entity, record_id)))
        if not rows:
            return None
        seq, body, kind = rows[0]
        if self._in_flight[entity].get(record_id) == seq:
            return None
        return str(kind), bytes(body)

    def _count_added(
        self,
        rows: list[tuple[Any, ...]],
        replaced: dict[tuple[str, str], tuple[int, int]],
        unchanged: set[tuple[str, str]],
    ) -> None:
        versions: dict[tuple[str, str], int] = defaultdict(int)
        newest: dict[tuple[str, str], tuple[float, int]] = {}
        for entity, record_id, _, accepted_at, size, _, _ in rows:
            versions[(entity, record_id)] += 1
            newest[(entity, record_id)] = (accepted_at, size)
        for key, count in versions.items():
            entity, record_id = key
            if key in unchanged:
                self._count_unchanged(entity, count)
                continue
            accepted_at, size = newest[key]
            self._count_version(
                entity, record_id, accepted_at, size, replaced.get(key), count - 1
            )

    def _count_version(
        self,
        entity: str,
        record_id: str,
        accepted_at: float,
        size: int,
        replaced: tuple[int, int] | None,
        superseded_in_commit: int,
    ) -> None:
        stats = self.stats[entity]
        coalesced = superseded_in_commit
        if replaced is None:
            stats.records += 1
            stats.bytes += size
            if stats.oldest_accepted_at is None:
                stats.oldest_accepted_at = accepted_at
        else:
            replaced_seq, replaced_size = replaced
            stats.bytes += size - replaced_size
            # A version in flight is not lost: it is delivered, then this one.
            if self._in_flight[entity].get(record_id) != replaced_seq:
                coalesced += 1
            else:
                self._next_accepted_at[entity].setdefault(record_id, accepted_at)
        self.ledger[entity].accepted += 1 + superseded_in_commit
        self.ledger[entity].coalesced += coalesced

    def _count_unchanged(self, entity: str, versions: int) -> None:
        # The newest version is not stored; any older one in the same commit
        # was replaced by it, as if it had been pending.
        ledger = self.ledger[entity]
        ledger.accepted += versions
        ledger.coalesced += versions - 1
        ledger.unchanged += 1

    async def _count_removed(
        self,
        db: aiosqlite.Connection,
        removed: list[tuple[str, int]],
        touched: set[str],
    ) -> None:
        for entity, size in removed:
            stats = self.stats[entity]
            stats.records -= 1
            stats.bytes -= size
            touched.add(entity)
        for entity in touched:
            rows = await db.execute_fetchall(sql.OLDEST, (entity,))
            [(oldest,)] = rows
            self.stats[entity].oldest_accepted_at = oldest

    async def _read(self, statement: str, args: tuple[Any, ...]) -> list[Any]:
        assert self._reader is not None, "the outbox is closed"
        # One call on the connection's thread: with execute and fetchall as
        # two, another read could run between them inside the first one's
        # read transaction and see the file as it was before later commits.
        try:
            return list(await self._reader.execute_fetchall(statement, args))
        except sqlite3.Error as exc:
            raise errors.OutboxError(f"cannot read outbox {self.path}: {exc}") from exc

    async def _write(self, work: Work) -> Any:
        if self._writer is None:
            raise errors.OutboxError(f"outbox {self.path} is not open")
        return await self._writer.submit(work)


def seq_before(accepted_at: float) -> int:
    """The seqs of versions accepted before ``accepted_at`` are below this."""
    return int(accepted_at * 1e9) - ORDER_MARGIN_NS


def _dead_letter(row: Any) -> DeadLetter:
    entity, record_id, seq, failed_at, status, reason, body, kind = row
    return DeadLetter(
        entity, record_id, seq, failed_at, status, reason, bytes(body), kind
    )


async def _add_kind_column(db: aiosqlite.Connection) -> None:
    # Outbox files written before patches existed lack the column.
    for table in ("outbox", "dead_letters"):
        columns = [
            row[1] for row in await db.execute_fetchall(f"PRAGMA table_info({table})")
        ]
        if "kind" not in columns:
            await db.execute(
                f"ALTER TABLE {table} ADD COLUMN kind TEXT NOT NULL DEFAULT 'upsert'"
            )


def _without(
    rows: list[tuple[Any, ...]], records: set[tuple[str, str]]
) -> list[tuple[Any, ...]]:
    return [row for row in rows if (row[0], row[1]) not in records]


def _merged(entity: str, base: bytes, patch: bytes) -> bytes:
    fields = {**orjson.loads(base), **orjson.loads(patch)}
    return orjson.dumps(entities.in_schema_order(entity, fields))


def body_is_readable(pending: Pending) -> bool:
    """True if a stored body still parses as the record it claims to be."""
    try:
        fields = orjson.loads(pending.body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(fields, dict) and fields.get("id") == pending.record_id
