"""Handing write-backs to the ATS: retries, order, dead letters, figures."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from relay import sender, writeback
from relay.inbox import Inbox
from relay.outbox import Outbox
from tests.ats import Answer, FakeAts
from tests.conftest import WriteBacks, eventually
from tests.test_delivery import metric


def about(subject_id: str, type_name: str = "ENTITY_UPDATE") -> dict[str, object]:
    sample = sender.sample(type_name)
    sample["data"]["entity"] = {"id": subject_id, "type": "AE_CANDIDATE"}
    return sample


async def figures(sense: WriteBacks) -> dict[str, float]:
    text = await sense.metrics()
    names = ("relay_writebacks_pending", "relay_writeback_dead_letters")
    names += ("relay_writebacks_dead_lettered_total",)
    found = {name: metric(text, name) for name in names}
    for outcome in ("delivered", "failed", "refused"):
        name = "relay_writeback_delivery_attempts_total"
        found[outcome] = metric(text, name, outcome=outcome)
    return found


async def test_a_transient_failure_is_retried_until_delivered_once(
    start_writebacks, ats: FakeAts
) -> None:
    ats.answer(Answer(503), Answer(429), Answer(401))
    sample = sender.sample("ENGAGE_EVENT_RESPONSE")
    async with start_writebacks() as sense:
        await sense.post(sample)

        await eventually(lambda: sense.inbox.stats.pending == 0)
        found = await figures(sense)

    assert ats.ids() == [sample["id"]] and ats.attempts == 4
    assert (found["failed"], found["delivered"], found["refused"]) == (3, 1, 0)
    assert found["relay_writebacks_pending"] == 0


async def test_a_refusal_that_will_not_change_dead_letters_at_once(
    start_writebacks, ats: FakeAts
) -> None:
    ats.answer(Answer(422, {"error": "candidate 123 is archived"}))
    sample = sender.sample("GENERIC_EVENT")
    async with start_writebacks() as sense:
        status, _ = await sense.post(sample)

        await eventually(lambda: sense.inbox.stats.dead_letters == 1)
        stored = await sense.inbox.get(sample["id"])
        found = await figures(sense)

    assert status == 200 and ats.attempts == 1
    assert (stored.state, stored.status) == ("dead_lettered", 422)
    assert "candidate 123 is archived" in stored.reason
    assert found["relay_writebacks_dead_lettered_total"] == 1
    assert found["relay_writeback_dead_letters"] == 1
    assert found["refused"] == 1


async def test_a_write_back_out_of_attempts_is_dead_lettered(
    start_writebacks, ats: FakeAts
) -> None:
    ats.down = True
    sample = sender.sample("MESSAGING_DIGEST")
    async with start_writebacks(max_attempts=3) as sense:
        await sense.post(sample)

        await eventually(lambda: sense.inbox.stats.dead_letters == 1)
        stored = await sense.inbox.get(sample["id"])

    assert ats.attempts == 3 and stored.attempts == 3
    assert stored.reason.startswith("gave up after 3 attempts")


async def test_write_backs_of_one_subject_arrive_in_order_others_go_ahead(
    start_writebacks, ats: FakeAts
) -> None:
    ats.answer(Answer(503, retry_after="1"))
    first, second, other = about("123"), about("123", "ENTITY_DELETE"), about("9")
    async with start_writebacks() as sense:
        for sample in (first, second, other):
            await sense.post(sample)

        await eventually(lambda: len(ats.received) == 3)

    assert ats.ids() == [other["id"], first["id"], second["id"]]


async def test_pending_figures_show_an_ats_outage_and_its_end(
    start_writebacks, ats: FakeAts
) -> None:
    ats.down = True
    async with start_writebacks() as sense:
        for _ in range(3):
            await sense.post(sender.sample("GENERIC_EVENT"))
        during = await sense.metrics()

        ats.down = False
        await eventually(lambda: sense.inbox.stats.pending == 0)
        after = await sense.metrics()

    assert metric(during, "relay_writebacks_pending") == 3
    assert metric(during, "relay_writeback_oldest_age_seconds") > 0
    assert metric(after, "relay_writebacks_pending") == 0
    assert metric(after, "relay_writeback_oldest_age_seconds") == 0


async def test_a_replayed_dead_letter_is_delivered(
    start_writebacks, ats: FakeAts
) -> None:
    ats.answer(Answer(400, {"error": "no such note type"}))
    sample = sender.sample("ENGAGE_SENT_EVENT")
    async with start_writebacks() as sense:
        await sense.post(sample)
        await eventually(lambda: sense.inbox.stats.dead_letters == 1)

        assert await sense.inbox.replay(sample["id"])

        await eventually(lambda: sense.inbox.stats.pending == 0)
        stored = await sense.inbox.get(sample["id"])
        again = await sense.inbox.replay(sample["id"])

    assert ats.ids() == [sample["id"]]

    assert stored.state == "delivered" and stored.reason is None
    assert not again  # a delivered write-back is never sent twice


async def test_a_settled_write_back_never_reads_back_as_pending(
    tmp_path: Path,
) -> None:
    # Reads overlapping a commit once shared a stale snapshot, which would
    # have let the forwarder send a delivered write-back again.
    async with Outbox.open(tmp_path / "outbox.db") as box:
        inbox = await Inbox.load(box)
        polling = asyncio.Event()

        async def poll() -> None:
            while not polling.is_set():
                await inbox.due(4, set())

        pollers = [asyncio.create_task(poll()) for _ in range(3)]
        states = []
        for _ in range(100):
            received = writeback.parse(orjson.dumps(sender.sample("ENTITY_CREATE")))
            await inbox.receive(received)
            await inbox.delivered(received.id, 201, "ats-1")
            states.append((await inbox.get(received.id)).state)
        polling.set()
        await asyncio.gather(*pollers)

    assert set(states) == {"delivered"}
