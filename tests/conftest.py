"""Shared fixtures: a Sense sandbox and a relay daemon, both on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import structlog
from aiohttp import web

from relay import config, daemon, logs
from relay.sandbox import Sandbox, SandboxSettings
from tests.ats import FakeAts, serving_ats

HOOK_TOKEN = "hook-token-for-tests"


@pytest.fixture
def json_logs() -> Iterator[None]:
    """relay's production logging, to stdout that capsys captures."""
    logs.configure(level="debug", fmt="json")
    yield
    structlog.reset_defaults()


@dataclass
class SenseStandIn:
    sandbox: Sandbox
    url: str


@pytest.fixture
async def sense() -> AsyncIterator[SenseStandIn]:
    async with serving(Sandbox(SandboxSettings())) as stand_in:
        yield stand_in


@contextlib.asynccontextmanager
async def serving(sandbox: Sandbox) -> AsyncIterator[SenseStandIn]:
    """Runs a sandbox on an ephemeral loopback port for the duration of a block."""
    runner = web.AppRunner(sandbox.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield SenseStandIn(sandbox, f"http://127.0.0.1:{runner.addresses[0][1]}")
    finally:
        await runner.cleanup()


def relay_settings(
    outbox_path: Path, sense_url: str, **sections: Any
) -> config.Settings:
    """Settings for a relay that delivers to ``sense_url``, with overrides."""
    values: dict[str, Any] = {
        "server": {"port": 0, "hook_tokens": [HOOK_TOKEN]},
        "sense": {
            "base_url": f"{sense_url}/v1",
            "token_url": f"{sense_url}/oauth2/token",
            "client_id": "sandbox-client",
            "client_secret": "sandbox-secret",
            "request_timeout_seconds": 2,
        },
        "outbox": {"path": outbox_path},
        "flush": {"max_age_seconds": 0.3},
        "retry": {"base_seconds": 0.05, "cap_seconds": 0.2},
        "shutdown": {"drain_timeout_seconds": 2},
    }
    for section, overrides in sections.items():
        values[section] = {**values.get(section, {}), **overrides}
    return config.Settings(**values)


@dataclass
class Hooks:
    """Posts hooks to a running relay the way an ATS would."""

    session: aiohttp.ClientSession
    base: str
    relay: daemon.Running

    async def post(
        self,
        path: str,
        body: Any,
        *,
        token: str | None = HOOK_TOKEN,
        gzipped: bool = False,
    ) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if gzipped:
            data = gzip.compress(data)
            headers["Content-Encoding"] = "gzip"
        async with self.session.post(
            f"{self.base}/v1/{path}", data=data, headers=headers
        ) as response:
            return response.status, await response.json(content_type=None)

    async def send(self, path: str, body: Any) -> None:
        """Posts a hook that must be acknowledged."""
        status, answer = await self.post(path, body)
        assert status == 202, answer

    async def metrics(self) -> str:
        async with self.session.get(f"{self.base}/metrics") as response:
            return await response.text()


@pytest.fixture
def start_relay(tmp_path: Path, sense: SenseStandIn) -> Callable[..., Any]:
    """``async with start_relay(flush={...}) as hooks``: relay delivering to sense."""

    @contextlib.asynccontextmanager
    async def start(**sections: Any) -> AsyncIterator[Hooks]:
        settings = relay_settings(tmp_path / "outbox.db", sense.url, **sections)
        async with (
            daemon.running(settings) as relay,
            aiohttp.ClientSession() as session,
        ):
            yield Hooks(session, f"http://127.0.0.1:{relay.port}", relay)

    return start


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], timeout_s: float = 10.0
) -> None:
    """Waits until ``check`` holds, failing the test if it never does."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def candidate(record_id: int | str, **fields: Any) -> dict[str, Any]:
    return {"id": record_id, "first_name": "Ada", "last_name": "Lovelace", **fields}


WRITEBACK_TOKEN = "writeback-token-for-tests"
ATS_TOKEN = "ats-token-for-tests"


@pytest.fixture
async def ats() -> AsyncIterator[FakeAts]:
    async with serving_ats() as stand_in:
        yield stand_in


@dataclass
class WriteBacks:
    """Sends write-backs to a running relay the way Sense would."""

    session: aiohttp.ClientSession
    url: str
    relay: daemon.Running

    async def post(
        self,
        body: Any,
        *,
        token: str | None = WRITEBACK_TOKEN,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        sent = {"Content-Type": "application/json", **(headers or {})}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        async with self.session.post(
            self.url, data=data, headers=sent, params=params
        ) as response:
            return response.status, await response.json(content_type=None)

    async def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.relay.port}/metrics"
        async with self.session.get(url) as response:
            return await response.text()

    @property
    def inbox(self) -> Any:
        assert self.relay.inbox is not None
        return self.relay.inbox


def writeback_settings(ats_url: str, **overrides: Any) -> dict[str, Any]:
    return {
        "enabled": True,
        "host": "127.0.0.1",
        "port": 0,
        "tokens": [WRITEBACK_TOKEN],
        "behind_tls_proxy": True,
        "ats_url": ats_url,
        "ats_token": ATS_TOKEN,
        "ats_timeout_seconds": 2,
        "create_timeout_seconds": 1,
        **overrides,
    }


@pytest.fixture
def start_writebacks(start_relay: Any, ats: FakeAts) -> Callable[..., Any]:
    """``async with start_writebacks(max_attempts=3) as sense``: relay receiving."""

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[WriteBacks]:
        sections = {"writeback": writeback_settings(ats.url, **overrides)}
        async with start_relay(**sections) as hooks:
            url = f"http://127.0.0.1:{hooks.relay.writeback_port}/writeback"
            yield WriteBacks(hooks.session, url, hooks.relay)

    return start
