"""Commands on the outbox file: status, dead letters, fingerprints."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import click
import orjson

from relay import config, entities
from relay.commands.shared import (
    config_option,
    entity_option,
    existing,
    exits_cleanly,
    iso,
    on_outbox,
)
from relay.outbox import Outbox
from relay.uploads import DeadUpload, Uploads


@click.command()
@config_option
@exits_cleanly
def status(config_path: Path | None) -> None:
    """Show pending records, oldest age and dead letters per entity type.

    The last row counts resume uploads.
    """
    settings = config.load(config_path)
    rows = asyncio.run(_status(existing(settings.outbox.path)))
    click.echo(
        f"{'entity':<16} {'pending':>9} {'oldest_age_s':>13} {'dead_letters':>13}"
    )
    for entity, pending, age_s, dead in rows:
        age = f"{age_s:.0f}" if age_s is not None else "-"
        click.echo(f"{entity:<16} {pending:>9} {age:>13} {dead:>13}")


@click.group("dead-letters")
def dead_letters() -> None:
    """Inspect, retry or purge records Sense refused."""


@dead_letters.command("list")
@config_option
@entity_option
@exits_cleanly
def dead_letters_list(config_path: Path | None, entity: str | None) -> None:
    """Print dead letters as JSON lines, oldest first."""
    letters = on_outbox(config_path, lambda box: box.dead_letters(entity))
    for letter in letters:
        line = {
            "entity": letter.entity,
            "id": letter.record_id,
            "failed_at": iso(letter.failed_at),
            "status": letter.status,
            "reason": letter.reason,
            "record": orjson.loads(letter.body),
        }
        click.echo(orjson.dumps(line).decode())
    if _covers_resumes(entity):
        for upload in on_outbox(config_path, lambda box: Uploads(box).dead_letters()):
            click.echo(orjson.dumps(_dead_upload_line(upload)).decode())


@dead_letters.command("retry")
@config_option
@entity_option
@exits_cleanly
def dead_letters_retry(config_path: Path | None, entity: str | None) -> None:
    """Put dead letters back in the outbox for another delivery attempt."""
    moved = on_outbox(config_path, lambda box: box.retry_dead_letters(entity))
    click.echo(f"{moved} record(s) back in the outbox")
    if _covers_resumes(entity):
        uploads = on_outbox(config_path, lambda b: Uploads(b).retry_dead_letters())
        click.echo(f"{uploads} resume upload(s) back in the outbox")


@dead_letters.command("purge")
@config_option
@entity_option
@click.confirmation_option(prompt="Delete these dead letters for good?")
@exits_cleanly
def dead_letters_purge(config_path: Path | None, entity: str | None) -> None:
    """Delete dead letters for good."""
    purged = on_outbox(config_path, lambda box: box.purge_dead_letters(entity))
    if _covers_resumes(entity):
        purged += on_outbox(config_path, lambda b: Uploads(b).purge_dead_letters())
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
        "failed_at": iso(letter.failed_at),
        "status": letter.status,
        "reason": letter.reason,
        "resume": {**upload.form_fields(), "file_bytes": len(upload.file)},
    }


@click.group()
def fingerprints() -> None:
    """Manage what relay remembers of the versions Sense accepted."""


@fingerprints.command("clear")
@config_option
@entity_option
@exits_cleanly
def fingerprints_clear(config_path: Path | None, entity: str | None) -> None:
    """Forget them, so that the next version of every record is sent."""
    cleared = on_outbox(config_path, lambda box: box.clear_fingerprints(entity))
    click.echo(f"{cleared} fingerprint(s) cleared")


async def _status(path: Path) -> list[tuple[str, int, float | None, int]]:
    """A row per entity type, in dependency order, then one for resume uploads."""
    async with Outbox.open(path) as box:
        dead = Counter(letter.entity for letter in await box.dead_letters())
        uploads = await Uploads.load(box)
        dead_uploads = len(await uploads.dead_letters())
    now = time.time()
    rows = [
        (
            entity,
            box.stats[entity].records,
            _age(box.stats[entity].oldest_accepted_at, now),
            dead[entity],
        )
        for entity in entities.PATHS
    ]
    pending = uploads.stats
    age = _age(pending.oldest_accepted_at, now)
    rows.append(("resume uploads", pending.uploads, age, dead_uploads))
    return rows


def _age(oldest: float | None, now: float) -> float | None:
    return None if oldest is None else max(0.0, now - oldest)
