"""Delivery to Sense: flush triggers, packing, coalescing, retries, refusals."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Awaitable, Callable

import pytest

from relay.sandbox import Fault
from tests.conftest import Hooks, SenseStandIn, candidate, eventually

SLOW = {"max_age_seconds": 60}


def delivered(sense: SenseStandIn, entity: str = "candidates") -> int:
    return sum(b.record_count for b in sense.sandbox.batches if b.entity == entity)


def metric(text: str, name: str, **labels: str) -> float:
    """Reads one sample from Prometheus text output (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match and ",".join(sorted((match.group(1) or "").split(","))) == wanted:
            return float(match.group(2))
    return 0.0


async def test_a_batch_goes_as_soon_as_max_records_are_pending(
    start_relay, sense: SenseStandIn
) -> None:
    async with start_relay(flush={**SLOW, "max_records": 5}) as hooks:
        await hooks.send("candidates", [candidate(i) for i in range(4)])
        await asyncio.sleep(0.3)
        assert delivered(sense) == 0

        await hooks.send("candidates", [candidate(4)])

        await eventually(lambda: delivered(sense) == 5)


async def test_a_batch_goes_when_the_oldest_record_reaches_max_age(
    start_relay, sense: SenseStandIn
) -> None:
    async with start_relay(flush={"max_age_seconds": 0.5}) as hooks:
        posted = time.monotonic()
        await hooks.send("candidates", [candidate(1)])

        await eventually(lambda: delivered(sense) == 1)

    assert sense.sandbox.batches[0].received_at_s - posted >= 0.5


async def test_a_batch_goes_once_the_compressed_limit_would_be_passed(
    start_relay, sense: SenseStandIn
) -> None:
    limit = 4096
    async with start_relay(flush={**SLOW, "max_compressed_bytes": limit}) as hooks:
        # Random text hardly compresses, so a few records fill the limit.
        records = [candidate(i, custom_text1=os.urandom(600).hex()) for i in range(10)]
        await hooks.send("candidates", records)

        await eventually(lambda: delivered(sense) >= 5)

    assert all(b.body_bytes <= limit for b in sense.sandbox.batches)


async def test_under_a_backlog_batches_are_full_and_within_the_exact_limit(
    start_relay, sense: SenseStandIn
) -> None:
    limit = 20_000
    records = [candidate(i, custom_text1=os.urandom(90).hex()) for i in range(2_000)]
    flush = {"max_age_seconds": 2, "max_compressed_bytes": limit}
    async with start_relay(flush=flush) as hooks:
        await hooks.send("candidates", records[:1000])
        await hooks.send("candidates", records[1000:])

        await eventually(lambda: delivered(sense) == 2_000, timeout_s=30)

    full = sense.sandbox.batches[:-1]
    assert all(b.content_encoding == "gzip" for b in sense.sandbox.batches)
    assert max(b.body_bytes for b in sense.sandbox.batches) <= limit
    assert sum(b.body_bytes for b in full) / len(full) >= 0.9 * limit


async def test_bodies_go_uncompressed_when_compression_is_off(
    start_relay, sense: SenseStandIn
) -> None:
    async with start_relay(sense={"compress": False}) as hooks:
        await hooks.send("candidates", [candidate(1)])

        await eventually(lambda: delivered(sense) == 1)

    assert sense.sandbox.batches[0].content_encoding is None


async def test_a_newer_pending_version_replaces_the_older_and_is_counted(
    start_relay, sense: SenseStandIn
) -> None:
    async with start_relay(flush={"max_age_seconds": 0.5}) as hooks:
        for name in ("v1", "v2", "v3"):
            await hooks.send("candidates", [candidate(7, first_name=name)])

        await eventually(lambda: delivered(sense) == 1)
        text = await hooks.metrics()

    assert sense.sandbox.records["candidates"]["7"]["first_name"] == "v3"
    assert metric(text, "relay_records_coalesced_total", entity="candidates") == 2


async def test_a_version_accepted_while_an_older_is_in_flight_is_sent_after_it(
    start_relay, sense: SenseStandIn
) -> None:
    sense.sandbox.script(Fault(delay_s=0.5))
    async with start_relay(flush={"max_age_seconds": 0.05}) as hooks:
        await hooks.send("candidates", [candidate(7, first_name="old")])
        await eventually(lambda: len(sense.sandbox.requests) >= 2)  # token, upsert

        await hooks.send("candidates", [candidate(7, first_name="new")])

        await eventually(lambda: delivered(sense) == 2)
        text = await hooks.metrics()

    assert [b.ids for b in sense.sandbox.batches] == [("7",), ("7",)]
    assert sense.sandbox.records["candidates"]["7"]["first_name"] == "new"
    assert metric(text, "relay_records_coalesced_total", entity="candidates") == 0


async def test_one_token_serves_every_flusher_and_every_batch(
    start_relay, sense: SenseStandIn
) -> None:
    paths = ["candidates", "companies", "leads", "job-orders", "placements"]
    async with start_relay(flush={"max_age_seconds": 0.05}) as hooks:
        for round_ in range(1, 4):
            await asyncio.gather(*(hooks.send(p, [{"id": round_}]) for p in paths))
            expected = 5 * round_
            await eventually(lambda n=expected: len(sense.sandbox.batches) >= n)

    assert sense.sandbox.token_requests == 1


async def test_a_token_refused_with_401_is_replaced_once(
    start_relay, sense: SenseStandIn
) -> None:
    async with start_relay() as hooks:
        await hooks.send("candidates", [candidate(1)])
        await eventually(lambda: delivered(sense) == 1)
        sense.sandbox.revoke_tokens()

        await hooks.send("candidates", [candidate(2)])

        await eventually(lambda: delivered(sense) == 2)
    statuses = [r.status for r in sense.sandbox.requests if r.path != "/oauth2/token"]
    assert statuses == [201, 401, 201]
    assert sense.sandbox.token_requests == 2


async def test_an_expired_token_is_renewed_before_use(tmp_path, start_relay) -> None:
    from relay.sandbox import Sandbox, SandboxSettings
    from tests.conftest import serving

    async with serving(Sandbox(SandboxSettings(token_lifetime_s=1))) as short_lived:
        from relay import daemon
        from tests.conftest import relay_settings

        settings = relay_settings(
            tmp_path / "other.db", short_lived.url, flush={"max_age_seconds": 0.05}
        )
        async with daemon.running(settings) as relay:
            import aiohttp

            async with aiohttp.ClientSession() as session:
                for record_id in range(3):
                    await session.post(
                        f"http://127.0.0.1:{relay.port}/v1/leads",
                        json=[{"id": record_id}],
                        headers={"Authorization": "Bearer hook-token-for-tests"},
                    )
                    await asyncio.sleep(0.6)
            await eventually(lambda: len(short_lived.sandbox.batches) == 3)

    assert all(
        r.status == 201
        for r in short_lived.sandbox.requests
        if r.path.startswith("/v1/")
    )
    assert short_lived.sandbox.token_requests >= 2


async def test_retry_after_from_sense_pauses_every_flusher(
    start_relay, sense: SenseStandIn
) -> None:
    sense.sandbox.script(Fault(status=429, retry_after_s=1))
    async with start_relay(flush={"max_age_seconds": 0.05}) as hooks:
        await hooks.send("candidates", [candidate(1)])
        await eventually(lambda: any(r.status == 429 for r in sense.sandbox.requests))
        refused_at = time.monotonic()

        await hooks.send("companies", [{"id": "c1"}])

        await eventually(lambda: len(sense.sandbox.batches) == 2)
    assert all(b.received_at_s - refused_at >= 0.9 for b in sense.sandbox.batches)


@pytest.mark.parametrize(
    "fault",
    [
        Fault(status=503),
        Fault(status=500),
        Fault(drop_connection=True),
        Fault(delay_s=3),
    ],
    ids=["503", "500", "dropped-connection", "timeout"],
)
async def test_transient_failures_are_retried_until_delivered(
    start_relay, sense: SenseStandIn, fault: Fault
) -> None:
    sense.sandbox.script(fault, fault)
    async with start_relay(flush={"max_age_seconds": 0.05}) as hooks:
        await hooks.send("candidates", [candidate(1), candidate(2)])

        await eventually(lambda: delivered(sense) == 2, timeout_s=15)
        text = await hooks.metrics()

    assert (
        sum(
            metric(text, "relay_retries_total", entity="candidates", reason=reason)
            for reason in ("server_error", "connection", "timeout")
        )
        == 2
    )


async def test_records_sense_refuses_by_id_are_dead_lettered_and_the_rest_delivered(
    start_relay, sense: SenseStandIn
) -> None:
    sense.sandbox.reject("2", "4")
    async with start_relay(flush={"max_age_seconds": 0.05}) as hooks:
        await hooks.send("candidates", [candidate(i) for i in range(6)])

        await eventually(lambda: hooks.relay.outbox.total_records() == 0)
        letters = await hooks.relay.outbox.dead_letters()

    assert sorted(sense.sandbox.records["candidates"]) == ["0", "1", "3", "5"]
    assert sorted(letter.record_id for letter in letters) == ["2", "4"]
    assert all(letter.status == 400 and letter.reason for letter in letters)


async def test_a_400_without_ids_splits_the_batch_and_delivers_the_rest(
    start_relay, sense: SenseStandIn
) -> None:
    sense.sandbox.script(Fault(status=400))
    async with start_relay(flush={"max_age_seconds": 0.05}) as hooks:
        await hooks.send("candidates", [candidate(i) for i in range(4)])

        await eventually(lambda: len(sense.sandbox.records["candidates"]) == 4)

    assert [b.record_count for b in sense.sandbox.batches] == [2, 2]


async def test_a_413_splits_the_batch_until_it_fits(
    tmp_path, sense: SenseStandIn
) -> None:
    from relay import daemon
    from relay.sandbox import Sandbox, SandboxSettings
    from tests.conftest import relay_settings, serving

    async with serving(Sandbox(SandboxSettings(max_compressed_bytes=3_000))) as strict:
        settings = relay_settings(
            tmp_path / "o.db",
            strict.url,
            flush={**SLOW, "max_compressed_bytes": 8_000, "max_records": 8},
        )
        async with daemon.running(settings) as relay:
            import aiohttp

            records = [
                candidate(i, custom_text1=os.urandom(400).hex()) for i in range(8)
            ]
            async with aiohttp.ClientSession() as session:
                await session.post(
                    f"http://127.0.0.1:{relay.port}/v1/candidates",
                    json=records,
                    headers={"Authorization": "Bearer hook-token-for-tests"},
                )
            await eventually(lambda: len(strict.sandbox.records["candidates"]) == 8)

    assert all(b.body_bytes <= 3_000 for b in strict.sandbox.batches)
    assert 413 in [r.status for r in strict.sandbox.requests]


async def test_counters_reconcile_after_a_faulty_run(
    start_relay, sense: SenseStandIn
) -> None:
    sense.sandbox.script(Fault(status=503), Fault(drop_connection=True))
    sense.sandbox.reject("13")
    async with start_relay(flush={"max_age_seconds": 0.05, "max_records": 10}) as hooks:
        for round_ in range(5):
            # Rounds repeat records, some replacing pending versions; the
            # last round, after delivery, is what Sense holds already.
            await hooks.send("candidates", [candidate(i) for i in range(20)])
            await hooks.send("leads", [{"id": round_}])

        await eventually(lambda: hooks.relay.outbox.total_records() == 0, timeout_s=20)
        await hooks.send("candidates", [candidate(i) for i in range(20)])
        await eventually(lambda: hooks.relay.outbox.total_records() == 0, timeout_s=20)
        text = await hooks.metrics()

    for entity in ("candidates", "leads"):

        def value(name: str, entity: str = entity) -> float:
            return metric(text, f"relay_{name}", entity=entity)

        assert value("records_accepted_total") + value("records_recovered_total") == (
            value("records_delivered_total")
            + value("records_coalesced_total")
            + value("records_dead_lettered_total")
            + value("records_unchanged_total")
            + value("outbox_records")
        )
    assert metric(text, "relay_records_dead_lettered_total", entity="candidates") >= 1
    assert metric(text, "relay_records_unchanged_total", entity="candidates") >= 1


def dead_letters_counted(hooks: Hooks, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return len(await hooks.relay.outbox.dead_letters()) == count

    return check


async def test_a_dead_letter_is_dropped_once_a_newer_version_is_delivered(
    start_relay, sense: SenseStandIn
) -> None:
    sense.sandbox.reject("5")
    async with start_relay(flush={"max_age_seconds": 0.05}) as hooks:
        await hooks.send("candidates", [candidate(5, first_name="bad")])
        await eventually(lambda: hooks.relay.outbox.total_records() == 0)
        # The pending figures change inside the writer's transaction, a
        # moment before the dead letters it writes are committed and readable.
        await eventually(dead_letters_counted(hooks, 1))
        refused = await hooks.relay.outbox.dead_letters()
        sense.sandbox.clear_rejected()

        await hooks.send("candidates", [candidate(5, first_name="fixed")])

        await eventually(lambda: hooks.relay.outbox.total_records() == 0)
        await eventually(dead_letters_counted(hooks, 0))
    assert [letter.record_id for letter in refused] == ["5"]
    assert sense.sandbox.records["candidates"]["5"]["first_name"] == "fixed"


async def test_refused_credentials_are_retried_with_growing_backoff(
    json_logs, start_relay, sense: SenseStandIn, capsys
) -> None:
    wrong = {"client_secret": "not-the-secret"}
    retry = {"base_seconds": 0.05, "cap_seconds": 10}
    async with start_relay(sense=wrong, retry=retry) as hooks:
        await hooks.send("candidates", [candidate(1)])
        await asyncio.sleep(1.5)
        # Stop the retries, so that no token request is under way while the
        # figures are compared; full jitter may make the next one start at once.
        hooks.relay.stopping.set()

        async def quiet() -> bool:
            text = await hooks.metrics()
            refused = metric(text, "relay_token_requests_total", outcome="refused")
            return refused == sense.sandbox.token_requests

        await eventually(quiet)
        text = await hooks.metrics()

    import orjson

    events = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    failures = [e for e in events if e["event"] == "token_request_failed"]
    refused = metric(text, "relay_token_requests_total", outcome="refused")
    assert 2 <= len(failures) == refused == sense.sandbox.token_requests <= 12
    assert [e["attempt"] for e in failures] == list(range(1, len(failures) + 1))
    assert all(e["level"] == "error" for e in failures)
    assert delivered(sense) == 0


async def test_readiness_reports_the_last_call_to_sense(
    start_relay, sense: SenseStandIn
) -> None:
    sense.sandbox.script(*[Fault(status=503)] * 100)
    async with start_relay(flush={"max_age_seconds": 0.05}) as hooks:
        await hooks.send("candidates", [candidate(1)])
        await eventually(lambda: len(sense.sandbox.requests) >= 3)
        async with hooks.session.get(f"{hooks.base}/readyz") as response:
            body = await response.json()

    assert response.status == 200
    assert body["outbox_writable"] is True
    assert body["sense_last_call_ok"] is False and body["sense_last_status"] == 503


async def test_a_record_refused_without_its_id_is_isolated_by_splitting(
    start_relay, sense: SenseStandIn
) -> None:
    sense.sandbox.reject("6", named=False)
    async with start_relay(flush={"max_age_seconds": 0.05}) as hooks:
        await hooks.send("candidates", [candidate(i) for i in range(8)])

        await eventually(lambda: hooks.relay.outbox.total_records() == 0)
        letters = await hooks.relay.outbox.dead_letters()

    assert sorted(sense.sandbox.records["candidates"]) == [
        "0",
        "1",
        "2",
        "3",
        "4",
        "5",
        "7",
    ]
    assert [(letter.record_id, letter.status) for letter in letters] == [("6", 400)]


async def test_warnings_sense_returns_with_a_batch_are_logged_and_counted(
    json_logs, start_relay, sense: SenseStandIn, capsys
) -> None:
    sense.sandbox.warn("2")
    async with start_relay(flush={"max_age_seconds": 0.05}) as hooks:
        await hooks.send("candidates", [candidate(1), candidate(2)])
        await eventually(lambda: hooks.relay.outbox.total_records() == 0)
        text = await hooks.metrics()

    import orjson

    events = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    warned = [e for e in events if e["event"] == "sense_warning_received"]
    assert [(e["record_id"], e["level"]) for e in warned] == [("2", "warning")]
    assert metric(text, "relay_sense_warnings_total", entity="candidates") == 1
    assert delivered(sense) == 2
