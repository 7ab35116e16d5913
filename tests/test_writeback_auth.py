"""Who may send write-backs: shared tokens, OIDC JWTs, and TLS on the wire."""

from __future__ import annotations

import asyncio
import ssl
import warnings
from pathlib import Path

import aiohttp
import pytest

from relay import sender
from tests.conftest import WRITEBACK_TOKEN, WriteBacks
from tests.credentials import rsa_key, self_signed_certificate, serving_provider
from tests.test_delivery import metric

REFUSED = (401, {"error": "invalid token or session"})
ROTATED = "the-next-writeback-token"


async def refused_reasons(sense: WriteBacks) -> dict[str, float]:
    text = await sense.metrics()
    reasons = ("missing", "unknown_token", "expired", "wrong_audience")
    reasons += ("wrong_issuer", "bad_signature", "unknown_key", "invalid_jwt")
    found = {
        r: metric(text, "relay_writeback_auth_failures_total", reason=r)
        for r in reasons
    }
    return {reason: count for reason, count in found.items() if count}


async def test_a_token_in_the_header_or_the_query_string_is_accepted(
    start_writebacks,
) -> None:
    async with start_writebacks(tokens=[WRITEBACK_TOKEN, ROTATED]) as sense:
        header = await sense.post(sender.sample("GENERIC_EVENT"))
        rotated = await sense.post(sender.sample("GENERIC_EVENT"), token=ROTATED)
        query = await sense.post(
            sender.sample("GENERIC_EVENT"),
            token=None,
            params={"token": WRITEBACK_TOKEN},
        )

    assert [header[0], rotated[0], query[0]] == [200, 200, 200]


async def test_a_missing_or_wrong_token_gets_401_and_stores_nothing(
    start_writebacks,
) -> None:
    async with start_writebacks() as sense:
        missing = await sense.post(sender.sample("GENERIC_EVENT"), token=None)
        wrong = await sense.post(sender.sample("GENERIC_EVENT"), token="guess")
        wrong_query = await sense.post(
            sender.sample("GENERIC_EVENT"), token=None, params={"token": "guess"}
        )
        rows = await sense.inbox.in_state()
        reasons = await refused_reasons(sense)

    assert missing == wrong == wrong_query == REFUSED
    assert rows == []
    assert reasons == {"missing": 1, "unknown_token": 2}


async def test_the_query_string_is_ignored_when_query_param_is_empty(
    start_writebacks,
) -> None:
    async with start_writebacks(query_param="") as sense:
        answer = await sense.post(
            sender.sample("GENERIC_EVENT"),
            token=None,
            params={"token": WRITEBACK_TOKEN},
        )

    assert answer == REFUSED


async def test_a_jwt_from_the_configured_provider_is_accepted(
    start_writebacks,
) -> None:
    async with serving_provider() as provider:
        oidc = {"oidc_issuer": provider.issuer, "oidc_audience": "relay-writebacks"}
        async with start_writebacks(tokens=[], **oidc) as sense:
            first = await sense.post(
                sender.sample("GENERIC_EVENT"), token=provider.token()
            )
            second = await sense.post(
                sender.sample("GENERIC_EVENT"), token=provider.token()
            )

    assert (first[0], second[0]) == (200, 200)
    assert provider.key_requests == 1  # the keys are cached


async def test_jwts_that_fail_a_check_get_401_with_the_reason_counted(
    start_writebacks,
) -> None:
    async with serving_provider() as provider:
        oidc = {"oidc_issuer": provider.issuer, "oidc_audience": "relay-writebacks"}
        forged = provider.token()
        provider.key, genuine_key = rsa_key(), provider.key
        forged = provider.token()  # same key id, another key
        provider.key = genuine_key
        tokens = [
            provider.token(exp=1_600_000_000),
            provider.token(aud="someone-else"),
            provider.token(iss="https://impostor.example"),
            forged,
            "not.a.jwt",
        ]
        async with start_writebacks(tokens=[], **oidc) as sense:
            answers = [
                await sense.post(sender.sample("GENERIC_EVENT"), token=token)
                for token in tokens
            ]
            rows = await sense.inbox.in_state()
            reasons = await refused_reasons(sense)

    assert answers == [REFUSED] * 5
    assert rows == []
    assert reasons == {
        "expired": 1,
        "wrong_audience": 1,
        "wrong_issuer": 1,
        "bad_signature": 1,
        "invalid_jwt": 1,
    }


async def test_shared_tokens_still_work_beside_oidc(start_writebacks) -> None:
    async with serving_provider() as provider:
        oidc = {"oidc_issuer": provider.issuer, "oidc_audience": "relay-writebacks"}
        async with start_writebacks(**oidc) as sense:
            status, _ = await sense.post(sender.sample("GENERIC_EVENT"))

    assert status == 200


async def test_tls_serves_write_backs_over_tls_1_2_and_later(
    start_writebacks, tmp_path: Path
) -> None:
    cert, key = self_signed_certificate(tmp_path)
    tls = {"tls_cert": str(cert), "tls_key": str(key), "behind_tls_proxy": False}
    async with start_writebacks(**tls) as sense:
        url = sense.url.replace("http://", "https://")
        versions = [
            await _post_over_tls(url, cert, version)
            for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)
        ]
        plain = await _plain_http_fails(sense.url)

    assert versions == [200, 200]
    assert plain


async def test_tls_older_than_1_2_is_refused(start_writebacks, tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path)
    if not await _tls_1_1_handshake_works_against_a_permissive_server(cert, key):
        pytest.skip("this machine's OpenSSL cannot speak TLS 1.1 at all")
    tls = {"tls_cert": str(cert), "tls_key": str(key)}
    async with start_writebacks(**tls) as sense:
        port = sense.relay.writeback_port
        assert port is not None

        with pytest.raises((ssl.SSLError, ConnectionError)):
            await _handshake(port, _tls_1_1_client(cert))


async def _post_over_tls(url: str, cert: Path, version: ssl.TLSVersion) -> int:
    context = ssl.create_default_context(cafile=str(cert))
    context.minimum_version = context.maximum_version = version
    if version < ssl.TLSVersion.TLSv1_2:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    headers = {"Authorization": f"Bearer {WRITEBACK_TOKEN}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url, json=sender.sample("GENERIC_EVENT"), headers=headers, ssl=context
        ) as response,
    ):
        return response.status


async def _plain_http_fails(url: str) -> bool:
    async with aiohttp.ClientSession() as session:
        try:
            async with session.post(url, json={}) as response:
                return response.status >= 400
        except aiohttp.ClientError:
            return True


def _tls_1_1_client(cert: Path) -> ssl.SSLContext:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context = ssl.create_default_context(cafile=str(cert))
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


async def _handshake(port: int, context: ssl.SSLContext) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    writer.close()
    await writer.wait_closed()


async def _tls_1_1_handshake_works_against_a_permissive_server(
    cert: Path, key: Path
) -> bool:
    """The control: without it, a client unable to offer TLS 1.1 would pass."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        permissive.minimum_version = ssl.TLSVersion.TLSv1
    permissive.set_ciphers("DEFAULT:@SECLEVEL=0")
    permissive.load_cert_chain(cert, key)
    server = await asyncio.start_server(
        lambda _r, w: w.close(), "127.0.0.1", 0, ssl=permissive
    )
    port = server.sockets[0].getsockname()[1]
    try:
        await _handshake(port, _tls_1_1_client(cert))
    except (ssl.SSLError, ConnectionError):
        return False
    finally:
        server.close()
        await server.wait_closed()
    return True
