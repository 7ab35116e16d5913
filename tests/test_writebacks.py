"""Receiving write-backs: validation, durable storage, duplicates, limits."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from relay import sender, writeback
from tests.ats import Answer, FakeAts
from tests.conftest import ATS_TOKEN, eventually
from tests.test_delivery import metric


@pytest.mark.parametrize("type_name", writeback.TYPES)
async def test_every_type_is_acknowledged_and_reaches_the_ats_unchanged(
    start_writebacks, ats: FakeAts, type_name: str
) -> None:
    sample = sender.sample(type_name)
    body = orjson.dumps(sample)
    async with start_writebacks() as sense:
        status, answer = await sense.post(body)

        await eventually(lambda: len(ats.received) == 1)
        text = await sense.metrics()

    assert status == 200 and answer["id"] == sample["id"]
    assert ats.received[0].body == body
    assert ats.received[0].authorization == f"Bearer {ATS_TOKEN}"
    labels = {"type": type_name, "outcome": "stored"}
    assert metric(text, "relay_writebacks_received_total", **labels) == 1


async def test_a_redelivery_gets_the_same_answer_and_is_stored_once(
    start_writebacks, ats: FakeAts
) -> None:
    sample = sender.sample("MESSAGING_INCOMING_MESSAGE")
    async with start_writebacks() as sense:
        first = await sense.post(sample)
        await eventually(lambda: len(ats.received) == 1)
        again = await sense.post(sample)
        await asyncio.sleep(0.3)

        rows = await sense.inbox.in_state()
        text = await sense.metrics()

    assert first == again == (200, {"id": sample["id"]})
    assert len(rows) == 1 and ats.ids() == [sample["id"]]
    labels = {"type": "MESSAGING_INCOMING_MESSAGE", "outcome": "duplicate"}
    assert metric(text, "relay_writebacks_received_total", **labels) == 1


async def test_unknown_fields_are_kept_and_forwarded(
    start_writebacks, ats: FakeAts
) -> None:
    sample = sender.sample("ENTITY_UPDATE")
    sample["new_envelope_field"] = {"added": "in a minor version"}
    sample["data"]["entity"]["type"] = "AE_LEAD"  # not in the reference's list
    sample["data"]["fields"][0]["extra"] = 1
    sample["created_date"] = "2022-01-01T00:00:00Z"
    async with start_writebacks() as sense:
        status, _ = await sense.post(sample)

        await eventually(lambda: len(ats.received) == 1)

    assert status == 200
    assert ats.received[0].envelope == sample


async def test_an_unknown_type_is_stored_forwarded_and_counted(
    start_writebacks, ats: FakeAts
) -> None:
    new_type = {
        "id": "wb-new-1",
        "type": "SOMETHING_SENSE_ADDS_LATER",
        "version": 1.0,
        "created_date": "2025-01-29T10:00:00+0000",
        "data": {"anything": ["goes"]},
    }
    async with start_writebacks() as sense:
        status, answer = await sense.post(new_type)

        await eventually(lambda: len(ats.received) == 1)
        text = await sense.metrics()

    assert (status, answer) == (200, {"id": "wb-new-1"})
    labels = {"type": "unknown", "outcome": "stored"}
    assert metric(text, "relay_writebacks_received_total", **labels) == 1


def _broken(**changes: object) -> dict[str, object]:
    sample = sender.sample("MESSAGING_OUTGOING_MESSAGE")
    for path, value in changes.items():
        target = sample
        *parents, last = path.split("__")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return sample


@pytest.mark.parametrize(
    ("body", "status", "fields"),
    [
        (b"{not json", 400, [None]),
        (b"[1, 2]", 400, [None]),
        (_broken(id=None), 422, ["id"]),
        (_broken(created_date="last tuesday"), 422, ["created_date"]),
        (_broken(version="one"), 422, ["version"]),
        (_broken(data=[]), 422, ["data"]),
        (
            _broken(
                data__sms__0__direction="sideways",
                data__sms__0__to=[{"entity": {"type": "AE_CANDIDATE"}}],
            ),
            422,
            ["data.sms.0.to.0.entity.id", "data.sms.0.direction"],
        ),
        (
            {**sender.sample("ENTITY_UPDATE"), "data": {"fields": []}},
            422,
            ["data.entity"],
        ),
    ],
    ids=[
        "not-json",
        "not-an-object",
        "no-id",
        "bad-date",
        "bad-version",
        "data-not-object",
        "bad-sms",
        "update-without-entity",
    ],
)
async def test_a_malformed_write_back_is_refused_naming_its_fields(
    start_writebacks,
    ats: FakeAts,
    body: object,
    status: int,
    fields: list[str | None],
) -> None:
    async with start_writebacks() as sense:
        answered, answer = await sense.post(body)

        rows = await sense.inbox.in_state()

    assert answered == status
    assert [p["field"] for p in answer["problems"]] == fields
    assert answer["error"].startswith("unable to store")
    assert all(str(field) in answer["error"] for field in fields if field)
    assert rows == [] and ats.attempts == 0


async def test_a_body_over_the_limit_gets_413(start_writebacks) -> None:
    sample = sender.sample("GENERIC_EVENT")
    sample["data"]["summary"] = "x" * 5000
    async with start_writebacks(max_body_bytes=4096) as sense:
        status, answer = await sense.post(sample)

        rows = await sense.inbox.in_state()

    assert status == 413 and "4096" in answer["error"]
    assert rows == []


async def test_requests_over_the_concurrency_limit_get_429(
    start_writebacks, ats: FakeAts
) -> None:
    ats.answer(Answer(201, {"entity_id": "slow-1"}, delay_s=0.5))
    async with start_writebacks(max_concurrent_requests=1) as sense:
        held = asyncio.create_task(sense.post(sender.sample("ENTITY_CREATE")))
        await eventually(lambda: ats.attempts == 1)

        status, answer = await sense.post(sender.sample("GENERIC_EVENT"))

        assert (await held)[0] == 200
    assert status == 429 and "retry later" in answer["error"]


async def test_entity_create_is_answered_with_the_ats_entity_id(
    start_writebacks, ats: FakeAts
) -> None:
    create = sender.sample("ENTITY_CREATE")
    async with start_writebacks() as sense:
        first = await sense.post(create)
        again = await sense.post(create)

    assert first == again == (200, {"id": create["id"], "entity_id": "ats-1"})
    assert ats.ids() == [create["id"]]


async def test_entity_create_gets_503_while_the_ats_is_down_then_its_id(
    start_writebacks, ats: FakeAts
) -> None:
    create = sender.sample("ENTITY_CREATE")
    ats.down = True
    async with start_writebacks() as sense:
        status, answer = await sense.post(create)
        ats.down = False
        retried = await sense.post(create)

    assert status == 503 and "error" in answer and "id" not in answer
    assert retried == (200, {"id": create["id"], "entity_id": "ats-1"})


async def test_entity_create_gets_503_when_the_ats_is_too_slow(
    start_writebacks, ats: FakeAts
) -> None:
    ats.answer(Answer(201, {"entity_id": "late"}, delay_s=1.5))
    async with start_writebacks(create_timeout_seconds=0.3) as sense:
        status, answer = await sense.post(sender.sample("ENTITY_CREATE"))

    assert status == 503 and "not created the entity yet" in answer["error"]


async def test_entity_create_refused_by_the_ats_gets_422(
    start_writebacks, ats: FakeAts
) -> None:
    ats.answer(Answer(400, {"error": "unknown field first_name"}))
    create = sender.sample("ENTITY_CREATE")
    async with start_writebacks() as sense:
        status, answer = await sense.post(create)
        stored = await sense.inbox.get(create["id"])

    assert status == 422 and "HTTP 400" in answer["error"]
    assert stored.state == "dead_lettered"
    assert "unknown field first_name" in stored.reason
