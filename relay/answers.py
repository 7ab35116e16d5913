"""HTTP answers shared by relay's two listeners: hooks and write-backs."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web


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
