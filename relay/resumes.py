"""Resume uploads: a candidate's resume file and the form fields that go with it.

Sense's "Upload Candidate Resume" takes one file per request as
multipart/form-data: ``file`` (at most 4 MB), ``file_extension``,
``resume_id``, ``date_created`` and ``date_updated`` (all required) and
``file_name`` (optional). relay's ingest API and the sandbox read the form
with the same rules, so that what relay accepts is what Sense accepts.
"""

from __future__ import annotations

import datetime
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pydantic
from aiohttp import web

from relay import entities, errors, records

EXTENSIONS = ("pdf", "doc", "docx", "txt", "rtf", "odt", "html", "htm")
# "Maximum file size: 4 MB". The reference does not say whether a megabyte
# is 10**6 or 2**20 bytes: the smaller reading refuses at once, with a clear
# answer to the ATS, what Sense might otherwise refuse after the 202.
MAX_FILE_BYTES = 4_000_000
# The text fields are short; bounding them (and the number of parts) bounds
# what one request can make relay read before it answers.
MAX_TEXT_BYTES = 4096
MAX_PARTS = 16
READ_CHUNK_BYTES = 64 * 1024
REQUIRED = ("file", "resume_id", "file_extension", "date_created", "date_updated")
FIELDS = ("file", "resume_id", "file_name", "file_extension", *REQUIRED[3:])
TEXT_FIELDS = FIELDS[1:]
REQUIRED_MESSAGE = "is required"
EXTENSION_MESSAGE = f"must be one of {', '.join(EXTENSIONS)}"

_date_time = pydantic.TypeAdapter(entities.DateTime)


@dataclass(frozen=True, slots=True)
class Upload:
    """One resume file for one candidate, with Sense's form fields."""

    candidate_id: str
    resume_id: str
    file_extension: str
    date_created: str
    date_updated: str
    file: bytes = field(repr=False)
    file_name: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        """What identifies an upload: a newer one with the same key replaces it."""
        return self.candidate_id, self.resume_id

    def form_fields(self) -> dict[str, str]:
        """The text fields as Sense takes them; an absent file_name stays absent."""
        fields = {
            "resume_id": self.resume_id,
            "file_extension": self.file_extension,
            "date_created": self.date_created,
            "date_updated": self.date_updated,
        }
        if self.file_name is not None:
            fields["file_name"] = self.file_name
        return fields


class NotMultipart(errors.RelayError):
    """The body is not a multipart/form-data form that can be read."""


class FileTooLarge(errors.RelayError):
    """The file is over MAX_FILE_BYTES (or the limit the reader was given)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            f"the file is larger than {max_bytes} bytes, the most Sense accepts"
        )
        self.max_bytes = max_bytes


class InvalidUpload(errors.RelayError):
    """The form breaks Sense's rules; carries every problem found."""

    def __init__(self, problems: list[records.Problem]) -> None:
        super().__init__(f"{len(problems)} problem(s) in the resume upload")
        self.problems = problems


@dataclass(slots=True)
class _Form:
    text: dict[str, str] = field(default_factory=dict)
    file: bytes | None = None
    problems: list[tuple[str | None, str]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)


async def read(
    request: web.BaseRequest, candidate_id: str, max_file_bytes: int = MAX_FILE_BYTES
) -> Upload:
    """Reads and checks an upload form.

    Raises NotMultipart for a body that is not a readable form,
    FileTooLarge as soon as the file passes ``max_file_bytes``, and
    InvalidUpload listing every other problem at once.
    """
    if request.content_type != "multipart/form-data":
        raise NotMultipart("the body must be multipart/form-data")
    try:
        form = await _read_form(await request.multipart(), max_file_bytes)
    except (ValueError, AssertionError) as exc:
        # aiohttp's reader reports a broken form with these two.
        raise NotMultipart(f"the body is not a readable form: {exc}") from None

    return _validated(candidate_id, form)


def _validated(candidate_id: str, form: _Form) -> Upload:
    problems = sorted(
        [*form.problems, *_missing(form), *_bad_values(form)], key=_field_order
    )
    if problems:
        raise InvalidUpload(
            [records.Problem(0, candidate_id, name, text) for name, text in problems]
        )
    assert form.file is not None  # _missing found it present
    return Upload(
        candidate_id=candidate_id,
        resume_id=form.text["resume_id"],
        file_extension=form.text["file_extension"],
        date_created=form.text["date_created"],
        date_updated=form.text["date_updated"],
        file=form.file,
        file_name=form.text.get("file_name"),
    )


async def _read_form(reader: aiohttp.MultipartReader, max_file_bytes: int) -> _Form:
    form = _Form()
    parts = 0
    async for part in reader:
        parts += 1
        if parts > MAX_PARTS:
            form.problems.append((None, f"the form has more than {MAX_PARTS} parts"))
            break
        if not isinstance(part, aiohttp.BodyPartReader) or not part.name:
            form.problems.append((None, "a part of the form has no field name"))
            break
        if not await _read_part(form, part, max_file_bytes):
            break
    return form


