"""The processes a scenario starts: a Sense sandbox and ``relay serve``.

Each runs as ``python -m relay ...`` from this virtualenv, logs to a file in
the scenario's temporary directory and is stopped when its block ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

HOOK_TOKEN = "bench-hook-token"
SANDBOX_CLIENT = ("sandbox-client", "sandbox-secret")
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0
SYNC_POLL_S = 0.05


class BenchError(Exception):
    """A scenario cannot go on: a process did not start or answered wrongly."""


@dataclass
class Service:
    """A process a scenario started: relay or the sandbox, and its URL."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    spawned_at: float
    started_at: float
    """time.monotonic() when it was found serving."""

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User plus system CPU time of every thread so far."""
        return _cpu_seconds(Path(f"/proc/{self.pid}/stat"))

    def main_thread_cpu_seconds(self) -> float:
        """CPU time of the main thread alone: for relay, its event loop."""
        return _cpu_seconds(Path(f"/proc/{self.pid}/task/{self.pid}/stat"))

    def peak_rss_mib(self) -> float:
        return _status_kib(self.pid, "VmHWM") / 1024

    def rss_mib(self) -> float:
        return _status_kib(self.pid, "VmRSS") / 1024


class Relay(Service):
    """A running ``relay serve``."""

    def metrics(self) -> dict[str, float]:
        return parse_metrics(get(f"{self.url}/metrics").decode())

    def worker_pids(self) -> list[int]:
        """relay's child processes: its validation workers."""
        pids: list[int] = []
        for children in Path(f"/proc/{self.pid}/task").glob("*/children"):
            pids.extend(int(pid) for pid in children.read_text().split())
        return pids

    def workers_cpu_seconds(self) -> float:
        """CPU time of the workers running now (a replaced one is left out)."""
        return sum(
            _cpu_seconds(Path(f"/proc/{pid}/stat")) for pid in self.worker_pids()
        )

    def workers_peak_rss_mib(self) -> float:
        """The workers' peak RSS, added up."""
        return sum(_status_kib(pid, "VmHWM") for pid in self.worker_pids()) / 1024


def free_port() -> int:
    """A loopback port nothing listens on (the kernel's pick, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(url: str, timeout_s: float = 10.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        body: bytes = response.read()
        return body


@contextlib.contextmanager
def sandbox(workdir: Path) -> Iterator[Service]:
    """Runs ``relay sandbox`` on a free port until the block ends."""
    port = free_port()
    command = [sys.executable, "-m", "relay", "sandbox", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    log_path = workdir / f"sandbox-{port}.log"
    spawned_at = time.monotonic()
    with _running(command, log_path, dict(os.environ)) as process:
        _wait_until_answering(process, f"{url}/_sandbox/stats")
        yield Service(process, url, log_path, spawned_at, time.monotonic())


def sandbox_stats(sense: Service) -> dict[str, object]:
    stats: dict[str, object] = orjson.loads(get(f"{sense.url}/_sandbox/stats"))
    return stats


@contextlib.contextmanager
def relay(workdir: Path, sense_url: str, **settings: str) -> Iterator[Relay]:
    """Runs ``relay serve`` on the outbox in ``workdir``; yields it once serving.

    ``settings`` are extra RELAY_* variables, e.g. ``OUTBOX__DURABILITY="normal"``.
    """
    environment = _relay_environment(workdir, sense_url, settings)
    log_path = workdir / f"relay-{time.monotonic_ns()}.log"
    command = [sys.executable, "-m", "relay", "serve"]
    spawned_at = time.monotonic()
    with _running(command, log_path, environment) as process:
        port = _announced_port(process, log_path)
        url = f"http://127.0.0.1:{port}"
        yield Relay(process, url, log_path, spawned_at, time.monotonic())


@dataclass(frozen=True)
class SyncRun:
    seconds: float
    cpu_s: float
    peak_rss_bytes: int


def sync(workdir: Path, sense_url: str, source: Path) -> SyncRun:
    """Runs ``relay sync SOURCE`` to its end, watching its memory as it goes."""
    environment = _relay_environment(workdir, sense_url, {})
    log_path = workdir / "sync.log"
    report = workdir / "sync-report.jsonl"
    command = [
        sys.executable,
        "-m",
        "relay",
        "sync",
        str(source),
        "--report",
        str(report),
    ]
    started = time.monotonic()
    peak_kib, cpu_s = 0, 0.0
    with _running(command, log_path, environment) as process:
        while process.poll() is None:
            # VmHWM is the peak so far; it is gone once the process is reaped.
            with contextlib.suppress(OSError, BenchError):
                peak_kib = max(peak_kib, _status_kib(process.pid, "VmHWM"))
                cpu_s = _cpu_seconds(Path(f"/proc/{process.pid}/stat"))
            time.sleep(SYNC_POLL_S)
    seconds = time.monotonic() - started
    if process.returncode != 0:
        raise BenchError(f"relay sync exited with {process.returncode}; see {log_path}")
    return SyncRun(seconds, cpu_s, peak_kib * 1024)


def _relay_environment(
    workdir: Path, sense_url: str, settings: dict[str, str]
) -> dict[str, str]:
    client_id, client_secret = SANDBOX_CLIENT
    return {
        **os.environ,
        "RELAY_SERVER__PORT": "0",
        "RELAY_SERVER__HOOK_TOKENS": orjson.dumps([HOOK_TOKEN]).decode(),
        "RELAY_SENSE__BASE_URL": f"{sense_url}/v1",
        "RELAY_SENSE__TOKEN_URL": f"{sense_url}/oauth2/token",
        "RELAY_SENSE__CLIENT_ID": client_id,
        "RELAY_SENSE__CLIENT_SECRET": client_secret,
        "RELAY_OUTBOX__PATH": str(workdir / "outbox.db"),
        **{f"RELAY_{name}": value for name, value in settings.items()},
    }


@contextlib.contextmanager
def _running(
    command: list[str], log_path: Path, environment: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """Starts a process logging to ``log_path``; SIGTERM, then SIGKILL, at exit."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=environment
        )
    try:
        yield process
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Asks a process to stop and waits; kills it if it takes too long."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _announced_port(process: subprocess.Popen[bytes], log_path: Path) -> int:
    """Reads the port from relay's ``relay_started`` event, polling its log."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        for line in log_path.read_bytes().splitlines():
            event = _event(line)
            port = event.get("port")
            if event.get("event") == "relay_started" and isinstance(port, int):
                return port
        if process.poll() is not None:
            raise BenchError(f"relay exited with {process.returncode}; see {log_path}")
        time.sleep(0.01)
    raise BenchError(f"relay did not start within {START_TIMEOUT_S} s")


def _event(line: bytes) -> dict[str, object]:
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return {}
    return event if isinstance(event, dict) else {}


def _wait_until_answering(process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{process.args!r} exited with {process.returncode}")
        with contextlib.suppress(OSError):
            get(url, timeout_s=1.0)
            return
        time.sleep(0.05)
    raise BenchError(f"nothing answered {url} within {START_TIMEOUT_S} s")


def _cpu_seconds(stat_path: Path) -> float:
    # The fields after the command name, which sits in parentheses: utime and
    # stime are the 12th and 13th of them, in clock ticks.
    fields = stat_path.read_text().rpartition(")")[2].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _status_kib(pid: int, key: str) -> int:
    # /proc/PID/status gives sizes such as "VmHWM:   123456 kB".
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0])
    raise BenchError(f"no {key} in /proc/{pid}/status")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text as ``{'name{labels}': value}``, comments left out."""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples
