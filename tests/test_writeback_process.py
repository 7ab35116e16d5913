"""Write-backs through ``relay serve`` and the CLI, as an operator runs them."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import orjson

from relay import sender, writeback
from tests.ats import Answer, FakeAts
from tests.conftest import ATS_TOKEN, WRITEBACK_TOKEN, SenseStandIn, eventually
from tests.test_cli import relay
from tests.test_process import relay_environment, relay_process

WRITEBACKS = 30


def writeback_environment(outbox: Path, sense_url: str, ats_url: str) -> dict[str, str]:
    return {
        **relay_environment(outbox, sense_url),
        "RELAY_WRITEBACK__ENABLED": "true",
        "RELAY_WRITEBACK__HOST": "127.0.0.1",
        "RELAY_WRITEBACK__PORT": "0",
        "RELAY_WRITEBACK__PATH": "/sense/events",
        "RELAY_WRITEBACK__TOKENS": orjson.dumps([WRITEBACK_TOKEN]).decode(),
        "RELAY_WRITEBACK__BEHIND_TLS_PROXY": "true",
        "RELAY_WRITEBACK__ATS_URL": ats_url,
        "RELAY_WRITEBACK__ATS_TOKEN": ATS_TOKEN,
    }


@asynccontextmanager
async def relay_receiving(
    outbox: Path, sense_url: str, ats_url: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """Starts ``python -m relay serve`` with write-backs on; yields their URL."""
    environment = writeback_environment(outbox, sense_url, ats_url)
    async with relay_process(
        outbox, sense_url, listener="writeback_listener_started", **environment
    ) as (process, base):
        yield process, f"{base}/sense/events"


async def test_kill_9_between_receipt_and_ats_delivery_loses_nothing(
    tmp_path: Path, sense: SenseStandIn, ats: FakeAts
) -> None:
    outbox = tmp_path / "outbox.db"
    samples = [sender.sample(writeback.TYPES[n % 10]) for n in range(WRITEBACKS)]
    ats.down = True
    async with relay_receiving(outbox, sense.url, ats.url) as (process, url):
        settings = sender.SenderSettings(url, WRITEBACK_TOKEN, max_attempts=1)
        to_send = [s for s in samples if s["type"] != "ENTITY_CREATE"]
        sent = await sender.send_all(to_send, settings)
        assert all(result.acknowledged for result in sent)

        process.send_signal(signal.SIGKILL)
        await process.wait()
    ats.down = False

    async with relay_receiving(outbox, sense.url, ats.url):
        await eventually(lambda: len(ats.received) == len(to_send), timeout_s=30)
        await asyncio.sleep(0.5)

    assert sorted(ats.ids()) == sorted(s["id"] for s in to_send)


async def test_the_sandbox_plays_sense_sending_every_type(
    tmp_path: Path, sense: SenseStandIn, ats: FakeAts
) -> None:
    outbox = tmp_path / "outbox.db"
    async with relay_receiving(outbox, sense.url, ats.url) as (_, url):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "relay",
            "sandbox",
            "--send-writebacks",
            url,
            "--token-in",
            "query",
            env={"RELAY_SANDBOX_WRITEBACK_TOKEN": WRITEBACK_TOKEN, "PATH": ""},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        output, _ = await process.communicate()

    results = [orjson.loads(line) for line in output.splitlines()]
    assert process.returncode == 0, results
    assert sorted(r["type"] for r in results) == sorted(writeback.TYPES)
    assert [r for r in results if not r["acknowledged"] or r["attempts"] > 1] == []
    [create] = [r for r in results if r["type"] == "ENTITY_CREATE"]
    assert create["answer"]["entity_id"].startswith("ats-")


async def test_the_sandbox_sender_retries_as_sense_does(ats: FakeAts) -> None:
    answers = [(500, {"error": "busy"}), (200, {}), (200, {"id": "x"})]

    async def receiver(request: aiohttp.web.Request) -> aiohttp.web.Response:
        status, body = answers.pop(0) if answers else (200, {"id": "y"})
        return aiohttp.web.json_response(body, status=status)

    app = aiohttp.web.Application()
    app.router.add_post("/", receiver)
    runner = aiohttp.web.AppRunner(app, access_log=None)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    settings = sender.SenderSettings(url, "t", retry_base_s=0.01, max_attempts=3)
    try:
        [event] = await sender.send_all([sender.sample("GENERIC_EVENT")], settings)
        [create] = await sender.send_all([sender.sample("ENTITY_CREATE")], settings)
    finally:
        await runner.cleanup()

    assert (event.acknowledged, event.attempts) == (True, 3)
    # {"id": "y"} alone does not acknowledge an ENTITY_CREATE: no entity_id.
    assert (create.acknowledged, create.attempts) == (False, 3)


async def test_writebacks_can_be_listed_shown_replayed_and_purged(
    start_writebacks, ats: FakeAts, tmp_path: Path
) -> None:
    ats.answer(Answer(400, {"error": "bad note type"}))
    ids = {}
    async with start_writebacks() as sense:
        for name in ("dead", "delivered", "pending"):
            ats.down = name == "pending"
            sample = sender.sample("GENERIC_EVENT")
            ids[name] = sample["id"]
            await sense.post(sample)
            await eventually(lambda: ats.attempts >= len(ids))
    environment = {"RELAY_OUTBOX__PATH": str(tmp_path / "outbox.db")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return relay("writebacks", *args, **environment)

    listed, dead = run("list"), run("list", "--state", "dead_lettered")
    shown = run("show", ids["dead"])
    replayed, not_twice = run("replay", ids["dead"]), run("replay", ids["delivered"])
    purged = run("purge", "--older-than-days", "0", "--yes")
    after = run("list")

    assert _states(listed) == {
        ids["dead"]: "dead_lettered",
        ids["delivered"]: "delivered",
        ids["pending"]: "pending",
    }
    assert list(_states(dead)) == [ids["dead"]]
    detail = orjson.loads(shown.stdout)
    assert "bad note type" in detail["reason"]
    assert detail["envelope"]["id"] == ids["dead"]
    assert replayed.returncode == 0 and not_twice.returncode == 1
    assert "1 write-back(s) deleted" in purged.stdout
    assert _states(after) == {ids["dead"]: "pending", ids["pending"]: "pending"}


def _states(listed: subprocess.CompletedProcess[str]) -> dict[str, str]:
    rows = [orjson.loads(line) for line in listed.stdout.splitlines()]
    return {row["id"]: row["state"] for row in rows}
