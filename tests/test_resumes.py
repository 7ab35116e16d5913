"""Resume uploads through relay: validated, stored, then sent to Sense in order."""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relay import resumes
from relay.sandbox import Fault
from tests.conftest import HOOK_TOKEN, Hooks, SenseStandIn, candidate, eventually
from tests.test_delivery import metric
from tests.test_process import relay_process

FIELDS = {
    "resume_id": "RES-1",
    "file_name": "ada_lovelace.pdf",
    "file_extension": "pdf",
    "date_created": "2026-01-20T08:00:00Z",
    "date_updated": "2026-03-15T10:30:00+0000",
}
# Bytes a careless multipart encoder would mangle: CR LF, a boundary-like
# line and NUL, among random ones.
AWKWARD = b"%PDF-1.7\r\n--boundary\r\n\x00" + os.urandom(300_000) + b"\r\n--\r\n"
AGE = {"max_age_seconds": 0.05}


async def upload(
    hooks: Hooks,
    candidate_id: str = "c1",
    *,
    file: bytes | None = AWKWARD,
    token: str | None = HOOK_TOKEN,
    **fields: str | None,
) -> tuple[int, Any]:
    """Posts a resume upload; a field given as None is left out of the form."""
    return await post_upload(
        hooks.session, hooks.base, candidate_id, file=file, token=token, **fields
    )


async def post_upload(
    session: aiohttp.ClientSession,
    base: str,
    candidate_id: str,
    *,
    file: bytes | None = AWKWARD,
    token: str | None = HOOK_TOKEN,
    **fields: str | None,
) -> tuple[int, Any]:
    form = aiohttp.FormData(default_to_multipart=True)
    for name, value in {**FIELDS, **fields}.items():
        if value is not None:
            form.add_field(name, value)
    if file is not None:
        form.add_field(
            "file", io.BytesIO(file), filename="cv.pdf", content_type="application/pdf"
        )
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"{base}/v1/candidates/{candidate_id}/resume"
    async with session.post(url, data=form, headers=headers) as response:
        return response.status, await response.json(content_type=None)


def resume_calls(sense: SenseStandIn) -> list[tuple[str, int | None]]:
    return [(r.path, r.status) for r in sense.sandbox.requests if "resume" in r.path]


def reconciles(text: str) -> bool:
    def value(name: str) -> float:
        return metric(text, f"relay_{name}")

    return value("resumes_accepted_total") + value("resumes_recovered_total") == (
        value("resumes_delivered_total")
        + value("resumes_coalesced_total")
        + value("resumes_dead_lettered_total")
        + value("outbox_resumes")
    )


async def test_an_upload_is_acknowledged_and_arrives_byte_identical(
    start_relay, sense: SenseStandIn
) -> None:
    async with start_relay(flush=AGE) as hooks:
        await hooks.send("candidates", [candidate("c1")])

        status, answer = await upload(hooks)

        await eventually(lambda: hooks.relay.uploads.stats.uploads == 0)
        text = await hooks.metrics()
    received = sense.sandbox.resumes[("c1", "RES-1")]
    assert (status, answer) == (202, {"accepted": 1})
    assert received.file == AWKWARD
    assert received.form_fields() == FIELDS
    assert metric(text, "relay_resumes_delivered_total") == 1
    assert reconciles(text)


MISSING = "is required"


@pytest.mark.parametrize(
    ("fields", "status", "expected"),
    [
        ({"file": None}, 422, [("file", MISSING)]),
        ({"resume_id": None}, 422, [("resume_id", MISSING)]),
        ({"date_updated": None}, 422, [("date_updated", MISSING)]),
        ({"file_extension": "exe"}, 422, [("file_extension", "must be one of")]),
        ({"file_extension": "PDF"}, 422, [("file_extension", "must be one of")]),
        ({"date_created": "20 January 2026"}, 422, [("date_created", "ISO 8601")]),
        ({"date_updated": "2026-02-30T08:00:00Z"}, 422, [("date_updated", "valid")]),
        ({"file": b""}, 422, [("file", "is empty")]),
        ({"photo": "x"}, 422, [("photo", "is not a field of a resume upload")]),
        (
            {"resume_id": None, "file_extension": "exe", "date_created": "soon"},
            422,
            [
                ("resume_id", MISSING),
                ("file_extension", "must be one of"),
                ("date_created", "ISO 8601"),
            ],
        ),
        (
            {"file": b"x" * (resumes.MAX_FILE_BYTES + 1)},
            413,
            [("file", f"larger than {resumes.MAX_FILE_BYTES} bytes")],
        ),
    ],
    ids=[
        "no-file",
        "no-resume-id",
        "no-date-updated",
        "unsupported-extension",
        "uppercase-extension",
        "date-in-words",
        "no-such-day",
        "empty-file",
        "unknown-field",
        "every-problem-at-once",
        "file-over-4-mb",
    ],
)
async def test_an_invalid_upload_is_refused_naming_each_problem_and_stores_nothing(
    start_relay,
    sense: SenseStandIn,
    fields: dict[str, Any],
    status: int,
    expected: list[tuple[str, str]],
) -> None:
    async with start_relay(flush=AGE) as hooks:
        await hooks.send("candidates", [candidate("c1")])
        file = fields.pop("file", AWKWARD)

        answered, body = await upload(hooks, file=file, **fields)

        text = await hooks.metrics()
        stored = hooks.relay.uploads.stats.uploads
    problems = [
        (p["index"], p["id"], p["field"], p["message"]) for p in body["problems"]
    ]
    assert answered == status
    assert [problem[:3] for problem in problems] == [
        (0, "c1", field) for field, _ in expected
    ]
    for problem, (_, message) in zip(problems, expected, strict=True):
        assert message in problem[3]
    assert stored == 0 and resume_calls(sense) == []
    assert metric(text, "relay_resumes_rejected_total") == 1


