"""``relay sync``: loading an ATS export into Sense."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click
import orjson

from relay import config, entities, errors, logs, progress, sync, syncreport
from relay.commands.shared import config_option, exits_cleanly
from relay.syncstate import SyncBusy, SyncState


@click.command("sync")
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
@click.option(
    "--state",
    "state_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where the sync keeps its checkpoints and watermark "
    "[default: <outbox.path stem>.sync.db beside the outbox].",
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
    state_file: Path | None,
) -> None:
    """Load an ATS export into Sense: a JSON Lines or CSV file, or a folder.

    A folder holds one file per entity, named after Sense's paths
    (candidates.jsonl, job-orders.csv, ...), and is loaded in dependency
    order. Rerun the same command to continue an interrupted sync. Exits 1
    if any row did not reach Sense (all are listed in the report).
    """
    settings = config.load(config_path)
    state_path = state_file or sync.state_path(settings)
    if show_status:
        _sync_status(state_path, as_json)
        return
    if source is None:
        raise click.UsageError("give SOURCE, a file or folder to load, or --status")
    config.require_sense_credentials(settings)
    options = sync.SyncOptions(entity, restart, concurrency, array_delimiter)
    _sync(settings, source, options, report, state_path)


def _sync(
    settings: config.Settings,
    source: Path,
    options: sync.SyncOptions,
    report: Path,
    state_path: Path,
) -> None:
    quiet = sys.stderr.isatty()
    logs.configure(
        "warning" if quiet else settings.log.level, settings.log.format, sys.stderr
    )
    try:
        files = sync.plan(source, options.entity)
        with SyncState.open(state_path) as state, state.lock():
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


def _sync_status(path: Path, as_json: bool) -> None:
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
