"""``relay resume upload``: a resume handed to the running relay."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import aiohttp
import click
import orjson

from relay import config, errors, resumes
from relay.commands.shared import config_option, exits_cleanly

# Storing a 4 MB upload durably takes relay well under a second; this only
# bounds the wait for a relay that hangs.
RELAY_ANSWER_TIMEOUT_S = 60.0


@click.group()
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
