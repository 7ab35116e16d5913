"""Where a sync has got to: its watermark, checkpoints and refused rows.

A small SQLite file of its own, beside the outbox, so that a sync can run
while the daemon serves and a damaged state never touches the outbox. Each
checkpoint moves a file's offset past rows Sense has settled and records
their figures and problems in one transaction: after a crash the figures
and the offset always agree.
"""

from __future__ import annotations

import contextlib
import fcntl
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relay import errors

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY,
    source      TEXT NOT NULL,
    -- The watermark: when the sync first started, kept across resumptions.
    started_at  REAL NOT NULL,
    finished_at REAL,
    -- "running" until every file is done, then "finished" or "abandoned".
    outcome     TEXT NOT NULL DEFAULT 'running'
);
CREATE TABLE IF NOT EXISTS files (
    run_id   INTEGER NOT NULL REFERENCES runs (id),
    position INTEGER NOT NULL,
    entity   TEXT    NOT NULL,
    path     TEXT    NOT NULL,
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    "offset" INTEGER NOT NULL DEFAULT 0,
    line     INTEGER NOT NULL DEFAULT 0,
    rows     INTEGER NOT NULL DEFAULT 0,
    sent     INTEGER NOT NULL DEFAULT 0,
    invalid  INTEGER NOT NULL DEFAULT 0,
    refused  INTEGER NOT NULL DEFAULT 0,
    done     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, path)
);
CREATE TABLE IF NOT EXISTS problems (
    run_id    INTEGER NOT NULL REFERENCES runs (id),
    path      TEXT    NOT NULL,
    line      INTEGER NOT NULL,
    record_id TEXT,
    field     TEXT,
    reason    TEXT    NOT NULL,
    -- "relay" when the row broke Sense's schema, "sense" when Sense refused it.
    found_by  TEXT    NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One export file of a sync, and how far the sync has got in it."""

    entity: str
    path: Path
    size: int
    mtime_ns: int
    offset: int = 0
    line: int = 0
    rows: int = 0
    sent: int = 0
    invalid: int = 0
    refused: int = 0
    done: bool = False

    @classmethod
    def at(cls, entity: str, path: Path) -> SourceFile:
        stat = path.stat()
        return cls(entity, path, stat.st_size, stat.st_mtime_ns)


@dataclass(frozen=True, slots=True)
class RowProblem:
    """A row that did not reach Sense: which file, line and id, and why."""

    path: str
    line: int
    record_id: str | None
    field: str | None
    reason: str
    found_by: str


@dataclass(frozen=True, slots=True)
class Progress:
    """What one checkpoint adds to a file's figures."""

    offset: int
    line: int
    rows: int
    sent: int
    invalid: int
    refused: int
    problems: Sequence[RowProblem]


@dataclass(frozen=True, slots=True)
class Run:
    id: int
    source: str
    started_at: float
    finished_at: float | None
    outcome: str
    files: list[SourceFile]


class SyncState:
    """The state file. Use ``with SyncState.open(path) as state``."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self.path = path

    @classmethod
    @contextlib.contextmanager
    def open(cls, path: Path) -> Iterator[SyncState]:
        try:
            db = sqlite3.connect(path, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=10000")
            db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise errors.OutboxError(f"cannot open sync state {path}: {exc}") from exc
        try:
            yield cls(db, path)
        finally:
            db.close()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Holds the state for one sync; SyncBusy if another holds it."""
        with self.lock_path.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SyncBusy(
                    f"another sync is running with state {self.path}"
                ) from None
            yield

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def is_locked(self) -> bool:
        if not self.lock_path.exists():
            return False
        with self.lock_path.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            return False

    def unfinished(self, source: str) -> Run | None:
        row = self._db.execute(
            "SELECT id FROM runs WHERE source = ? AND outcome = 'running' "
            "ORDER BY id DESC LIMIT 1",
            (source,),
        ).fetchone()
        return self.run(int(row[0])) if row else None

    def latest(self) -> Run | None:
        row = self._db.execute("SELECT max(id) FROM runs").fetchone()
        return self.run(int(row[0])) if row and row[0] is not None else None

    def last_finished(self) -> Run | None:
        row = self._db.execute(
            "SELECT max(id) FROM runs WHERE outcome = 'finished'"
        ).fetchone()
        return self.run(int(row[0])) if row and row[0] is not None else None

    def run(self, run_id: int) -> Run:
        source, started_at, finished_at, outcome = self._db.execute(
            "SELECT source, started_at, finished_at, outcome FROM runs WHERE id = ?",
            (run_id,),
        ).fetchone()
        rows = self._db.execute(
            'SELECT entity, path, size, mtime_ns, "offset", line, rows, sent, '
            "invalid, refused, done FROM files WHERE run_id = ? ORDER BY position",
            (run_id,),
        )
        files = [_source_file(row) for row in rows]
        return Run(run_id, source, started_at, finished_at, outcome, files)

    def start(self, source: str, files: Sequence[SourceFile]) -> Run:
        """Records a new run starting now: its start time is the watermark."""
        with self._transaction():
            cursor = self._db.execute(
                "INSERT INTO runs (source, started_at) VALUES (?, ?)",
                (source, time.time()),
            )
            run_id = int(cursor.lastrowid or 0)
            self._db.executemany(
                "INSERT INTO files (run_id, position, entity, path, size, mtime_ns) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (run_id, position, f.entity, str(f.path), f.size, f.mtime_ns)
                    for position, f in enumerate(files)
                ],
            )
        return self.run(run_id)

    def checkpoint(self, run_id: int, path: Path, progress: Progress) -> None:
        with self._transaction():
            self._db.execute(
                'UPDATE files SET "offset" = ?, line = ?, rows = rows + ?, '
                "sent = sent + ?, invalid = invalid + ?, refused = refused + ? "
                "WHERE run_id = ? AND path = ?",
                (
                    progress.offset,
                    progress.line,
                    progress.rows,
                    progress.sent,
                    progress.invalid,
                    progress.refused,
                    run_id,
                    str(path),
                ),
            )
            self._db.executemany(
                "INSERT INTO problems VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (run_id, p.path, p.line, p.record_id, p.field, p.reason, p.found_by)
                    for p in progress.problems
                ],
            )

    def file_done(self, run_id: int, path: Path) -> None:
        self._db.execute(
            "UPDATE files SET done = 1 WHERE run_id = ? AND path = ?",
            (run_id, str(path)),
        )

    def finish(self, run_id: int, outcome: str = "finished") -> None:
        self._db.execute(
            "UPDATE runs SET finished_at = ?, outcome = ? WHERE id = ?",
            (time.time(), outcome, run_id),
        )

    def problems(self, run_id: int) -> list[RowProblem]:
        rows = self._db.execute(
            "SELECT path, line, record_id, field, reason, found_by FROM problems "
            "WHERE run_id = ? ORDER BY rowid",
            (run_id,),
        )
        return [RowProblem(*row) for row in rows]

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


def _source_file(row: sqlite3.Row) -> SourceFile:
    fields: dict[str, Any] = dict(row)
    fields.update(path=Path(fields["path"]), done=bool(fields["done"]))
    return SourceFile(**fields)


class SyncBusy(errors.RelayError):
    """Another sync holds the state file."""
