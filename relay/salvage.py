"""Recovering what can be read from a damaged outbox file.

A damaged page must not hold back the records on every other page: the
damaged file is moved aside (kept for inspection, never deleted) and every
row that can still be read is copied into a fresh outbox at the same path.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

SQLITE_HEADER = b"SQLite format 3\x00"
TABLES = ("outbox", "dead_letters", "resumes", "resume_dead_letters", "writebacks")
ROWS_PER_READ = 500


@dataclass(frozen=True)
class Report:
    """What the salvage kept and where the damaged file went.

    ``rows_unreadable`` counts row slots that could not be read: an upper
    bound on the rows lost, since some slots may never have held a row.
    """

    damaged_copy: Path
    rows_kept: int
    rows_unreadable: int


def problems(path: Path) -> list[str]:
    """Returns SQLite's integrity complaints about ``path`` (empty if sound)."""
    if not path.exists():
        return []
    try:
        with contextlib.closing(sqlite3.connect(path)) as db:
            found = [row[0] for row in db.execute("PRAGMA quick_check")]
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    return [] if found == ["ok"] else found


def is_sqlite_file(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(len(SQLITE_HEADER)) == SQLITE_HEADER


def salvage(path: Path) -> Report:
    """Moves a damaged outbox aside and copies its readable rows back."""
    damaged = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            os.replace(source, Path(f"{damaged}{suffix}"))

    schema = resources.files("relay").joinpath("schema.sql").read_text("utf-8")
    kept = lost = 0
    with (
        contextlib.closing(sqlite3.connect(damaged)) as source_db,
        contextlib.closing(sqlite3.connect(path)) as target_db,
    ):
        target_db.executescript(schema)
        for table in TABLES:
            table_kept, table_lost = _copy_table(source_db, target_db, table)
            kept, lost = kept + table_kept, lost + table_lost
        target_db.commit()
    return Report(damaged, kept, lost)


def _copy_table(
    source: sqlite3.Connection, target: sqlite3.Connection, table: str
) -> tuple[int, int]:
    highest = _highest_rowid(source, table)
    if highest is None:
        return 0, 0
    kept = lost = 0
    for start in range(0, highest + 1, ROWS_PER_READ):
        rows, unreadable = _read_range(source, table, start, start + ROWS_PER_READ)
        if rows:
            marks = ",".join("?" * len(rows[0]))
            target.executemany(f"INSERT OR IGNORE INTO {table} VALUES ({marks})", rows)
        kept, lost = kept + len(rows), lost + unreadable
    return kept, lost


def _highest_rowid(source: sqlite3.Connection, table: str) -> int | None:
    try:
        row = source.execute(f"SELECT max(rowid) FROM {table}").fetchone()
    except sqlite3.DatabaseError:
        return None
    return int(row[0]) if row and row[0] is not None else None


def _read_range(
    source: sqlite3.Connection, table: str, start: int, end: int
) -> tuple[list[tuple[object, ...]], int]:
    """Reads rows start..end-1, row by row once a page in the range fails."""
    query = f"SELECT * FROM {table} WHERE rowid >= ? AND rowid < ?"
    try:
        return source.execute(query, (start, end)).fetchall(), 0
    except sqlite3.DatabaseError:
        pass
    rows: list[tuple[object, ...]] = []
    unreadable = 0
    for rowid in range(start, end):
        try:
            rows.extend(
                source.execute(f"SELECT * FROM {table} WHERE rowid = ?", (rowid,))
            )
        except sqlite3.DatabaseError:
            unreadable += 1
    return rows, unreadable
