"""The ``relay`` command: parses arguments and calls into the package."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import click
import orjson
import uvloop

from relay import (
    __version__,
    checks,
    config,
    daemon,
    entities,
    errors,
    logs,
    picklists,
    progress,
    resumes,
    sandbox,
    sender,
    sync,
    syncreport,
)
from relay import demo as demo_module
from relay.inbox import DEAD_LETTERED, DELIVERED, STATES, Inbox, Stored
from relay.outbox import Outbox
from relay.sense import SenseClient
from relay.syncstate import SyncBusy, SyncState
from relay.uploads import DeadUpload, Uploads

# Storing a 4 MB upload durably takes relay well under a second; this only
# bounds the wait for a relay that hangs.
RELAY_ANSWER_TIMEOUT_S = 60.0

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="RELAY_CONFIG",
    help="TOML settings file (RELAY_* environment variables override it).",
)


entity_option = click.option("--entity", help="Only this entity path, e.g. candidates.")


def exits_cleanly(command: F) -> F:
    """Turns relay's expected errors into one line on stderr and an exit status."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except errors.ConfigError as exc:
            click.echo(f"relay: configuration error: {exc}", err=True)
            sys.exit(2)
        except errors.OutboxError as exc:
            click.echo(f"relay: outbox error: {exc}", err=True)
            sys.exit(1)
        except errors.SenseUnavailable as exc:
            click.echo(f"relay: Sense is unavailable: {exc.reason}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


@click.group()
@click.version_option(__version__, prog_name="relay")
def main() -> None:
    """relay: durable, batched delivery of ATS changes to the Sense API."""


@main.command()
@config_option
@exits_cleanly
def serve(config_path: Path | None) -> None:
    """Accept ATS hooks and deliver them to Sense until SIGTERM or SIGINT."""
    settings = config.load(config_path)
    checks.require_servable(settings)
    logs.configure(settings.log.level, settings.log.format)
    sys.exit(uvloop.run(daemon.serve(settings)))


@main.command("check-config")
@config_option
@click.option(
    "--online",
    is_flag=True,
    help="Also fetch a token and reach Sense's API (sends no data).",
)
@exits_cleanly
def check_config(config_path: Path | None, online: bool) -> None:
    """Validate the settings and print them, secrets masked (exit 2 if bad)."""
    settings = config.load(config_path)
    checks.require_servable(settings)
    source = f"{config_path} and the environment" if config_path else "environment"
    click.echo(f"configuration is valid ({source})")
    click.echo("\n".join(checks.effective(settings)))
    if online:
        logs.configure("warning", "console", stream=sys.stderr)
        click.echo("\n".join(asyncio.run(checks.online(settings))))


@main.command()
@config_option
@exits_cleanly
def status(config_path: Path | None) -> None:
    """Show pending records, oldest age and dead letters per entity type."""
    settings = config.load(config_path)
    rows = asyncio.run(_status(_existing(settings.outbox.path)))
    click.echo(
        f"{'entity':<16} {'pending':>9} {'oldest_age_s':>13} {'dead_letters':>13}"
    )
    for entity, pending, age_s, dead in rows:
        age = f"{age_s:.0f}" if age_s is not None else "-"
        click.echo(f"{entity:<16} {pending:>9} {age:>13} {dead:>13}")


@main.command()
@config_option
@click.argument("entity", type=click.Choice(entities.PATHS))
@click.argument("record_id", metavar="ID")
@exits_cleanly
def get(config_path: Path | None, entity: str, record_id: str) -> None:
    """Print what Sense holds for one entity (exit 1 if it has none)."""
    settings = config.load(config_path)
    config.require_sense_credentials(settings)
    logs.configure("warning", "console", stream=sys.stderr)
    _print_answer(asyncio.run(_fetch(settings, entity, record_id)))


async def _fetch(
    settings: config.Settings, entity: str, record_id: str
) -> tuple[int, Any]:
    async def call(client: SenseClient) -> tuple[int, Any]:
        return await client.fetch(entity, record_id)

    return await _with_sense(settings, call)


async def _with_sense(
    settings: config.Settings, call: Callable[[SenseClient], Awaitable[T]]
) -> T:
    # A person is waiting: give up after two request timeouts rather than
    # retry the token endpoint for ever as the daemon would.
    deadline_s = 2 * settings.sense.request_timeout_seconds
    async with daemon.sense_client(settings) as client:
        try:
            async with asyncio.timeout(deadline_s):
                return await call(client)
        except TimeoutError:
            reason = f"no answer within {deadline_s:g} s"
            raise errors.SenseUnavailable(reason) from None


@main.command("sync")
@config_option
@click.argument("source", type=click.Path(path_type=Path, exists=True), required=False)
@click.option(
    "--entity",
    type=click.Choice(entities.PATHS),
    help="Entity type of a single file not named after it.",
)
@click.option(
    "--status",
    "show_status",
    is_flag=True,
    help="Show the latest sync's watermark and figures, then exit.",
)
@click.option("--json", "as_json", is_flag=True, help="With --status: print JSON.")
@click.option(
    "--restart",
    is_flag=True,
    help="Abandon an interrupted sync of SOURCE and load it from the top.",
)
@click.option(
    "--report",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("relay-sync-report.jsonl"),
    show_default=True,
    help="JSON Lines file listing every row that did not reach Sense.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 16),
    default=4,
    show_default=True,
    help="Batches in flight at once.",
)
@click.option(
    "--array-delimiter",
    default="|",
    show_default=True,
    help="Separates the items of a CSV array cell not written as JSON.",
)
@exits_cleanly
def sync_command(
    config_path: Path | None,
    source: Path | None,
    entity: str | None,
    show_status: bool,
    as_json: bool,
    restart: bool,
    report: Path,
    concurrency: int,
    array_delimiter: str,
) -> None:
    """Load an ATS export into Sense: a JSON Lines or CSV file, or a folder.

    A folder holds one file per entity, named after Sense's paths
    (candidates.jsonl, job-orders.csv, ...), and is loaded in dependency
    order. Rerun the same command to continue an interrupted sync. Exits 1
    if any row did not reach Sense (all are listed in the report).
    """
    settings = config.load(config_path)
    if show_status:
        _sync_status(settings, as_json)
        return
    if source is None:
        raise click.UsageError("give SOURCE, a file or folder to load, or --status")
    config.require_sense_credentials(settings)
    options = sync.SyncOptions(entity, restart, concurrency, array_delimiter)
    _sync(settings, source, options, report)


def _sync(
    settings: config.Settings, source: Path, options: sync.SyncOptions, report: Path
) -> None:
    quiet = sys.stderr.isatty()
    logs.configure(
        "warning" if quiet else settings.log.level, settings.log.format, sys.stderr
    )
    try:
        files = sync.plan(source, options.entity)
        with SyncState.open(sync.state_path(settings)) as state, state.lock():
            run = sync.resume_or_start(state, source, files, options)
            if any(f.rows for f in run.files):
                click.echo(
                    f"continuing the sync begun {syncreport.iso(run.started_at)}"
                )
            run = asyncio.run(
                sync.run(settings, state, run, options, progress.reporter())
            )
            problems = state.problems(run.id)
    except (sync.SyncError, SyncBusy) as exc:
        click.echo(f"relay: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("relay: interrupted; rerun the same command to continue", err=True)
        sys.exit(130)

    syncreport.write_report(report, problems)
    click.echo("\n".join(syncreport.figures(run)))
    click.echo(f"watermark: {syncreport.iso(run.started_at)}")
    if problems:
        click.echo("\n".join(syncreport.problem_lines(problems, report)), err=True)
        sys.exit(1)


def _sync_status(settings: config.Settings, as_json: bool) -> None:
    path = sync.state_path(settings)
    if not path.exists():
        raise errors.ConfigError(f"no sync has run with state {path}")
    with SyncState.open(path) as state:
        run = state.latest()
        running = state.is_locked()
    if run is None:
        raise errors.ConfigError(f"no sync has run with state {path}")
    if as_json:
        click.echo(orjson.dumps(syncreport.status_json(run, running)).decode())
    else:
        click.echo("\n".join(syncreport.status(run, running)))


@main.group()
def picklist() -> None:
    """Read or replace the possible values of an entity field at Sense."""


@picklist.command("get")
@config_option
@click.argument("entity", type=click.Choice(entities.PATHS))
@click.argument("field")
@exits_cleanly
def picklist_get(config_path: Path | None, entity: str, field: str) -> None:
    """Print a field's possible values as Sense holds them."""
    _print_answer(_ask_sense(config_path, entity, field, None))


@picklist.command("set")
@config_option
@click.argument("entity", type=click.Choice(entities.PATHS))
@click.argument("field")
@click.argument("values_file", type=click.File("rb"), metavar="FILE")
@exits_cleanly
def picklist_set(
    config_path: Path | None, entity: str, field: str, values_file: Any
) -> None:
    """Replace a field's possible values with FILE's JSON [{label, value}]."""
    try:
        picklists.check_field(entities.BY_PATH[entity], field)
        values = picklists.validate(orjson.loads(values_file.read()))
    except (picklists.InvalidPicklist, orjson.JSONDecodeError) as exc:
        problems = getattr(exc, "problems", str(exc))
        click.echo(
            f"relay: nothing sent, the picklist is invalid: {problems}", err=True
        )
        sys.exit(2)
    _print_answer(_ask_sense(config_path, entity, field, values))


def _ask_sense(
    config_path: Path | None, entity: str, field: str, values: Any
) -> tuple[int, Any]:
    settings = config.load(config_path)
    config.require_sense_credentials(settings)
    logs.configure("warning", "console", stream=sys.stderr)

    async def call(client: SenseClient) -> tuple[int, Any]:
        return await client.possible_values(entity, field, values)

    return asyncio.run(_with_sense(settings, call))


def _print_answer(answer: tuple[int, Any]) -> None:
    status, payload = answer
    click.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
    if status != 200:
        sys.exit(1)


@main.group("dead-letters")
def dead_letters() -> None:
    """Inspect, retry or purge records Sense refused."""


@dead_letters.command("list")
@config_option
@entity_option
@exits_cleanly
def dead_letters_list(config_path: Path | None, entity: str | None) -> None:
    """Print dead letters as JSON lines, oldest first."""
    letters = _on_outbox(config_path, lambda box: box.dead_letters(entity))
    for letter in letters:
        line = {
            "entity": letter.entity,
            "id": letter.record_id,
            "failed_at": _iso(letter.failed_at),
            "status": letter.status,
            "reason": letter.reason,
            "record": orjson.loads(letter.body),
        }
        click.echo(orjson.dumps(line).decode())
    if _covers_resumes(entity):
        for upload in _on_outbox(config_path, lambda box: Uploads(box).dead_letters()):
            click.echo(orjson.dumps(_dead_upload_line(upload)).decode())


@dead_letters.command("retry")
@config_option
@entity_option
@exits_cleanly
def dead_letters_retry(config_path: Path | None, entity: str | None) -> None:
    """Put dead letters back in the outbox for another delivery attempt."""
    moved = _on_outbox(config_path, lambda box: box.retry_dead_letters(entity))
    click.echo(f"{moved} record(s) back in the outbox")
    if _covers_resumes(entity):
        uploads = _on_outbox(config_path, lambda b: Uploads(b).retry_dead_letters())
        click.echo(f"{uploads} resume upload(s) back in the outbox")


@dead_letters.command("purge")
@config_option
@entity_option
@click.confirmation_option(prompt="Delete these dead letters for good?")
@exits_cleanly
def dead_letters_purge(config_path: Path | None, entity: str | None) -> None:
    """Delete dead letters for good."""
    purged = _on_outbox(config_path, lambda box: box.purge_dead_letters(entity))
    if _covers_resumes(entity):
        purged += _on_outbox(config_path, lambda b: Uploads(b).purge_dead_letters())
    click.echo(f"{purged} dead letter(s) deleted")


def _covers_resumes(entity: str | None) -> bool:
    # Resume uploads belong to candidates: --entity candidates includes them.
    return entity in (None, "candidates")


def _dead_upload_line(letter: DeadUpload) -> dict[str, Any]:
    upload = letter.upload
    return {
        "entity": "candidates",
        "id": upload.candidate_id,
        "kind": "resume",
        "failed_at": _iso(letter.failed_at),
        "status": letter.status,
        "reason": letter.reason,
        "resume": {**upload.form_fields(), "file_bytes": len(upload.file)},
    }


@main.group()
def resume() -> None:
    """Hand candidates' resume files to the running relay for Sense."""


@resume.command("upload")
@config_option
@click.argument("candidate_id")
@click.argument(
    "file_path",
    metavar="FILE",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option("--resume-id", help="Sense's id for this resume [default: FILE's name]")
@click.option("--file-name", help="The file name Sense shows [default: FILE's name]")
@click.option(
    "--extension",
    help=f"One of {', '.join(resumes.EXTENSIONS)} [default: FILE's suffix]",
)
@click.option(
    "--date-created",
    help="ISO 8601 date-time [default: FILE's modification time, UTC]",
)
@click.option(
    "--date-updated",
    help="ISO 8601 date-time [default: FILE's modification time, UTC]",
)
@exits_cleanly
def resume_upload(
    config_path: Path | None,
    candidate_id: str,
    file_path: Path,
    **fields: str | None,
) -> None:
    """Post FILE as CANDIDATE_ID's resume to relay, which stores and sends it.

    Exits 0 once relay has stored it (202), 1 if relay refused it or did
    not answer.
    """
    settings = config.load(config_path)
    base_url, hook_token = _relay_address(settings)
    size = file_path.stat().st_size
    if size > resumes.MAX_FILE_BYTES:
        limit = resumes.MAX_FILE_BYTES
        click.echo(
            f"relay: nothing sent, {file_path} is {size} bytes; "
            f"Sense takes at most {limit}",
            err=True,
        )
        sys.exit(1)
    upload = resumes.from_file(file_path, candidate_id, **fields)

    status, answer = _hand_to_relay(base_url, hook_token, upload)

    click.echo(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode())
    if status != 202:
        sys.exit(1)


def _relay_address(settings: config.Settings) -> tuple[str, str]:
    """relay's base URL and first hook token, from the same settings."""
    server = settings.server
    if not server.hook_tokens:
        raise errors.ConfigError(
            "setting server.hook_tokens (RELAY_SERVER__HOOK_TOKENS) needs the "
            "token relay is serving with"
        )
    if server.port == 0:
        raise errors.ConfigError(
            "setting server.port (RELAY_SERVER__PORT) must be the port relay "
            "is serving on"
        )
    # A relay listening on every address is reached on loopback.
    host = "127.0.0.1" if server.host in ("0.0.0.0", "::", "") else server.host
    host = f"[{host}]" if ":" in host else host
    token = server.hook_tokens[0].get_secret_value()
    return f"http://{host}:{server.port}", token


def _hand_to_relay(
    base_url: str, token: str, upload: resumes.Upload
) -> tuple[int, Any]:
    timeout_s = RELAY_ANSWER_TIMEOUT_S
    try:
        return asyncio.run(resumes.hand_to_relay(base_url, token, upload, timeout_s))
    except (aiohttp.ClientError, TimeoutError) as exc:
        reason = type(exc).__name__ if isinstance(exc, TimeoutError) else str(exc)
        click.echo(f"relay: no answer from relay at {base_url}: {reason}", err=True)
        sys.exit(1)


@main.group()
def fingerprints() -> None:
    """Manage what relay remembers of the versions Sense accepted."""


@fingerprints.command("clear")
@config_option
@entity_option
@exits_cleanly
def fingerprints_clear(config_path: Path | None, entity: str | None) -> None:
    """Forget them, so that the next version of every record is sent."""
    cleared = _on_outbox(config_path, lambda box: box.clear_fingerprints(entity))
    click.echo(f"{cleared} fingerprint(s) cleared")


@main.command()
@click.option("--port", default=8080, show_default=True, help="relay's hook port.")
@click.option("--sandbox-port", default=8090, show_default=True)
@click.option(
    "--every",
    default=2.0,
    show_default=True,
    help="Seconds between the pretend ATS's hooks.",
)
def demo(port: int, sandbox_port: int, every: float) -> None:
    """Run relay with a Sense sandbox and a pretend ATS posting hooks."""
    logs.configure(fmt="console")
    click.echo(
        f"relay demo: hooks on http://127.0.0.1:{port}/v1/<entity>, token "
        f"'{demo_module.DEMO_HOOK_TOKEN}'; Sense sandbox on port {sandbox_port}. "
        "Batches reach the sandbox within 5 s. Ctrl-C stops.",
        err=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(demo_module.run(port, sandbox_port, every))


@main.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True)
@click.option("--client-id", default="sandbox-client", show_default=True)
@click.option("--client-secret", default="sandbox-secret", show_default=True)
@click.option(
    "--token-lifetime",
    default=300,
    show_default=True,
    help="expires_in, in seconds, of the tokens it issues.",
)
@click.option(
    "--send-writebacks",
    "writeback_url",
    metavar="URL",
    help="Instead of serving, play Sense's write-back sender: post write-backs "
    "to URL, retrying as Sense does, then exit (1 if any was not acknowledged).",
)
@click.option(
    "--writeback-token",
    envvar="RELAY_SANDBOX_WRITEBACK_TOKEN",
    help="Bearer token the sender presents (or RELAY_SANDBOX_WRITEBACK_TOKEN).",
)
@click.option(
    "--token-in",
    type=click.Choice(["header", "query"]),
    default="header",
    show_default=True,
    help="Send the token in the Authorization header or the query string.",
)
@click.option("--query-param", default="token", show_default=True)
@click.option(
    "--writebacks",
    "files",
    multiple=True,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="JSON or JSON Lines file of write-backs to send (repeatable); "
    "without it, one generated sample of every type.",
)
@click.option("--max-attempts", default=5, show_default=True, type=click.IntRange(1))
@click.option(
    "--retry-base", default=1.0, show_default=True, help="First retry wait, seconds."
)
@click.option(
    "--cafile",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="PEM certificate(s) to trust, for a receiver with a self-signed one.",
)
def run_sandbox(
    host: str,
    port: int,
    client_id: str,
    client_secret: str,
    token_lifetime: int,
    writeback_url: str | None,
    writeback_token: str | None,
    token_in: str,
    query_param: str,
    files: tuple[Path, ...],
    max_attempts: int,
    retry_base: float,
    cafile: Path | None,
) -> None:
    """Run a local stand-in for the Sense API that enforces its rules.

    With --send-writebacks it plays Sense's write-back sender instead.
    """
    logs.configure(stream=sys.stderr if writeback_url else None)
    if writeback_url is not None:
        sending = sender.SenderSettings(
            writeback_url,
            writeback_token or "",
            "query" if token_in == "query" else "header",
            query_param,
            max_attempts,
            retry_base,
            tls=ssl.create_default_context(cafile=cafile) if cafile else None,
        )
        _send_writebacks(sending, files)
        return
    settings = sandbox.SandboxSettings(client_id, client_secret, token_lifetime)
    click.echo(
        f"Sense sandbox on http://{host}:{port}/v1 "
        f"(token URL http://{host}:{port}/oauth2/token)",
        err=True,
    )
    asyncio.run(sandbox.serve(host, port, settings))


def _send_writebacks(settings: sender.SenderSettings, files: tuple[Path, ...]) -> None:
    if not settings.token:
        raise click.UsageError("--send-writebacks needs --writeback-token")
    try:
        writebacks = sender.load(files) if files else sender.samples()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    sent = asyncio.run(sender.send_all(writebacks, settings))
    for result in sent:
        click.echo(orjson.dumps(result.as_dict()).decode())
    if not all(result.acknowledged for result in sent):
        sys.exit(1)


@main.group()
def writebacks() -> None:
    """Inspect, replay or purge the write-backs Sense sent to relay."""


@writebacks.command("list")
@config_option
@click.option("--state", type=click.Choice(STATES), help="Only write-backs in it.")
@exits_cleanly
def writebacks_list(config_path: Path | None, state: str | None) -> None:
    """Print write-backs as JSON lines, in the order received."""
    found = _on_inbox(config_path, lambda inbox: inbox.in_state(state))
    for stored in found:
        click.echo(orjson.dumps(_writeback_summary(stored)).decode())


@writebacks.command("show")
@config_option
@click.argument("writeback_id", metavar="ID")
@exits_cleanly
def writebacks_show(config_path: Path | None, writeback_id: str) -> None:
    """Print one write-back with its envelope as Sense sent it."""
    stored = _on_inbox(config_path, lambda inbox: inbox.get(writeback_id))
    if stored is None:
        click.echo(f"relay: no write-back {writeback_id}", err=True)
        sys.exit(1)
    shown = {**_writeback_summary(stored), "envelope": orjson.loads(stored.body)}
    click.echo(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode())


@writebacks.command("replay")
@config_option
@click.argument("writeback_id", metavar="ID")
@exits_cleanly
def writebacks_replay(config_path: Path | None, writeback_id: str) -> None:
    """Send a dead-lettered write-back to the ATS again."""
    replayed = _on_inbox(config_path, lambda inbox: inbox.replay(writeback_id))
    if not replayed:
        click.echo(
            f"relay: no write-back {writeback_id} waiting or dead-lettered "
            "(a delivered one is not sent twice)",
            err=True,
        )
        sys.exit(1)
    click.echo(f"write-back {writeback_id} queued for the ATS")


@writebacks.command("purge")
@config_option
@click.option(
    "--state",
    type=click.Choice([DELIVERED, DEAD_LETTERED]),
    default=DELIVERED,
    show_default=True,
)
@click.option(
    "--older-than-days",
    type=click.FloatRange(0),
    default=7.0,
    show_default=True,
    help="Only those settled longer ago than this.",
)
@click.confirmation_option(prompt="Delete these write-backs for good?")
@exits_cleanly
def writebacks_purge(
    config_path: Path | None, state: str, older_than_days: float
) -> None:
    """Delete delivered (or dead-lettered) write-backs for good."""
    older_than_s = older_than_days * 86_400
    purged = _on_inbox(config_path, lambda inbox: inbox.purge(state, older_than_s))
    click.echo(f"{purged} write-back(s) deleted")


def _on_inbox(config_path: Path | None, action: Callable[[Inbox], Any]) -> Any:
    async def on_inbox(box: Outbox) -> Any:
        return await action(await Inbox.load(box))

    return _on_outbox(config_path, on_inbox)


def _writeback_summary(stored: Stored) -> dict[str, Any]:
    return {
        "id": stored.id,
        "type": stored.type,
        "subject": stored.subject,
        "state": stored.state,
        "received_at": _iso(stored.received_at),
        "attempts": stored.attempts,
        "status": stored.status,
        "reason": stored.reason,
        "entity_id": stored.entity_id,
        "settled_at": _iso(stored.settled_at) if stored.settled_at else None,
    }


def _existing(path: Path) -> Path:
    if not path.exists():
        raise errors.ConfigError(f"no outbox at {path} (setting outbox.path)")
    return path


def _on_outbox(config_path: Path | None, action: Callable[[Outbox], Any]) -> Any:
    """Runs ``action`` on the configured outbox file, which must exist."""
    path = _existing(config.load(config_path).outbox.path)

    async def run() -> Any:
        async with Outbox.open(path) as box:
            return await action(box)

    return asyncio.run(run())


async def _status(path: Path) -> list[tuple[str, int, float | None, int]]:
    async with Outbox.open(path) as box:
        letters = await box.dead_letters()
        now = time.time()
        dead: dict[str, int] = {}
        for letter in letters:
            dead[letter.entity] = dead.get(letter.entity, 0) + 1
        entities = sorted(set(box.stats) | set(dead))
        return [
            (
                entity,
                box.stats[entity].records,
                _age(box.stats[entity].oldest_accepted_at, now),
                dead.get(entity, 0),
            )
            for entity in entities
        ]


def _age(oldest: float | None, now: float) -> float | None:
    return None if oldest is None else max(0.0, now - oldest)


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat()
