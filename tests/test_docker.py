"""The Docker image's recipe, run outside Docker (no engine on this machine).

The Dockerfile's own install command builds a fresh virtualenv, and its
ENV, ENTRYPOINT, CMD and HEALTHCHECK start and probe relay, so a change
that would break the image breaks this test.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import HOOK_TOKEN, SenseStandIn, candidate, eventually
from tests.test_deploy import free_port

ROOT = Path(__file__).resolve().parents[1]
IMAGE_VENV = "/opt/relay"


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, arguments = line.partition(" ")
            found.append((name.upper(), arguments.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (name, _) in enumerate(steps) if name == "FROM")
    return steps[last_from:]


def image_environment(venv: Path) -> dict[str, str]:
    environment: dict[str, str] = {}
    for name, arguments in final_stage():
        if name == "ENV":
            for pair in shlex.split(arguments):
                key, _, value = pair.partition("=")
                environment[key] = value.replace(IMAGE_VENV, str(venv))
    return environment


def exec_form(instruction: str) -> list[str]:
    [arguments] = [args for name, args in final_stage() if name == instruction]
    if instruction == "HEALTHCHECK":
        arguments = arguments[arguments.index("CMD ") + 4 :]
    command: list[str] = json.loads(arguments)
    return command


def install_command() -> list[str]:
    [run] = [a for n, a in instructions() if n == "RUN" and "pip install" in a]
    return shlex.split(run)


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv built with the Dockerfile's own install command."""
    venv = tmp_path_factory.mktemp("image") / "relay"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    command = [part.replace(IMAGE_VENV, str(venv)) for part in install_command()]
    command[-1] = str(ROOT)  # the Dockerfile installs "." from its copy of it
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    return venv


async def test_the_image_starts_serves_and_drains_on_sigterm(
    tmp_path: Path, sense: SenseStandIn, image_venv: Path
) -> None:
    secret = tmp_path / "sense_client_secret"
    secret.write_text("sandbox-secret\n")
    tokens = tmp_path / "hook_tokens"
    tokens.write_text(json.dumps([HOOK_TOKEN]))
    port = free_port()
    environment = {
        **image_environment(image_venv),
        "RELAY_SERVER__PORT": str(port),
        "RELAY_OUTBOX__PATH": str(tmp_path / "outbox.db"),
        "RELAY_SENSE__BASE_URL": f"{sense.url}/v1",
        "RELAY_SENSE__TOKEN_URL": f"{sense.url}/oauth2/token",
        "RELAY_SENSE__CLIENT_ID": "sandbox-client",
        "RELAY_SENSE__CLIENT_SECRET_FILE": str(secret),
        "RELAY_SERVER__HOOK_TOKENS_FILE": str(tokens),
        "RELAY_FLUSH__MAX_AGE_SECONDS": "0.2",
    }
    assert environment["RELAY_SERVER__HOST"] == "0.0.0.0"
    command = [*exec_form("ENTRYPOINT"), *exec_form("CMD")]
    process = await asyncio.create_subprocess_exec(
        *command,
        env=environment,
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        await eventually(lambda: healthy(environment), timeout_s=30)
        async with aiohttp.ClientSession() as session:
            response = await session.post(
                f"http://127.0.0.1:{port}/v1/candidates",
                json=[candidate("from-the-image")],
                headers={"Authorization": f"Bearer {HOOK_TOKEN}"},
            )
            assert response.status == 202
        await eventually(
            lambda: "from-the-image" in sense.sandbox.records["candidates"]
        )

        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def healthy(environment: dict[str, str]) -> bool:
    """Runs the image's HEALTHCHECK command; True if it exits 0."""
    probe = await asyncio.create_subprocess_exec(
        *exec_form("HEALTHCHECK"),
        env=environment,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await probe.wait() == 0
