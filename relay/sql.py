"""Every SQL statement the outbox runs, with the code that binds it.

The schema itself is in ``schema.sql``. Functions here run inside a writer
unit (relay.writer): they never commit.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import aiosqlite

if TYPE_CHECKING:
    from relay.outbox import Pending, Refusal

# SQLite allows 32,766 bound parameters per statement; a row binds at most seven.
ROWS_PER_STATEMENT = 1_000

# No RETURNING: without it the whole multi-row statement runs in a single
# step, while RETURNING hands rows back one step each, and Python's sqlite3
# re-takes the GIL after every step, stalling the event loop.
UPSERT = """
INSERT INTO outbox (entity, record_id, seq, accepted_at, size, body, kind)
VALUES {values}
ON CONFLICT (entity, record_id) DO UPDATE SET
    seq = excluded.seq,
    size = excluded.size,
    body = excluded.body,
    kind = excluded.kind
"""
PENDING_BODY = """
SELECT seq, body, kind FROM outbox WHERE entity = ? AND record_id = ?
"""
REPLACED = """
SELECT record_id, seq, size FROM outbox
WHERE entity = ? AND record_id IN ({marks})
"""
# ?1 is the entity path, ?2 onwards the record ids, bound once for both.
PENDING_OR_DELIVERED = """
SELECT record_id, seq, size, NULL FROM outbox
WHERE entity = ?1 AND record_id IN ({marks})
UNION ALL
SELECT record_id, NULL, NULL, digest FROM fingerprints
WHERE entity = ?1 AND record_id IN ({marks})
"""
REMEMBER_DELIVERED = """
INSERT INTO fingerprints (entity, record_id, digest) VALUES {values}
ON CONFLICT (entity, record_id) DO UPDATE SET digest = excluded.digest
"""
FORGET_DELIVERED = "DELETE FROM fingerprints WHERE entity = ? AND record_id = ?"
# ?1 is an entity path, or NULL for every entity type.
CLEAR_FINGERPRINTS = "DELETE FROM fingerprints WHERE ?1 IS NULL OR entity = ?1"
DROP_OLDER_DEAD_LETTER = (
    "DELETE FROM dead_letters WHERE entity = ? AND record_id = ? AND seq < ?"
)

# Written as a join so that each version is found through the unique index;
# a plain "(entity, record_id, seq) IN (VALUES ...)" scans the whole table.
SETTLE = """
DELETE FROM outbox WHERE rowid IN (
    SELECT outbox.rowid FROM (VALUES {values}) AS settled
    JOIN outbox ON outbox.entity = settled.column1
        AND outbox.record_id = settled.column2
        AND outbox.seq = settled.column3
)
RETURNING entity, size
"""

CLAIM = """
SELECT record_id, seq, body, kind FROM outbox WHERE entity = ?
ORDER BY accepted_at LIMIT ?
"""
# Only versions accepted before ?2; the caller checks each version's seq too.
CLAIM_BEFORE = """
SELECT record_id, seq, body, kind FROM outbox WHERE entity = ?1 AND accepted_at < ?2
ORDER BY accepted_at LIMIT ?3
"""
RESTART_CHAIN = "UPDATE outbox SET accepted_at = ? WHERE entity = ? AND record_id = ?"
OLDEST = "SELECT min(accepted_at) FROM outbox WHERE entity = ?"
RECOUNT = """
SELECT entity, count(*), total(size), min(accepted_at) FROM outbox
GROUP BY entity
"""
HIGHEST_SEQ = """
SELECT max(seq) FROM (
    SELECT seq FROM outbox UNION ALL SELECT seq FROM dead_letters
    UNION ALL SELECT seq FROM resumes UNION ALL SELECT seq FROM resume_dead_letters
)
"""
# ?1 is an entity path, or NULL for every entity type.
DEAD_LETTERS = """
SELECT entity, record_id, seq, failed_at, status, reason, body, kind
FROM dead_letters
WHERE ?1 IS NULL OR entity = ?1 ORDER BY failed_at
"""
PURGE_DEAD_LETTERS = "DELETE FROM dead_letters WHERE ?1 IS NULL OR entity = ?1"


async def insert(db: aiosqlite.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Stores rows, each replacing the pending version of its record."""
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        values = ",".join(["(?,?,?,?,?,?,?)"] * len(chunk))
        args = [value for row in chunk for value in row]
        await db.execute(UPSERT.format(values=values), args)


