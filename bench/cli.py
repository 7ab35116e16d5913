"""``bench/run.py``'s command line: picks scenarios, runs them, prints results."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import platform
import shlex
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from bench import scenarios
from bench.observe import Options
from bench.processes import BenchError
from bench.scenarios import Result

Scenario = Callable[[str, Options, Path], Result]
RUNNERS: dict[str, Scenario] = {
    "ingest-single": functools.partial(scenarios.ingest, 1),
    "ingest-batch": functools.partial(scenarios.ingest, 100),
    "drain": scenarios.drain,
    "rss": scenarios.rss,
    "sync": scenarios.sync,
    "mixed": scenarios.mixed_load,
}
SCENARIOS = tuple(RUNNERS)
# Without --durability, these run once per durability setting.
BOTH_DURABILITIES = ("ingest-single", "ingest-batch")
DURABILITIES = ("full", "normal")
ENTRY_POINT = ".venv/bin/python bench/run.py"
# The flags that change what each scenario measures.
SIZING_FLAGS = {
    "ingest-single": ("seconds", "connections"),
    "ingest-batch": ("seconds", "connections"),
    "drain": ("drain_records",),
    "rss": ("rss_records", "rss_watch_seconds"),
    "sync": ("sync_records",),
    "mixed": ("seconds", "mixed_rate"),
}

DESCRIPTION = """\
Benchmarks relay on loopback. Each scenario starts a Sense sandbox and relay
(python -m relay ...) in a fresh temporary directory and stops them after.

  ingest-single  hooks of 1 candidate from 64 connections (wrk), hooks/s
  ingest-batch   hooks of 100 candidates (wrk), records/s
  drain          a 200,000-record backlog built while Sense is unreachable,
                 delivered to the sandbox after a restart, records/s
  rss            relay's peak RSS with a 1,000,000-record backlog, during
                 ingest and after a restart
  sync           relay sync loading 1,000,000 candidates from a JSON Lines
                 file into the sandbox: seconds, and peak RSS
  mixed          hooks of all ten entity types at a steady rate (10,000
                 records/s), records delivered to the sandbox per second

Without --durability, the ingest scenarios run once with outbox.durability
"full" and once with "normal"; drain, rss and mixed use "full" (relay's
default).
Scenarios run in the order above, whatever order they are named in.
Needs wrk for the ingest scenarios: apt-get update && apt-get install -y wrk

Prints one RESULT line per scenario run and the command that reproduces it.
Exits 0 when every target is met, 3 when one is missed, 1 when a run fails.
"""


def parser() -> argparse.ArgumentParser:
    args = argparse.ArgumentParser(
        prog="bench/run.py",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    args.add_argument(
        "scenario", nargs="*", metavar="scenario", help=f"{', '.join(SCENARIOS)}"
    )
    args.add_argument("--durability", choices=DURABILITIES)
    args.add_argument("--seconds", type=float, default=10.0, help="ingest duration")
    args.add_argument("--connections", type=int, default=64, help="wrk connections")
    args.add_argument("--drain-records", type=int, default=200_000)
    args.add_argument("--rss-records", type=int, default=1_000_000)
    args.add_argument(
        "--rss-watch-seconds",
        type=float,
        default=30.0,
        help="how long the restarted relay is watched",
    )
    args.add_argument("--sync-records", type=int, default=1_000_000)
    args.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample relay with py-spy during each measurement; stacks go to DIR",
    )
    args.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each scenario N times and report the median run",
    )
    args.add_argument(
        "--mixed-rate",
        type=float,
        default=10_000.0,
        help="records/s the mixed scenario offers",
    )
    args.add_argument("--results", type=Path, help="append results as JSON lines")
    return args


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    unknown = set(args.scenario) - set(SCENARIOS)
    if unknown:
        parser().error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    options = Options(
        seconds=args.seconds,
        connections=args.connections,
        drain_records=args.drain_records,
        rss_records=args.rss_records,
        rss_watch_seconds=args.rss_watch_seconds,
        sync_records=args.sync_records,
        mixed_rate=args.mixed_rate,
        profile_dir=args.profile,
    )
    print(_machine(), flush=True)
    missed = 0
    for scenario, durability in _runs(args.scenario or [*SCENARIOS], args.durability):
        try:
            runs = [_run(scenario, durability, options) for _ in range(args.repeat)]
        except BenchError as exc:
            print(f"FAILED {scenario} durability={durability}: {exc}", flush=True)
            return 1
        result = _median(runs)
        missed += not result.met
        _report(result, _reproduce(scenario, durability, args), args.results)
    return 0 if not missed else 3


def _median(runs: list[Result]) -> Result:
    """The run with the median headline (the lower one of an even count)."""
    if len(runs) == 1:
        return runs[0]
    ordered = sorted(runs, key=lambda run: run.value)
    median = ordered[(len(ordered) - 1) // 2]
    values = "/".join(f"{run.value:.0f}" for run in runs)
    return dataclasses.replace(median, details={**median.details, "runs": values})


def _machine() -> str:
    """Where and on what the numbers were measured, for the record."""
    root = Path(__file__).resolve().parents[1]
    commit = _git(root, "rev-parse", "--short", "HEAD") or "unknown"
    # Says whether relay/ differs from the commit measured; never writes.
    changed = _git(root, "diff", "--stat", "HEAD", "--", "relay") not in ("", None)
    return (
        f"relay {commit}{' (relay/ modified)' if changed else ''}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}"
    )


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(root), *args],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.decode().strip() if done.returncode == 0 else None


def _runs(chosen: list[str], durability: str | None) -> list[tuple[str, str]]:
    runs = []
    for scenario in SCENARIOS:
        if scenario not in chosen:
            continue
        if durability is not None:
            runs.append((scenario, durability))
        elif scenario in BOTH_DURABILITIES:
            runs.extend((scenario, d) for d in DURABILITIES)
        else:
            runs.append((scenario, "full"))
    return runs


def _run(scenario: str, durability: str, options: Options) -> Result:
    print(f"running {scenario} durability={durability} ...", flush=True)
    with tempfile.TemporaryDirectory(prefix=f"relay-bench-{scenario}-") as tmp:
        return RUNNERS[scenario](durability, options, Path(tmp))


def _reproduce(scenario: str, durability: str, args: argparse.Namespace) -> str:
    """The command that runs this one scenario again with the same sizes."""
    defaults = parser().parse_args([])
    words = [scenario]
    for name in (*SIZING_FLAGS[scenario], "repeat"):
        value = getattr(args, name)
        if value != getattr(defaults, name):
            words += [f"--{name.replace('_', '-')}", f"{value:g}"]
    words += ["--durability", durability]
    return f"{ENTRY_POINT} {shlex.join(words)}"


def _report(result: Result, command: str, results_path: Path | None) -> None:
    print(result.line(), flush=True)
    print(f"REPRODUCE {command}", flush=True)
    if results_path is not None:
        line = {**dataclasses.asdict(result), "met": result.met, "command": command}
        with results_path.open("ab") as out:
            out.write(orjson.dumps(line, default=str) + b"\n")
