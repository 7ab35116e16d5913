"""The hook API: what the ATS gets back, and what ends up stored."""

from __future__ import annotations

from relay.sandbox import Fault
from tests.conftest import SenseStandIn, candidate, eventually


async def test_valid_records_are_acknowledged_and_reach_sense(
    start_relay, sense: SenseStandIn
) -> None:
    async with start_relay() as hooks:
        status, body = await hooks.post("candidates", [candidate(1), candidate("2")])

        assert (status, body) == (202, {"accepted": 2})
        await eventually(lambda: len(sense.sandbox.records["candidates"]) == 2)
    assert sense.sandbox.records["candidates"]["1"] == {
        "id": "1",
        "first_name": "Ada",
        "last_name": "Lovelace",
    }


async def test_a_single_object_body_is_one_record(start_relay) -> None:
    async with start_relay() as hooks:
        status, body = await hooks.post(
            "companies", {"id": "c1", "company_name": "Acme"}
        )

    assert (status, body) == (202, {"accepted": 1})


async def test_gzip_bodies_are_accepted(start_relay) -> None:
    async with start_relay() as hooks:
        status, _ = await hooks.post("candidates", [candidate(1)], gzipped=True)

    assert status == 202


async def test_missing_or_wrong_token_is_refused_and_nothing_stored(
    start_relay,
) -> None:
    async with start_relay() as hooks:
        missing, _ = await hooks.post("candidates", [candidate(1)], token=None)
        wrong, _ = await hooks.post("candidates", [candidate(1)], token="guess")

        assert (missing, wrong) == (401, 401)
        assert hooks.relay.outbox.total_records() == 0


async def test_unknown_path_names_the_valid_ones(start_relay) -> None:
    async with start_relay() as hooks:
        status, body = await hooks.post("candidate", [candidate(1)])

    assert status == 404
    assert "job-orders" in body["valid_paths"] and len(body["valid_paths"]) == 10


async def test_invalid_records_get_422_listing_every_problem_and_store_nothing(
    start_relay,
) -> None:
    records = [
        candidate(1),
        candidate(2, custom_datetime1="2020-04-01 at noon", shoe_size=44),
        {"first_name": "no id"},
    ]
    async with start_relay() as hooks:
        status, body = await hooks.post("candidates", records)

        assert status == 422
        assert body["problems"] == [
            {
                "index": 1,
                "id": "2",
                "field": "custom_datetime1",
                "message": "must be an ISO 8601 date-time such as 2020-04-01T10:30:00Z",
            },
            {
                "index": 1,
                "id": "2",
                "field": "shoe_size",
                "message": "is not a field of this entity type; "
                "Sense rejects unknown fields",
            },
            {"index": 2, "id": None, "field": "id", "message": "is required"},
        ]
        assert hooks.relay.outbox.total_records() == 0


async def test_too_many_records_in_one_request_get_413(start_relay) -> None:
    async with start_relay(server={"max_request_records": 3}) as hooks:
        status, body = await hooks.post("candidates", [candidate(i) for i in range(4)])

    assert status == 413
    assert "limit is 3" in body["error"]


async def test_a_body_over_the_byte_limit_gets_413(start_relay) -> None:
    async with start_relay(server={"max_request_bytes": 2048}) as hooks:
        records = [candidate(i, custom_text1="x" * 500) for i in range(5)]
        plain, _ = await hooks.post("candidates", records)
        gzipped, _ = await hooks.post("candidates", records, gzipped=True)

    assert (plain, gzipped) == (413, 413)


async def test_malformed_json_gets_400(start_relay) -> None:
    async with start_relay() as hooks:
        status, body = await hooks.post("candidates", b"[{")

    assert status == 400
    assert "not valid JSON" in body["error"]


async def test_a_full_outbox_answers_503_with_retry_after_and_stores_nothing(
    start_relay, sense: SenseStandIn
) -> None:
    sense.sandbox.script(*[Fault(status=503)] * 50)
    async with start_relay(outbox={"max_records": 3}) as hooks:
        first, _ = await hooks.post("candidates", [candidate(i) for i in range(3)])
        async with hooks.session.post(
            f"{hooks.base}/v1/candidates",
            json=[candidate(9)],
            headers={"Authorization": "Bearer hook-token-for-tests"},
        ) as response:
            refused, retry_after = response.status, response.headers.get("Retry-After")

        assert (first, refused) == (202, 503)
        assert retry_after is not None and int(retry_after) > 0
        assert hooks.relay.outbox.total_records() == 3


async def test_a_full_outbox_accepts_again_once_it_has_drained(
    start_relay, sense: SenseStandIn
) -> None:
    sense.sandbox.script(*[Fault(status=503)] * 5)
    async with start_relay(outbox={"max_records": 3}) as hooks:
        await hooks.send("candidates", [candidate(i) for i in range(3)])
        refused, _ = await hooks.post("candidates", [candidate(9)])

        async def accepted() -> bool:
            status, _ = await hooks.post("candidates", [candidate(9)])
            return status == 202

        await eventually(accepted)
    assert refused == 503


async def test_health_readiness_and_metrics_need_no_token(start_relay) -> None:
    async with start_relay() as hooks:
        statuses = []
        for path in ("/healthz", "/readyz", "/metrics"):
            async with hooks.session.get(f"{hooks.base}{path}") as response:
                statuses.append(response.status)

    assert statuses == [200, 200, 200]