async def pending_versions(
    db: aiosqlite.Connection, rows: list[tuple[Any, ...]]
) -> dict[tuple[str, str], tuple[int, int]]:
    """The (seq, size) of each pending row that rows would replace."""
    found: dict[tuple[str, str], tuple[int, int]] = {}
    for entity, chunk in _ids_by_entity(rows):
        sql = REPLACED.format(marks=",".join("?" * len(chunk)))
        for record_id, seq, size in await db.execute_fetchall(sql, [entity, *chunk]):
            found[(entity, record_id)] = (seq, size)
    return found


async def pending_and_delivered(
    db: aiosqlite.Connection, rows: list[tuple[Any, ...]]
) -> tuple[dict[tuple[str, str], tuple[int, int]], dict[tuple[str, str], bytes]]:
    """The pending versions rows replace, and the fingerprints of their records.

    One statement reads both, so that checking fingerprints costs the ingest
    no extra round trip to the SQLite thread.
    """
    pending: dict[tuple[str, str], tuple[int, int]] = {}
    delivered: dict[tuple[str, str], bytes] = {}
    for entity, chunk in _ids_by_entity(rows):
        marks = ",".join(f"?{n}" for n in range(2, len(chunk) + 2))
        sql = PENDING_OR_DELIVERED.format(marks=marks)
        for record_id, seq, size, digest in await db.execute_fetchall(
            sql, [entity, *chunk]
        ):
            if digest is None:
                pending[(entity, record_id)] = (seq, size)
            else:
                delivered[(entity, record_id)] = bytes(digest)
    return pending, delivered


def _ids_by_entity(rows: list[tuple[Any, ...]]) -> Iterator[tuple[str, list[str]]]:
    ids_by_entity: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        ids_by_entity[row[0]].add(row[1])
    for entity, id_set in ids_by_entity.items():
        ids = list(id_set)
        for start in range(0, len(ids), ROWS_PER_STATEMENT):
            yield entity, ids[start : start + ROWS_PER_STATEMENT]


async def settle(
    db: aiosqlite.Connection,
    delivered: Sequence[Pending],
    refused: Sequence[Refusal],
    now: float,
) -> list[tuple[str, int]]:
    removed: list[tuple[str, int]] = []
    settled = [*delivered, *(r.pending for r in refused)]
    for start in range(0, len(settled), ROWS_PER_STATEMENT):
        chunk = settled[start : start + ROWS_PER_STATEMENT]
        values = ",".join(["(?,?,?)"] * len(chunk))
        args = [v for p in chunk for v in (p.entity, p.record_id, p.seq)]
        async with db.execute(SETTLE.format(values=values), args) as cursor:
            removed.extend((str(e), int(size)) for e, size in await cursor.fetchall())
    await db.executemany(
        DROP_OLDER_DEAD_LETTER, [(p.entity, p.record_id, p.seq) for p in delivered]
    )
    await db.executemany(
        "INSERT INTO dead_letters "
        "(entity, record_id, seq, failed_at, status, reason, body, kind) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (entity, record_id) DO UPDATE SET "
        "seq = excluded.seq, failed_at = excluded.failed_at, "
        "status = excluded.status, reason = excluded.reason, body = excluded.body, "
        "kind = excluded.kind WHERE excluded.seq > dead_letters.seq",
        [
            (
                r.pending.entity,
                r.pending.record_id,
                r.pending.seq,
                now,
                r.status,
                r.reason,
                r.pending.body,
                r.pending.kind,
            )
            for r in refused
        ],
    )
    return removed


