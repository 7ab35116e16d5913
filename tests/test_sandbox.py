"""The sandbox refuses what Sense documents it refuses, over a real socket."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
import structlog
from aiohttp import web

from relay import sandbox

CANDIDATE = {"id": "c-1", "first_name": "Ada", "last_name": "Lovelace"}
JSON = {"Content-Type": "application/json"}
GZIP_JSON = {**JSON, "Content-Encoding": "gzip"}


@dataclass
class Client:
    """A session pointed at one running sandbox, speaking as relay would."""

    sandbox: sandbox.Sandbox
    session: aiohttp.ClientSession
    base_url: str

    async def token(self) -> str:
        status, body = await self.request_token()
        assert status == 200
        token: str = body["access_token"]
        return token

    async def request_token(self, **form: str) -> tuple[int, Any]:
        fields = {
            "client_id": "sandbox-client",
            "client_secret": "sandbox-secret",
            "grant_type": "client_credentials",
            **form,
        }
        url = f"{self.base_url}/oauth2/token"
        async with self.session.post(url, data=fields) as response:
            return response.status, await response.json()

    async def upsert(
        self,
        items: Any,
        *,
        token: str | None = None,
        path: str = "candidates",
        compress: bool = False,
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        body = orjson.dumps(items)
        return await self.post_body(
            gzip.compress(body) if compress else body,
            headers=GZIP_JSON if compress else JSON,
            token=token,
            path=path,
        )

    async def post_body(
        self,
        body: bytes,
        *,
        headers: dict[str, str],
        token: str | None = None,
        path: str = "candidates",
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        token = token or await self.token()
        headers = {**headers, "Authorization": f"Bearer {token}"}
        url = f"{self.base_url}/v1/{path}"
        async with self.session.post(url, data=body, headers=headers) as response:
            return response.status, await response.json(), response

    async def get(
        self, record_id: str, *, token: str | None = None, path: str = "candidates"
    ) -> tuple[int, Any]:
        token = token or await self.token()
        headers = {"Authorization": f"Bearer {token}"}
        url = f"{self.base_url}/v1/{path}/{record_id}"
        async with self.session.get(url, headers=headers) as response:
            return response.status, await response.json()


Start = Callable[..., Awaitable[Client]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    runners: list[web.AppRunner] = []

    async def start(**settings: Any) -> Client:
        running = sandbox.Sandbox(sandbox.SandboxSettings(**settings))
        runner = web.AppRunner(running.app())
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return Client(running, session, f"http://127.0.0.1:{port}")

    async with aiohttp.ClientSession() as session:
        yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def client(start: Start) -> Client:
    return await start()


def candidates(count: int) -> list[dict[str, Any]]:
    return [{"id": f"c-{index}", "first_name": "Ada"} for index in range(count)]


async def test_token_is_issued_for_the_right_credentials(client: Client) -> None:
    status, body = await client.request_token()

    assert status == 200
    assert body["expires_in"] == 300
    assert body["token_type"] == "Bearer"
    assert len(body["access_token"]) >= 32
    assert client.sandbox.token_requests == 1


@pytest.mark.parametrize(
    "form",
    [{"client_id": "someone-else"}, {"client_secret": "guessed"}, {"client_id": ""}],
    ids=["wrong-id", "wrong-secret", "empty-id"],
)
async def test_wrong_credentials_are_refused(
    client: Client, form: dict[str, str]
) -> None:
    status, body = await client.request_token(**form)

    assert status == 401
    assert body == {"error": "invalid_client"}
    assert client.sandbox.token_requests == 1


async def test_wrong_grant_type_is_refused(client: Client) -> None:
    status, body = await client.request_token(grant_type="password")

    assert status == 400
    assert body == {"error": "unsupported_grant_type"}


async def test_token_request_must_be_a_form(client: Client) -> None:
    form = {"client_id": "sandbox-client", "client_secret": "sandbox-secret"}
    url = f"{client.base_url}/oauth2/token"

    async with client.session.post(url, json=form) as response:
        assert response.status == 400


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer not-a-token", "Basic c2FuZGJveC1jbGllbnQ6c2VjcmV0"],
    ids=["missing", "empty", "unknown", "basic"],
)
async def test_upsert_without_a_valid_token_is_refused(
    client: Client, authorization: str | None
) -> None:
    headers = (
        JSON if authorization is None else {**JSON, "Authorization": authorization}
    )
    url = f"{client.base_url}/v1/candidates"

    async with client.session.post(url, json=[CANDIDATE], headers=headers) as response:
        body = await response.json()

    assert response.status == 401
    assert body["errors"][0]["entity_id"] is None
    assert client.sandbox.records["candidates"] == {}


async def test_expired_token_is_refused(start: Start) -> None:
    client = await start(token_lifetime_s=1)
    token = await client.token()
    status_before, _ = await client.get("c-1", token=token)

    await asyncio.sleep(1.05)
    status_after, _ = await client.get("c-1", token=token)

    assert status_before == 404
    assert status_after == 401


async def test_revoked_token_is_refused_and_a_new_one_works(client: Client) -> None:
    token = await client.token()

    client.sandbox.revoke_tokens()
    revoked, _, _ = await client.upsert([CANDIDATE], token=token)
    renewed, _, _ = await client.upsert([CANDIDATE])

    assert (revoked, renewed) == (401, 201)


@pytest.mark.parametrize(
    ("count", "status"),
    [(0, 400), (1, 201), (500, 201), (501, 400)],
    ids=["empty", "one", "limit", "over-limit"],
)
async def test_batch_holds_one_to_500_records(
    client: Client, count: int, status: int
) -> None:
    answered, body, _ = await client.upsert(candidates(count))

    assert answered == status
    assert len(client.sandbox.records["candidates"]) == (count if status == 201 else 0)
    if status == 400:
        assert body["errors"][0]["entity_id"] is None


@pytest.mark.parametrize(
    "body",
    [b'{"id": "c-1"}', b"[{", b"[1, 2]"],
    ids=["object", "broken-json", "not-objects"],
)
async def test_body_that_is_not_an_array_of_objects_is_refused(
    client: Client, body: bytes
) -> None:
    status, answer, _ = await client.post_body(body, headers=JSON)

    assert status == 400
    assert answer["errors"]
    assert answer["warnings"] is None


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"favourite_colour": "blue"}, "favourite_colour"),
        ({"date_added": "yesterday"}, "date_added"),
        ({"date_added": "2024-13-01T10:00:00Z"}, "date_added"),
    ],
    ids=["unknown-field", "not-a-date-time", "month-13"],
)
async def test_invalid_record_refuses_the_whole_request_naming_it(
    client: Client, bad: dict[str, str], field: str
) -> None:
    items = [{"id": "good"}, {"id": "bad", **bad}]

    status, body, _ = await client.upsert(items)

    assert status == 400
    assert [error["entity_id"] for error in body["errors"]] == ["bad"]
    assert body["errors"][0]["path"] == [field]
    assert client.sandbox.records["candidates"] == {}
    assert client.sandbox.batches == []


async def test_gzip_body_over_the_limit_is_too_large(start: Start) -> None:
    body = gzip.compress(orjson.dumps(candidates(50)))
    client = await start(max_compressed_bytes=len(body) - 1)

    status, answer, _ = await client.post_body(body, headers=GZIP_JSON)

    assert status == 413
    assert set(answer) == {"errors", "warnings"}
    assert client.sandbox.batches == []


async def test_gzip_body_exactly_at_the_limit_is_accepted(start: Start) -> None:
    body = gzip.compress(orjson.dumps(candidates(50)))
    client = await start(max_compressed_bytes=len(body))

    status, _, _ = await client.post_body(body, headers=GZIP_JSON)

    assert status == 201
    assert client.sandbox.batches[0].body_bytes == len(body)
    assert client.sandbox.batches[0].content_encoding == "gzip"


async def test_limit_applies_to_the_body_as_received(start: Start) -> None:
    plain = orjson.dumps(candidates(200))
    client = await start(max_compressed_bytes=len(plain) - 1)

    compressed, _, _ = await client.post_body(gzip.compress(plain), headers=GZIP_JSON)
    uncompressed, _, _ = await client.post_body(plain, headers=JSON)

    assert (compressed, uncompressed) == (201, 413)


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({**JSON, "Content-Encoding": "br"}, b"[]", 415),
        (GZIP_JSON, b"not gzip at all", 400),
        ({"Content-Type": "text/plain"}, orjson.dumps([CANDIDATE]), 415),
    ],
    ids=["brotli", "corrupt-gzip", "not-json-content-type"],
)
async def test_body_sense_cannot_read_is_refused(
    client: Client, headers: dict[str, str], body: bytes, status: int
) -> None:
    answered, _, _ = await client.post_body(body, headers=headers)

    assert answered == status


async def test_scripted_faults_are_answered_in_order(client: Client) -> None:
    token = await client.token()
    client.sandbox.script(
        sandbox.Fault(status=429, retry_after_s=2), sandbox.Fault(status=503)
    )

    first, _, throttled = await client.upsert([CANDIDATE], token=token)
    second, _, unavailable = await client.upsert([CANDIDATE], token=token)
    third, _, _ = await client.upsert([CANDIDATE], token=token)

    assert (first, second, third) == (429, 503, 201)
    assert throttled.headers["Retry-After"] == "2"
    assert "Retry-After" not in unavailable.headers
    assert [exchange.status for exchange in client.sandbox.requests] == [
        200,
        429,
        503,
        201,
    ]


async def test_a_fault_for_one_entity_path_lets_the_others_pass(
    client: Client,
) -> None:
    token = await client.token()
    client.sandbox.script(sandbox.Fault(status=503, entity="job-orders"))

    passed, _, _ = await client.upsert([CANDIDATE], token=token)
    faulted, _, _ = await client.upsert([{"id": "j-1"}], token=token, path="job-orders")
    retried, _, _ = await client.upsert([{"id": "j-1"}], token=token, path="job-orders")

    assert (passed, faulted, retried) == (201, 503, 201)


async def test_decimal_retry_after_is_sent_as_given(client: Client) -> None:
    client.sandbox.script(sandbox.Fault(status=500, retry_after_s=0.5))

    _, _, response = await client.upsert([CANDIDATE])

    assert response.headers["Retry-After"] == "0.5"


async def test_scripted_400_names_no_entity(client: Client) -> None:
    client.sandbox.script(sandbox.Fault(status=400))

    status, body, _ = await client.upsert([CANDIDATE])

    assert status == 400
    assert [error["entity_id"] for error in body["errors"]] == [None]
    assert client.sandbox.records["candidates"] == {}


async def test_dropped_connection_sends_no_answer(client: Client) -> None:
    token = await client.token()
    client.sandbox.script(sandbox.Fault(drop_connection=True))

    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.upsert([CANDIDATE], token=token)
    retried, _, _ = await client.upsert([CANDIDATE], token=token)

    assert retried == 201
    assert client.sandbox.requests[1:] == [
        ("POST", "/v1/candidates", None),
        ("POST", "/v1/candidates", 201),
    ]
    assert len(client.sandbox.batches) == 1


async def test_delayed_answer_abandoned_by_the_client_stores_nothing(
    client: Client,
) -> None:
    token = await client.token()
    client.sandbox.script(sandbox.Fault(delay_s=0.3))

    with pytest.raises(asyncio.TimeoutError):
        async with asyncio.timeout(0.1):
            await client.upsert([CANDIDATE], token=token)
    await asyncio.sleep(0.3)

    assert client.sandbox.requests[-1] == ("POST", "/v1/candidates", None)
    assert client.sandbox.batches == []


@pytest.mark.parametrize(
    "fields",
    [
        {"status": 200},
        {"status": 503, "drop_connection": True},
        {"delay_s": -1},
        {"status": 503, "entity": "jobs"},
    ],
    ids=["success-status", "status-and-drop", "negative-delay", "unknown-entity"],
)
def test_contradictory_fault_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        sandbox.Fault(**fields)


async def test_rejected_ids_are_refused_until_cleared(client: Client) -> None:
    client.sandbox.reject("c-2", message="is on hold")
    items = [{"id": "c-1"}, {"id": "c-2"}]

    refused, body, _ = await client.upsert(items)
    client.sandbox.clear_rejected()
    accepted, _, _ = await client.upsert(items)

    assert refused == 400
    assert body["errors"] == [
        {"entity_id": "c-2", "message": "is on hold", "path": None}
    ]
    assert accepted == 201


async def test_stored_entity_is_retrieved(client: Client) -> None:
    await client.upsert([CANDIDATE])

    status, body = await client.get("c-1")

    assert status == 200
    assert body == {"data": CANDIDATE, "errors": [], "resource_id": "c-1"}


async def test_unknown_id_is_not_found(client: Client) -> None:
    status, body = await client.get("nobody")

    assert status == 404
    assert body["data"] == {}
    assert body["resource_id"] == "nobody"
    assert body["errors"][0]["entity_id"] == "nobody"


async def test_unknown_entity_path_is_not_found(client: Client) -> None:
    status, _, _ = await client.upsert([CANDIDATE], path="applicants")

    assert status == 404


async def test_upsert_replaces_the_whole_entity(client: Client) -> None:
    await client.upsert([CANDIDATE])
    await client.upsert([{"id": "c-1", "first_name": "Augusta"}])

    _, body = await client.get("c-1")

    assert body["data"] == {"id": "c-1", "first_name": "Augusta"}


async def test_numeric_ids_are_stored_as_strings(client: Client) -> None:
    await client.upsert([{"id": 7, "first_name": "Ada"}])

    status, body = await client.get("7")

    assert status == 200
    assert body["data"]["id"] == "7"


async def test_accepted_batch_is_recorded(client: Client) -> None:
    status, body, _ = await client.upsert(candidates(3))

    batch = client.sandbox.batches[0]
    assert status == 201
    assert body["message"] == "Request accepted for async processing."
    assert (batch.entity, batch.record_count) == ("candidates", 3)
    assert batch.ids == ("c-0", "c-1", "c-2")
    assert batch.content_encoding is None


async def test_control_endpoints_drive_a_sandbox_from_outside(client: Client) -> None:
    control = f"{client.base_url}/_sandbox"
    faults = [{"status": 429, "retry_after_s": 1}]
    await client.session.post(f"{control}/faults", json=faults)
    await client.session.post(f"{control}/reject", json=["c-9"])

    throttled, _, _ = await client.upsert([CANDIDATE])
    refused, _, _ = await client.upsert([{"id": "c-9"}])
    accepted, _, _ = await client.upsert(candidates(4))
    async with client.session.get(f"{control}/stats") as response:
        stats = await response.json()

    async with client.session.get(f"{control}/batches") as response:
        arrivals = await response.json()

    assert (throttled, refused, accepted) == (429, 400, 201)
    assert [(a["entity"], a["ids"]) for a in arrivals] == [
        ("candidates", ["c-0", "c-1", "c-2", "c-3"])
    ]
    assert stats["token_requests"] == 3
    assert stats["batches"] == 1
    assert stats["records"]["candidates"] == 4
    assert stats["mean_records_per_batch"] == 4
    assert stats["max_body_bytes"] == client.sandbox.batches[0].body_bytes


async def test_control_revoke_and_reset(client: Client) -> None:
    control = f"{client.base_url}/_sandbox"
    token = await client.token()
    await client.upsert([CANDIDATE], token=token)

    await client.session.post(f"{control}/reset")
    kept, _ = await client.get("c-1", token=token)
    await client.session.post(f"{control}/revoke-tokens")
    revoked, _ = await client.get("c-1", token=token)

    assert kept == 404
    assert revoked == 401


async def test_malformed_fault_script_is_refused(client: Client) -> None:
    url = f"{client.base_url}/_sandbox/faults"

    async with client.session.post(url, json=[{"status": "429"}]) as response:
        assert response.status == 400
    async with client.session.post(url, json=[{"stauts": 429}]) as response:
        assert response.status == 400


async def test_logs_name_events_and_never_show_credentials(client: Client) -> None:
    with structlog.testing.capture_logs() as logs:
        token = await client.token()
        await client.upsert([CANDIDATE], token=token)
        await client.upsert([{"id": "bad", "nope": 1}], token=token)

    events = [(entry["event"], entry.get("status")) for entry in logs]
    assert events == [
        ("sandbox_token_issued", None),
        ("sandbox_batch_accepted", None),
        ("sandbox_request_refused", 400),
    ]
    assert token not in repr(logs)
    assert "sandbox-secret" not in repr(logs)
    assert "sandbox-secret" not in repr(client.sandbox.settings)


async def test_serve_runs_until_cancelled(client: Client) -> None:
    started = asyncio.Event()

    def watch(_: Any, __: str, event_dict: Any) -> Any:
        if event_dict["event"] == "sandbox_started":
            started.set()
        return event_dict

    with structlog.testing.capture_logs(processors=[watch]) as logs:
        serving = asyncio.create_task(sandbox.serve("127.0.0.1", 0))
        await asyncio.wait_for(started.wait(), timeout=5)
        url = f"http://127.0.0.1:{logs[-1]['port']}/_sandbox/stats"
        async with client.session.get(url) as response:
            stats = await response.json()
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving

    assert stats["batches"] == 0
    assert logs[-1]["event"] == "sandbox_stopped"
