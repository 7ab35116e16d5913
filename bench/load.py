"""Load generators: wrk for measured ingest, aiohttp for building backlogs.

Both run outside relay's process and stop by themselves: wrk after a fixed
duration, the backlog poster after a fixed number of records.
"""

from __future__ import annotations

import asyncio
import itertools
import resource
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson

from bench import candidates
from bench.processes import HOOK_TOKEN, BenchError

WRK_SCRIPT = Path(__file__).with_name("post.lua")
WRK_INSTALL = "apt-get update && apt-get install -y wrk"
BACKLOG_TIMEOUT_S = 1800.0
# Distinct hook bodies each load generator cycles through.
TEMPLATES = 64


@dataclass(frozen=True)
class WrkRun:
    """What wrk reported for one run (latencies in milliseconds)."""

    duration_s: float
    requests: int
    socket_errors: int
    timeouts: int
    non_2xx: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_s: float
    """CPU time wrk itself used."""


def require_wrk() -> None:
    if shutil.which("wrk") is None:
        raise BenchError(f"wrk is not installed; install it with: {WRK_INSTALL}")


def wrk(
    hooks_url: str,
    records_per_hook: int,
    *,
    seconds: float,
    connections: int,
    workdir: Path,
    run_name: str,
) -> WrkRun:
    """Posts hooks from ``connections`` connections for ``seconds`` seconds."""
    templates = candidates.hook_templates(records_per_hook, TEMPLATES)
    templates_path = workdir / f"templates-{records_per_hook}.jsonl"
    templates_path.write_bytes(b"\n".join(templates) + b"\n")
    # One wrk thread: the machine has two cores, and relay needs the rest.
    command = [
        "wrk",
        "--threads=1",
        f"--connections={connections}",
        f"--duration={seconds:g}s",
        "--timeout=10s",
        f"--script={WRK_SCRIPT}",
        hooks_url,
        "--",
        run_name,
        str(templates_path),
        HOOK_TOKEN,
    ]
    before = _children_cpu_s()
    done = subprocess.run(
        command, capture_output=True, check=True, timeout=seconds + 60
    )
    return _wrk_summary(done.stdout, _children_cpu_s() - before)


def _children_cpu_s() -> float:
    # Counts only children already waited for, so wrk and not relay.
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _wrk_summary(stdout: bytes, cpu_s: float) -> WrkRun:
    lines = [line for line in stdout.splitlines() if line.startswith(b"{")]
    if not lines:
        raise BenchError(f"wrk printed no summary:\n{stdout.decode()}")
    raw = orjson.loads(lines[-1])
    return WrkRun(
        duration_s=raw["duration_us"] / 1e6,
        requests=raw["requests"],
        socket_errors=raw["connect_errors"] + raw["read_errors"] + raw["write_errors"],
        timeouts=raw["timeouts"],
        non_2xx=raw["status_errors"],
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        cpu_s=cpu_s,
    )


def post_backlog(
    relay_url: str,
    records: int,
    *,
    records_per_hook: int = 1000,
    concurrency: int = 4,
    id_prefix: str = "backlog",
) -> float:
    """Posts ``records`` distinct candidates; returns the seconds it took.

    ``records`` is rounded up to whole hooks. Every hook must get a 202.
    """
    hooks = -(-records // records_per_hook)
    started = time.monotonic()
    asyncio.run(_post_hooks(relay_url, hooks, records_per_hook, concurrency, id_prefix))
    return time.monotonic() - started


async def _post_hooks(
    relay_url: str, hooks: int, records_per_hook: int, concurrency: int, prefix: str
) -> None:
    templates = candidates.hook_templates(records_per_hook, TEMPLATES)
    ids = (f"{prefix}-{n}" for n in itertools.count())
    bodies = (candidates.fill(templates[n % len(templates)], ids) for n in range(hooks))
    headers = {
        "Authorization": f"Bearer {HOOK_TOKEN}",
        "Content-Type": "application/json",
    }
    url = f"{relay_url}/v1/candidates"
    async with (
        asyncio.timeout(BACKLOG_TIMEOUT_S),
        aiohttp.ClientSession(headers=headers) as session,
    ):
        senders = [_send_all(session, url, bodies) for _ in range(concurrency)]
        await asyncio.gather(*senders)


async def _send_all(
    session: aiohttp.ClientSession, url: str, bodies: Iterator[bytes]
) -> None:
    # The senders share one generator: each takes the next body when free.
    for body in bodies:
        async with session.post(url, data=body) as response:
            if response.status != 202:
                answer = await response.text()
                raise BenchError(f"relay answered {response.status}: {answer[:300]}")