async def _read_part(
    form: _Form, part: aiohttp.BodyPartReader, max_file_bytes: int
) -> bool:
    """Adds one part to the form; False when reading must stop here."""
    name = str(part.name)
    limit = max_file_bytes if name == "file" else MAX_TEXT_BYTES
    content = await _read_at_most(part, limit)
    if content is None and name == "file":
        raise FileTooLarge(max_file_bytes)
    if content is None:
        form.problems.append((name, f"is longer than {MAX_TEXT_BYTES} bytes"))
        return False

    if name in form.seen:
        form.problems.append((name, "is given more than once"))
    elif name == "file":
        form.file = content
    elif name not in TEXT_FIELDS:
        form.problems.append((name, "is not a field of a resume upload"))
    else:
        _add_text(form, name, content)
    form.seen.add(name)
    return True


def _add_text(form: _Form, name: str, content: bytes) -> None:
    try:
        form.text[name] = content.decode("utf-8")
    except UnicodeDecodeError:
        form.problems.append((name, "is not UTF-8 text"))


async def _read_at_most(part: aiohttp.BodyPartReader, limit: int) -> bytes | None:
    """The part's bytes, or None once they pass ``limit`` (reading stops)."""
    content = bytearray()
    while chunk := await part.read_chunk(READ_CHUNK_BYTES):
        content += chunk
        if len(content) > limit:
            return None
    return bytes(content)


def _field_order(problem: tuple[str | None, str]) -> int:
    name = problem[0]
    return FIELDS.index(name) + 1 if name in FIELDS else 0


def _missing(form: _Form) -> list[tuple[str | None, str]]:
    present = {*form.text, *(["file"] if form.file is not None else [])}
    # A field already reported (given twice, not UTF-8) is not also missing.
    reported = {name for name, _ in form.problems}
    return [
        (name, REQUIRED_MESSAGE)
        for name in REQUIRED
        if name not in present and name not in reported
    ]


def _bad_values(form: _Form) -> list[tuple[str | None, str]]:
    problems: list[tuple[str | None, str]] = []
    if form.file == b"":
        problems.append(("file", "is empty"))
    if form.text.get("resume_id") == "":
        problems.append(("resume_id", "must not be empty"))
    extension = form.text.get("file_extension")
    if extension is not None and extension not in EXTENSIONS:
        problems.append(("file_extension", EXTENSION_MESSAGE))
    for name in ("date_created", "date_updated"):
        value = form.text.get(name)
        if value is not None:
            problems.extend((name, text) for text in _date_time_problems(value))
    return problems


def _date_time_problems(value: str) -> list[str]:
    try:
        _date_time.validate_python(value)
    except pydantic.ValidationError as exc:
        return [_message(error) for error in exc.errors(include_url=False)]
    return []


def _message(error: Any) -> str:
    message: str = error["msg"]
    return message.removeprefix("Value error, ")


async def encode(upload: Upload) -> tuple[bytes, str]:
    """The multipart/form-data body for an upload, and its Content-Type."""
    writer = aiohttp.MultipartWriter("form-data")
    for name, value in upload.form_fields().items():
        part = writer.append(value)
        part.set_content_disposition("form-data", name=name)
    file_part = writer.append(upload.file, {"Content-Type": "application/octet-stream"})
    file_part.set_content_disposition(
        "form-data", name="file", filename=upload.file_name or upload.resume_id
    )
    return await writer.as_bytes(), writer.content_type


def from_file(
    path: Path,
    candidate_id: str,
    *,
    resume_id: str | None = None,
    file_name: str | None = None,
    extension: str | None = None,
    date_created: str | None = None,
    date_updated: str | None = None,
) -> Upload:
    """An upload of the file at ``path``, unchecked, with defaults for the rest.

    resume_id and file_name default to the file's name, the extension to
    its suffix, and both dates to its modification time in UTC.
    """
    modified = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.UTC)
    modified_at = modified.strftime("%Y-%m-%dT%H:%M:%SZ")
    return Upload(
        candidate_id=candidate_id,
        resume_id=resume_id if resume_id is not None else path.name,
        file_extension=extension or path.suffix.lower().removeprefix("."),
        date_created=date_created or modified_at,
        date_updated=date_updated or modified_at,
        file=path.read_bytes(),
        file_name=file_name if file_name is not None else path.name,
    )


async def hand_to_relay(
    base_url: str, hook_token: str, upload: Upload, timeout_s: float
) -> tuple[int, Any]:
    """Posts an upload to a running relay; returns its status and JSON answer.

    Raises aiohttp.ClientError or TimeoutError when relay does not answer.
    """
    body, content_type = await encode(upload)
    url = f"{base_url}/v1/candidates/{quote(upload.candidate_id, safe='')}/resume"
    headers = {"Authorization": f"Bearer {hook_token}", "Content-Type": content_type}
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.post(url, data=io.BytesIO(body), headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)
