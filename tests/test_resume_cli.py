"""``relay resume upload`` and the dead-letter commands, against running relays."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import orjson
import pytest

from relay import daemon
from tests.conftest import HOOK_TOKEN, Hooks, SenseStandIn, candidate, eventually
from tests.test_cli import relay
from tests.test_resumes import upload

MODIFIED_AT = "2026-01-20T08:00:00Z"
MODIFIED_AT_S = 1768896000  # the same instant, as a Unix time


def resume_file(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    os.utime(path, (MODIFIED_AT_S, MODIFIED_AT_S))
    return path


async def upload_command(
    hooks: Hooks, *args: str, token: str = HOOK_TOKEN
) -> subprocess.CompletedProcess[str]:
    """Runs ``relay resume upload ARGS`` configured for the relay of ``hooks``."""
    environment = {
        "RELAY_SERVER__PORT": str(hooks.relay.port),
        "RELAY_SERVER__HOOK_TOKENS": orjson.dumps([token]).decode(),
    }
    return await asyncio.to_thread(relay, "resume", "upload", *args, **environment)


async def test_upload_hands_a_file_to_relay_with_defaults_from_the_file(
    start_relay, sense: SenseStandIn, tmp_path: Path
) -> None:
    content = b"%PDF-1.7\r\n" + os.urandom(50_000)
    path = resume_file(tmp_path, "ada_cv.pdf", content)
    async with start_relay(flush={"max_age_seconds": 0.05}) as hooks:
        await hooks.send("candidates", [candidate("c1")])

        result = await upload_command(hooks, "c1", str(path))

        await eventually(lambda: hooks.relay.uploads.stats.uploads == 0)
    received = sense.sandbox.resumes[("c1", "ada_cv.pdf")]
    assert result.returncode == 0, result.stderr
    assert orjson.loads(result.stdout) == {"accepted": 1}
    assert received.file == content
    assert received.form_fields() == {
        "resume_id": "ada_cv.pdf",
        "file_name": "ada_cv.pdf",
        "file_extension": "pdf",
        "date_created": MODIFIED_AT,
        "date_updated": MODIFIED_AT,
    }


async def test_upload_options_override_the_defaults(
    start_relay, sense: SenseStandIn, tmp_path: Path
) -> None:
    path = resume_file(tmp_path, "CV.HTML", b"<html>Ada</html>")
    async with start_relay(flush={"max_age_seconds": 0.05}) as hooks:
        await hooks.send("candidates", [candidate("c1")])

        result = await upload_command(
            hooks,
            "c1",
            str(path),
            "--resume-id=RES-7",
            "--file-name=Ada Lovelace.html",
            "--date-created=2025-12-01T09:00:00+01:00",
            "--date-updated=2026-02-01T09:00:00Z",
        )

        await eventually(lambda: hooks.relay.uploads.stats.uploads == 0)
    assert result.returncode == 0, result.stderr
    assert sense.sandbox.resumes[("c1", "RES-7")].form_fields() == {
        "resume_id": "RES-7",
        "file_name": "Ada Lovelace.html",
        "file_extension": "html",
        "date_created": "2025-12-01T09:00:00+01:00",
        "date_updated": "2026-02-01T09:00:00Z",
    }


async def test_a_refused_upload_prints_relays_problems_and_exits_1(
    start_relay, tmp_path: Path
) -> None:
    path = resume_file(tmp_path, "notes.exe", b"MZ")
    async with start_relay() as hooks:
        result = await upload_command(hooks, "c1", str(path), "--date-updated=soon")

        stored = hooks.relay.uploads.stats.uploads
    answer = orjson.loads(result.stdout)
    assert result.returncode == 1
    assert [p["field"] for p in answer["problems"]] == [
        "file_extension",
        "date_updated",
    ]
    assert stored == 0


async def test_upload_says_so_when_relay_does_not_answer(
    start_relay, tmp_path: Path
) -> None:
    path = resume_file(tmp_path, "cv.pdf", b"%PDF")
    async with start_relay() as hooks:
        port = hooks.relay.port
    environment = {
        "RELAY_SERVER__PORT": str(port),
        "RELAY_SERVER__HOOK_TOKENS": orjson.dumps([HOOK_TOKEN]).decode(),
    }

    result = await asyncio.to_thread(
        relay, "resume", "upload", "c1", str(path), **environment
    )

    assert result.returncode == 1
    assert f"no answer from relay at http://127.0.0.1:{port}" in result.stderr
    assert HOOK_TOKEN not in result.stderr + result.stdout


async def test_a_dead_upload_is_listed_retried_and_then_delivered(
    start_relay, sense: SenseStandIn, tmp_path: Path
) -> None:
    outbox = {"RELAY_OUTBOX__PATH": str(tmp_path / "outbox.db")}
    async with start_relay(flush={"max_age_seconds": 0.05}) as hooks:
        await upload(hooks, "c2", file=b"resume of c2")
        await eventually(lambda: hooks.relay.uploads.stats.uploads == 0)

    listed = relay("dead-letters", "list", "--entity", "candidates", **outbox)
    other_entity = relay("dead-letters", "list", "--entity", "leads", **outbox)
    retried = relay("dead-letters", "retry", **outbox)
    sense.sandbox.records["candidates"]["c2"] = {"id": "c2"}
    async with start_relay(flush={"max_age_seconds": 0.05}) as hooks:
        await eventually(lambda: ("c2", "RES-1") in sense.sandbox.resumes)

    [letter] = [orjson.loads(line) for line in listed.stdout.splitlines()]
    assert (letter["entity"], letter["id"], letter["kind"]) == (
        "candidates",
        "c2",
        "resume",
    )
    assert (letter["status"], letter["reason"]) == (
        404,
        "No Candidate has this id.",
    )
    assert letter["resume"]["resume_id"] == "RES-1"
    assert letter["resume"]["file_bytes"] == len(b"resume of c2")
    assert other_entity.stdout == ""
    assert "1 resume upload(s) back in the outbox" in retried.stdout
    assert sense.sandbox.resumes[("c2", "RES-1")].file == b"resume of c2"


async def test_a_dead_upload_can_be_purged(start_relay, tmp_path: Path) -> None:
    outbox = {"RELAY_OUTBOX__PATH": str(tmp_path / "outbox.db")}
    async with start_relay(flush={"max_age_seconds": 0.05}) as hooks:
        await upload(hooks, "c3")
        await eventually(lambda: hooks.relay.uploads.stats.uploads == 0)

    purged = relay("dead-letters", "purge", "--yes", **outbox)
    listed = relay("dead-letters", "list", **outbox)

    assert "1 dead letter(s) deleted" in purged.stdout
    assert listed.stdout == ""


async def test_a_retry_run_while_relay_serves_is_picked_up(
    start_relay, sense: SenseStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon, "STATS_REFRESH_S", 0.2)
    outbox = {"RELAY_OUTBOX__PATH": str(tmp_path / "outbox.db")}
    async with start_relay(flush={"max_age_seconds": 0.05}) as hooks:
        await upload(hooks, "c4")
        await eventually(lambda: hooks.relay.uploads.stats.uploads == 0)
        sense.sandbox.records["candidates"]["c4"] = {"id": "c4"}

        retried = await asyncio.to_thread(relay, "dead-letters", "retry", **outbox)

        await eventually(lambda: ("c4", "RES-1") in sense.sandbox.resumes)
    assert "1 resume upload(s) back in the outbox" in retried.stdout
