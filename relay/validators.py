"""Hook validation in worker processes, so that big hooks use every core.

Parsing and validating records is most of what the daemon's event loop does
under a stream of large hooks, and one Python process runs on one core. So
hook bodies of ``OFFLOAD_MIN_BYTES`` or more are checked by worker processes
(``python -m relay.validators``), each joined to the daemon by a socket pair.
Small hooks, and every hook while no worker is ready, are checked in the
daemon itself; either way the answer is the same.

Workers hold no state: one that dies takes nothing with it. Its hooks in
progress are checked in the daemon instead, and a new worker replaces it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import pickle
import signal
import socket
import struct
import sys
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from relay import entities, errors, records

if TYPE_CHECKING:  # the workers themselves need no metrics
    from relay.metrics import Metrics

log = structlog.get_logger("relay.validators")

# Handing a hook over costs the daemon a fixed amount (a socket write, a read
# and a wake-up for the answer), about what checking half a dozen records
# here costs. Under 8 KiB, some 15 typical candidates, the saving is small
# or negative, and the round trip adds latency.
OFFLOAD_MIN_BYTES = 8 * 1024
# A worker that dies is replaced after a second; one that dies before it is
# ready (a broken install, say) waits twice as long each time, up to a minute.
RESTART_DELAY_S = 1.0
MAX_RESTART_DELAY_S = 60.0
STOP_TIMEOUT_S = 5.0

FRAME = struct.Struct("!I")

# Frames are pickles. Safe here: the only other end of each socket is a
# worker this daemon started, and a hook's own bytes travel inside as bytes.
Message = tuple[Any, ...]


class WorkerLost(errors.RelayError):
    """The worker exited before it answered; nothing of the hook was stored."""


@dataclass(eq=False)
class _Worker:
    process: asyncio.subprocess.Process
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    waiting: deque[asyncio.Future[Message]] = field(default_factory=deque)
    ready: bool = False
    served: bool = False

    def ask(self, request: Message) -> asyncio.Future[Message]:
        answer = asyncio.get_running_loop().create_future()
        self.waiting.append(answer)
        self.writer.write(_frame(request))
        return answer

    def stop(self) -> None:
        """Asks the worker to exit once it has answered every hook it holds."""
        if not self.ready:
            self.kill()  # still starting: it holds nothing
        elif self.writer.can_write_eof() and not self.writer.is_closing():
            self.writer.write_eof()  # end of input; its answers still come back
        self.ready = False

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()

    def lose(self) -> None:
        self.ready = False
        while self.waiting:
            answer = self.waiting.popleft()
            if not answer.done():
                answer.set_exception(WorkerLost(f"worker {self.process.pid} exited"))


class Validators:
    """The daemon's side: hands big hooks to workers, checks the rest itself."""

    def __init__(self, max_records: int, metrics: Metrics) -> None:
        self._max_records = max_records
        self._metrics = metrics
        self._workers: list[_Worker] = []
        self._closing = asyncio.Event()

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls, count: int, max_records: int, metrics: Metrics
    ) -> AsyncIterator[Validators]:
        """Keeps ``count`` workers running (they get ready in the background)."""
        validators = cls(max_records, metrics)
        metrics.validators_wanted.set(count)
        keepers = [
            asyncio.create_task(validators._keep_one(), name=f"validator-{n}")
            for n in range(count)
        ]
        try:
            yield validators
        finally:
            await validators._close(keepers)

    async def check(
        self, entity_type: entities.EntityType, body: bytes
    ) -> list[records.Record]:
        """Like ``records.check``, wherever the hook is checked."""
        worker = self._pick(len(body))
        if worker is None:
            return self._check_here(entity_type, body)

        try:
            answer = await worker.ask((entity_type.path, body))
        except WorkerLost:
            return self._check_here(entity_type, body)
        self._metrics.hooks_validated.labels("worker").inc()
        return _outcome(entity_type.path, answer)

    def _check_here(
        self, entity_type: entities.EntityType, body: bytes
    ) -> list[records.Record]:
        self._metrics.hooks_validated.labels("daemon").inc()
        return records.check(entity_type, body, self._max_records)

    def _pick(self, size: int) -> _Worker | None:
        if size < OFFLOAD_MIN_BYTES:
            return None
        ready = [worker for worker in self._workers if worker.ready]
        if not ready:
            return None
        return min(ready, key=lambda worker: len(worker.waiting))

    async def _keep_one(self) -> None:
        """Runs one worker until the pool closes, replacing it whenever it exits."""
        delay_s = RESTART_DELAY_S
        while not self._closing.is_set():
            served = False
            try:
                worker = await _start_worker(self._max_records)
            except OSError as exc:
                log.error("validator_start_failed", error=str(exc))
            else:
                served = await self._serve(worker)

            delay_s = (
                RESTART_DELAY_S if served else min(delay_s * 2, MAX_RESTART_DELAY_S)
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), delay_s)

    async def _serve(self, worker: _Worker) -> bool:
        """Serves hooks with a worker until it exits; True if it ever got ready."""
        self._workers.append(worker)
        if self._closing.is_set():  # started while the pool was closing
            worker.stop()
        try:
            await self._listen(worker)
        finally:
            worker.lose()
            self._workers.remove(worker)
            self._count_ready()
            worker.writer.close()
            status = await worker.process.wait()

        if not self._closing.is_set():
            log.warning("validator_exited", pid=worker.process.pid, status=status)
            self._metrics.validator_restarts.inc()
        return worker.served

    async def _listen(self, worker: _Worker) -> None:
        """Hands a worker's answers to the hooks waiting, until it exits."""
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                answer = await _read_frame(worker.reader)
                if answer == ("ready",):
                    worker.ready = worker.served = True
                    self._count_ready()
                    log.info("validator_ready", pid=worker.process.pid)
                    continue
                waiter = worker.waiting.popleft()
                if not waiter.done():  # the hook's client may have hung up
                    waiter.set_result(answer)

    def _count_ready(self) -> None:
        ready = sum(worker.ready for worker in self._workers)
        self._metrics.validators_ready.set(ready)

    async def _close(self, keepers: list[asyncio.Task[None]]) -> None:
        self._closing.set()
        for worker in self._workers:
            worker.stop()
        if not keepers:
            return
        _, late = await asyncio.wait(keepers, timeout=STOP_TIMEOUT_S)
        if late:
            for worker in self._workers:
                worker.kill()
            await asyncio.wait(late)


