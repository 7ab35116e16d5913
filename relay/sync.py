"""The initial sync: an ATS export loaded into Sense in full batches.

Sense asks an integration to walk its whole data set once, in batches of
500 records under 256 KB compressed, and to keep the time that walk started
as the watermark from which change events are queried ("Sync Operation").
A sync reads each export file as a stream, validates rows in blocks, packs
the valid ones into batches as full as the limits allow and keeps a few in
flight. Its checkpoint only ever moves past rows Sense has settled, so a
rerun after any interruption resends at most the batches that were in
flight and skips nothing.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from relay import daemon, entities, errors, records
from relay.backoff import Backoff
from relay.batch import Batch, Packer
from relay.config import Settings
from relay.delivery import Delivery
from relay.metrics import Metrics
from relay.outbox import Pending, Refusal
from relay.progress import Reporter
from relay.sense import Issue, SenseClient
from relay.sources import FORMATS, Row, SourceError, file_format, read_rows
from relay.syncstate import Progress, RowProblem, Run, SourceFile, SyncState

# Rows are validated this many at a time: pydantic's per-call cost is then
# spread thin, and memory holds a block or two whatever the file's size.
BLOCK_ROWS = 500

log = structlog.get_logger("relay.sync")


class SyncError(errors.RelayError):
    """A sync cannot start: the source or its saved state is not usable."""


@dataclass(frozen=True, slots=True)
class SyncOptions:
    entity: str | None = None
    restart: bool = False
    concurrency: int = 4
    array_delimiter: str = "|"


def state_path(settings: Settings) -> Path:
    """The sync's state file: beside the outbox, named after it."""
    outbox = settings.outbox.path
    return outbox.with_name(outbox.stem + ".sync" + outbox.suffix)


def plan(source: Path, entity: str | None) -> list[SourceFile]:
    """The files to load, in dependency order for a folder."""
    if source.is_dir():
        if entity is not None:
            raise SyncError("--entity applies to a single file, not to a folder")
        return _folder_plan(source)
    if not source.is_file():
        raise SyncError(f"{source} does not exist")
    return [SourceFile.at(_entity_of(source, entity), source.resolve())]


def _folder_plan(folder: Path) -> list[SourceFile]:
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in FORMATS and path.stem in entities.BY_PATH:
            found.setdefault(path.stem, []).append(path)
    if not found:
        names = ", ".join(f"{entities.PATHS[0]}{suffix}" for suffix in FORMATS)
        raise SyncError(f"{folder} holds no export file named like {names}")
    doubled = [paths for paths in found.values() if len(paths) > 1]
    if doubled:
        names = " and ".join(p.name for p in doubled[0])
        raise SyncError(f"{folder}: {names} are for the same entity; keep one")
    return [
        SourceFile.at(entity, found[entity][0].resolve())
        for entity in entities.PATHS
        if entity in found
    ]


def _entity_of(path: Path, entity: str | None) -> str:
    file_format(path)
    name = entity or path.stem
    if name not in entities.BY_PATH:
        raise SyncError(
            f"cannot tell the entity type of {path.name}: name the file after it "
            f"or pass --entity (one of {', '.join(entities.PATHS)})"
        )
    return name


def source_key(source: Path, entity: str | None) -> str:
    """What identifies a sync between reruns: its source and entity."""
    key = str(source.resolve())
    return f"{key} --entity {entity}" if entity else key


def resume_or_start(
    state: SyncState, source: Path, files: list[SourceFile], options: SyncOptions
) -> Run:
    """Takes up the unfinished run of this source, or starts a new one."""
    key = source_key(source, options.entity)
    unfinished = state.unfinished(key)
    if unfinished is not None and options.restart:
        state.finish(unfinished.id, "abandoned")
        unfinished = None
    if unfinished is None:
        return state.start(key, files)
    _check_unchanged(unfinished, files)
    return unfinished


def _check_unchanged(run: Run, files: list[SourceFile]) -> None:
    now = {(f.path, f.size, f.mtime_ns) for f in files}
    then = {(f.path, f.size, f.mtime_ns) for f in run.files}
    if now != then:
        changed = sorted(str(path) for path, *_ in now ^ then)
        raise SyncError(
            f"{changed[0]} changed since the interrupted sync began, so where it "
            "stopped no longer means anything; rerun with --restart to load "
            "everything from the top"
        )


