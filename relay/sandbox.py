"""A local stand-in for Sense that refuses what the vendor's reference refuses.

Sense has no public sandbox. Users run this one to try their hooks end to end,
and relay's tests deliver to it over real sockets, so it is strict: bearer
tokens expire, a batch holds 1 to 500 records under 256 kB as received, and
every record passes ``relay.records.validate`` or the whole request is refused,
and a resume upload must be a complete form for a candidate it holds.
Everything lives in memory; nothing is processed asynchronously, so a 201
means the records are already stored and retrievable.
"""

from __future__ import annotations

import asyncio
import gzip
import hmac
import secrets
import statistics
import time
import uuid
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
import pydantic
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from relay import entities, picklists, records, resumes

log = structlog.get_logger(__name__)

API_PREFIX = "/v1"
TOKEN_PATH = "/oauth2/token"
CONTROL_PREFIX = "/_sandbox"
ACCEPTED_MESSAGE = "Request accepted for async processing."
REJECTED_MESSAGE = "was rejected by the sandbox"
READ_CHUNK_BYTES = 64 * 1024


@dataclass
class SandboxSettings:
    """How the sandbox behaves; the defaults are the values Sense documents."""

    client_id: str = "sandbox-client"
    client_secret: str = field(default="sandbox-secret", repr=False)
    token_lifetime_s: int = 300
    max_records: int = 500
    max_compressed_bytes: int = 256_000
    max_resume_bytes: int = resumes.MAX_FILE_BYTES


@dataclass
class Fault:
    """One scripted answer to a write (upsert, patch or resume upload).

    It is given once the request is authorized and its body read.

    Waits delay_s, then answers status (with Retry-After when retry_after_s is
    set) or closes the socket without answering. A fault with neither only
    delays, and the request then proceeds; a client that left during the delay
    abandons it, and nothing is stored. With ``entity`` set, it answers only a
    request for that entity path, and requests for others pass it by. Raises
    ValueError when contradictory.
    """

    __pydantic_config__ = pydantic.ConfigDict(extra="forbid", strict=True)

    status: int | None = None
    retry_after_s: float | None = None
    drop_connection: bool = False
    delay_s: float = 0.0
    entity: str | None = None

    def __post_init__(self) -> None:
        if self.entity is not None and self.entity not in entities.BY_PATH:
            raise ValueError(f"{self.entity!r} is not a Sense entity path")
        if self.status is not None and not 400 <= self.status <= 599:
            raise ValueError(f"status {self.status} is not an error status")
        if self.status is not None and self.drop_connection:
            raise ValueError("a fault either answers a status or drops the connection")
        if self.retry_after_s is not None and self.status is None:
            raise ValueError("retry_after_s needs a status to be sent with")
        if min(self.delay_s, self.retry_after_s or 0.0) < 0:
            raise ValueError("delay_s and retry_after_s must not be negative")


@dataclass(frozen=True)
class Batch:
    """One upsert request the sandbox accepted with a 201."""

    entity: str
    record_count: int
    body_bytes: int
    content_encoding: str | None
    received_at_s: float
    """time.monotonic() when the request reached its handler."""
    ids: tuple[str, ...]
    accepted_at_s: float = 0.0
    """time.monotonic() when the records were stored, just before the 201."""


class Exchange(NamedTuple):
    """One API call as the sandbox saw it; status is None when none was sent."""

    method: str
    path: str
    status: int | None


class _Refused(Exception):
    """Ends a request early with its finished answer and the reason for it."""

    def __init__(self, response: web.Response, reason: str) -> None:
        super().__init__(reason)
        self.response = response
        self.reason = reason


class _Dropped(Exception):
    """The connection is closed and no answer can be sent."""


_FAULTS = pydantic.TypeAdapter(list[Fault])
_IDS = pydantic.TypeAdapter(list[entities.Identifier])