async def test_a_body_that_is_not_a_form_gets_415_and_no_token_gets_401(
    start_relay,
) -> None:
    async with start_relay() as hooks:
        not_a_form, body = await hooks.post("candidates/c1/resume", FIELDS)
        no_token, _ = await upload(hooks, token=None)

        stored = hooks.relay.uploads.stats.uploads
    assert (not_a_form, no_token, stored) == (415, 401, 0)
    assert "multipart/form-data" in body["error"]


async def test_transient_failures_are_retried_until_the_upload_is_delivered(
    start_relay, sense: SenseStandIn
) -> None:
    async with start_relay(flush=AGE) as hooks:
        await hooks.send("candidates", [candidate("c1")])
        await eventually(lambda: hooks.relay.outbox.total_records() == 0)
        sense.sandbox.script(
            Fault(status=503),
            Fault(drop_connection=True),
            Fault(status=429, retry_after_s=0.1),
        )

        status, _ = await upload(hooks)

        await eventually(lambda: hooks.relay.uploads.stats.uploads == 0)
        text = await hooks.metrics()
    assert status == 202
    assert [code for _, code in resume_calls(sense)] == [503, None, 429, 201]
    assert sense.sandbox.resumes[("c1", "RES-1")].file == AWKWARD
    assert metric(text, "relay_resume_retries_total", reason="server_error") == 1
    assert metric(text, "relay_resume_retries_total", reason="rate_limited") == 1
    assert reconciles(text)


async def test_an_upload_waits_for_its_candidate_accepted_before_it(
    start_relay, sense: SenseStandIn
) -> None:
    # The candidate is new to Sense: sent first, the upload would get a 404.
    async with start_relay(flush={"max_age_seconds": 0.5}) as hooks:
        await hooks.send("candidates", [candidate("new")])

        status, _ = await upload(hooks, "new")

        await eventually(lambda: ("new", "RES-1") in sense.sandbox.resumes)
        letters = await hooks.relay.uploads.dead_letters()
    writes = [r.path for r in sense.sandbox.requests if r.method == "POST"]
    assert status == 202
    assert writes[-2:] == ["/v1/candidates", "/v1/candidates/new/resume"]
    assert letters == []


async def test_a_newer_file_with_the_same_resume_id_replaces_a_pending_one(
    start_relay, sense: SenseStandIn
) -> None:
    async with start_relay(flush={"max_age_seconds": 0.5}) as hooks:
        await hooks.send("candidates", [candidate("c1")])
        await upload(hooks, file=b"first version")
        await upload(hooks, file=b"second version")
        await upload(hooks, file=b"another resume", resume_id="RES-2")

        await eventually(lambda: len(sense.sandbox.resumes) == 2)
        await eventually(lambda: hooks.relay.uploads.stats.uploads == 0)
        text = await hooks.metrics()
    assert len(resume_calls(sense)) == 2
    assert sense.sandbox.resumes[("c1", "RES-1")].file == b"second version"
    assert metric(text, "relay_resumes_coalesced_total") == 1
    assert reconciles(text)


async def test_an_upload_for_a_candidate_sense_lacks_is_dead_lettered(
    start_relay, sense: SenseStandIn
) -> None:
    async with start_relay(flush=AGE) as hooks:
        status, _ = await upload(hooks, "unknown")

        await eventually(lambda: hooks.relay.uploads.stats.uploads == 0)
        letters = await hooks.relay.uploads.dead_letters()
        text = await hooks.metrics()
    assert status == 202
    assert [(d.upload.key, d.status) for d in letters] == [(("unknown", "RES-1"), 404)]
    assert letters[0].upload.file == AWKWARD
    assert metric(text, "relay_resumes_dead_lettered_total") == 1
    assert reconciles(text)


async def test_a_retried_dead_letter_is_delivered_once_sense_has_the_candidate(
    start_relay, sense: SenseStandIn
) -> None:
    async with start_relay(flush=AGE) as hooks:
        await upload(hooks, "c9")
        await eventually(lambda: hooks.relay.uploads.stats.uploads == 0)
        await hooks.send("candidates", [candidate("c9")])
        await eventually(lambda: hooks.relay.outbox.total_records() == 0)

        moved = await hooks.relay.uploads.retry_dead_letters()

        await eventually(lambda: ("c9", "RES-1") in sense.sandbox.resumes)
        letters = await hooks.relay.uploads.dead_letters()
    assert moved == 1 and letters == []
    assert sense.sandbox.resumes[("c9", "RES-1")].file == AWKWARD


async def test_an_acknowledged_upload_survives_kill_9_and_goes_after_restart(
    tmp_path: Path, sense: SenseStandIn
) -> None:
    sense.sandbox.records["candidates"]["c1"] = {"id": "c1"}
    sense.sandbox.script(*[Fault(status=503)] * 1000)
    outbox = tmp_path / "outbox.db"
    async with (
        relay_process(outbox, sense.url) as (process, base),
        aiohttp.ClientSession() as session,
    ):
        status, _ = await post_upload(session, base, "c1")
        await eventually(lambda: resume_calls(sense) != [])

        process.send_signal(signal.SIGKILL)
        await process.wait()
    sense.sandbox.reset()
    sense.sandbox.records["candidates"]["c1"] = {"id": "c1"}

    async with relay_process(outbox, sense.url):
        await eventually(lambda: ("c1", "RES-1") in sense.sandbox.resumes)
    assert status == 202
    assert sense.sandbox.resumes[("c1", "RES-1")].file == AWKWARD
