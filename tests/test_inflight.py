"""Deliveries in flight: bounded, finished on stop, and a crash is raised."""

from __future__ import annotations

import asyncio

import pytest

from relay.inflight import deliver_until


async def test_no_more_than_the_limit_are_in_flight_and_all_finish() -> None:
    stopping = asyncio.Event()
    queue = list(range(10))
    running, most, done = 0, 0, []

    async def next_item() -> int | None:
        if not queue:
            stopping.set()
            return None
        return queue.pop(0)

    async def deliver(item: int) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        done.append(item)

    await deliver_until(stopping, 3, next_item, deliver)

    assert most == 3
    assert sorted(done) == list(range(10))


async def test_a_crashed_delivery_is_raised_after_the_others_finish() -> None:
    stopping = asyncio.Event()
    items = iter(range(100))
    finished = []
    woken = asyncio.Event()

    async def next_item() -> int | None:
        await asyncio.sleep(0)
        if woken.is_set():
            woken.clear()
            return None
        return next(items)

    async def deliver(item: int) -> None:
        try:
            if item == 1:
                raise RuntimeError("settle failed")
            await asyncio.sleep(0.05)
            finished.append(item)
        finally:
            woken.set()

    with pytest.raises(RuntimeError, match="settle failed"):
        await asyncio.wait_for(deliver_until(stopping, 2, next_item, deliver), 5)

    assert 0 in finished  # the delivery in flight beside it was not cut short
