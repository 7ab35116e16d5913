"""The composition root: wires the outbox, flushers and listeners together."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass

import aiohttp
import structlog
from aiohttp import web

from relay import entities
from relay.backoff import Backoff, PauseGate
from relay.batch import Packer
from relay.config import Settings
from relay.flusher import Flusher
from relay.ingest import Ingest
from relay.metrics import Metrics
from relay.ordering import DependencyOrder
from relay.outbox import Outbox
from relay.sense import SenseClient
from relay.token import TokenCache

log = structlog.get_logger("relay.daemon")

# How often the in-memory outbox figures are re-read from the file, to pick
# up rows another process (a dead-letter retry) put there.
STATS_REFRESH_S = 30.0


@dataclass
class Running:
    """A started daemon, as tests and the CLI see it."""

    settings: Settings
    outbox: Outbox
    metrics: Metrics
    port: int
    stopping: asyncio.Event
    crashed: asyncio.Event


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Running]:
    """Starts relay; on exit stops intake, finishes in-flight batches, closes.

    In-flight work gets ``shutdown.drain_timeout_seconds``; whatever is cut
    short stays in the outbox and is sent after the next start.
    """
    metrics = Metrics()
    stopping, crashed = asyncio.Event(), asyncio.Event()
    async with (
        Outbox.open(
            settings.outbox.path,
            settings.outbox.durability,
            settings.outbox.max_records,
            settings.outbox.max_bytes,
            settings.outbox.skip_unchanged,
        ) as box,
        aiohttp.ClientSession() as session,
    ):
        _watch_outbox(box, metrics)
        client = _sense_client(settings, session, metrics, stopping)
        tasks = _start_flushers(settings, box, client, metrics, stopping, crashed)
        refresher = _watched(_refresh_stats(box, stopping), "stats", crashed)
        tasks.append(asyncio.create_task(refresher, name="stats"))
        runner, port = await _start_ingest(settings, box, metrics, client)
        log.info(
            "relay_started",
            host=settings.server.host,
            port=port,
            outbox=str(settings.outbox.path),
        )
        try:
            yield Running(settings, box, metrics, port, stopping, crashed)
        finally:
            await _stop(
                runner, tasks, stopping, settings.shutdown.drain_timeout_seconds
            )


async def serve(settings: Settings) -> int:
    """Runs relay until SIGTERM or SIGINT, then drains; returns the exit status.

    If a background task crashes, relay stops with status 1 rather than run
    on with an entity type no longer flushing; a supervisor restarts it.
    """
    signalled = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, signalled.set)
    async with running(settings) as relay:
        waiters = [asyncio.ensure_future(e.wait()) for e in (signalled, relay.crashed)]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        log.info(
            "relay_stopping", reason="crash" if relay.crashed.is_set() else "signal"
        )
    log.info("relay_stopped")
    return 1 if relay.crashed.is_set() else 0


def _watch_outbox(box: Outbox, metrics: Metrics) -> None:
    metrics.watch_outbox(box)
    for entity, ledger in box.ledger.items():
        if ledger.recovered:
            log.info("outbox_recovered", entity=entity, records=ledger.recovered)


@contextlib.asynccontextmanager
async def sense_client(settings: Settings) -> AsyncIterator[SenseClient]:
    """A client for one-off calls to Sense from the command line."""
    async with aiohttp.ClientSession() as session:
        yield _sense_client(settings, session, Metrics(), asyncio.Event())


def _sense_client(
    settings: Settings,
    session: aiohttp.ClientSession,
    metrics: Metrics,
    stopping: asyncio.Event,
) -> SenseClient:
    backoff = Backoff(settings.retry.base_seconds, settings.retry.cap_seconds)
    tokens = TokenCache(session, settings.sense, backoff, metrics, stopping)
    gate = PauseGate(stopping)
    return SenseClient(session, settings.sense, tokens, gate, metrics)


def _start_flushers(
    settings: Settings,
    box: Outbox,
    client: SenseClient,
    metrics: Metrics,
    stopping: asyncio.Event,
    crashed: asyncio.Event,
) -> list[asyncio.Task[None]]:
    packer = Packer(
        settings.flush.max_compressed_bytes,
        settings.flush.compression_level,
        settings.sense.compress,
    )
    backoff = Backoff(settings.retry.base_seconds, settings.retry.cap_seconds)
    order = DependencyOrder(box)
    flushers = [
        Flusher(
            entity_type.path,
            box,
            client,
            packer,
            settings.flush,
            backoff,
            metrics,
            order,
        )
        for entity_type in entities.ENTITY_TYPES
    ]
    return [
        asyncio.create_task(
            _watched(f.run(stopping), f"flush-{f.entity}", crashed),
            name=f"flush-{f.entity}",
        )
        for f in flushers
    ]


async def _watched(work: Awaitable[None], name: str, crashed: asyncio.Event) -> None:
    """Runs a background coroutine; a crash is logged and stops the daemon."""
    try:
        await work
    except Exception:
        log.exception("task_crashed", task=name)
        crashed.set()
        raise


async def _refresh_stats(box: Outbox, stopping: asyncio.Event) -> None:
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), STATS_REFRESH_S)
        if not stopping.is_set():
            await box.refresh_stats()


async def _start_ingest(
    settings: Settings, box: Outbox, metrics: Metrics, client: SenseClient
) -> tuple[web.AppRunner, int]:
    ingest = Ingest(settings.server, box, metrics, client)
    runner = web.AppRunner(ingest.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(
        runner, settings.server.host, settings.server.port, reuse_address=True
    )
    await site.start()
    sockets = runner.addresses
    port = int(sockets[0][1]) if sockets else settings.server.port
    return runner, port


async def _stop(
    runner: web.AppRunner,
    tasks: list[asyncio.Task[None]],
    stopping: asyncio.Event,
    drain_timeout_s: float,
) -> None:
    await runner.cleanup()
    stopping.set()
    done, pending = await asyncio.wait(tasks, timeout=drain_timeout_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    if pending:
        log.warning("drain_timed_out", tasks=[t.get_name() for t in pending])
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.error("task_failed", task=task.get_name())
