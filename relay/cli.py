"""The ``relay`` command: parses arguments and calls into the package."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import sys
import time
from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson
import uvloop

from relay import (
    __version__,
    config,
    daemon,
    entities,
    errors,
    logs,
    picklists,
    sandbox,
)
from relay import demo as demo_module
from relay.outbox import Outbox
from relay.sense import SenseClient

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
    config.require_sense_credentials(settings)
    if not settings.server.hook_tokens:
        raise errors.ConfigError(
            "setting server.hook_tokens (RELAY_SERVER__HOOK_TOKENS) needs at least "
            "one token"
        )
    logs.configure(settings.log.level, settings.log.format)
    sys.exit(uvloop.run(daemon.serve(settings)))


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


@dead_letters.command("retry")
@config_option
@entity_option
@exits_cleanly
def dead_letters_retry(config_path: Path | None, entity: str | None) -> None:
    """Put dead letters back in the outbox for another delivery attempt."""
    moved = _on_outbox(config_path, lambda box: box.retry_dead_letters(entity))
    click.echo(f"{moved} record(s) back in the outbox")


@dead_letters.command("purge")
@config_option
@entity_option
@click.confirmation_option(prompt="Delete these dead letters for good?")
@exits_cleanly
def dead_letters_purge(config_path: Path | None, entity: str | None) -> None:
    """Delete dead letters for good."""
    purged = _on_outbox(config_path, lambda box: box.purge_dead_letters(entity))
    click.echo(f"{purged} dead letter(s) deleted")


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
def run_sandbox(
    host: str, port: int, client_id: str, client_secret: str, token_lifetime: int
) -> None:
    """Run a local stand-in for the Sense API that enforces its rules."""
    logs.configure()
    settings = sandbox.SandboxSettings(client_id, client_secret, token_lifetime)
    click.echo(
        f"Sense sandbox on http://{host}:{port}/v1 "
        f"(token URL http://{host}:{port}/oauth2/token)",
        err=True,
    )
    asyncio.run(sandbox.serve(host, port, settings))


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
