"""HTTP answers shared by relay's two listeners: hooks and write-backs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from aiohttp import web

from relay import errors

log = structlog.get_logger("relay.answers")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Refusal(Exception):
    """A request relay must refuse, with the status and JSON body to send."""

    def __init__(self, status: int, body: dict[str, Any], **headers: str) -> None:
        super().__init__(body.get("error", ""))
        self.status = status
        self.body = body
        self.headers = headers

    def response(self) -> web.Response:
        answer = json_response(self.status, self.body)
        answer.headers.update(self.headers)
        return answer


def json_response(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json"
    )


async def answer(
    request: web.Request, handler: Handler, unwritable: Refusal, event: str
) -> web.StreamResponse:
    """Runs ``handler``; refusals, HTTP errors and a failed store become JSON.

    A store that fails is logged as ``event`` and answered with
    ``unwritable``, so that the client retries rather than gives up.
    """
    try:
        return await handler(request)
    except Refusal as exc:
        return exc.response()
    except web.HTTPException as exc:
        return json_response(exc.status, {"error": exc.reason})
    except errors.OutboxError as exc:
        log.error(event, error=str(exc))
        return unwritable.response()
