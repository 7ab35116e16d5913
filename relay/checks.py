"""``relay check-config``: what relay would run with, and whether Sense answers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import SecretStr

from relay import config, daemon, errors

SECRET_MASK = "[set]"


def require_servable(settings: config.Settings) -> None:
    """Raises ConfigError for anything that would stop ``relay serve``."""
    config.require_sense_credentials(settings)
    if not settings.server.hook_tokens:
        raise errors.ConfigError(
            "setting server.hook_tokens (RELAY_SERVER__HOOK_TOKENS) needs at least "
            "one token"
        )
    config.require_writeback(settings)


def effective(settings: config.Settings) -> list[str]:
    """Every setting as ``section.key = value``, secrets masked."""
    lines = []
    for section, values in settings.model_dump().items():
        for key, value in values.items():
            lines.append(f"{section}.{key} = {_shown(value)}")
    return [_with_worker_count(line, settings) for line in lines]


def _with_worker_count(line: str, settings: config.Settings) -> str:
    # Unset means "one per CPU beyond the first": say what that is here.
    if line == "server.validation_workers = None":
        return f"{line} ({settings.server.worker_count()} on this machine)"
    return line


def _shown(value: Any) -> str:
    if isinstance(value, SecretStr):
        return SECRET_MASK if value.get_secret_value() else "(empty)"
    if isinstance(value, list) and any(isinstance(v, SecretStr) for v in value):
        return f"{len(value)} secret(s) set"
    if isinstance(value, str | Path):
        return repr(str(value))
    return str(value)


async def online(settings: config.Settings) -> list[str]:
    """Fetches a token and reaches Sense's API; raises SenseUnavailable if not.

    Sends no record: the API is reached with a GET of its base URL, and any
    HTTP answer proves it reachable.
    """
    deadline_s = 2 * settings.sense.request_timeout_seconds
    async with daemon.sense_client(settings) as client:
        started = time.monotonic()
        await client.authenticate(deadline_s)
        token_ms = (time.monotonic() - started) * 1000
    status, api_ms = await _reach(settings.sense.base_url, deadline_s)
    return [
        f"token: issued by {settings.sense.token_url} in {token_ms:.0f} ms",
        f"api: {settings.sense.base_url} answered HTTP {status} in {api_ms:.0f} ms",
    ]


async def _reach(url: str, timeout_s: float) -> tuple[int, float]:
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url) as response,
        ):
            return response.status, (time.monotonic() - started) * 1000
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise errors.SenseUnavailable(f"{url} is unreachable: {exc!r}") from None
