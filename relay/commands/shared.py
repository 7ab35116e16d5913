"""What every subcommand shares: its common options and error handling."""

from __future__ import annotations

import asyncio
import datetime
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from relay import config, errors
from relay.outbox import Outbox

F = TypeVar("F", bound=Callable[..., Any])

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


def existing(path: Path) -> Path:
    if not path.exists():
        raise errors.ConfigError(f"no outbox at {path} (setting outbox.path)")
    return path


def on_outbox(config_path: Path | None, action: Callable[[Outbox], Any]) -> Any:
    """Runs ``action`` on the configured outbox file, which must exist."""
    path = existing(config.load(config_path).outbox.path)

    async def run() -> Any:
        async with Outbox.open(path) as box:
            return await action(box)

    return asyncio.run(run())


def iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat()
