"""``relay writebacks``: inspecting and replaying write-backs."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import orjson

from relay.commands.shared import config_option, exits_cleanly, iso, on_outbox
from relay.inbox import DEAD_LETTERED, DELIVERED, STATES, Inbox, Stored
from relay.outbox import Outbox


@click.group()
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

    return on_outbox(config_path, on_inbox)


def _writeback_summary(stored: Stored) -> dict[str, Any]:
    return {
        "id": stored.id,
        "type": stored.type,
        "subject": stored.subject,
        "state": stored.state,
        "received_at": iso(stored.received_at),
        "attempts": stored.attempts,
        "status": stored.status,
        "reason": stored.reason,
        "entity_id": stored.entity_id,
        "settled_at": iso(stored.settled_at) if stored.settled_at else None,
    }