async def retry_dead_letters(db: aiosqlite.Connection, entity: str | None) -> int:
    condition, args = ("entity = ?", (entity,)) if entity else ("true", ())
    # A pending row for the same record is a newer version: it wins.
    cursor = await db.execute(
        "INSERT INTO outbox (entity, record_id, seq, accepted_at, size, body, kind) "
        "SELECT entity, record_id, seq, ?, length(body), body, kind FROM dead_letters "
        f"WHERE {condition} ON CONFLICT (entity, record_id) DO NOTHING",
        (time.time(), *args),
    )
    moved = cursor.rowcount
    await db.execute(f"DELETE FROM dead_letters WHERE {condition}", args)
    return moved


# -- resume uploads -----------------------------------------------------

UPLOAD_VERSION = """
SELECT seq, size FROM resumes WHERE candidate_id = ? AND resume_id = ?
"""
# A replacement takes the newer acceptance time too: it must wait for every
# change to its candidate accepted before it, not only before the first file.
UPSERT_UPLOAD = """
INSERT INTO resumes
    (candidate_id, resume_id, seq, accepted_at, size, fields, file)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (candidate_id, resume_id) DO UPDATE SET
    seq = excluded.seq,
    accepted_at = excluded.accepted_at,
    size = excluded.size,
    fields = excluded.fields,
    file = excluded.file
"""
# An upload waits while its candidate has a version in the outbox (pending
# or being sent) accepted no later than the upload: Sense needs the
# candidate before it can take the file.
CLAIMABLE_UPLOADS = """
SELECT candidate_id, resume_id FROM resumes AS upload
WHERE NOT EXISTS (
    SELECT 1 FROM outbox
    WHERE outbox.entity = 'candidates'
        AND outbox.record_id = upload.candidate_id
        AND outbox.accepted_at <= upload.accepted_at
)
ORDER BY accepted_at LIMIT ?
"""
UPLOAD = """
SELECT seq, fields, file FROM resumes WHERE candidate_id = ? AND resume_id = ?
"""
SETTLE_UPLOAD = """
DELETE FROM resumes WHERE candidate_id = ? AND resume_id = ? AND seq = ?
RETURNING size
"""
DROP_OLDER_DEAD_UPLOAD = """
DELETE FROM resume_dead_letters
WHERE candidate_id = ? AND resume_id = ? AND seq < ?
"""
DEAD_LETTER_UPLOAD = """
INSERT INTO resume_dead_letters
    (candidate_id, resume_id, seq, failed_at, status, reason, fields, file)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (candidate_id, resume_id) DO UPDATE SET
    seq = excluded.seq,
    failed_at = excluded.failed_at,
    status = excluded.status,
    reason = excluded.reason,
    fields = excluded.fields,
    file = excluded.file
WHERE excluded.seq > resume_dead_letters.seq
"""
RECOUNT_UPLOADS = "SELECT count(*), total(size), min(accepted_at) FROM resumes"
OLDEST_UPLOAD = "SELECT min(accepted_at) FROM resumes"
DEAD_UPLOADS = """
SELECT candidate_id, resume_id, seq, failed_at, status, reason, fields, file
FROM resume_dead_letters ORDER BY failed_at
"""
# A pending upload with the same key is newer: it wins over the replay.
RETRY_DEAD_UPLOADS = """
INSERT INTO resumes
    (candidate_id, resume_id, seq, accepted_at, size, fields, file)
SELECT candidate_id, resume_id, seq, ?, length(file), fields, file
FROM resume_dead_letters WHERE true
ON CONFLICT (candidate_id, resume_id) DO NOTHING
"""
PURGE_DEAD_UPLOADS = "DELETE FROM resume_dead_letters"


# -- write-backs (relay.inbox) -------------------------------------------

