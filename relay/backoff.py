"""Waiting between attempts: exponential backoff and Sense's Retry-After."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from asyncio import FIRST_COMPLETED
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from relay import errors

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter (a random wait up to the ceiling)."""

    base_s: float
    cap_s: float

    def delay_s(self, attempt: int) -> float:
        """The wait before retry number ``attempt`` (1 for the first retry)."""
        ceiling = min(self.cap_s, self.base_s * 2 ** min(attempt - 1, 32))
        return random.uniform(0, ceiling)


class PauseGate:
    """Holds every sender back until a pause that Sense asked for has passed.

    A Retry-After applies to relay's client as a whole, not to the one
    request that received it, so all flushers share one gate.
    """

    def __init__(self, stopping: asyncio.Event | None = None) -> None:
        self._until = 0.0
        self._stopping = stopping or asyncio.Event()

    def pause(self, seconds: float) -> None:
        self._until = max(self._until, time.monotonic() + seconds)

    def remaining_s(self) -> float:
        return max(0.0, self._until - time.monotonic())

    async def wait(self) -> None:
        """Returns once no pause is in force; raises Stopping at shutdown."""
        # A loop: another 429 may extend the pause while this one waits.
        while (remaining := self.remaining_s()) > 0:
            await sleep_unless_stopping(remaining, self._stopping)


async def sleep_unless_stopping(seconds: float, stopping: asyncio.Event) -> None:
    """Sleeps, but raises Stopping as soon as ``stopping`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
    if stopping.is_set():
        raise errors.Stopping("relay is shutting down")


@dataclass(frozen=True, slots=True)
class Answered(Generic[T]):
    """What a call returned, on which attempt, and how long that attempt took."""

    value: T
    attempt: int
    duration_s: float


async def call_until_answered(
    call: Callable[[], Awaitable[T]],
    backoff: Backoff,
    stopping: asyncio.Event,
    on_retry: Callable[[errors.SenseUnavailable, int, float], None],
    on_give_up: Callable[[], None],
) -> Answered[T]:
    """Calls Sense until it answers, waiting with backoff after each failure.

    ``on_retry(exc, attempt, delay_s)`` reports each failure before the wait;
    a Retry-After sets no wait of its own, since the shared pause gate holds
    every sender back already. If relay stops meanwhile, ``on_give_up()`` runs
    and Stopping is raised.
    """
    attempt = 0
    while True:
        attempt += 1
        started = time.monotonic()
        try:
            value = await call()
        except errors.Stopping:
            on_give_up()
            raise
        except errors.SenseUnavailable as exc:
            delay_s = 0.0 if exc.retry_after_s is not None else backoff.delay_s(attempt)
            on_retry(exc, attempt, delay_s)
            try:
                await sleep_unless_stopping(delay_s, stopping)
            except errors.Stopping:
                on_give_up()
                raise
            continue
        return Answered(value, attempt, time.monotonic() - started)


async def wait_for_any(*events: asyncio.Event, timeout_s: float | None = None) -> None:
    """Returns once any of ``events`` is set, or after ``timeout_s``."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
