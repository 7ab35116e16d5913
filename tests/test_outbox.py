"""The outbox file: coalescing bookkeeping, damage, unreadable rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from relay import errors
from relay.outbox import Outbox
from relay.records import Record
from tests.conftest import SenseStandIn, eventually

PAGE = 4096


def lead(number: int, padding: int = 0) -> Record:
    body = {"id": f"L{number}", "description": "n" * padding}
    return Record("leads", f"L{number}", orjson.dumps(body))


async def fill(path: Path, records: list[Record]) -> None:
    async with Outbox.open(path) as box:
        await box.add(records)


def corrupt_pages(path: Path, first: int, count: int) -> None:
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with path.open("r+b") as file:
        file.seek(first * PAGE)
        file.write(b"\xde\xad" * (PAGE * count // 2))


def damaged_copies(folder: Path) -> list[str]:
    return sorted({p.name.split(".damaged-")[0] for p in folder.glob("*.damaged-*")})


async def test_records_survive_closing_and_reopening(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    await fill(path, [lead(n) for n in range(10)])

    async with Outbox.open(path) as box:
        claimed = await box.claim("leads", 100)

    assert box.ledger["leads"].recovered == 10
    assert sorted(p.record_id for p in claimed) == sorted(f"L{n}" for n in range(10))


async def test_a_damaged_outbox_is_set_aside_and_its_readable_rows_delivered(
    tmp_path: Path, start_relay, sense: SenseStandIn
) -> None:
    path = tmp_path / "outbox.db"
    await fill(path, [lead(n, padding=300) for n in range(2_000)])
    corrupt_pages(path, first=60, count=4)

    async with start_relay(flush={"max_age_seconds": 0.05}) as hooks:
        await eventually(lambda: hooks.relay.outbox.total_records() == 0, 20)
        await hooks.send("leads", [{"id": "after-the-damage"}])
        await eventually(lambda: "after-the-damage" in sense.sandbox.records["leads"])

    delivered = len(sense.sandbox.records["leads"])
    assert 1_500 < delivered < 2_001
    assert damaged_copies(tmp_path) == ["outbox.db"]


async def test_a_file_that_is_not_an_outbox_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    path.write_text("these are someone's notes, not a database\n" * 200)

    with pytest.raises(errors.OutboxError, match="not an SQLite database"):
        async with Outbox.open(path):
            pass
    assert path.read_text().startswith("these are someone's notes")


async def test_an_unreadable_row_is_dead_lettered_and_the_rest_delivered(
    tmp_path: Path, start_relay, sense: SenseStandIn
) -> None:
    path = tmp_path / "outbox.db"
    await fill(path, [lead(n) for n in range(5)])
    with sqlite3.connect(path) as db:
        db.execute("UPDATE outbox SET body = x'7b22' WHERE record_id = 'L2'")

    async with start_relay(flush={"max_age_seconds": 0.05}) as hooks:
        await eventually(lambda: hooks.relay.outbox.total_records() == 0)
        letters = await hooks.relay.outbox.dead_letters()

    assert sorted(sense.sandbox.records["leads"]) == ["L0", "L1", "L3", "L4"]
    assert [(d.record_id, d.reason) for d in letters] == [
        ("L2", "unreadable row in the outbox")
    ]


async def test_a_retried_dead_letter_never_replaces_a_newer_pending_version(
    tmp_path: Path,
) -> None:
    from relay.outbox import Refusal

    async with Outbox.open(tmp_path / "outbox.db") as box:
        await box.add([lead(1)])
        [old] = await box.claim("leads", 10)
        await box.settle([], [Refusal(old, 400, "refused")])
        newer = Record(
            "leads", "L1", orjson.dumps({"id": "L1", "description": "newer"})
        )
        await box.add([newer])

        moved = await box.retry_dead_letters()
        [pending] = await box.claim("leads", 10)

    assert moved == 0
    assert orjson.loads(pending.body)["description"] == "newer"
