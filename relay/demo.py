"""``relay demo``: relay, a Sense sandbox and a pretend ATS in one process.

It lets a newcomer watch hooks flow through relay to Sense without any
credentials: the ATS side posts sample candidates to relay's hook API over
HTTP, relay stores and batches them, and the sandbox logs every batch.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import tempfile
from pathlib import Path

import aiohttp
import structlog
from aiohttp import web

from relay import config, daemon
from relay.sandbox import Sandbox, SandboxSettings

DEMO_HOOK_TOKEN = "demo-hook-token"
FIRST_NAMES = ("Ada", "Grace", "Linus", "Alan", "Margaret", "Edsger", "Barbara")
STATUSES = ("Active", "Placed", "Interviewing", "Inactive")

log = structlog.get_logger("relay.demo")


def settings(port: int, sense_port: int, outbox_dir: Path) -> config.Settings:
    """Settings for a relay delivering to the sandbox, flushing every 5 s."""
    sense_url = f"http://127.0.0.1:{sense_port}"
    sandbox = SandboxSettings()
    return config.Settings(
        server={"port": port, "hook_tokens": [DEMO_HOOK_TOKEN]},
        sense={
            "base_url": f"{sense_url}/v1",
            "token_url": f"{sense_url}/oauth2/token",
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
        },
        outbox={"path": outbox_dir / "relay-demo.db"},
        flush={"max_age_seconds": 5},
    )


async def run(port: int, sense_port: int, hooks_every_s: float) -> None:
    """Runs the demo until cancelled (Ctrl-C)."""
    runner = web.AppRunner(Sandbox().app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", sense_port).start()
    try:
        with tempfile.TemporaryDirectory(prefix="relay-demo-") as outbox_dir:
            relay_settings = settings(port, sense_port, Path(outbox_dir))
            async with daemon.running(relay_settings) as relay:
                log.info(
                    "demo_ready",
                    hook_url=f"http://127.0.0.1:{relay.port}/v1/",
                    hook_token=DEMO_HOOK_TOKEN,
                )
                await _pretend_ats(relay.port, hooks_every_s)
    finally:
        await runner.cleanup()


async def _pretend_ats(port: int, every_s: float) -> None:
    url = f"http://127.0.0.1:{port}/v1/candidates"
    headers = {"Authorization": f"Bearer {DEMO_HOOK_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for hook in itertools.count(1):
            records = [_sample_candidate() for _ in range(random.randint(1, 20))]
            async with session.post(url, json=records) as response:
                log.info(
                    "demo_hook_posted",
                    hook=hook,
                    records=len(records),
                    status=response.status,
                )
            await asyncio.sleep(every_s)


def _sample_candidate() -> dict[str, object]:
    number = random.randint(1, 500)
    return {
        "id": f"demo-{number}",
        "first_name": random.choice(FIRST_NAMES),
        "last_name": f"Sample{number}",
        "email": f"candidate{number}@example.com",
        "status": random.choice(STATUSES),
        "date_last_modified": "2026-01-15T09:30:00+0000",
    }
