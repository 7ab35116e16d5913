"""How far a sync has got, shown to whoever is watching.

On a terminal, a progress bar per file (records, rate, time left); elsewhere
(a pipe, a CI log, systemd) a plain ``sync_progress`` log line now and then.
Time left is judged by bytes read, since a file's row count is unknown
until it has been read to the end.
"""

from __future__ import annotations

import sys
import time
from typing import Protocol

import structlog
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from relay.syncstate import SourceFile

LOG_EVERY_S = 10.0

log = structlog.get_logger("relay.sync")


class Reporter(Protocol):
    def start(self, file: SourceFile) -> None: ...

    def advance(self, offset: int, rows: int) -> None:
        """The file is settled up to byte ``offset``, ``rows`` rows so far."""

    def finish(self) -> None: ...


def reporter() -> Reporter:
    """A progress bar on a terminal, log lines otherwise."""
    if sys.stderr.isatty():
        return BarReporter(Console(stderr=True))
    return LogReporter()


class _Rate:
    """Rows settled per second since this process took up the file."""

    def __init__(self, rows: int) -> None:
        self._first_rows = rows
        self.since = time.monotonic()

    def per_second(self, rows: int) -> float:
        elapsed = time.monotonic() - self.since
        return (rows - self._first_rows) / elapsed if elapsed > 0 else 0.0


class BarReporter:
    def __init__(self, console: Console) -> None:
        self._bars = Progress(
            TextColumn("{task.description:<16}"),
            BarColumn(),
            TextColumn("{task.fields[rows]:>11,} records"),
            TextColumn("{task.fields[rate]:>8,.0f}/s"),
            TimeRemainingColumn(),
            console=console,
        )
        self._task: TaskID | None = None
        self._rate = _Rate(0)

    def start(self, file: SourceFile) -> None:
        if self._task is None:
            self._bars.start()
        self._rate = _Rate(file.rows)
        self._task = self._bars.add_task(
            file.entity,
            total=file.size,
            completed=file.offset,
            rows=file.rows,
            rate=0.0,
        )

    def advance(self, offset: int, rows: int) -> None:
        if self._task is not None:
            rate = self._rate.per_second(rows)
            self._bars.update(self._task, completed=offset, rows=rows, rate=rate)

    def finish(self) -> None:
        self._bars.stop()


class LogReporter:
    def __init__(self) -> None:
        self._file: SourceFile | None = None
        self._rate = _Rate(0)
        self._logged_at = 0.0

    def start(self, file: SourceFile) -> None:
        self._file = file
        self._rate = _Rate(file.rows)
        self._logged_at = time.monotonic()
        log.info(
            "sync_file_started",
            entity=file.entity,
            path=str(file.path),
            resumed_at_line=file.line,
        )

    def advance(self, offset: int, rows: int) -> None:
        now = time.monotonic()
        if self._file is None or now - self._logged_at < LOG_EVERY_S:
            return
        self._logged_at = now
        rate = self._rate.per_second(rows)
        left = self._file.size - offset
        done = offset - self._file.offset
        elapsed = now - self._rate.since
        log.info(
            "sync_progress",
            entity=self._file.entity,
            rows=rows,
            rows_per_s=round(rate),
            percent=round(100 * offset / self._file.size, 1)
            if self._file.size
            else 100,
            eta_s=round(left * elapsed / done) if done else None,
        )

    def finish(self) -> None:
        self._file = None
