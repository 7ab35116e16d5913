"""Watching processes during a measurement: CPU used and, on request, py-spy."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.processes import BenchError, Relay, Service

PY_SPY_RATE_HZ = 200
PY_SPY_MAX_S = 3600


@dataclass(frozen=True)
class Options:
    """How long and how large the scenarios run (the CLI's flags)."""

    seconds: float = 10.0
    warmup_seconds: float = 2.0
    connections: int = 64
    drain_records: int = 200_000
    rss_records: int = 1_000_000
    rss_watch_seconds: float = 30.0
    sync_records: int = 1_000_000
    mixed_rate: float = 10_000.0
    profile_dir: Path | None = None


@dataclass
class Usage:
    """CPU each watched process used during the block, in cores (CPU s / s)."""

    used_cores: dict[str, float] = field(default_factory=dict)

    def cores(self) -> dict[str, float]:
        return {f"{name}_cores": round(c, 2) for name, c in self.used_cores.items()}


@contextlib.contextmanager
def observe(
    options: Options, name: str, relay: Relay, sandbox: Service
) -> Iterator[Usage]:
    """Measures CPU use of relay and the sandbox; samples them if profiling."""
    services = {"relay": relay, "sandbox": sandbox}
    usage = Usage()
    with contextlib.ExitStack() as stack:
        if options.profile_dir is not None:
            for role, service in services.items():
                output = options.profile_dir / f"{name}-{role}.txt"
                stack.enter_context(_py_spy(service.pid, output))
        started = time.monotonic()
        before = _cpu_seconds(relay, sandbox)
        yield usage
        elapsed = time.monotonic() - started
        for role, used in _cpu_seconds(relay, sandbox).items():
            usage.used_cores[role] = (used - before[role]) / elapsed


def _cpu_seconds(relay: Relay, sandbox: Service) -> dict[str, float]:
    # relay's event loop runs on its main thread; SQLite and gzip on others,
    # and validation of large hooks in worker processes.
    return {
        "relay": relay.cpu_seconds(),
        "sandbox": sandbox.cpu_seconds(),
        "relay_loop": relay.main_thread_cpu_seconds(),
        "relay_workers": relay.workers_cpu_seconds(),
    }


@contextlib.contextmanager
def _py_spy(pid: int, output: Path) -> Iterator[None]:
    """Samples a process with py-spy until the block ends."""
    output.parent.mkdir(parents=True, exist_ok=True)
    # Raw collapsed stacks, rooted at each thread: greppable, and readable by
    # speedscope or flamegraph.pl. --nonblocking never pauses the process;
    # --subprocesses samples relay's validation workers too.
    command = [
        _py_spy_path(), "record", "--pid", str(pid),
        "--rate", str(PY_SPY_RATE_HZ), "--duration", str(PY_SPY_MAX_S),
        "--format", "raw", "--threads", "--subprocesses", "--nonblocking",
        "--output", str(output),
    ]  # fmt: skip
    sampler = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield
    finally:
        # On SIGINT py-spy writes what it has sampled, then exits.
        sampler.send_signal(signal.SIGINT)
        try:
            sampler.wait(30)
        except subprocess.TimeoutExpired:
            sampler.kill()
            sampler.wait()


def _py_spy_path() -> str:
    # Installed in the virtualenv beside this Python, which may not be on PATH.
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise BenchError("py-spy is not installed: .venv/bin/pip install py-spy")
    return found
