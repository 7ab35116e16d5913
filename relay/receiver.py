"""The write-back listener: the one URL where Sense pushes write-backs.

It faces the internet, unlike the ingest listener: TLS 1.2 at least (or a
TLS proxy in front), a body-size and a concurrency limit, and every request
authenticated. A write-back is answered 200 ``{"id": ...}`` only once it is
committed to the inbox; Sense retries anything else ("Write-back API
Specification", "Important"), and a redelivery gets the first answer again.
ENTITY_CREATE needs the new entity's id in the reply, so it is handed to the
ATS before relay answers.
"""

from __future__ import annotations

import hmac
import ssl

import structlog
from aiohttp import web

from relay import errors, writeback
from relay.answers import Handler, Refusal, answer, json_response
from relay.config import WritebackSettings
from relay.forwarder import Forwarder
from relay.inbox import DEAD_LETTERED, DELIVERED, PENDING, Inbox, Stored
from relay.metrics import Metrics
from relay.oidc import JwtVerifier, KeysUnavailable, TokenRefused

log = structlog.get_logger("relay.receiver")

UNAUTHORIZED = {"error": "invalid token or session"}
RETRY_AFTER_S = "5"
UNWRITABLE = Refusal(
    503, {"error": "unable to store, server issue"}, **{"Retry-After": RETRY_AFTER_S}
)


class Receiver:
    """Handlers of the write-back listener; ``app()`` builds the aiohttp app."""

    def __init__(
        self,
        settings: WritebackSettings,
        inbox: Inbox,
        forwarder: Forwarder,
        metrics: Metrics,
        verifier: JwtVerifier | None = None,
    ) -> None:
        self._settings = settings
        self._inbox = inbox
        self._forwarder = forwarder
        self._metrics = metrics
        self._verifier = verifier
        self._tokens = [t.get_secret_value().encode() for t in settings.tokens]
        self._active = 0

    def app(self) -> web.Application:
        app = web.Application(
            client_max_size=self._settings.max_body_bytes,
            middlewares=[self._errors_as_json, self._limit, self._authenticate],
        )
        app.router.add_post(self._settings.path, self.receive)
        return app

    async def receive(self, request: web.Request) -> web.Response:
        """Stores one write-back and answers with its id once it is durable."""
        received = self._parsed(await self._body(request))

        # Claimed before it is stored, so that the forwarder leaves a new
        # ENTITY_CREATE to this request, which must answer with its id.
        creating = received.type == writeback.ENTITY_CREATE
        claimed = creating and self._forwarder.claim(received.id)
        try:
            receipt = await self._inbox.receive(received)
            self._count(received, receipt.new)
            if creating:
                return await self._created(receipt.stored, claimed)
        finally:
            if claimed:
                self._forwarder.release(received.id)
        return json_response(200, {"id": received.id})

    def _count(self, received: writeback.WriteBack, new: bool) -> None:
        outcome = "stored" if new else "duplicate"
        self._metrics.writebacks_received.labels(received.type_label, outcome).inc()
        log.info(
            "writeback_received",
            writeback_id=received.id,
            type=received.type,
            outcome=outcome,
        )

    def _parsed(self, body: bytes) -> writeback.WriteBack:
        try:
            return writeback.parse(body)
        except writeback.InvalidWriteBack as exc:
            self._metrics.writebacks_received.labels(exc.type_label, "invalid").inc()
            problems = [problem.as_dict() for problem in exc.problems]
            status = 422 if all(p.field for p in exc.problems) else 400
            raise Refusal(status, {"error": str(exc), "problems": problems}) from None

    async def _created(self, stored: Stored, claimed: bool) -> web.Response:
        """Answers an ENTITY_CREATE with the id the ATS gave the new entity."""
        if stored.state == PENDING:
            if not claimed:
                raise _try_later("the write-back is being delivered to the ATS")
            await self._forwarder.attempt(stored, self._settings.create_timeout_seconds)
            stored = await self._stored(stored.id)

        if stored.state == DELIVERED:
            return json_response(200, {"id": stored.id, "entity_id": stored.entity_id})
        if stored.state == DEAD_LETTERED:
            raise _not_created(stored.status)
        raise _try_later("the ATS has not created the entity yet")

    async def _stored(self, writeback_id: str) -> Stored:
        stored = await self._inbox.get(writeback_id)
        if stored is None:  # purged in between: only an operator can do that
            raise _try_later("the write-back is no longer in the inbox")
        return stored

    async def _body(self, request: web.Request) -> bytes:
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            limit = self._settings.max_body_bytes
            raise Refusal(413, {"error": f"body larger than {limit} bytes"}) from None

    @web.middleware
    async def _limit(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        if self._active >= self._settings.max_concurrent_requests:
            raise Refusal(
                429,
                {"error": "too many write-backs at once; retry later"},
                **{"Retry-After": "1"},
            )
        self._active += 1
        try:
            return await handler(request)
        finally:
            self._active -= 1

    @web.middleware
    async def _authenticate(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        presented = self._presented(request)
        if presented is None:
            raise self._unauthorized("missing")
        if not self._is_shared_token(presented):
            await self._verify_jwt(presented)
        return await handler(request)

    def _presented(self, request: web.Request) -> str | None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        name = self._settings.query_param
        token = request.query.get(name, "").strip() if name else ""
        return token or None

    def _is_shared_token(self, presented: str) -> bool:
        candidate = presented.encode()
        # Every token is compared, without stopping early, so that timing
        # does not tell which one nearly matched.
        matches = [hmac.compare_digest(candidate, token) for token in self._tokens]
        return any(matches)

    async def _verify_jwt(self, presented: str) -> None:
        if self._verifier is None or presented.count(".") != 2:
            raise self._unauthorized("unknown_token")
        try:
            await self._verifier.verify(presented)
        except TokenRefused as exc:
            raise self._unauthorized(exc.reason) from None
        except KeysUnavailable:
            self._metrics.writeback_auth_failures.labels("keys_unavailable").inc()
            raise _try_later("cannot check the token now") from None

    def _unauthorized(self, reason: str) -> Refusal:
        self._metrics.writeback_auth_failures.labels(reason).inc()
        log.warning("writeback_auth_failed", reason=reason)
        return Refusal(401, UNAUTHORIZED, **{"WWW-Authenticate": "Bearer"})

    @web.middleware
    async def _errors_as_json(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        response = await answer(request, handler, UNWRITABLE, "writeback_store_failed")
        if response.status >= 400:
            log.info("writeback_refused", status=response.status)
        self._metrics.writeback_requests.labels(str(response.status)).inc()
        return response


def tls_context(settings: WritebackSettings) -> ssl.SSLContext | None:
    """The listener's TLS settings; None when a TLS proxy sits in front."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    # The reference requires TLS 1.2 support; nothing older is offered.
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise errors.ConfigError(
            f"cannot load writeback.tls_cert {settings.tls_cert} and "
            f"writeback.tls_key {settings.tls_key}: {exc}"
        ) from None
    return context


def _not_created(status: int | None) -> Refusal:
    if status is not None and 400 <= status < 500:
        message = f"the ATS refused to create the entity (HTTP {status})"
        return Refusal(422, {"error": message})
    message = "the ATS could not create the entity; it is in relay's dead letters"
    return Refusal(502, {"error": message})


def _try_later(reason: str) -> Refusal:
    body = {"error": f"unable to store, server issue: {reason}"}
    return Refusal(503, body, **{"Retry-After": RETRY_AFTER_S})
