"""The sandbox's resume upload refuses what Sense documents it refuses."""

from __future__ import annotations

import io
from typing import Any

import aiohttp
import pytest

from relay import resumes
from relay.sandbox import Fault
from tests.conftest import SenseStandIn

FIELDS = {
    "resume_id": "RES-78901",
    "file_name": "john_doe_resume.pdf",
    "file_extension": "pdf",
    "date_created": "2026-01-20T08:00:00Z",
    "date_updated": "2026-03-15T10:30:00Z",
}
FILE = b"%PDF-1.7\r\n\x00\xff resume \r\n--"


async def token(session: aiohttp.ClientSession, sense: SenseStandIn) -> str:
    form = {
        "client_id": "sandbox-client",
        "client_secret": "sandbox-secret",
        "grant_type": "client_credentials",
    }
    async with session.post(f"{sense.url}/oauth2/token", data=form) as response:
        issued: str = (await response.json())["access_token"]
        return issued


async def post_resume(
    sense: SenseStandIn,
    *,
    candidate_id: str = "c-1",
    file: bytes | None = FILE,
    body: bytes | None = None,
    authorized: bool = True,
    **fields: str | None,
) -> tuple[int, Any]:
    """Posts a form (a field given as None is left out) or a raw body."""
    async with aiohttp.ClientSession() as session:
        headers = {}
        if authorized:
            headers["Authorization"] = f"Bearer {await token(session, sense)}"
        data: Any = body if body is not None else form(file, **fields)
        url = f"{sense.url}/v1/candidates/{candidate_id}/resume"
        async with session.post(url, data=data, headers=headers) as response:
            return response.status, await response.json()


def form(file: bytes | None, **fields: str | None) -> aiohttp.FormData:
    data = aiohttp.FormData(default_to_multipart=True)
    for name, value in {**FIELDS, **fields}.items():
        if value is not None:
            data.add_field(name, value)
    if file is not None:
        data.add_field("file", io.BytesIO(file), filename="cv.pdf")
    return data


@pytest.fixture
def with_candidate(sense: SenseStandIn) -> SenseStandIn:
    sense.sandbox.records["candidates"]["c-1"] = {"id": "c-1"}
    return sense


async def test_an_upload_for_a_stored_candidate_is_kept_byte_for_byte(
    with_candidate: SenseStandIn,
) -> None:
    status, body = await post_resume(with_candidate)

    stored = with_candidate.sandbox.resumes[("c-1", "RES-78901")]
    assert status == 201
    assert body["message"] == f"request {body['request_id']} is received"
    assert stored.file == FILE and stored.form_fields() == FIELDS


def missing(field: str) -> str:
    return f"Missing required form field: {field}"


@pytest.mark.parametrize(
    ("request_fields", "status", "message", "path"),
    [
        ({"file": None}, 400, missing("file"), ["file"]),
        ({"resume_id": None}, 400, missing("resume_id"), ["resume_id"]),
        ({"file_extension": None}, 400, missing("file_extension"), ["file_extension"]),
        ({"date_created": None}, 400, missing("date_created"), ["date_created"]),
        ({"date_updated": None}, 400, missing("date_updated"), ["date_updated"]),
        (
            {"file_extension": "exe"},
            400,
            "Invalid file_extension. Allowed: doc, docx, htm, html, odt, pdf, rtf, txt",
            ["file_extension"],
        ),
        ({"date_updated": "15/03/2026"}, 400, "date_updated must be", ["date_updated"]),
        (
            {"file": b"x" * (resumes.MAX_FILE_BYTES + 1)},
            413,
            f"The file is over {resumes.MAX_FILE_BYTES} bytes.",
            ["file"],
        ),
        ({"candidate_id": "nobody"}, 404, "No Candidate has this id.", None),
        (
            {"body": b'{"resume_id": "RES-1"}'},
            400,
            "Content-Type must be multipart/form-data",
            None,
        ),
    ],
    ids=[
        "no-file",
        "no-resume-id",
        "no-file-extension",
        "no-date-created",
        "no-date-updated",
        "unsupported-extension",
        "date-not-iso-8601",
        "file-over-4-mb",
        "unknown-candidate",
        "not-a-form",
    ],
)
async def test_a_bad_upload_is_refused_with_senses_errors_and_not_kept(
    with_candidate: SenseStandIn,
    request_fields: dict[str, Any],
    status: int,
    message: str,
    path: list[str] | None,
) -> None:
    answered, body = await post_resume(with_candidate, **request_fields)

    [error] = body["errors"]
    assert answered == status
    assert error["message"].startswith(message)
    assert error["path"] == path
    assert with_candidate.sandbox.resumes == {}


async def test_an_upload_without_a_bearer_token_is_refused(
    with_candidate: SenseStandIn,
) -> None:
    status, _ = await post_resume(with_candidate, authorized=False)

    assert status == 401 and with_candidate.sandbox.resumes == {}


async def test_scripted_faults_answer_uploads_too(
    with_candidate: SenseStandIn,
) -> None:
    with_candidate.sandbox.script(Fault(status=503, retry_after_s=1))

    faulted, _ = await post_resume(with_candidate)
    kept_after_fault = dict(with_candidate.sandbox.resumes)
    accepted, _ = await post_resume(with_candidate)

    assert (faulted, accepted) == (503, 201)
    assert kept_after_fault == {}
    assert list(with_candidate.sandbox.resumes) == [("c-1", "RES-78901")]
