"""relay as a process: kill -9 under load, SIGTERM, restart."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import orjson

from tests.conftest import HOOK_TOKEN, SenseStandIn, eventually
from tests.test_delivery import metric
from tests.test_validators import alive, validator_pids

SENDERS = 8
IDS_PER_SENDER = 25
# Enough text that each hook is large enough for a validation worker.
NOTES = "Prefers night shifts; forklift and first-aid certified. " * 6


def relay_environment(outbox: Path, sense_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "RELAY_SERVER__PORT": "0",
        "RELAY_SERVER__HOOK_TOKENS": orjson.dumps([HOOK_TOKEN]).decode(),
        "RELAY_SENSE__BASE_URL": f"{sense_url}/v1",
        "RELAY_SENSE__TOKEN_URL": f"{sense_url}/oauth2/token",
        "RELAY_SENSE__CLIENT_ID": "sandbox-client",
        "RELAY_SENSE__CLIENT_SECRET": "sandbox-secret",
        "RELAY_OUTBOX__PATH": str(outbox),
        "RELAY_FLUSH__MAX_AGE_SECONDS": "0.2",
        "RELAY_RETRY__BASE_SECONDS": "0.05",
        "RELAY_RETRY__CAP_SECONDS": "0.5",
    }


@asynccontextmanager
async def relay_process(
    outbox: Path,
    sense_url: str,
    *,
    listener: str = "relay_started",
    **environment: str,
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """Starts ``python -m relay serve`` and yields it with its base URL.

    The URL is that of the listener whose start event ``listener`` names:
    the hook API's by default. ``environment`` adds to or overrides the
    variables relay starts with.
    """
    log_path = outbox.with_suffix(f".{time.monotonic_ns()}.log")
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "relay",
            "serve",
            env={**relay_environment(outbox, sense_url), **environment},
            stdout=log,
        )
    try:
        port = await _announced_port(process, log_path, listener)
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def _announced_port(
    process: asyncio.subprocess.Process, log: Path, listener: str
) -> int:
    """Reads the port a listener bound from its start event in relay's log."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and process.returncode is None:
        port = _started_port(log, listener)
        if port is not None:
            return port
        await asyncio.sleep(0.05)
    raise AssertionError(f"relay did not log {listener}")


def _started_port(log: Path, listener: str) -> int | None:
    for line in log.read_bytes().splitlines():
        event = orjson.loads(line)
        if event["event"] == listener:
            return int(event["port"])
    return None


async def _send_versions(
    session: aiohttp.ClientSession, base: str, sender: int, acked: dict[str, int]
) -> None:
    """Posts ever newer versions of this sender's records until refused."""
    ids = [f"{sender}-{n}" for n in range(IDS_PER_SENDER)]
    version = 0
    while True:
        version += 1
        records = [
            {"id": i, "custom_integer1": version, "custom_text_block1": NOTES}
            for i in ids
        ]
        try:
            async with session.post(
                f"{base}/v1/candidates",
                json=records,
                headers={"Authorization": f"Bearer {HOOK_TOKEN}"},
            ) as response:
                if response.status != 202:
                    return
        except aiohttp.ClientError:
            return
        acked.update(dict.fromkeys(ids, version))


async def test_kill_9_under_load_loses_no_acknowledged_record(
    tmp_path: Path, sense: SenseStandIn
) -> None:
    outbox = tmp_path / "outbox.db"
    acked: dict[str, int] = {}
    async with (
        relay_process(outbox, sense.url, RELAY_SERVER__VALIDATION_WORKERS="1") as (
            process,
            base,
        ),
        aiohttp.ClientSession() as session,
    ):
        senders = [
            asyncio.create_task(_send_versions(session, base, n, acked))
            for n in range(SENDERS)
        ]
        await eventually(lambda: len(acked) == SENDERS * IDS_PER_SENDER)
        await asyncio.sleep(0.5)
        async with session.get(f"{base}/metrics") as response:
            text = await response.text()
        assert metric(text, "relay_hooks_validated_total", process="worker") > 0
        workers = validator_pids(process.pid)

        process.send_signal(signal.SIGKILL)
        await asyncio.gather(*senders)
        await eventually(lambda: not any(alive(pid) for pid in workers))

    async with relay_process(outbox, sense.url):
        stored = sense.sandbox.records["candidates"]

        def caught_up() -> bool:
            return all(
                record_id in stored and stored[record_id]["custom_integer1"] >= version
                for record_id, version in acked.items()
            )

        await eventually(caught_up, timeout_s=30)
    assert max(acked.values()) > 1


async def test_sigterm_drains_and_exits_0_and_a_restart_resumes(
    tmp_path: Path, sense: SenseStandIn
) -> None:
    from relay.sandbox import Fault

    sense.sandbox.script(*[Fault(status=503)] * 1000)
    outbox = tmp_path / "outbox.db"
    async with relay_process(outbox, sense.url) as (process, base):
        async with aiohttp.ClientSession() as session:
            response = await session.post(
                f"{base}/v1/leads",
                json=[{"id": "L1"}],
                headers={"Authorization": f"Bearer {HOOK_TOKEN}"},
            )
            assert response.status == 202
        await asyncio.sleep(0.5)

        process.send_signal(signal.SIGTERM)

        assert await asyncio.wait_for(process.wait(), 15) == 0
    sense.sandbox.reset()

    async with relay_process(outbox, sense.url):
        await eventually(lambda: "L1" in sense.sandbox.records["leads"])
