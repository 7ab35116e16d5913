"""The benchmark scenarios. Each starts its own processes in ``workdir``.

Every scenario returns one Result. relay runs with its defaults, except for
the durability the caller picks and what the scenario's docstring names.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import export, load, mixed, processes
from bench.observe import Options, Usage, observe
from bench.processes import BenchError, Relay

ACCEPTED_HOOKS = 'relay_hook_requests_total{status="202"}'
ACCEPTED = 'relay_records_accepted_total{entity="candidates"}'
DELIVERED = 'relay_records_delivered_total{entity="candidates"}'
PENDING = 'relay_outbox_records{entity="candidates"}'
DELIVERED_ANY = "relay_records_delivered_total{"
PENDING_ANY = "relay_outbox_records{"
DRAIN_POLL_S = 0.05
WATCH_POLL_S = 0.5

Metrics = dict[str, float]


@dataclass(frozen=True)
class Result:
    """One scenario's headline number, its target and the supporting figures."""

    scenario: str
    durability: str
    value: float
    unit: str
    target: float
    at_most: bool
    """True when the target is a ceiling (memory), False for a floor."""
    details: dict[str, object] = field(default_factory=dict)
    ceilings: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Further targets the run must stay under: name -> (measured, ceiling)."""

    @property
    def met(self) -> bool:
        under = all(value <= ceiling for value, ceiling in self.ceilings.values())
        if self.at_most:
            return under and self.value <= self.target
        return under and self.value >= self.target

    def line(self) -> str:
        """The fixed-format result line."""
        sign = "<=" if self.at_most else ">="
        verdict = "met" if self.met else "MISSED"
        extra = " ".join(f"{key}={value}" for key, value in self.details.items())
        for name, (value, ceiling) in self.ceilings.items():
            extra = f"{name}={value:,.0f} (target <= {ceiling:,.0f}) {extra}"
        return (
            f"RESULT {self.scenario} durability={self.durability}: "
            f"{self.value:,.0f} {self.unit} (target {sign} {self.target:,.0f}) "
            f"{verdict} | {extra}"
        )


def ingest(
    records_per_hook: int, durability: str, options: Options, workdir: Path
) -> Result:
    """Hooks of ``records_per_hook`` candidates posted by wrk for a fixed time.

    The sandbox is reachable and relay's flushers deliver full batches while
    hooks arrive, so this is a steady state, not a burst into an idle outbox.
    The headline counts the 202s relay itself counted, over wrk's duration.
    """
    load.require_wrk()
    name = "ingest-single" if records_per_hook == 1 else "ingest-batch"
    with (
        processes.sandbox(workdir) as sense,
        processes.relay(workdir, sense.url, OUTBOX__DURABILITY=durability) as relay,
    ):
        hooks_url = f"{relay.url}/v1/candidates"
        _wrk(hooks_url, records_per_hook, options, workdir, warmup=True)
        before = relay.metrics()
        with observe(options, f"{name}-{durability}", relay, sense) as usage:
            run = _wrk(hooks_url, records_per_hook, options, workdir, warmup=False)
        after = relay.metrics()
    figures = _ingest_figures(run, usage, before, after)
    if records_per_hook == 1:
        hooks = _number(figures["hooks_per_s"])
        return Result(name, durability, hooks, "hooks/s", 5_000, False, figures)
    records = _number(figures["records_per_s"])
    return Result(name, durability, records, "records/s", 50_000, False, figures)


def _ingest_figures(
    run: load.WrkRun, usage: Usage, before: Metrics, after: Metrics
) -> dict[str, object]:
    return {
        "hooks_per_s": round(_delta(before, after, ACCEPTED_HOOKS) / run.duration_s),
        "records_per_s": round(_delta(before, after, ACCEPTED) / run.duration_s),
        "seconds": round(run.duration_s, 2),
        "p50_ms": run.p50_ms,
        "p99_ms": run.p99_ms,
        "non_2xx": run.non_2xx,
        "socket_errors": run.socket_errors + run.timeouts,
        "delivered_meanwhile": round(_delta(before, after, DELIVERED)),
        **usage.cores(),
        "wrk_cores": round(run.cpu_s / run.duration_s, 2),
    }


def _wrk(
    hooks_url: str,
    records_per_hook: int,
    options: Options,
    workdir: Path,
    *,
    warmup: bool,
) -> load.WrkRun:
    return load.wrk(
        hooks_url,
        records_per_hook,
        seconds=options.warmup_seconds if warmup else options.seconds,
        connections=options.connections,
        workdir=workdir,
        run_name="warmup" if warmup else "measured",
    )


def mixed_load(durability: str, options: Options, workdir: Path) -> Result:
    """Hooks of all ten entity types at a steady ``mixed_rate`` records/s.

    Hooks of 100 records of one type each, the types taking turns, are posted
    on a fixed schedule: a warm-up, then ``seconds`` measured. relay keeps the
    dependency order between the types and its default flush settings. The
    headline is the records Sense received per second during the measured
    time, summed over the types; the target is 95 % of the offered rate.
    """
    with (
        processes.sandbox(workdir) as sense,
        processes.relay(workdir, sense.url, OUTBOX__DURABILITY=durability) as relay,
    ):
        rate = options.mixed_rate
        mixed.post_steadily(relay.url, rate, options.warmup_seconds, "warmup")
        before, batches_before = relay.metrics(), _batches(sense)
        with observe(options, f"mixed-{durability}", relay, sense) as usage:
            started = time.monotonic()
            posted = mixed.post_steadily(relay.url, rate, options.seconds, "measured")
            seconds = time.monotonic() - started
        after, batches = relay.metrics(), _batches(sense) - batches_before
    delivered = _total(after, DELIVERED_ANY) - _total(before, DELIVERED_ANY)
    details: dict[str, object] = {
        "offered_per_s": round(rate),
        "accepted_per_s": round(posted / seconds),
        "seconds": round(seconds, 2),
        "batches": batches,
        "records_per_batch": round(delivered / max(batches, 1), 1),
        "pending_at_end": round(_total(after, PENDING_ANY)),
        **usage.cores(),
    }
    return Result(
        "mixed",
        durability,
        delivered / seconds,
        "records/s",
        0.95 * rate,
        False,
        details,
    )


def _batches(sense: processes.Service) -> int:
    return round(_number(processes.sandbox_stats(sense)["batches"]))


def _total(metrics: Metrics, family: str) -> float:
    """The sum of one metric over its entity labels."""
    return sum(value for key, value in metrics.items() if key.startswith(family))


def drain(durability: str, options: Options, workdir: Path) -> Result:
    """A backlog built while Sense is unreachable, then drained to the sandbox.

    The rate counts from the spawn of the second relay process (start-up
    included) until ``relay_outbox_records`` reads 0.
    """
    backlog = _build_backlog(workdir, options.drain_records, durability)
    with (
        processes.sandbox(workdir) as sense,
        processes.relay(workdir, sense.url, OUTBOX__DURABILITY=durability) as relay,
    ):
        with observe(options, "drain", relay, sense) as usage:
            drained_at = _wait_until_drained(relay, max(120.0, backlog / 1_000))
        stats = processes.sandbox_stats(sense)
    _check_received(stats, backlog)
    details: dict[str, object] = {
        "records": backlog,
        "seconds": round(drained_at - relay.spawned_at, 2),
        "startup_s": round(relay.started_at - relay.spawned_at, 2),
        "rate_after_start": round(backlog / (drained_at - relay.started_at)),
        "batches": stats["batches"],
        "records_per_batch": round(_number(stats["mean_records_per_batch"]), 1),
        "body_bytes_per_batch": round(_number(stats["mean_body_bytes"])),
        "token_requests": stats["token_requests"],
        **usage.cores(),
    }
    rate = backlog / (drained_at - relay.spawned_at)
    return Result("drain", durability, rate, "records/s", 20_000, False, details)


def rss(durability: str, options: Options, workdir: Path) -> Result:
    """relay's peak RSS while a backlog is ingested, then after a restart.

    Sense is unreachable during ingest; the restarted relay delivers to the
    sandbox and is watched for ``rss_watch_seconds`` or until drained. Each
    peak adds up relay's process and its validation workers.
    """
    closed = f"http://127.0.0.1:{processes.free_port()}"
    setting = {"OUTBOX__DURABILITY": durability}
    with processes.relay(workdir, closed, **setting) as relay:
        start_mib = relay.rss_mib()
        ingest_s = load.post_backlog(relay.url, options.rss_records)
        backlog = round(relay.metrics()[PENDING])
        ingest_workers_peak = relay.workers_peak_rss_mib()
        ingest_peak = relay.peak_rss_mib() + ingest_workers_peak
    with (
        processes.sandbox(workdir) as sense,
        processes.relay(workdir, sense.url, **setting) as relay,
    ):
        with observe(options, "rss", relay, sense):
            delivered = _watch(relay, options.rss_watch_seconds)
        restart_peak = relay.peak_rss_mib() + relay.workers_peak_rss_mib()
    details: dict[str, object] = {
        "backlog": backlog,
        "ingest_peak_mib": round(ingest_peak, 1),
        "of_which_workers_mib": round(ingest_workers_peak, 1),
        "restart_peak_mib": round(restart_peak, 1),
        "rss_at_start_mib": round(start_mib, 1),
        "ingest_records_per_s": round(backlog / ingest_s),
        "restart_startup_s": round(relay.started_at - relay.spawned_at, 2),
        "delivered_while_watched": delivered,
    }
    peak = max(ingest_peak, restart_peak)
    return Result("rss", durability, peak, "MiB", 150, True, details)


def sync(durability: str, options: Options, workdir: Path) -> Result:
    """``relay sync`` loading realistic candidates from a JSON Lines file.

    The file is written before the clock starts. The headline runs from the
    spawn of ``relay sync`` until it exits; its peak RSS is a second target.
    """
    export_path = workdir / "candidates.jsonl"
    size = export.write_candidates(export_path, options.sync_records)
    with processes.sandbox(workdir) as sense:
        run = processes.sync(workdir, sense.url, export_path)
        stats = processes.sandbox_stats(sense)
    _check_received(stats, options.sync_records)
    details: dict[str, object] = {
        "records": options.sync_records,
        "file_mb": round(size / 1e6),
        "records_per_s": round(options.sync_records / run.seconds),
        "batches": stats["batches"],
        "records_per_batch": round(_number(stats["mean_records_per_batch"]), 1),
        "body_bytes_per_batch": round(_number(stats["mean_body_bytes"])),
        "token_requests": stats["token_requests"],
        "sync_cores": round(run.cpu_s / run.seconds, 2),
    }
    ceilings = {"peak_rss_mb": (run.peak_rss_bytes / 1e6, 200.0)}
    return Result("sync", durability, run.seconds, "s", 60, True, details, ceilings)


def _build_backlog(workdir: Path, records: int, durability: str) -> int:
    """Fills the outbox in ``workdir`` while Sense is unreachable."""
    closed = f"http://127.0.0.1:{processes.free_port()}"
    with processes.relay(workdir, closed, OUTBOX__DURABILITY=durability) as relay:
        load.post_backlog(relay.url, records)
        return round(relay.metrics()[PENDING])


def _wait_until_drained(relay: Relay, timeout_s: float) -> float:
    """Polls /metrics until nothing is pending; returns time.monotonic() then."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if relay.metrics()[PENDING] == 0:
            return time.monotonic()
        time.sleep(DRAIN_POLL_S)
    raise BenchError(f"relay did not drain its outbox within {timeout_s:.0f} s")


def _watch(relay: Relay, seconds: float) -> int:
    """Lets relay run for ``seconds`` or until drained; returns records delivered."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and relay.metrics()[PENDING] > 0:
        time.sleep(WATCH_POLL_S)
    return round(relay.metrics().get(DELIVERED, 0))


def _check_received(stats: dict[str, object], backlog: int) -> None:
    received = stats["records"]
    if not isinstance(received, dict) or received.get("candidates") != backlog:
        raise BenchError(f"the sandbox received {received}, not {backlog} candidates")


def _delta(before: Metrics, after: Metrics, key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


def _number(value: object) -> float:
    if not isinstance(value, int | float):
        raise BenchError(f"expected a number from the sandbox, got {value!r}")
    return float(value)
