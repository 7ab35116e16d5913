"""The relay command as an operator uses it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from relay import entities
from relay.outbox import Outbox, Refusal
from relay.records import Record

BASE_ENVIRONMENT = {
    key: value for key, value in os.environ.items() if not key.startswith("RELAY_")
}
CREDENTIALS = {
    "RELAY_SENSE__CLIENT_ID": "id",
    "RELAY_SENSE__CLIENT_SECRET": "a-client-secret",
    "RELAY_SERVER__HOOK_TOKENS": '["a-hook-token"]',
}

WRITEBACK_ON = {
    "RELAY_WRITEBACK__ENABLED": "true",
    "RELAY_WRITEBACK__BEHIND_TLS_PROXY": "true",
    "RELAY_WRITEBACK__TOKENS": '["a-writeback-token"]',
    "RELAY_WRITEBACK__ATS_URL": "http://127.0.0.1:9/writebacks",
    "RELAY_WRITEBACK__ATS_TOKEN": "an-ats-token",
}


def relay(*args: str, **environment: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relay", *args],
        env={**BASE_ENVIRONMENT, **environment},
        capture_output=True,
        text=True,
        timeout=30,
        input="",
    )


@pytest.mark.parametrize(
    ("environment", "named"),
    [
        ({"RELAY_FLUSH__MAX_RECORDS": "501"}, "flush.max_records"),
        ({"RELAY_FLUSH__MAX_COMPRESSED_BYTES": "300000"}, "flush.max_compressed_bytes"),
        ({"RELAY_SERVER__PORT": "eighty"}, "server.port"),
        ({"RELAY_SERVER__HOOK_TOKENS": "not json"}, "server"),
        ({"RELAY_SENSE__CLIENT_ID": ""}, "sense.client_id"),
        ({"RELAY_SERVER__HOOK_TOKENS": "[]"}, "server.hook_tokens"),
        ({"RELAY_OUTBOX__DURABILITY": "sometimes"}, "outbox.durability"),
        ({"RELAY_WRITEBACK__ENABLED": "true"}, "writeback.tls_cert"),
        ({**WRITEBACK_ON, "RELAY_WRITEBACK__TOKENS": "[]"}, "writeback.tokens"),
        ({**WRITEBACK_ON, "RELAY_WRITEBACK__ATS_URL": ""}, "writeback.ats_url"),
        ({**WRITEBACK_ON, "RELAY_WRITEBACK__ATS_TOKEN": ""}, "writeback.ats_token"),
        (
            {**WRITEBACK_ON, "RELAY_WRITEBACK__OIDC_ALGORITHMS": '["HS256"]'},
            "writeback.oidc_algorithms",
        ),
        ({**WRITEBACK_ON, "RELAY_WRITEBACK__PATH": "events"}, "writeback.path"),
    ],
    ids=[
        "too-many-records",
        "too-many-bytes",
        "port",
        "tokens-json",
        "no-client-id",
        "no-hook-token",
        "durability",
        "writeback-without-tls",
        "writeback-without-tokens",
        "writeback-without-ats-url",
        "writeback-without-ats-token",
        "writeback-shared-secret-jwts",
        "writeback-relative-path",
    ],
)
def test_a_bad_setting_exits_2_with_one_line_naming_it(
    environment: dict[str, str], named: str
) -> None:
    result = relay("serve", **{**CREDENTIALS, **environment})

    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert named in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = relay("serve", "--config", str(tmp_path / "absent.toml"), **CREDENTIALS)

    assert result.returncode == 2
    assert "absent.toml" in result.stderr


def test_a_config_file_that_is_not_toml_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "relay.toml"
    bad.write_text("[server\nport = 1\n")

    result = relay("serve", "--config", str(bad), **CREDENTIALS)

    assert result.returncode == 2
    assert "relay.toml" in result.stderr and "Traceback" not in result.stderr


def test_the_example_config_states_every_default(tmp_path: Path) -> None:
    from relay import config

    example = config.load(Path(__file__).parents[1] / "config/relay.example.toml")
    defaults = config.Settings()

    secrets = {"server": {"hook_tokens"}, "sense": {"client_id", "client_secret"}}
    assert example.model_dump(exclude=secrets) == defaults.model_dump(exclude=secrets)


def test_the_readme_table_lists_every_setting_with_its_default() -> None:
    from relay import config

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    rows = {
        line.split("|")[1].strip(" `"): line
        for line in readme.splitlines()
        if line.startswith("| `")
    }
    defaults = config.Settings().model_dump(mode="json")
    for section, values in defaults.items():
        for key, default in values.items():
            row = rows[f"{section}.{key}"]
            variable = f"RELAY_{section.upper()}__{key.upper()}"
            shown = (
                "none"
                if default is None
                else "none (required)"
                if default in ("", [], "**********")
                else (
                    str(default).lower() if isinstance(default, bool) else str(default)
                )
            )
            assert f"`{variable}`" in row and shown in row, row


def _outbox_with_dead_letters(path: Path) -> None:
    async def fill() -> None:
        async with Outbox.open(path) as box:
            records = [
                Record("leads", str(n), orjson.dumps({"id": str(n)})) for n in range(3)
            ]
            await box.add(records)
            claimed = await box.claim("leads", 10)
            await box.settle(claimed[:1], [Refusal(claimed[1], 400, "bad email")])

    asyncio.run(fill())


def test_status_shows_pending_and_dead_letters_per_entity(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    _outbox_with_dead_letters(path)

    result = relay("status", RELAY_OUTBOX__PATH=str(path))

    assert result.returncode == 0, result.stderr
    [row] = [line.split() for line in result.stdout.splitlines() if "leads" in line]
    assert (row[0], row[1], row[3]) == ("leads", "1", "1")


def test_dead_letters_can_be_listed_retried_and_purged(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    _outbox_with_dead_letters(path)
    environment = {"RELAY_OUTBOX__PATH": str(path)}

    listed = relay("dead-letters", "list", **environment)
    retried = relay("dead-letters", "retry", **environment)
    after_retry = relay("dead-letters", "list", **environment)
    status = relay("status", **environment)

    [letter] = [orjson.loads(line) for line in listed.stdout.splitlines()]
    assert (letter["id"], letter["reason"], letter["record"]) == (
        "1",
        "bad email",
        {"id": "1"},
    )
    assert "1 record(s) back in the outbox" in retried.stdout
    assert after_retry.stdout == ""
    assert "leads" in status.stdout and " 2 " in status.stdout


def test_purge_deletes_dead_letters_for_good(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    _outbox_with_dead_letters(path)

    purged = relay("dead-letters", "purge", "--yes", RELAY_OUTBOX__PATH=str(path))
    listed = relay("dead-letters", "list", RELAY_OUTBOX__PATH=str(path))

    assert "1 dead letter(s) deleted" in purged.stdout
    assert listed.stdout == ""


def test_fingerprints_clear_makes_relay_send_an_identical_version_again(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    record = Record("leads", "1", orjson.dumps({"id": "1"}))

    async def deliver() -> None:
        async with Outbox.open(path) as box:
            await box.add([record])
            await box.settle(await box.claim("leads", 10))

    async def resend() -> int:
        async with Outbox.open(path) as box:
            await box.add([record])
            return box.total_records()

    asyncio.run(deliver())
    skipped = asyncio.run(resend())
    cleared = relay("fingerprints", "clear", RELAY_OUTBOX__PATH=str(path))
    stored = asyncio.run(resend())

    assert cleared.returncode == 0, cleared.stderr
    assert "1 fingerprint(s) cleared" in cleared.stdout
    assert (skipped, stored) == (0, 1)


def test_status_of_a_missing_outbox_says_so(tmp_path: Path) -> None:
    result = relay("status", RELAY_OUTBOX__PATH=str(tmp_path / "none.db"))

    assert result.returncode == 2
    assert "no outbox at" in result.stderr


def test_help_lists_every_command() -> None:
    result = relay("--help")

    for command in (
        "serve",
        "status",
        "dead-letters",
        "sandbox",
        "demo",
        "get",
        "picklist",
        "sync",
        "check-config",
        "resume",
        "writebacks",
        "fingerprints",
    ):
        assert command in result.stdout


def test_check_config_prints_the_settings_with_secrets_masked() -> None:
    result = relay("check-config", **CREDENTIALS)

    assert result.returncode == 0, result.stderr
    assert "sense.client_id = 'id'" in result.stdout
    assert "sense.client_secret = [set]" in result.stdout
    assert "server.hook_tokens = 1 secret(s) set" in result.stdout
    assert "a-client-secret" not in result.stdout + result.stderr
    assert "a-hook-token" not in result.stdout + result.stderr


def test_check_config_fails_like_serve_would() -> None:
    result = relay("check-config", RELAY_SENSE__CLIENT_ID="id")

    assert result.returncode == 2
    assert "sense.client_secret" in result.stderr


def test_secrets_can_come_from_files_and_systemd_credentials(tmp_path: Path) -> None:
    secret_file = tmp_path / "client_secret"
    secret_file.write_text("from-a-file\n")
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "RELAY_SENSE__CLIENT_ID").write_text("id-from-systemd\n")
    environment = {
        "RELAY_SENSE__CLIENT_SECRET_FILE": str(secret_file),
        "RELAY_SERVER__HOOK_TOKENS": '["a-hook-token"]',
        "CREDENTIALS_DIRECTORY": str(credentials),
    }

    result = relay("check-config", **environment)

    assert result.returncode == 0, result.stderr
    assert "sense.client_id = 'id-from-systemd'" in result.stdout
    assert "sense.client_secret = [set]" in result.stdout


def test_a_secret_set_twice_is_refused(tmp_path: Path) -> None:
    secret_file = tmp_path / "client_secret"
    secret_file.write_text("from-a-file")

    result = relay(
        "check-config",
        **CREDENTIALS,
        RELAY_SENSE__CLIENT_SECRET_FILE=str(secret_file),
    )

    assert result.returncode == 2
    assert "RELAY_SENSE__CLIENT_SECRET and RELAY_SENSE__CLIENT_SECRET_FILE" in (
        result.stderr
    )


def test_a_missing_secret_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"

    result = relay(
        "check-config",
        RELAY_SENSE__CLIENT_ID="id",
        RELAY_SENSE__CLIENT_SECRET_FILE=str(missing),
    )

    assert result.returncode == 2
    assert f"RELAY_SENSE__CLIENT_SECRET_FILE: cannot read {missing}" in result.stderr


def test_resume_help_lists_upload() -> None:
    result = relay("resume", "--help")

    assert result.returncode == 0
    assert "upload" in result.stdout


def test_writebacks_help_lists_its_subcommands() -> None:
    result = relay("writebacks", "--help")

    for command in ("list", "show", "replay", "purge"):
        assert command in result.stdout


def test_status_lists_every_entity_type_and_resume_uploads(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    _outbox_with_dead_letters(path)

    result = relay("status", RELAY_OUTBOX__PATH=str(path))

    names = [line[:16].strip() for line in result.stdout.splitlines()[1:]]
    assert names == [*entities.PATHS, "resume uploads"]