class Sandbox:
    """In-memory Sense: issues tokens, stores upserts, answers retrievals."""

    def __init__(self, settings: SandboxSettings | None = None) -> None:
        self.settings = settings or SandboxSettings()
        self.records: dict[str, dict[str, dict[str, Any]]] = {
            path: {} for path in entities.PATHS
        }
        self.batches: list[Batch] = []
        self.token_requests = 0
        self.requests: list[Exchange] = []
        self._tokens: dict[str, float] = {}
        self._faults: deque[Fault] = deque()
        self._rejected: dict[str, tuple[str, bool]] = {}
        self._warned: dict[str, str] = {}
        self.picklists: dict[tuple[str, str], list[dict[str, Any]]] = {}
        # Keyed by (candidate id, resume id), as Sense identifies a resume.
        self.resumes: dict[tuple[str, str], resumes.Upload] = {}

    def reset(self) -> None:
        """Forgets records, observations, faults and rejections; tokens stay valid."""
        for stored in self.records.values():
            stored.clear()
        self.batches.clear()
        self.resumes.clear()
        self.token_requests = 0
        self.requests.clear()
        self._faults.clear()
        self._rejected.clear()
        self._warned.clear()
        log.info("sandbox_state_reset")

    def script(self, *faults: Fault) -> None:
        """Queues faults; each answers one later write request, in order."""
        self._faults.extend(faults)
        log.info("sandbox_faults_scripted", faults=len(faults))

    def clear_faults(self) -> None:
        """Drops the faults scripted and not yet used."""
        self._faults.clear()

    def reject(
        self, *ids: str, message: str = REJECTED_MESSAGE, named: bool = True
    ) -> None:
        """Refuses records with these ids, like invalid ones, until cleared.

        With ``named=False`` the 400 does not say which records it refused
        (``entity_id`` null), as Sense may answer when it cannot tell.
        """
        self._rejected.update(dict.fromkeys(ids, (message, named)))
        log.info("sandbox_ids_rejected", ids=len(ids))

    def warn(self, *ids: str, message: str = "field value was truncated") -> None:
        """Accepts records with these ids but names them in ``warnings[]``."""
        self._warned.update(dict.fromkeys(ids, message))

    def clear_rejected(self) -> None:
        """Accepts again every id given to reject."""
        self._rejected.clear()

    def revoke_tokens(self) -> None:
        """Makes every token issued so far answer 401."""
        self._tokens.clear()
        log.info("sandbox_tokens_revoked")

    def arrivals(self) -> list[dict[str, Any]]:
        """The batches accepted, in the order they arrived."""
        return [
            {
                "entity": batch.entity,
                "ids": list(batch.ids),
                "received_at_s": batch.received_at_s,
                "accepted_at_s": batch.accepted_at_s,
            }
            for batch in self.batches
        ]

    def stats(self) -> dict[str, Any]:
        """Sums up what the sandbox received, for benchmarks and the CLI."""
        sizes = [batch.body_bytes for batch in self.batches]
        counts = [batch.record_count for batch in self.batches]
        return {
            "token_requests": self.token_requests,
            "batches": len(self.batches),
            "records": {path: len(stored) for path, stored in self.records.items()},
            "resumes": len(self.resumes),
            "mean_records_per_batch": statistics.fmean(counts) if counts else 0.0,
            "mean_body_bytes": statistics.fmean(sizes) if sizes else 0.0,
            "max_body_bytes": max(sizes, default=0),
        }

    def app(self) -> web.Application:
        """Builds an application over this sandbox's state for any runner."""
        # Limits apply to the body as received, so aiohttp must not inflate it.
        app = web.Application(
            middlewares=[self._observe], handler_args={"auto_decompress": False}
        )
        app.router.add_post(TOKEN_PATH, self._issue_token)
        app.router.add_post(API_PREFIX + "/{path}", self._upsert)
        app.router.add_post(API_PREFIX + "/candidates/{id}/resume", self._resume)
        picklist = API_PREFIX + "/{path}/possible-values/{field}"
        app.router.add_get(picklist, self._possible_values)
        app.router.add_put(picklist, self._possible_values)
        app.router.add_get(API_PREFIX + "/{path}/{id}", self._retrieve)
        app.router.add_patch(API_PREFIX + "/{path}/{id}", self._patch)
        _Controls(self).add_routes(app.router)
        return app

    @web.middleware
    async def _observe(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX):
            return await handler(request)

        try:
            response = await handler(request)
        except _Refused as refusal:
            response = refusal.response
            _log_refusal(request, refusal)
        except _Dropped:
            self._note(request, None)
            # The socket is closed already: aiohttp discards this answer.
            return web.Response()
        except web.HTTPException as exc:
            self._note(request, exc.status)
            raise

        self._note(request, response.status)
        return response

    def _note(self, request: web.Request, status: int | None) -> None:
        self.requests.append(Exchange(request.method, request.path, status))

    async def _issue_token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        form = await _token_form(request)

        _check_grant_type(form)
        self._check_client(form)
        return self._new_token()

    def _check_client(self, form: dict[str, str]) -> None:
        expected = (self.settings.client_id, self.settings.client_secret)
        given = (form.get("client_id", ""), form.get("client_secret", ""))
        if not all(map(_same_secret, given, expected)):
            raise _oauth_refusal(401, "invalid_client")

    def _new_token(self) -> web.Response:
        now = time.monotonic()
        self._tokens = {key: end for key, end in self._tokens.items() if end > now}
        token = secrets.token_urlsafe(32)
        self._tokens[token] = now + self.settings.token_lifetime_s

        log.info("sandbox_token_issued", expires_in_s=self.settings.token_lifetime_s)
        return _json(
            200,
            {
                "access_token": token,
                "expires_in": self.settings.token_lifetime_s,
                "token_type": "Bearer",
            },
        )

    def _authorize(self, request: web.Request) -> None:
        reason = self._token_problem(request.headers.get("Authorization", ""))
        if reason is None:
            return
        raise _refusal(
            401,
            _error(None, f"The bearer token is {reason}."),
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )

    def _token_problem(self, authorization: str) -> str | None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "missing"
        expires_at = self._tokens.get(token.strip())
        if expires_at is None:
            return "unknown or revoked"
        # Clients must honour expires_in ("Token Caching & Rate Limits"), so a
        # token is refused from the very moment its lifetime ends.
        return "expired" if time.monotonic() >= expires_at else None

    async def _upsert(self, request: web.Request) -> web.Response:
        received_at_s = time.monotonic()
        entity_type = _entity_type(request)
        self._authorize(request)

        body, body_bytes = await self._received_body(request)

        items = _items(body, self.settings.max_records)
        valid = self._validate(entity_type, items)
        return self._accept(request, entity_type, valid, body_bytes, received_at_s)

    async def _patch(self, request: web.Request) -> web.Response:
        """Sense's partial update: only the fields present change."""
        entity_type = _entity_type(request)
        self._authorize(request)
        body, _ = await self._received_body(request)

        record_id = request.match_info["id"]
        [record] = self._validate(entity_type, [_object(body)])
        if record.record_id != record_id:
            message = "The body's id differs from the id in the path."
            raise _refusal(400, _error(record_id, message, ["id"]))
        stored = self.records[entity_type.path].get(record_id)
        if stored is None:
            message = f"No {entity_type.name} has this id."
            return _json(404, _retrieved({}, [_error(record_id, message)], record_id))
        stored.update(orjson.loads(record.body))
        log.info("sandbox_patch_accepted", entity=entity_type.path)
        return _json(
            201, {"message": ACCEPTED_MESSAGE, "request_id": str(uuid.uuid4())}
        )

    async def _resume(self, request: web.Request) -> web.Response:
        """Sense's resume upload: one file for a candidate it already holds."""
        self._authorize(request)
        candidate_id = request.match_info["id"]
        upload = await self._resume_form(request, candidate_id)
        await self._answer_fault(request)

        if candidate_id not in self.records["candidates"]:
            raise _refusal(404, _error(candidate_id, "No Candidate has this id."))
        self.resumes[upload.key] = upload

        log.info("sandbox_resume_accepted", file_bytes=len(upload.file))
        request_id = str(uuid.uuid4())
        return _json(
            201,
            {"message": f"request {request_id} is received", "request_id": request_id},
        )

    async def _resume_form(
        self, request: web.Request, candidate_id: str
    ) -> resumes.Upload:
        # Messages as in the reference's examples for this endpoint. It lists
        # only 400 there, the size limit included; the sandbox answers 413 as
        # Sense's other endpoints do, and relay treats the two alike.
        if request.content_type != "multipart/form-data":
            message = "Content-Type must be multipart/form-data"
            raise _refusal(400, _error(None, message))
        limit = self.settings.max_resume_bytes
        try:
            return await resumes.read(request, candidate_id, limit)
        except resumes.NotMultipart:
            message = "The body is not a valid multipart/form-data form."
            raise _refusal(400, _error(None, message)) from None
        except resumes.FileTooLarge:
            message = f"The file is over {limit} bytes."
            raise _refusal(413, _error(candidate_id, message, ["file"])) from None
        except resumes.InvalidUpload as exc:
            raise _refusal(400, *map(_form_error, exc.problems)) from None

    async def _received_body(self, request: web.Request) -> tuple[bytes, int]:
        """Reads a write's body as Sense does: fault, size, type, then gzip.

        Returns the inflated body and its size as received.
        """
        body = await _read_body(request, self.settings.max_compressed_bytes)
        await self._answer_fault(request)
        _check_size(body, self.settings.max_compressed_bytes)
        _check_content_type(request)
        return _inflate(request, body), len(body)

    async def _answer_fault(self, request: web.Request) -> None:
        # A resume upload's path names no entity type: it is a candidate's.
        fault = self._next_fault(request.match_info.get("path", "candidates"))
        if fault is None:
            return
        log.info("sandbox_fault_answered", **vars(fault))

        await asyncio.sleep(fault.delay_s)
        # A client that gave up during the delay has nobody left to answer.
        if fault.drop_connection or request.transport is None:
            _drop(request)
        if fault.status is not None:
            raise _fault_refusal(fault.status, fault.retry_after_s)

    def _next_fault(self, entity: str) -> Fault | None:
        for index, fault in enumerate(self._faults):
            if fault.entity in (None, entity):
                del self._faults[index]
                return fault
        return None

    def _validate(
        self, entity_type: entities.EntityType, items: list[Any]
    ) -> list[records.Record]:
        try:
            valid, problems = records.validate(entity_type, items), []
        except records.InvalidRecords as exc:
            valid, problems = [], exc.problems

        problems = sorted(problems + self._rejections(items), key=_by_index)
        if problems:
            raise _refusal(400, *map(_problem_error, problems))
        return valid

    def _rejections(self, items: list[Any]) -> list[records.Problem]:
        problems = []
        for index, record_id in enumerate(map(records.raw_id, items)):
            if record_id in self._rejected:
                message, named = self._rejected[record_id]
                shown_id = record_id if named else None
                problems.append(records.Problem(index, shown_id, None, message))
        return problems

    def _accept(
        self,
        request: web.Request,
        entity_type: entities.EntityType,
        valid: list[records.Record],
        body_bytes: int,
        received_at_s: float,
    ) -> web.Response:
        stored = self.records[entity_type.path]
        for record in valid:
            # Whole-entity upsert: fields absent from the new version are gone.
            stored[record.record_id] = orjson.loads(record.body)
        ids = tuple(record.record_id for record in valid)
        encoding = request.headers.get("Content-Encoding")
        self.batches.append(
            Batch(
                entity_type.path,
                len(ids),
                body_bytes,
                encoding,
                received_at_s,
                ids,
                time.monotonic(),
            )
        )

        log.info(
            "sandbox_batch_accepted",
            entity=entity_type.path,
            records=len(ids),
            body_bytes=body_bytes,
        )
        answer: dict[str, Any] = {
            "message": ACCEPTED_MESSAGE,
            "request_id": str(uuid.uuid4()),
        }
        warnings = [
            _error(record_id, self._warned[record_id], None)
            for record_id in ids
            if record_id in self._warned
        ]
        if warnings:
            answer["warnings"] = warnings
        return _json(201, answer)

    async def _retrieve(self, request: web.Request) -> web.Response:
        entity_type = _entity_type(request)
        self._authorize(request)

        record_id = request.match_info["id"]
        entity = self.records[entity_type.path].get(record_id)
        if entity is None:
            missing = f"No {entity_type.name} has this id."
            return _json(404, _retrieved({}, [_error(record_id, missing)], record_id))
        return _json(200, _retrieved(entity, [], record_id))

    async def _possible_values(self, request: web.Request) -> web.Response:
        entity_type = _entity_type(request)
        self._authorize(request)
        field = request.match_info["field"]
        if field not in entity_type.fields:
            message = f"{field!r} is not a field of {entity_type.name}."
            raise _refusal(400, _error(None, message, [field]))

        key = (entity_type.path, field)
        data: dict[str, Any] = {"field_name": field, "object_name": entity_type.name}
        if request.method == "GET":
            data["values"] = self.picklists.get(key)
        else:
            self.picklists[key] = _picklist(await request.read())
            data.update(possibleValues=self.picklists[key], updated=True)
        return _json(200, {"data": data, "resource_id": field})


