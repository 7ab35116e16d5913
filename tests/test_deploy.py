"""The deployment files, checked with the real tools: systemd and Prometheus."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relay import config
from tests.conftest import candidate, eventually

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
UNIT = DEPLOY / "systemd" / "relay.service"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "relay-dashboard.json"
INSTALLED_RELAY = "/opt/relay/bin/relay"
# Exported only while the write-back listener is enabled.
WRITEBACK_METRIC = re.compile(r"^relay_writeback")


def tool(name: str) -> str:
    """The path of a command-line tool; CI installs them all (see .ci/run)."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed; .ci/run should have installed it")
        pytest.skip(f"{name} is not installed")
    return path


def run(*command: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


def test_the_systemd_unit_passes_verify(tmp_path: Path) -> None:
    # verify checks that ExecStart exists: point it at this install of relay.
    installed = Path(sys.executable).with_name("relay")
    unit = tmp_path / "relay.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED_RELAY, str(installed)))

    result = run(tool("systemd-analyze"), "verify", str(unit))

    assert result.returncode == 0, result.stderr


def test_the_systemd_unit_is_exposed_less_than_2() -> None:
    result = run(tool("systemd-analyze"), "security", "--offline=true", str(UNIT))

    found = re.search(
        r"Overall exposure level for relay.service: ([\d.]+)", result.stdout
    )
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) < 2.0


def test_systemd_waits_longer_than_relay_drains() -> None:
    unit = UNIT.read_text()
    stop_timeout = re.search(r"^TimeoutStopSec=(\d+)s$", unit, re.MULTILINE)
    assert stop_timeout is not None
    drain_s = config.ShutdownSettings().drain_timeout_seconds

    assert int(stop_timeout.group(1)) > drain_s
    assert "Type=notify" in unit
    assert "LoadCredential=RELAY_SENSE__CLIENT_SECRET:" in unit


def test_the_alert_rules_pass_promtool_and_their_own_tests() -> None:
    promtool = tool("promtool")

    checked = run(promtool, "check", "rules", "alerts.yml", cwd=PROMETHEUS)
    tested = run(promtool, "test", "rules", "alerts.test.yml", cwd=PROMETHEUS)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_scrape_config_passes_promtool() -> None:
    result = run(tool("promtool"), "check", "config", "prometheus.yml", cwd=PROMETHEUS)

    assert result.returncode == 0, result.stdout + result.stderr


async def exported_metrics(start_relay: Callable[..., Any]) -> str:
    """relay's /metrics after it accepted and delivered one record."""
    async with start_relay() as hooks:
        await hooks.send("candidates", [candidate(1)])
        await eventually(lambda: hooks.relay.outbox.ledger["candidates"].delivered == 1)
        return await hooks.metrics()


async def test_relay_metrics_pass_promtool_check_metrics(
    start_relay: Callable[..., Any],
) -> None:
    text = await exported_metrics(start_relay)

    process = await asyncio.create_subprocess_exec(
        tool("promtool"),
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate(text.encode())

    assert process.returncode == 0, output.decode()


async def test_the_dashboard_queries_only_metrics_relay_exports(
    start_relay: Callable[..., Any],
) -> None:
    text = await exported_metrics(start_relay)
    exported = set(re.findall(r"^# TYPE (\w+) ", text, re.MULTILINE))
    series = exported | {
        f"{name}_{suffix}"
        for name in exported
        for suffix in ("bucket", "sum", "count", "total")
    }

    queried = set()
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            queried |= set(re.findall(r"\brelay_\w+", target["expr"]))

    unknown = {name for name in queried - series if not WRITEBACK_METRIC.match(name)}
    assert not unknown
    assert queried & series


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_real_prometheus_scrapes_relay(
    tmp_path: Path, start_relay: Callable[..., Any]
) -> None:
    prometheus = tool("prometheus")
    async with start_relay() as hooks, aiohttp.ClientSession() as session:
        await hooks.send("candidates", [candidate(n) for n in range(3)])
        target = hooks.base.removeprefix("http://")
        port = free_port()
        (tmp_path / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: relay\n    static_configs: [{{targets: ['{target}']}}]\n"
        )
        process = await asyncio.create_subprocess_exec(
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            query = f"http://127.0.0.1:{port}/api/v1/query"
            accepted = 'relay_records_accepted_total{entity="candidates"}'

            async def scraped() -> bool:
                try:
                    async with session.get(query, params={"query": accepted}) as r:
                        answer = await r.json()
                except aiohttp.ClientError:
                    return False
                results = answer.get("data", {}).get("result", [])
                return bool(results) and results[0]["value"][1] == "3"

            await eventually(scraped, timeout_s=30)
        finally:
            process.terminate()
            await process.wait()
