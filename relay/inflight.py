"""Several deliveries in flight at once, as the flushers and the uploader send.

Packing or settling one request overlaps the round trip of another. A
delivery that crashes stops the loop and is raised from it, so that the
daemon's watch on the task notices: a crash must be loud.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def deliver_until(
    stopping: asyncio.Event,
    limit: int,
    next_item: Callable[[], Awaitable[T | None]],
    deliver: Callable[[T], Awaitable[None]],
) -> None:
    """Delivers what ``next_item`` gives, up to ``limit`` at a time.

    ``next_item`` is called once a slot is free, and returns None when
    nothing should go yet (after waiting as long as it sees fit). ``deliver``
    must wake ``next_item`` when it ends, so that a crash is seen promptly.
    Returns once ``stopping`` is set and the deliveries in flight are done.
    """
    slots = asyncio.Semaphore(limit)
    sending: set[asyncio.Task[None]] = set()
    failures: list[Exception] = []

    async def in_slot(item: T) -> None:
        try:
            await deliver(item)
        except Exception as exc:
            failures.append(exc)
        finally:
            slots.release()

    try:
        while not stopping.is_set():
            if failures:
                raise failures[0]
            await slots.acquire()
            item = await next_item()
            if item is None:
                slots.release()
                continue
            task = asyncio.create_task(in_slot(item))
            sending.add(task)
            task.add_done_callback(sending.discard)
    finally:
        await asyncio.gather(*sending)
