"""The hook API the ATS posts to, plus health and metrics endpoints.

``POST /v1/{path}`` takes the same bodies Sense's own upsert endpoints take
(one entity or an array) and answers 202 only once every record is durable;
``POST /v1/candidates/{id}/resume`` does the same for one resume upload.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable
from dataclasses import replace
from typing import Any

import orjson
import prometheus_client
import structlog
from aiohttp import web

from relay import entities, errors, picklists, records, resumes
from relay.answers import Handler, Refusal, answer, json_response
from relay.config import ServerSettings
from relay.metrics import Metrics
from relay.outbox import Outbox
from relay.sense import SenseClient
from relay.uploads import Uploads
from relay.validators import Validators

log = structlog.get_logger("relay.ingest")

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
UNWRITABLE = Refusal(503, {"error": "the outbox cannot be written"})


class Ingest:
    """Handlers for the ingest listener; ``app()`` builds the aiohttp app."""

    def __init__(
        self,
        settings: ServerSettings,
        box: Outbox,
        metrics: Metrics,
        sense: SenseClient,
        uploads: Uploads,
        validators: Validators,
    ) -> None:
        self._settings = settings
        self._outbox = box
        self._validators = validators
        self._uploads = uploads
        self._metrics = metrics
        self._sense = sense
        self._tokens = [t.get_secret_value().encode() for t in settings.hook_tokens]

    def app(self) -> web.Application:
        app = web.Application(
            client_max_size=self._settings.max_request_bytes,
            middlewares=[self._errors_as_json, self._authenticate],
        )
        app.router.add_post("/v1/{path}", self.post_records)
        app.router.add_post("/v1/candidates/{id}/resume", self.upload_resume)
        picklist = "/v1/{path}/possible-values/{field}"
        app.router.add_get(picklist, self.picklist)
        app.router.add_put(picklist, self.picklist)
        app.router.add_get("/v1/{path}/{id}", self.get_record)
        app.router.add_patch("/v1/{path}/{id}", self.patch_record)
        app.router.add_delete("/v1/{path}/{id}", self.delete_record)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        return app

    async def post_records(self, request: web.Request) -> web.Response:
        entity_type = _entity_type(request.match_info["path"])
        body = await self._body(request)

        try:
            accepted = await self._validators.check(entity_type, body)
        except records.UnreadableBody as exc:
            raise Refusal(exc.status, {"error": exc.message}) from None
        except records.InvalidRecords as exc:
            raise self._invalid(entity_type, exc) from None
        await self._store(accepted)

        return json_response(202, {"accepted": len(accepted)})

    async def patch_record(self, request: web.Request) -> web.Response:
        """Accepts a partial record: only the fields present will change."""
        entity_type = _entity_type(request.match_info["path"])
        record_id = request.match_info["id"]
        item = _json_body(await self._body(request))
        if not isinstance(item, dict):
            raise Refusal(400, {"error": "body must be one entity object"})
        # Sense's PATCH body carries the id too; the path names it already.
        item.setdefault("id", record_id)

        [record] = self._validated(entity_type, [item])
        if record.record_id != record_id:
            problem = {
                "index": 0,
                "id": record.record_id,
                "field": "id",
                "message": "differs from the id in the path",
            }
            raise Refusal(422, {"error": "invalid records", "problems": [problem]})
        await self._store([replace(record, kind="patch")])
        return json_response(202, {"accepted": 1})

    async def delete_record(self, request: web.Request) -> web.Response:
        """Soft-deletes: sets is_deleted, leaving every other field as it is."""
        entity_type = _entity_type(request.match_info["path"])
        item = {"id": request.match_info["id"], "is_deleted": True}
        [record] = self._validated(entity_type, [item])
        await self._store([replace(record, kind="patch")])
        return json_response(202, {"accepted": 1})

    async def upload_resume(self, request: web.Request) -> web.Response:
        """Accepts one resume upload once its file and fields are durable."""
        upload = await self._read_upload(request, request.match_info["id"])
        try:
            await self._uploads.add(upload)
        except errors.OutboxFull as exc:
            raise _outbox_full(exc) from exc
        return json_response(202, {"accepted": 1})

    async def _read_upload(
        self, request: web.Request, candidate_id: str
    ) -> resumes.Upload:
        try:
            return await resumes.read(request, candidate_id)
        except resumes.NotMultipart as exc:
            refusal = Refusal(415, {"error": str(exc)})
        except resumes.FileTooLarge as exc:
            problem = records.Problem(0, candidate_id, "file", str(exc))
            refusal = _invalid_upload(413, [problem])
        except resumes.InvalidUpload as exc:
            refusal = _invalid_upload(422, exc.problems)
        self._metrics.resumes_rejected.inc()
        raise refusal

    def _validated(
        self, entity_type: entities.EntityType, items: list[Any]
    ) -> list[records.Record]:
        try:
            return records.validate(entity_type, items)
        except records.InvalidRecords as exc:
            raise self._invalid(entity_type, exc) from None

    def _invalid(
        self, entity_type: entities.EntityType, exc: records.InvalidRecords
    ) -> Refusal:
        self._metrics.records_rejected.labels(entity_type.path).inc(exc.submitted)
        problems = [problem.as_dict() for problem in exc.problems]
        return Refusal(422, {"error": "invalid records", "problems": problems})

    async def get_record(self, request: web.Request) -> web.Response:
        """Answers with what Sense holds for one entity, fetched live."""
        entity_type = _entity_type(request.match_info["path"])
        status, payload = await self._from_sense(
            self._sense.fetch(entity_type.path, request.match_info["id"])
        )
        return json_response(status, payload if isinstance(payload, dict) else {})

    async def picklist(self, request: web.Request) -> web.Response:
        """Reads or replaces a field's possible values at Sense."""
        entity_type = _entity_type(request.match_info["path"])
        field = request.match_info["field"]
        values = None
        try:
            picklists.check_field(entity_type, field)
            if request.method == "PUT":
                values = picklists.validate(_json_body(await self._body(request)))
        except picklists.InvalidPicklist as exc:
            raise Refusal(
                422, {"error": "invalid picklist", "problems": exc.problems}
            ) from None
        status, payload = await self._from_sense(
            self._sense.possible_values(entity_type.path, field, values)
        )
        return json_response(status, payload if isinstance(payload, dict) else {})

    async def _from_sense(self, call: Awaitable[tuple[int, Any]]) -> tuple[int, Any]:
        try:
            return await call
        except errors.SenseUnavailable as exc:
            retry_after = str(round(exc.retry_after_s or 5))
            raise Refusal(
                503,
                {"error": f"Sense is unavailable: {exc.reason}"},
                **{"Retry-After": retry_after},
            ) from exc

    async def healthz(self, _request: web.Request) -> web.Response:
        return json_response(200, {"status": "alive"})

    async def readyz(self, _request: web.Request) -> web.Response:
        writable = await self._outbox.check_writable()
        sense = self._sense.health
        body = {
            "ready": writable,
            "outbox_writable": writable,
            "sense_last_call_ok": sense.last_ok,
            "sense_last_status": sense.last_status,
        }
        return json_response(200 if writable else 503, body)

    async def metrics(self, _request: web.Request) -> web.Response:
        output = prometheus_client.generate_latest(self._metrics.registry)
        headers = {"Content-Type": prometheus_client.CONTENT_TYPE_LATEST}
        return web.Response(body=output, headers=headers)

    async def _store(self, accepted: list[records.Record]) -> None:
        try:
            await self._outbox.add(accepted)
        except errors.OutboxFull as exc:
            raise _outbox_full(exc) from exc

    async def _body(self, request: web.Request) -> bytes:
        # aiohttp inflates a gzip body as it reads, and the size limit counts
        # inflated bytes, so a small compressed bomb is refused too.
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            raise _too_large(self._settings.max_request_bytes) from exc

    @web.middleware
    async def _authenticate(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        if request.path not in OPEN_PATHS and not self._authorized(request):
            raise Refusal(
                401,
                {"error": "missing or invalid bearer token"},
                **{"WWW-Authenticate": "Bearer"},
            )
        return await handler(request)

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return False
        candidate = presented.strip().encode()
        # Compare against every token, without stopping early, so timing does
        # not tell which one nearly matched.
        matches = [hmac.compare_digest(candidate, token) for token in self._tokens]
        return any(matches)

    @web.middleware
    async def _errors_as_json(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        response = await answer(request, handler, UNWRITABLE, "hook_store_failed")
        if request.path.startswith("/v1/"):
            self._metrics.hook_requests.labels(str(response.status)).inc()
        return response


def _entity_type(path: str) -> entities.EntityType:
    entity_type = entities.BY_PATH.get(path)
    if entity_type is None:
        raise Refusal(
            404,
            {
                "error": f"unknown entity path '{path}'",
                "valid_paths": list(entities.PATHS),
            },
        )
    return entity_type


def _outbox_full(exc: errors.OutboxFull) -> Refusal:
    return Refusal(
        503,
        {"error": "the outbox is full; retry later"},
        **{"Retry-After": str(exc.retry_after_s)},
    )


def _invalid_upload(status: int, problems: list[records.Problem]) -> Refusal:
    body = {
        "error": "invalid resume upload",
        "problems": [problem.as_dict() for problem in problems],
    }
    return Refusal(status, body)


def _json_body(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Refusal(400, {"error": f"body is not valid JSON: {exc}"}) from exc


def _too_large(max_bytes: int) -> Refusal:
    return Refusal(413, {"error": f"body larger than {max_bytes} bytes"})
