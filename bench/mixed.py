"""A steady mix of hooks of every entity type, posted at a fixed rate.

Each hook carries ``records_per_hook`` records of one entity type, the types
taking turns in the dependency order, so that every type is both waited for
and waiting. Records hold about ten short string fields, references among
them, and fresh ids, so none coalesces with another.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson

from bench.processes import HOOK_TOKEN, BenchError
from relay import entities

FIELDS_PER_RECORD = 10
WORDS = ("north", "harbor", "welder", "nurse", "night", "day", "active", "placed")
# Hooks posted at once at most: enough to keep the schedule when relay
# answers slowly, few enough not to turn the steady load into a burst.
SENDERS = 16


def _string_fields(entity_type: entities.EntityType) -> list[str]:
    return [
        field
        for field, kind in entity_type.fields.items()
        if kind == "string" and not field.startswith("custom")
    ][:FIELDS_PER_RECORD]


def _record(
    entity_type: entities.EntityType, record_id: str, rng: random.Random
) -> dict[str, Any]:
    fields = {
        field: f"{rng.choice(WORDS)}-{rng.randrange(1000)}"
        for field in _string_fields(entity_type)
    }
    return {"id": record_id, **fields}


def hooks(records_per_hook: int, run_name: str) -> Iterator[tuple[str, bytes]]:
    """Endless (entity path, hook body) pairs, the types taking turns."""
    rng = random.Random(11)
    numbers = itertools.count()
    for entity_type in itertools.cycle(entities.ENTITY_TYPES):
        records = [
            _record(entity_type, f"{run_name}-{next(numbers)}", rng)
            for _ in range(records_per_hook)
        ]
        yield entity_type.path, orjson.dumps(records)


def post_steadily(
    relay_url: str, records_per_second: float, seconds: float, run_name: str
) -> int:
    """Posts hooks of 100 records on a fixed schedule; returns records posted.

    Every hook must get a 202. Falling behind the schedule by more than a
    second means relay cannot take the load, and fails the run.
    """
    return asyncio.run(_post(relay_url, records_per_second, seconds, run_name))


async def _post(
    relay_url: str, records_per_second: float, seconds: float, run_name: str
) -> int:
    records_per_hook = 100
    interval_s = records_per_hook / records_per_second
    count = round(seconds / interval_s)
    bodies = itertools.islice(hooks(records_per_hook, run_name), count)
    schedule = enumerate(bodies)
    started = time.monotonic()
    headers = {
        "Authorization": f"Bearer {HOOK_TOKEN}",
        "Content-Type": "application/json",
    }
    async with aiohttp.ClientSession(headers=headers) as session:
        senders = [
            _send_on_time(session, relay_url, schedule, started, interval_s)
            for _ in range(SENDERS)
        ]
        await asyncio.gather(*senders)
    return count * records_per_hook


async def _send_on_time(
    session: aiohttp.ClientSession,
    relay_url: str,
    schedule: Iterator[tuple[int, tuple[str, bytes]]],
    started: float,
    interval_s: float,
) -> None:
    # The senders share one schedule: each takes the next hook when free.
    for number, (path, body) in schedule:
        due = started + number * interval_s
        late_s = time.monotonic() - due
        if late_s > 1.0:
            raise BenchError(f"hook {number} is {late_s:.1f} s behind the schedule")
        await asyncio.sleep(max(0.0, -late_s))
        async with session.post(f"{relay_url}/v1/{path}", data=body) as response:
            if response.status != 202:
                answer = await response.text()
                raise BenchError(f"relay answered {response.status}: {answer[:300]}")
