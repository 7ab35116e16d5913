"""``relay check-config --online`` against the sandbox."""

from __future__ import annotations

import asyncio
import sys

from tests.conftest import SenseStandIn
from tests.test_cli import BASE_ENVIRONMENT


async def check_online(sense: SenseStandIn, secret: str) -> tuple[int, str, str]:
    environment = {
        **BASE_ENVIRONMENT,
        "RELAY_SENSE__BASE_URL": f"{sense.url}/v1",
        "RELAY_SENSE__TOKEN_URL": f"{sense.url}/oauth2/token",
        "RELAY_SENSE__CLIENT_ID": "sandbox-client",
        "RELAY_SENSE__CLIENT_SECRET": secret,
        "RELAY_SENSE__REQUEST_TIMEOUT_SECONDS": "1",
        "RELAY_SERVER__HOOK_TOKENS": '["a-hook-token"]',
        "RELAY_RETRY__BASE_SECONDS": "0.1",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relay",
        "check-config",
        "--online",
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_online_check_fetches_a_token_and_reaches_the_api(
    sense: SenseStandIn,
) -> None:
    status, out, err = await check_online(sense, "sandbox-secret")

    assert status == 0, err
    assert "token: issued by" in out
    assert f"api: {sense.url}/v1 answered HTTP" in out
    assert sense.sandbox.token_requests == 1
    assert sense.sandbox.batches == []


async def test_online_check_fails_on_refused_credentials(sense: SenseStandIn) -> None:
    status, out, err = await check_online(sense, "not-the-secret")

    assert status == 1
    assert "Sense is unavailable: no token" in err
    assert "refused the credentials" in err
    assert "not-the-secret" not in out + err