WRITEBACK_COLUMNS = """
id, seq, type, subject, received_at, body, state, attempts, next_attempt_at,
status, reason, entity_id, settled_at
"""
WRITEBACK = f"SELECT {WRITEBACK_COLUMNS} FROM writebacks WHERE id = ?"
# A new seq is one past the highest, so the order of receipt survives restarts.
INSERT_WRITEBACK = """
INSERT INTO writebacks
    (id, seq, type, subject, received_at, body, next_attempt_at)
VALUES (?1, (SELECT coalesce(max(seq), 0) + 1 FROM writebacks), ?2, ?3, ?4, ?5, ?4)
ON CONFLICT (id) DO NOTHING
"""
# Only the oldest pending write-back of each subject may go: a later one
# waits until the ATS has the earlier one (or it is dead-lettered).
DUE_WRITEBACKS = f"""
SELECT {WRITEBACK_COLUMNS} FROM writebacks AS w
WHERE state = 'pending' AND next_attempt_at <= ?1
    AND seq = (
        SELECT min(seq) FROM writebacks
        WHERE state = 'pending' AND subject = w.subject
    )
ORDER BY seq LIMIT ?2
"""
NEXT_ATTEMPT_AT = "SELECT min(next_attempt_at) FROM writebacks WHERE state = 'pending'"
PENDING_WRITEBACKS = """
SELECT count(*), min(received_at) FROM writebacks WHERE state = 'pending'
"""
DEAD_WRITEBACKS = "SELECT count(*) FROM writebacks WHERE state = 'dead_lettered'"
# ?1 is a state, or NULL for every state.
LIST_WRITEBACKS = f"""
SELECT {WRITEBACK_COLUMNS} FROM writebacks
WHERE ?1 IS NULL OR state = ?1 ORDER BY seq
"""
SETTLE_WRITEBACK = """
UPDATE writebacks SET state = ?2, attempts = attempts + 1, status = ?3,
    reason = ?4, entity_id = ?5, settled_at = ?6
WHERE id = ?1 AND state = 'pending'
"""
RETRY_WRITEBACK = """
UPDATE writebacks SET attempts = attempts + 1, status = ?2, reason = ?3,
    next_attempt_at = ?4
WHERE id = ?1 AND state = 'pending'
"""
# A replayed write-back goes after whatever is pending for its subject.
REPLAY_WRITEBACK = """
UPDATE writebacks SET state = 'pending', attempts = 0, next_attempt_at = ?2,
    status = NULL, reason = NULL, settled_at = NULL,
    seq = (SELECT coalesce(max(seq), 0) + 1 FROM writebacks)
WHERE id = ?1 AND state != 'delivered'
"""
PURGE_WRITEBACKS = "DELETE FROM writebacks WHERE state = ?1 AND settled_at < ?2"


async def remember_delivered(
    db: aiosqlite.Connection,
    fingerprints: list[tuple[str, str, bytes]],
    unknown: list[tuple[str, str]],
) -> None:
    """Stores the fingerprints of delivered versions; forgets the ``unknown``."""
    for start in range(0, len(fingerprints), ROWS_PER_STATEMENT):
        chunk = fingerprints[start : start + ROWS_PER_STATEMENT]
        values = ",".join(["(?,?,?)"] * len(chunk))
        args = [value for row in chunk for value in row]
        await db.execute(REMEMBER_DELIVERED.format(values=values), args)
    if unknown:
        await db.executemany(FORGET_DELIVERED, unknown)


async def drop_older_dead_letters(
    db: aiosqlite.Connection, versions: list[tuple[str, str, int]]
) -> None:
    """Deletes dead letters older than these (entity, record id, seq) versions."""
    await db.executemany(DROP_OLDER_DEAD_LETTER, versions)


async def clear_fingerprints(db: aiosqlite.Connection, entity: str | None) -> int:
    cursor = await db.execute(CLEAR_FINGERPRINTS, (entity,))
    return cursor.rowcount