async def run(
    settings: Settings,
    state: SyncState,
    sync_run: Run,
    options: SyncOptions,
    reporter: Reporter,
) -> Run:
    """Loads every unfinished file of a run, in order; returns the run's figures."""
    async with daemon.sense_client(settings) as client:
        await client.authenticate(2 * settings.sense.request_timeout_seconds)
        for source_file in sync_run.files:
            if source_file.done:
                continue
            load = FileLoad(settings, state, sync_run.id, source_file, client, options)
            await load.run(reporter)
            state.file_done(sync_run.id, source_file.path)
            _log_figures(state.run(sync_run.id), source_file.path)
    state.finish(sync_run.id)
    return state.run(sync_run.id)


def _log_figures(sync_run: Run, path: Path) -> None:
    for f in sync_run.files:
        if f.path == path:
            log.info(
                "sync_file_finished",
                entity=f.entity,
                path=str(f.path),
                rows=f.rows,
                sent=f.sent,
                invalid=f.invalid,
                refused=f.refused,
            )


@dataclass(slots=True)
class Block:
    """Rows read together; settled once Sense has answered for all of them."""

    end_offset: int
    end_line: int
    rows: int
    outstanding: int = 0
    sent: int = 0
    refused: int = 0
    invalid: int = 0
    problems: list[RowProblem] = field(default_factory=list)