def _object(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _refusal(400, _error(None, "The body is not valid JSON.")) from None


def _picklist(body: bytes) -> list[dict[str, Any]]:
    try:
        return picklists.validate(orjson.loads(body))
    except orjson.JSONDecodeError:
        raise _refusal(400, _error(None, "The body is not valid JSON.")) from None
    except picklists.InvalidPicklist as exc:
        problems = [_error(None, p["message"], [str(p["field"])]) for p in exc.problems]
        raise _refusal(400, *problems) from None


class _Controls:
    """The /_sandbox routes, through which another process drives a sandbox."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get(CONTROL_PREFIX + "/stats", self.stats)
        router.add_get(CONTROL_PREFIX + "/batches", self.batches)
        router.add_post(CONTROL_PREFIX + "/faults", self.script)
        router.add_post(CONTROL_PREFIX + "/reject", self.reject)
        router.add_delete(CONTROL_PREFIX + "/reject", self.clear_rejected)
        router.add_post(CONTROL_PREFIX + "/revoke-tokens", self.revoke_tokens)
        router.add_post(CONTROL_PREFIX + "/reset", self.reset)

    async def stats(self, request: web.Request) -> web.Response:
        return _json(200, self.sandbox.stats())

    async def batches(self, request: web.Request) -> web.Response:
        return _json(200, self.sandbox.arrivals())

    async def script(self, request: web.Request) -> web.Response:
        self.sandbox.script(*_parse(_FAULTS, await request.read()))
        return web.Response(status=204)

    async def reject(self, request: web.Request) -> web.Response:
        self.sandbox.reject(*_parse(_IDS, await request.read()))
        return web.Response(status=204)

    async def clear_rejected(self, request: web.Request) -> web.Response:
        self.sandbox.clear_rejected()
        return web.Response(status=204)

    async def revoke_tokens(self, request: web.Request) -> web.Response:
        self.sandbox.revoke_tokens()
        return web.Response(status=204)

    async def reset(self, request: web.Request) -> web.Response:
        self.sandbox.reset()
        return web.Response(status=204)


async def serve(host: str, port: int, settings: SandboxSettings | None = None) -> None:
    """Serves a new sandbox until cancelled, then closes its connections."""
    sandbox = Sandbox(settings)
    runner = web.AppRunner(sandbox.app(), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound_port = runner.addresses[0][1]
        log.info("sandbox_started", host=host, port=bound_port)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        log.info("sandbox_stopped")


async def _token_form(request: web.Request) -> dict[str, str]:
    # The reference documents only a form body: no JSON, no Basic header.
    if request.content_type != "application/x-www-form-urlencoded":
        raise _oauth_refusal(400, "invalid_request")
    form = await request.post()
    return {key: value for key, value in form.items() if isinstance(value, str)}


def _check_grant_type(form: dict[str, str]) -> None:
    if form.get("grant_type") != "client_credentials":
        raise _oauth_refusal(400, "unsupported_grant_type")


def _same_secret(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _entity_type(request: web.Request) -> entities.EntityType:
    path = request.match_info["path"]
    if path not in entities.BY_PATH:
        raise _refusal(404, _error(None, f"{path!r} is not a Sense entity path."))
    return entities.BY_PATH[path]


async def _read_body(request: web.Request, max_bytes: int) -> bytes:
    """Reads the body as received, stopping once it is over max_bytes."""
    body = bytearray()
    async for chunk in request.content.iter_chunked(READ_CHUNK_BYTES):
        body += chunk
        if len(body) > max_bytes:
            break
    return bytes(body)


def _check_size(body: bytes, max_bytes: int) -> None:
    if len(body) <= max_bytes:
        return
    message = f"The body is over {max_bytes} bytes as received."
    raise _refusal(413, _error(None, message))


def _check_content_type(request: web.Request) -> None:
    if request.content_type != "application/json":
        raise _refusal(415, _error(None, "The body must be application/json."))


def _inflate(request: web.Request, body: bytes) -> bytes:
    encoding = request.headers.get("Content-Encoding", "identity").lower()
    if encoding == "identity":
        return body
    if encoding != "gzip":
        raise _refusal(415, _error(None, "Content-Encoding must be gzip or absent."))
    try:
        return gzip.decompress(body)
    except (OSError, EOFError, zlib.error):
        raise _refusal(400, _error(None, "The body is not valid gzip.")) from None


def _items(body: bytes, max_records: int) -> list[Any]:
    try:
        items = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _refusal(400, _error(None, "The body is not valid JSON.")) from None
    if not isinstance(items, list):
        raise _refusal(400, _error(None, "The body must be a JSON array."))
    if not 1 <= len(items) <= max_records:
        message = f"The array holds {len(items)} records, not 1 to {max_records}."
        raise _refusal(400, _error(None, message))
    return items


def _by_index(problem: records.Problem) -> int:
    return problem.index


def _problem_error(problem: records.Problem) -> dict[str, Any]:
    path = None if problem.field is None else [problem.field]
    return _error(problem.id, problem.message, path)


def _form_error(problem: records.Problem) -> dict[str, Any]:
    field = problem.field
    path = None if field is None else [field]
    if problem.message == resumes.REQUIRED_MESSAGE:
        message = f"Missing required form field: {field}"
    elif field == "file_extension":
        allowed = ", ".join(sorted(resumes.EXTENSIONS))
        message = f"Invalid file_extension. Allowed: {allowed}"
    else:
        message = f"{field} {problem.message}" if field else problem.message
    return _error(problem.id, message, path)


def _drop(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.close()
    log.info("sandbox_connection_dropped", path=request.path)
    raise _Dropped


def _fault_refusal(status: int, retry_after_s: float | None) -> _Refused:
    headers = {}
    if retry_after_s is not None:
        headers["Retry-After"] = _seconds(retry_after_s)
    return _refusal(status, _error(None, "Scripted fault."), headers=headers)


def _seconds(value: float) -> str:
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def _parse(adapter: pydantic.TypeAdapter[list[Any]], body: bytes) -> list[Any]:
    try:
        return adapter.validate_json(body)
    except pydantic.ValidationError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None


def _error(
    entity_id: str | None, message: str, path: list[str] | None = None
) -> dict[str, Any]:
    return {"entity_id": entity_id, "message": message, "path": path}


def _retrieved(
    data: dict[str, Any], errors: list[dict[str, Any]], resource_id: str
) -> dict[str, Any]:
    return {"data": data, "errors": errors, "resource_id": resource_id}


def _refusal(
    status: int, *errors: dict[str, Any], headers: dict[str, str] | None = None
) -> _Refused:
    body = {"errors": list(errors), "warnings": None}
    reason = f"{len(errors)} error(s), first: {errors[0]['message']}"
    return _Refused(_json(status, body, headers), reason)


def _oauth_refusal(status: int, error: str) -> _Refused:
    return _Refused(_json(status, {"error": error}), error)


def _log_refusal(request: web.Request, refusal: _Refused) -> None:
    log.warning(
        "sandbox_request_refused",
        method=request.method,
        path=request.path,
        status=refusal.response.status,
        reason=refusal.reason,
    )


def _json(
    status: int, payload: Any, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps(payload),
        content_type="application/json",
        headers=headers,
    )
