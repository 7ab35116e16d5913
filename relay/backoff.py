"""Waiting between attempts: exponential backoff and Sense's Retry-After."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass

from relay import errors


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
