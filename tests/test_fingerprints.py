"""Identical resends: acknowledged, counted, and not sent to Sense again."""

from __future__ import annotations

from typing import Any

from relay.sandbox import Fault
from tests.conftest import HOOK_TOKEN, Hooks, SenseStandIn, candidate, eventually
from tests.test_delivery import metric

# A batch goes at two records, never by age: each test decides what is sent.
BY_COUNT = {"max_age_seconds": 60, "max_records": 2}
FAST = {"max_age_seconds": 0.05}
ADA = candidate(1, email="ada@example.com")


def sent_ids(sense: SenseStandIn) -> list[str]:
    return [i for batch in sense.sandbox.batches for i in batch.ids]


async def ledger(hooks: Hooks, field: str, entity: str = "candidates") -> float:
    return metric(await hooks.metrics(), f"relay_records_{field}_total", entity=entity)


async def delivered_all(hooks: Hooks) -> None:
    await eventually(lambda: hooks.relay.outbox.total_records() == 0)


async def patch(hooks: Hooks, path: str, fields: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {HOOK_TOKEN}"}
    url = f"{hooks.base}/v1/{path}"
    async with hooks.session.patch(url, json=fields, headers=headers) as response:
        assert response.status == 202


async def test_a_version_identical_to_the_delivered_one_is_acknowledged_not_sent(
    start_relay, sense: SenseStandIn
) -> None:
    async with start_relay(flush=FAST) as hooks:
        await hooks.send("candidates", [ADA])
        await delivered_all(hooks)

        status, answer = await hooks.post("candidates", [ADA])

        pending = hooks.relay.outbox.total_records()
        text = await hooks.metrics()
    assert (status, answer, pending) == (202, {"accepted": 1}, 0)
    assert sent_ids(sense) == ["1"]
    assert metric(text, "relay_records_unchanged_total", entity="candidates") == 1
    assert metric(text, "relay_records_accepted_total", entity="candidates") == 2


async def test_a_version_that_differs_in_any_field_is_sent(
    start_relay, sense: SenseStandIn
) -> None:
    async with start_relay(flush=FAST) as hooks:
        await hooks.send("candidates", [ADA])
        await delivered_all(hooks)

        await hooks.send("candidates", [{**ADA, "email": "ada@example.org"}])

        await eventually(lambda: len(sent_ids(sense)) == 2)
        unchanged = await ledger(hooks, "unchanged")
    assert sense.sandbox.records["candidates"]["1"]["email"] == "ada@example.org"
    assert unchanged == 0


async def test_the_delivered_version_is_sent_again_when_it_replaces_a_pending_one(
    start_relay, sense: SenseStandIn
) -> None:
    async with start_relay(flush=BY_COUNT) as hooks:
        await hooks.send("candidates", [ADA, candidate(2)])
        await eventually(lambda: len(sent_ids(sense)) == 2)
        await hooks.send("candidates", [{**ADA, "status": "Placed"}])

        await hooks.send("candidates", [ADA])  # replaces the pending version
        await hooks.send("candidates", [candidate(3)])  # fills the batch

        await eventually(lambda: len(sent_ids(sense)) == 4)
        unchanged, coalesced = (
            await ledger(hooks, "unchanged"),
            await ledger(hooks, "coalesced"),
        )
    assert sorted(sent_ids(sense)[2:]) == ["1", "3"]
    assert sense.sandbox.records["candidates"]["1"] == ADA | {"id": "1"}
    assert (unchanged, coalesced) == (0, 1)


async def test_a_version_identical_to_one_being_sent_is_sent_again(
    start_relay, sense: SenseStandIn
) -> None:
    # Whether the version in flight reaches Sense is not known yet: sending
    # the copy after it is the choice that cannot lose it.
    sense.sandbox.script(Fault(delay_s=0.5))
    async with start_relay(flush=FAST) as hooks:
        await hooks.send("candidates", [ADA])
        box = hooks.relay.outbox
        await eventually(
            lambda: box.total_records() == 1 and box.unsent("candidates") == 0
        )

        await hooks.send("candidates", [ADA])

        await eventually(lambda: len(sent_ids(sense)) == 2)
        unchanged = await ledger(hooks, "unchanged")
    assert sent_ids(sense) == ["1", "1"]
    assert unchanged == 0


async def test_after_a_delivered_patch_the_same_whole_version_is_sent_again(
    start_relay, sense: SenseStandIn
) -> None:
    async with start_relay(flush=FAST) as hooks:
        await hooks.send("candidates", [ADA])
        await delivered_all(hooks)
        await patch(hooks, "candidates/1", {"status": "Placed"})
        await delivered_all(hooks)

        await hooks.send("candidates", [ADA])

        await eventually(lambda: len(sent_ids(sense)) == 2)
    assert sense.sandbox.records["candidates"]["1"] == ADA | {"id": "1"}


async def test_a_refused_version_leaves_the_fingerprint_of_the_delivered_one(
    start_relay, sense: SenseStandIn
) -> None:
    placed = {**ADA, "status": "Placed"}
    async with start_relay(flush=FAST) as hooks:
        await hooks.send("candidates", [ADA])
        await delivered_all(hooks)
        sense.sandbox.reject("1")
        await hooks.send("candidates", [placed])
        await delivered_all(hooks)
        sense.sandbox.clear_rejected()

        await hooks.send("candidates", [placed])

        await delivered_all(hooks)
        letters = await hooks.relay.outbox.dead_letters()
    assert sent_ids(sense) == ["1", "1"]
    assert sense.sandbox.records["candidates"]["1"]["status"] == "Placed"
    assert letters == []


async def test_an_unchanged_version_drops_an_older_dead_letter_of_the_record(
    start_relay, sense: SenseStandIn
) -> None:
    async with start_relay(flush=FAST) as hooks:
        await hooks.send("candidates", [ADA])
        await delivered_all(hooks)
        sense.sandbox.reject("1")
        await hooks.send("candidates", [{**ADA, "status": "Placed"}])
        await delivered_all(hooks)
        refused = await hooks.relay.outbox.dead_letters()

        await hooks.send("candidates", [ADA])  # what Sense holds: not sent

        remaining = await hooks.relay.outbox.dead_letters()
        unchanged = await ledger(hooks, "unchanged")
    assert [letter.record_id for letter in refused] == ["1"]
    assert remaining == []
    assert unchanged == 1
    assert sense.sandbox.records["candidates"]["1"] == ADA | {"id": "1"}


async def test_fingerprints_are_kept_in_the_outbox_across_restarts(
    start_relay, sense: SenseStandIn
) -> None:
    async with start_relay(flush=FAST) as hooks:
        await hooks.send("candidates", [ADA])
        await delivered_all(hooks)

    async with start_relay(flush=FAST) as hooks:
        await hooks.send("candidates", [ADA])

        unchanged = await ledger(hooks, "unchanged")
    assert (unchanged, sent_ids(sense)) == (1, ["1"])


async def test_with_skip_unchanged_off_every_version_is_sent(
    start_relay, sense: SenseStandIn
) -> None:
    async with start_relay(flush=FAST, outbox={"skip_unchanged": False}) as hooks:
        await hooks.send("candidates", [ADA])
        await delivered_all(hooks)

        await hooks.send("candidates", [ADA])

        await eventually(lambda: len(sent_ids(sense)) == 2)
        unchanged = await ledger(hooks, "unchanged")
    assert unchanged == 0


async def test_a_patch_merged_into_a_pending_version_keeps_its_fingerprint(
    start_relay, sense: SenseStandIn
) -> None:
    async with start_relay(flush={"max_age_seconds": 0.5}) as hooks:
        await hooks.send("candidates", [candidate(3, first_name="Grace")])
        await patch(hooks, "candidates/3", {"email": "grace@example.com"})
        await delivered_all(hooks)
        merged = sense.sandbox.records["candidates"]["3"]

        await hooks.send("candidates", [merged])

        unchanged = await ledger(hooks, "unchanged")
    assert sent_ids(sense) == ["3"]
    assert unchanged == 1