class FileLoad:
    """Loads one export file into Sense, from its checkpoint to its end."""

    def __init__(
        self,
        settings: Settings,
        state: SyncState,
        run_id: int,
        source_file: SourceFile,
        client: SenseClient,
        options: SyncOptions,
    ) -> None:
        self._state = state
        self._run_id = run_id
        self._file = source_file
        self._entity_type = entities.BY_PATH[source_file.entity]
        self._options = options
        self._max_records = settings.flush.max_records
        self._packer = Packer(
            settings.flush.max_compressed_bytes,
            settings.flush.compression_level,
            settings.sense.compress,
        )
        backoff = Backoff(settings.retry.base_seconds, settings.retry.cap_seconds)
        self._delivery = Delivery(
            source_file.entity,
            client,
            self._packer,
            backoff,
            Metrics(),
            self,
            # Thousands of batches: the progress lines say enough.
            batch_log_level="debug",
        )
        # Ctrl-C cancels a sync outright; nothing asks it to stop politely.
        self._never_stopping = asyncio.Event()
        self._blocks: deque[Block] = deque()
        self._queue: deque[Pending] = deque()
        self._owners: dict[int, Block] = {}
        self._in_flight: Counter[str] = Counter()
        self._sending: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(options.concurrency)
        self._failure: BaseException | None = None
        self._rows = source_file.rows
        self._reporter: Reporter | None = None

    async def run(self, reporter: Reporter) -> None:
        self._reporter = reporter
        reporter.start(self._file)
        try:
            await self._load()
        finally:
            reporter.finish()

    async def _load(self) -> None:
        rows = self._rows_after_checkpoint()
        for block_rows in _blocks(rows, BLOCK_ROWS):
            self._take(block_rows)
            while len(self._queue) >= self._max_records:
                await self._dispatch()
            self._checkpoint()
        while self._queue:
            await self._dispatch()
        await self._settle_all()

    def _rows_after_checkpoint(self) -> Iterator[Row]:
        try:
            yield from read_rows(
                self._file.path,
                self._entity_type,
                self._file.offset,
                self._file.line,
                self._options.array_delimiter,
            )
        except SourceError as exc:
            raise SyncError(str(exc)) from None

    def _take(self, rows: list[Row]) -> None:
        """Validates a block of rows and queues the valid ones for sending."""
        block = Block(rows[-1].end_offset, rows[-1].end_line, len(rows))
        readable = [row for row in rows if row.problem is None]
        for row in rows:
            if row.problem is not None:
                self._problem(block, row, None, row.problem)

        valid, problems = _validate(self._entity_type, [r.item for r in readable])
        for problem in problems:
            row = readable[problem.index]
            self._problem(block, row, problem.field, problem.message, problem.id)
        block.invalid = len({p.line for p in block.problems})

        for index, record in valid:
            line = readable[index].line
            self._queue.append(
                Pending(self._file.entity, record.record_id, line, record.body)
            )
            self._owners[line] = block
        block.outstanding = len(valid)
        self._blocks.append(block)

    def _problem(
        self,
        block: Block,
        row: Row,
        field_name: str | None,
        reason: str,
        record_id: str | None = None,
    ) -> None:
        block.problems.append(
            RowProblem(
                str(self._file.path), row.line, record_id, field_name, reason, "relay"
            )
        )

    async def _dispatch(self) -> None:
        """Packs the next batch from the queue and sends it in a free slot."""
        await self._slots.acquire()
        self._raise_failure()
        head = list(itertools.islice(self._queue, self._max_records))
        batch = await asyncio.to_thread(self._packer.pack, self._file.entity, head)
        for _ in batch.records:
            self._queue.popleft()

        # A record sent twice in one file must reach Sense in file order.
        ids = {pending.record_id for pending in batch.records}
        while self._sending and not ids.isdisjoint(self._in_flight):
            await asyncio.wait(self._sending, return_when=asyncio.FIRST_COMPLETED)
        self._in_flight.update(ids)
        task = asyncio.create_task(self._send(batch, ids))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: Batch, ids: set[str]) -> None:
        try:
            await self._delivery.deliver(batch, self._never_stopping)
        except Exception as exc:
            self._failure = exc
        finally:
            self._in_flight -= Counter(ids)  # drops the ids it brings to zero
            self._slots.release()

    async def _settle_all(self) -> None:
        await asyncio.gather(*self._sending)
        self._raise_failure()
        self._checkpoint()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    # -- Settler: Delivery reports Sense's answers here ---------------------

    async def accepted(self, batch: Batch, warnings: list[Issue]) -> None:
        for pending in batch.records:
            block = self._owners.pop(pending.seq)
            block.sent += 1
            block.outstanding -= 1
        self._checkpoint()

    async def refused(self, refusals: Sequence[Refusal]) -> None:
        for refusal in refusals:
            pending = refusal.pending
            block = self._owners.pop(pending.seq)
            block.refused += 1
            block.outstanding -= 1
            block.problems.append(
                RowProblem(
                    str(self._file.path),
                    pending.seq,
                    pending.record_id,
                    None,
                    refusal.reason,
                    "sense",
                )
            )
        self._checkpoint()

    def gave_up(self, records: Sequence[Pending]) -> None:
        """Nothing to undo: unsettled rows stay after the checkpoint."""

    def _checkpoint(self) -> None:
        """Moves the file's checkpoint past every leading settled block."""
        settled: list[Block] = []
        while self._blocks and self._blocks[0].outstanding == 0:
            settled.append(self._blocks.popleft())
        if not settled:
            return
        self._rows += sum(block.rows for block in settled)
        last = settled[-1]
        self._state.checkpoint(self._run_id, self._file.path, _progress(settled))
        if self._reporter is not None:
            self._reporter.advance(last.end_offset, self._rows)


def _progress(settled: list[Block]) -> Progress:
    return Progress(
        offset=settled[-1].end_offset,
        line=settled[-1].end_line,
        rows=sum(b.rows for b in settled),
        sent=sum(b.sent for b in settled),
        invalid=sum(b.invalid for b in settled),
        refused=sum(b.refused for b in settled),
        problems=[p for b in settled for p in b.problems],
    )


def _blocks(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    iterator = iter(rows)
    while block := list(itertools.islice(iterator, size)):
        yield block


def _validate(
    entity_type: entities.EntityType, items: list[object]
) -> tuple[list[tuple[int, records.Record]], list[records.Problem]]:
    """Validates a block; returns the valid records by index, and the problems."""
    try:
        return list(enumerate(records.validate(entity_type, items))), []
    except records.InvalidRecords as exc:
        problems = exc.problems
    bad = {problem.index for problem in problems}
    good = [index for index in range(len(items)) if index not in bad]
    valid = records.validate(entity_type, [items[index] for index in good])
    return list(zip(good, valid, strict=True)), problems
