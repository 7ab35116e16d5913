"""A stand-in for the ATS's write-back endpoint, on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


@dataclass(frozen=True)
class Answer:
    """One scripted answer: a status and JSON body, after a delay."""

    status: int
    body: Any = field(default_factory=dict)
    delay_s: float = 0.0
    retry_after: str | None = None


@dataclass(frozen=True)
class Received:
    authorization: str | None
    body: bytes

    @property
    def envelope(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class FakeAts:
    """Takes every write-back (ENTITY_CREATE gets a new entity_id) unless scripted.

    ``received`` lists the write-backs it answered with a 2xx, in order.
    """

    url: str = ""
    received: list[Received] = field(default_factory=list)
    attempts: int = 0
    script: deque[Answer] = field(default_factory=deque)
    down: bool = False
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def answer(self, *answers: Answer) -> None:
        self.script.extend(answers)

    def ids(self) -> list[str]:
        return [r.envelope["id"] for r in self.received]

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        body = await request.read()
        if self.down:
            return _json(503, {"error": "down for maintenance"})
        if self.script:
            answer = self.script.popleft()
            await asyncio.sleep(answer.delay_s)
            if answer.status >= 300:
                headers = (
                    {"Retry-After": answer.retry_after} if answer.retry_after else {}
                )
                return _json(answer.status, answer.body, headers)
        self.received.append(Received(request.headers.get("Authorization"), body))
        if orjson.loads(body).get("type") == "ENTITY_CREATE":
            return _json(201, {"entity_id": f"ats-{next(self._ids)}"})
        return _json(200, {"ok": True})


@contextlib.asynccontextmanager
async def serving_ats() -> AsyncIterator[FakeAts]:
    ats = FakeAts()
    app = web.Application()
    app.router.add_post("/sense-writebacks", ats.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    ats.url = f"http://127.0.0.1:{runner.addresses[0][1]}/sense-writebacks"
    try:
        yield ats
    finally:
        await runner.cleanup()


def _json(
    status: int, body: Any, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps(body),
        content_type="application/json",
        headers=headers,
    )
