"""Looking up what Sense holds for one entity, through relay."""

from __future__ import annotations

import asyncio
import os
import sys

import orjson

from tests.conftest import HOOK_TOKEN, SenseStandIn, candidate, eventually


async def test_a_delivered_record_can_be_read_back(
    start_relay, sense: SenseStandIn
) -> None:
    async with start_relay(flush={"max_age_seconds": 0.05}) as hooks:
        await hooks.send("candidates", [candidate(42, email="ada@example.com")])
        await eventually(lambda: "42" in sense.sandbox.records["candidates"])

        async with hooks.session.get(
            f"{hooks.base}/v1/candidates/42",
            headers={"Authorization": f"Bearer {HOOK_TOKEN}"},
        ) as response:
            status, body = response.status, await response.json()

    assert status == 200
    assert body["data"]["email"] == "ada@example.com"


async def test_an_unknown_record_is_404_and_a_lookup_needs_the_token(
    start_relay,
) -> None:
    async with start_relay() as hooks:
        async with hooks.session.get(
            f"{hooks.base}/v1/leads/nobody",
            headers={"Authorization": f"Bearer {HOOK_TOKEN}"},
        ) as response:
            missing = response.status
        async with hooks.session.get(f"{hooks.base}/v1/leads/nobody") as response:
            anonymous = response.status

    assert (missing, anonymous) == (404, 401)


async def test_a_lookup_sense_cannot_answer_gets_503_with_retry_after(
    start_relay,
) -> None:
    unreachable = {"base_url": "http://127.0.0.1:9/v1"}
    async with (
        start_relay(sense=unreachable) as hooks,
        hooks.session.get(
            f"{hooks.base}/v1/leads/L1",
            headers={"Authorization": f"Bearer {HOOK_TOKEN}"},
        ) as response,
    ):
        status, retry_after = response.status, response.headers["Retry-After"]

    assert status == 503 and int(retry_after) > 0


async def test_relay_get_prints_the_entity_and_fails_for_an_unknown_one(
    sense: SenseStandIn,
) -> None:
    sense.sandbox.records["companies"]["c1"] = {"id": "c1", "company_name": "Acme"}
    environment = {
        **os.environ,
        "RELAY_SENSE__BASE_URL": f"{sense.url}/v1",
        "RELAY_SENSE__TOKEN_URL": f"{sense.url}/oauth2/token",
        "RELAY_SENSE__CLIENT_ID": "sandbox-client",
        "RELAY_SENSE__CLIENT_SECRET": "sandbox-secret",
    }

    async def relay_get(record_id: str) -> tuple[int, bytes]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "relay",
            "get",
            "companies",
            record_id,
            env=environment,
            stdout=asyncio.subprocess.PIPE,
        )
        output, _ = await process.communicate()
        return await process.wait(), output

    found_status, found = await relay_get("c1")
    missing_status, _ = await relay_get("c2")

    assert found_status == 0
    assert orjson.loads(found)["data"] == {"id": "c1", "company_name": "Acme"}
    assert missing_status == 1
