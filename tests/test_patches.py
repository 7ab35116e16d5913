"""Partial updates and soft deletes, in the order they were accepted."""

from __future__ import annotations

from typing import Any

from relay.sandbox import Fault
from tests.conftest import HOOK_TOKEN, Hooks, SenseStandIn, candidate, eventually

HEADERS = {"Authorization": f"Bearer {HOOK_TOKEN}"}
AGE = {"max_age_seconds": 0.05}


async def patch(hooks: Hooks, path: str, fields: dict[str, Any]) -> tuple[int, Any]:
    async with hooks.session.patch(
        f"{hooks.base}/v1/{path}", json=fields, headers=HEADERS
    ) as response:
        return response.status, await response.json()


async def delete(hooks: Hooks, path: str) -> int:
    async with hooks.session.delete(
        f"{hooks.base}/v1/{path}", headers=HEADERS
    ) as response:
        return response.status


def calls(sense: SenseStandIn) -> list[tuple[str, str, int | None]]:
    return [tuple(r) for r in sense.sandbox.requests if r.path.startswith("/v1/")]


async def test_a_patch_to_a_delivered_record_changes_only_its_fields(
    start_relay, sense: SenseStandIn
) -> None:
    async with start_relay(flush=AGE) as hooks:
        await hooks.send("candidates", [candidate(1, email="ada@example.com")])
        await eventually(lambda: hooks.relay.outbox.total_records() == 0)

        status, _ = await patch(hooks, "candidates/1", {"status": "Placed"})

        await eventually(lambda: hooks.relay.outbox.total_records() == 0)
    assert status == 202
    assert sense.sandbox.records["candidates"]["1"] == {
        "id": "1",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": "ada@example.com",
        "status": "Placed",
    }
    assert calls(sense)[-1] == ("PATCH", "/v1/candidates/1", 201)


async def test_a_patch_to_a_pending_record_is_merged_into_it(
    start_relay, sense: SenseStandIn
) -> None:
    async with start_relay(flush={"max_age_seconds": 0.5}) as hooks:
        await hooks.send("candidates", [candidate(2)])
        await patch(hooks, "candidates/2", {"status": "Placed"})
        await patch(hooks, "candidates/2", {"email": "ada@example.com"})

        await eventually(lambda: hooks.relay.outbox.total_records() == 0)

    assert [method for method, _, _ in calls(sense)] == ["POST"]
    assert sense.sandbox.records["candidates"]["2"]["status"] == "Placed"
    assert sense.sandbox.records["candidates"]["2"]["email"] == "ada@example.com"


async def test_a_patch_accepted_while_the_record_is_in_flight_goes_after_it(
    start_relay, sense: SenseStandIn
) -> None:
    sense.sandbox.script(Fault(delay_s=0.5))
    async with start_relay(flush=AGE) as hooks:
        await hooks.send("candidates", [candidate(3, status="Active")])
        await eventually(lambda: len(sense.sandbox.requests) >= 2)

        await patch(hooks, "candidates/3", {"status": "Placed"})

        await eventually(lambda: len(calls(sense)) == 2)
    assert [(m, s) for m, _, s in calls(sense)] == [("POST", 201), ("PATCH", 201)]
    assert sense.sandbox.records["candidates"]["3"]["status"] == "Placed"


async def test_delete_sets_is_deleted_and_keeps_the_other_fields(
    start_relay, sense: SenseStandIn
) -> None:
    async with start_relay(flush=AGE) as hooks:
        await hooks.send("leads", [{"id": "L1", "email": "lead@example.com"}])
        await eventually(lambda: hooks.relay.outbox.total_records() == 0)

        status = await delete(hooks, "leads/L1")

        await eventually(lambda: hooks.relay.outbox.total_records() == 0)
    assert status == 202
    assert sense.sandbox.records["leads"]["L1"] == {
        "id": "L1",
        "email": "lead@example.com",
        "is_deleted": True,
    }


async def test_an_invalid_patch_gets_422_and_stores_nothing(start_relay) -> None:
    async with start_relay() as hooks:
        wrong_type, body = await patch(hooks, "candidates/4", {"custom_integer1": "x"})
        other_id, _ = await patch(hooks, "candidates/4", {"id": "5"})

        assert hooks.relay.outbox.total_records() == 0
    assert (wrong_type, other_id) == (422, 422)
    assert body["problems"][0]["field"] == "custom_integer1"


async def test_a_patch_for_a_record_sense_does_not_have_is_dead_lettered(
    start_relay, sense: SenseStandIn
) -> None:
    async with start_relay(flush=AGE) as hooks:
        status, _ = await patch(hooks, "candidates/never-sent", {"status": "Placed"})

        # The outbox figures change inside the writer's unit, a moment before
        # its commit: wait for the committed dead letter itself.
        async def dead_lettered() -> bool:
            return bool(await hooks.relay.outbox.dead_letters())

        await eventually(dead_lettered)
        letters = await hooks.relay.outbox.dead_letters()
        assert hooks.relay.outbox.total_records() == 0

    assert status == 202
    assert [(d.record_id, d.kind, d.status, d.reason) for d in letters] == [
        ("never-sent", "patch", 404, "Sense has no entity with this id")
    ]
