"""The ``relay`` command: parses arguments and calls into the package."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
from pathlib import Path

import click
import orjson
import uvloop

from relay import __version__, checks, config, daemon, logs, sandbox, sender
from relay import demo as demo_module
from relay.commands import lookups, outbox, resume, writebacks
from relay.commands import sync as sync_commands
from relay.commands.shared import config_option, exits_cleanly


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


for command in (
    outbox.status,
    lookups.get,
    sync_commands.sync_command,
    lookups.picklist,
    outbox.dead_letters,
    resume.resume,
    outbox.fingerprints,
    writebacks.writebacks,
):
    main.add_command(command)
