"""Reading and replacing a field's possible values through relay."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import HOOK_TOKEN, SenseStandIn

OPTIONS = [{"label": "Full time", "value": "FT"}, {"label": "Hours", "value": 40}]
HEADERS = {"Authorization": f"Bearer {HOOK_TOKEN}"}


async def test_a_picklist_set_through_relay_can_be_read_back(
    start_relay, sense: SenseStandIn
) -> None:
    async with start_relay() as hooks:
        url = f"{hooks.base}/v1/job-orders/possible-values/employment_type"
        async with hooks.session.put(url, json=OPTIONS, headers=HEADERS) as response:
            put_status = response.status
        async with hooks.session.get(url, headers=HEADERS) as response:
            get_status, body = response.status, await response.json()

    assert (put_status, get_status) == (200, 200)
    assert body["data"]["values"] == OPTIONS
    assert sense.sandbox.picklists[("job-orders", "employment_type")] == OPTIONS


async def test_an_invalid_picklist_is_refused_before_anything_is_sent(
    start_relay, sense: SenseStandIn
) -> None:
    bad: list[dict[str, Any]] = [{"label": "No value"}, {"label": 3, "value": "x"}]
    async with start_relay() as hooks:
        url = f"{hooks.base}/v1/job-orders/possible-values/employment_type"
        async with hooks.session.put(url, json=bad, headers=HEADERS) as response:
            status, body = response.status, await response.json()
        unknown = f"{hooks.base}/v1/job-orders/possible-values/shoe_size"
        async with hooks.session.get(unknown, headers=HEADERS) as response:
            unknown_status = response.status

    assert (status, unknown_status) == (422, 422)
    assert [(p["index"], p["field"]) for p in body["problems"]] == [
        (0, "value"),
        (1, "label"),
    ]
    assert sense.sandbox.requests == []


async def test_relay_picklist_set_and_get_from_the_command_line(
    tmp_path: Path, sense: SenseStandIn
) -> None:
    values_file = tmp_path / "values.json"
    values_file.write_bytes(orjson.dumps(OPTIONS))
    environment = {
        **os.environ,
        "RELAY_SENSE__BASE_URL": f"{sense.url}/v1",
        "RELAY_SENSE__TOKEN_URL": f"{sense.url}/oauth2/token",
        "RELAY_SENSE__CLIENT_ID": "sandbox-client",
        "RELAY_SENSE__CLIENT_SECRET": "sandbox-secret",
    }

    async def relay(*args: str) -> tuple[int, bytes]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "relay",
            "picklist",
            *args,
            env=environment,
            stdout=asyncio.subprocess.PIPE,
        )
        output, _ = await process.communicate()
        return await process.wait(), output

    set_status, _ = await relay("set", "leads", "status", str(values_file))
    get_status, printed = await relay("get", "leads", "status")

    assert (set_status, get_status) == (0, 0)
    assert orjson.loads(printed)["data"]["values"] == OPTIONS
