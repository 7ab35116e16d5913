"""Group commit: many writers, one transaction, one fsync.

Each caller hands over a unit of work and waits; a single task runs every
unit that has queued up since its last commit inside one transaction, then
commits once. Under concurrent hooks, throughput grows with the queue
instead of collapsing to one fsync per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiosqlite
import structlog

from relay import errors

log = structlog.get_logger("relay.writer")

Work = Callable[[aiosqlite.Connection], Awaitable[Any]]


@dataclass(slots=True)
class _Unit:
    work: Work
    done: asyncio.Future[Any] = field(default_factory=asyncio.Future)


class GroupCommitWriter:
    """Owns the connection every outbox write goes through."""

    def __init__(self, connection: aiosqlite.Connection, name: str) -> None:
        self._connection = connection
        self._name = name
        self._queue: asyncio.Queue[_Unit] = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name=f"writer-{name}")

    @property
    def alive(self) -> bool:
        return not self._task.done()

    async def submit(self, work: Work) -> Any:
        """Runs ``work`` in a transaction; returns its result once committed."""
        if not self.alive:
            raise errors.OutboxError(f"outbox {self._name} is closed")
        unit = _Unit(work)
        self._queue.put_nowait(unit)
        return await unit.done

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        for unit in self._drain():
            unit.done.set_exception(errors.OutboxError(f"outbox {self._name} closed"))

    async def _run(self) -> None:
        while True:
            units = [await self._queue.get(), *self._drain()]
            await self._commit(units)

    def _drain(self) -> list[_Unit]:
        units = []
        while not self._queue.empty():
            units.append(self._queue.get_nowait())
        return units

    async def _commit(self, units: list[_Unit]) -> None:
        db = self._connection
        try:
            await db.execute("BEGIN IMMEDIATE")
            results = [await unit.work(db) for unit in units]
            await db.execute("COMMIT")
        except Exception as exc:  # every waiter must hear of the failure
            log.error("outbox_commit_failed", outbox=self._name, error=str(exc))
            with contextlib.suppress(sqlite3.Error):
                await db.execute("ROLLBACK")
            failure = errors.OutboxError(f"cannot write outbox {self._name}: {exc}")
            _settle(units, exception=failure)
            return
        _settle(units, results=results)


def _settle(
    units: list[_Unit],
    results: list[Any] | None = None,
    exception: BaseException | None = None,
) -> None:
    for index, unit in enumerate(units):
        if unit.done.done():
            continue  # the caller gave up waiting
        if exception is not None:
            unit.done.set_exception(exception)
        else:
            unit.done.set_result(results[index] if results else None)
