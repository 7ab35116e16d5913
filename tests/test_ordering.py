"""Dependency order: a record never reaches Sense before what it may reference."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from relay.ordering import DependencyOrder
from relay.outbox import Outbox
from relay.records import Record
from relay.sandbox import Batch, Fault
from tests.conftest import Hooks, SenseStandIn, eventually

JOB_ORDER = {"id": "J1", "title": "Welder"}
PLACEMENTS = [{"id": f"P{n}", "job_order_id": "J1"} for n in range(3)]
# Placements go as soon as three are pending; a job order alone waits a minute.
BY_COUNT = {"max_age_seconds": 60, "max_records": 3}
FAST = {"max_age_seconds": 0.05}


def batches(sense: SenseStandIn, entity: str) -> list[Batch]:
    return [b for b in sense.sandbox.batches if b.entity == entity]


def delivered(sense: SenseStandIn, entity: str) -> int:
    return sum(b.record_count for b in batches(sense, entity))


def first_arrival(sense: SenseStandIn, entity: str) -> float:
    return min(b.received_at_s for b in batches(sense, entity))


def job_order_stored_at(sense: SenseStandIn) -> float:
    return min(b.accepted_at_s for b in batches(sense, "job-orders"))


async def drained(hooks: Hooks) -> None:
    await eventually(lambda: hooks.relay.outbox.total_records() == 0, timeout_s=20)


@pytest.mark.parametrize(
    "faults",
    [
        [Fault(status=503, entity="job-orders")] * 3,
        [Fault(delay_s=1, entity="job-orders")],
    ],
    ids=["failing", "slow"],
)
async def test_a_placement_accepted_after_its_job_order_never_reaches_sense_first(
    start_relay, sense: SenseStandIn, faults: list[Fault]
) -> None:
    sense.sandbox.script(*faults)
    async with start_relay(flush=FAST) as hooks:
        await hooks.send("job-orders", [JOB_ORDER])
        await hooks.send("placements", PLACEMENTS)

        await drained(hooks)

    assert delivered(sense, "placements") == 3
    assert first_arrival(sense, "placements") > job_order_stored_at(sense)


async def test_a_held_placement_batch_makes_the_job_order_go_before_its_age(
    start_relay, sense: SenseStandIn
) -> None:
    async with start_relay(flush=BY_COUNT) as hooks:
        await hooks.send("job-orders", [JOB_ORDER])
        await hooks.send("placements", PLACEMENTS)

        await drained(hooks)

    assert [b.entity for b in sense.sandbox.batches] == ["job-orders", "placements"]


async def test_a_placement_accepted_before_the_job_order_does_not_wait_for_it(
    start_relay, sense: SenseStandIn
) -> None:
    sense.sandbox.script(*[Fault(status=503, entity="job-orders")] * 3)
    async with start_relay(flush=FAST) as hooks:
        await hooks.send("placements", PLACEMENTS)
        await hooks.send("job-orders", [JOB_ORDER])

        await drained(hooks)

    assert first_arrival(sense, "placements") < job_order_stored_at(sense)


async def test_a_dead_lettered_job_order_no_longer_holds_placements_back(
    start_relay, sense: SenseStandIn
) -> None:
    sense.sandbox.reject("J1")
    async with start_relay(flush=BY_COUNT) as hooks:
        await hooks.send("job-orders", [JOB_ORDER])
        await hooks.send("placements", PLACEMENTS)

        await drained(hooks)
        letters = await hooks.relay.outbox.dead_letters()

    assert [letter.record_id for letter in letters] == ["J1"]
    assert delivered(sense, "placements") == 3


async def test_every_type_waits_for_all_the_types_before_it(
    start_relay, sense: SenseStandIn
) -> None:
    # Each type is accepted after the ones before it, and all but the first
    # make a full batch at once.
    paths = ["internal-users", "candidates", "companies", "leads", "appointments"]
    sense.sandbox.script(*[Fault(status=503, entity="internal-users")] * 2)
    async with start_relay(flush=BY_COUNT) as hooks:
        await hooks.send("internal-users", [{"id": "U1"}])
        for path in paths[1:]:
            await hooks.send(path, [{"id": f"{path}-{n}"} for n in range(3)])

        await drained(hooks)

    assert [b.entity for b in sense.sandbox.batches] == paths


def record(entity: str, record_id: str, **fields: str) -> Record:
    return Record(entity, record_id, orjson.dumps({"id": record_id, **fields}))


async def claimable_placements(box: Outbox, order: DependencyOrder) -> list[str]:
    barrier = order.barrier("placements")
    if barrier is None:
        claimed = await box.claim("placements", 10)
    else:
        claimed, _ = await box.claim_before("placements", 10, barrier)
    box.release(claimed)
    return [p.record_id for p in claimed]


async def test_a_placement_waits_for_a_newer_version_that_coalesced_its_job_order(
    tmp_path: Path,
) -> None:
    async with Outbox.open(tmp_path / "outbox.db") as box:
        order = DependencyOrder(box)
        await box.add([record("job-orders", "J1", title="Welder")])
        await box.add([record("placements", "P1")])
        await box.add([record("job-orders", "J1", title="Senior welder")])

        held = await claimable_placements(box, order)
        await box.settle(await box.claim("job-orders", 10))
        free = await claimable_placements(box, order)

    assert (held, free) == ([], ["P1"])


async def test_a_placement_updated_after_a_job_order_waits_for_it(
    tmp_path: Path,
) -> None:
    async with Outbox.open(tmp_path / "outbox.db") as box:
        order = DependencyOrder(box)
        await box.add([record("placements", "P1")])
        await box.add([record("job-orders", "J1")])
        await box.add([record("placements", "P1", status="Active")])

        held = await claimable_placements(box, order)

    assert held == []


async def test_only_the_version_sent_holds_back_what_came_after_it(
    tmp_path: Path,
) -> None:
    async with Outbox.open(tmp_path / "outbox.db") as box:
        order = DependencyOrder(box)
        await box.add([record("job-orders", "J1")])
        in_flight = await box.claim("job-orders", 10)
        await box.add([record("placements", "P1")])
        await box.add([record("job-orders", "J1", title="Welder")])
        await box.add([record("placements", "P2")])

        while_sent = await claimable_placements(box, order)
        await box.settle(in_flight)
        after = await claimable_placements(box, order)

    assert (while_sent, after) == ([], ["P1"])
