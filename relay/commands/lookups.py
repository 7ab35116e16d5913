"""``relay get`` and ``relay picklist``: asking Sense directly."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson

from relay import config, daemon, entities, errors, logs, picklists
from relay.commands.shared import config_option, exits_cleanly
from relay.sense import SenseClient

T = TypeVar("T")


@click.command()
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


@click.group()
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