async def _start_worker(max_records: int) -> _Worker:
    ours, theirs = socket.socketpair()
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "relay.validators",
            str(theirs.fileno()),
            str(max_records),
            pass_fds=(theirs.fileno(),),
            stdin=asyncio.subprocess.DEVNULL,
        )
    except OSError:
        ours.close()
        raise
    finally:
        theirs.close()
    reader, writer = await asyncio.open_unix_connection(sock=ours)
    log.info("validator_started", pid=process.pid)
    return _Worker(process, reader, writer)


async def _read_frame(reader: asyncio.StreamReader) -> Message:
    (size,) = FRAME.unpack(await reader.readexactly(FRAME.size))
    message: Message = pickle.loads(await reader.readexactly(size))
    return message


def _frame(message: Message) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME.pack(len(payload)) + payload


def _outcome(path: str, answer: Message) -> list[records.Record]:
    verdict, *details = answer
    if verdict == "valid":
        [valid] = details
        return [records.Record(path, record_id, body) for record_id, body in valid]
    if verdict == "invalid":
        problems, submitted = details
        found = [records.Problem(*problem) for problem in problems]
        raise records.InvalidRecords(found, submitted)
    if verdict == "unreadable":
        raise records.UnreadableBody(*details)
    raise errors.RelayError(f"the validation worker failed: {details[0]}")


# The worker's side: a plain blocking loop, one hook at a time.


def _answer(path: str, body: bytes, max_records: int) -> Message:
    try:
        valid = records.check(entities.BY_PATH[path], body, max_records)
    except records.UnreadableBody as exc:
        return ("unreadable", exc.status, exc.message)
    except records.InvalidRecords as exc:
        problems = [dataclasses.astuple(problem) for problem in exc.problems]
        return ("invalid", problems, exc.submitted)
    except Exception as exc:  # a bug: answer it rather than die on every retry
        return ("failed", f"{type(exc).__name__}: {exc}")
    return ("valid", [(record.record_id, record.body) for record in valid])


def _receive(stream: io.BufferedIOBase) -> Message | None:
    header = stream.read(FRAME.size)
    if len(header) < FRAME.size:
        return None  # the daemon closed its end: time to go
    (size,) = FRAME.unpack(header)
    message: Message = pickle.loads(stream.read(size))
    return message


def _send(stream: io.BufferedIOBase, message: Message) -> None:
    stream.write(_frame(message))
    stream.flush()


def main(fd: int, max_records: int) -> None:
    # A terminal's Ctrl-C and systemd's SIGTERM reach the whole process
    # group; the daemon decides when its workers stop, by closing the socket.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with socket.socket(fileno=fd) as sock, sock.makefile("rwb") as stream:
        _send(stream, ("ready",))
        while (request := _receive(stream)) is not None:
            path, body = request
            _send(stream, _answer(path, body, max_records))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
