"""The composition root: wires the outbox, flushers and listeners together."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
import structlog
from aiohttp import web

from relay import config, entities
from relay.ats import AtsClient
from relay.backoff import Backoff, PauseGate, wait_for_any
from relay.batch import Packer
from relay.config import Settings
from relay.flusher import Flusher
from relay.forwarder import Forwarder
from relay.inbox import Inbox
from relay.ingest import Ingest
from relay.metrics import Metrics
from relay.notify import Notifier
from relay.ordering import DependencyOrder
from relay.outbox import Outbox
from relay.sense import SenseClient
from relay.token import TokenCache
from relay.uploader import Uploader
from relay.uploads import Uploads
from relay.validators import Validators

if TYPE_CHECKING:
    from relay.oidc import JwtVerifier

log = structlog.get_logger("relay.daemon")

# How often the in-memory outbox figures (records and resume uploads) are
# re-read from the file, to pick up rows another process (a dead-letter
# retry) put there.
STATS_REFRESH_S = 30.0


@dataclass
class Running:
    """A started daemon, as tests and the CLI see it."""

    settings: Settings
    outbox: Outbox
    uploads: Uploads
    metrics: Metrics
    port: int
    stopping: asyncio.Event
    crashed: asyncio.Event
    inbox: Inbox | None = None
    writeback_port: int | None = None


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Running]:
    """Starts relay; on exit stops intake, finishes in-flight batches, closes.

    In-flight work gets ``shutdown.drain_timeout_seconds``; whatever is cut
    short stays in the outbox and is sent after the next start.
    """
    metrics = Metrics()
    metrics.flush_max_age_seconds.set(settings.flush.max_age_seconds)
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
        Validators.running(
            settings.server.worker_count(),
            settings.server.max_request_records,
            metrics,
        ) as validators,
    ):
        _watch_outbox(box, metrics)
        uploads = await _watch_uploads(box, metrics)
        client = _sense_client(settings, session, metrics, stopping)
        tasks = _start_flushers(settings, box, client, metrics, stopping, crashed)
        tasks.append(
            _start_uploader(settings, uploads, box, client, metrics, stopping, crashed)
        )
        refreshing = _refresh_stats(box, uploads, stopping)
        refresher = _watched(refreshing, "stats", crashed)
        tasks.append(asyncio.create_task(refresher, name="stats"))
        writebacks = None
        if settings.writeback.enabled:
            writebacks = await _start_writebacks(
                settings, box, session, metrics, stopping, crashed
            )
            tasks.append(writebacks.forwarding)
        runner, port = await _start_ingest(
            settings, Ingest(settings.server, box, metrics, client, uploads, validators)
        )
        log.info(
            "relay_started",
            host=settings.server.host,
            port=port,
            outbox=str(settings.outbox.path),
        )
        running = Running(settings, box, uploads, metrics, port, stopping, crashed)
        if writebacks is not None:
            running.inbox, running.writeback_port = writebacks.inbox, writebacks.port
        try:
            yield running
        finally:
            if writebacks is not None:
                await writebacks.runner.cleanup()
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
    systemd = Notifier()
    async with running(settings) as relay:
        systemd.send(READY="1", STATUS=f"serving hooks on port {relay.port}")
        watchdog = asyncio.create_task(
            systemd.keep_alive(lambda: _healthy(relay), relay.stopping)
        )
        await wait_for_any(signalled, relay.crashed)
        reason = "crash" if relay.crashed.is_set() else "signal"
        log.info("relay_stopping", reason=reason)
        systemd.send(STOPPING="1", STATUS=f"draining the outbox ({reason})")
    await watchdog
    log.info("relay_stopped")
    return 1 if relay.crashed.is_set() else 0


async def _healthy(relay: Running) -> bool:
    """What the systemd watchdog vouches for: no crashed task, a writable outbox."""
    return not relay.crashed.is_set() and await relay.outbox.check_writable()


def _watch_outbox(box: Outbox, metrics: Metrics) -> None:
    metrics.watch_outbox(box)
    for entity, ledger in box.ledger.items():
        if ledger.recovered:
            log.info("outbox_recovered", entity=entity, records=ledger.recovered)


async def _watch_uploads(box: Outbox, metrics: Metrics) -> Uploads:
    uploads = await Uploads.load(box)
    metrics.watch_uploads(uploads)
    if uploads.ledger.recovered:
        log.info("resumes_recovered", uploads=uploads.ledger.recovered)
    return uploads


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


def _start_uploader(
    settings: Settings,
    uploads: Uploads,
    box: Outbox,
    client: SenseClient,
    metrics: Metrics,
    stopping: asyncio.Event,
    crashed: asyncio.Event,
) -> asyncio.Task[None]:
    backoff = Backoff(settings.retry.base_seconds, settings.retry.cap_seconds)
    uploader = Uploader(
        uploads, box, client, backoff, metrics, settings.flush.concurrency
    )
    work = _watched(uploader.run(stopping), "upload-resumes", crashed)
    return asyncio.create_task(work, name="upload-resumes")


async def _watched(work: Awaitable[None], name: str, crashed: asyncio.Event) -> None:
    """Runs a background coroutine; a crash is logged and stops the daemon."""
    try:
        await work
    except Exception:
        log.exception("task_crashed", task=name)
        crashed.set()
        raise


async def _refresh_stats(
    box: Outbox, uploads: Uploads, stopping: asyncio.Event
) -> None:
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), STATS_REFRESH_S)
        if not stopping.is_set():
            await box.refresh_stats()
            await uploads.refresh_stats()


@dataclass
class _Writebacks:
    inbox: Inbox
    runner: web.AppRunner
    port: int
    forwarding: asyncio.Task[None]


async def _start_writebacks(
    settings: Settings,
    box: Outbox,
    session: aiohttp.ClientSession,
    metrics: Metrics,
    stopping: asyncio.Event,
    crashed: asyncio.Event,
) -> _Writebacks:
    """Starts the public write-back listener and the forwarder to the ATS."""
    # Imported here: the JWT and cryptography libraries add about 8 MiB to
    # every relay, and most agencies never enable write-backs.
    from relay.receiver import Receiver, tls_context

    config.require_writeback(settings)
    options = settings.writeback
    tls = tls_context(options)
    inbox = await Inbox.load(box)
    metrics.watch_inbox(inbox)
    backoff = Backoff(settings.retry.base_seconds, settings.retry.cap_seconds)
    ats = AtsClient(session, options, metrics)
    forwarder = Forwarder(inbox, ats, options, backoff, metrics)
    forwarding = asyncio.create_task(
        _watched(forwarder.run(stopping), "forward-writebacks", crashed),
        name="forward-writebacks",
    )
    verifier = _verifier(settings, session)
    receiver = Receiver(options, inbox, forwarder, metrics, verifier)
    runner = web.AppRunner(receiver.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(
        runner, options.host, options.port, ssl_context=tls, reuse_address=True
    )
    await site.start()
    port = int(runner.addresses[0][1]) if runner.addresses else options.port
    log.info(
        "writeback_listener_started",
        host=options.host,
        port=port,
        path=options.path,
        tls=tls is not None,
        pending=inbox.stats.pending,
    )
    return _Writebacks(inbox, runner, port, forwarding)


def _verifier(settings: Settings, session: aiohttp.ClientSession) -> JwtVerifier | None:
    from relay.oidc import JwtVerifier

    options = settings.writeback
    if not options.oidc_issuer or not options.oidc_audience:
        return None
    return JwtVerifier(
        session,
        options.oidc_issuer,
        options.oidc_audience,
        options.oidc_algorithms,
        options.oidc_jwks_url,
        timeout_s=options.ats_timeout_seconds,
    )


async def _start_ingest(
    settings: Settings, ingest: Ingest
) -> tuple[web.AppRunner, int]:
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
