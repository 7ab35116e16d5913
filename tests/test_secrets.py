"""No secret reaches a log line, a metric, an error body or a settings dump."""

from __future__ import annotations

import pytest

from relay import logs
from tests.conftest import HOOK_TOKEN, SenseStandIn, candidate, eventually

CLIENT_SECRET = "sandbox-secret"


async def test_logs_metrics_and_answers_carry_no_secret(
    json_logs, start_relay, sense: SenseStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    async with start_relay(flush={"max_age_seconds": 0.05}) as hooks:
        await hooks.send("candidates", [candidate(1, email="ada@example.com")])
        await eventually(lambda: len(sense.sandbox.batches) == 1)
        sense.sandbox.revoke_tokens()
        sense.sandbox.reject("2")
        await hooks.send("candidates", [candidate(2, email="bob@example.com")])
        await eventually(
            lambda: (
                len(sense.sandbox.batches) == 1
                and hooks.relay.outbox.total_records() == 0
            )
        )
        # A refused value is never echoed back, even one that is a secret.
        _, refused = await hooks.post("candidates", [{"id": 3, "bad": HOOK_TOKEN}])
        _, unauthorised = await hooks.post("candidates", [candidate(4)], token="x")
        metrics = await hooks.metrics()
    issued = list(sense.sandbox._tokens)

    output = capsys.readouterr().out + metrics + str(refused) + str(unauthorised)
    assert "batch_sent" in output and "record_dead_lettered" in output
    for secret in (CLIENT_SECRET, HOOK_TOKEN, *issued):
        assert secret not in output
    assert "ada@example.com" not in output and "bob@example.com" not in output


def test_settings_never_print_their_secrets() -> None:
    from tests.conftest import relay_settings

    settings = relay_settings("outbox.db", "http://127.0.0.1:1")

    for rendering in (repr(settings), str(settings), settings.model_dump_json()):
        assert CLIENT_SECRET not in rendering and HOOK_TOKEN not in rendering


def test_the_log_processor_masks_credential_fields() -> None:
    event = {"event": "x", "client_secret": "s", "authorization": "Bearer t"}

    masked = logs.drop_secrets(None, "info", event)

    assert masked == {
        "event": "x",
        "client_secret": "[secure]",
        "authorization": "[secure]",
    }


async def test_write_back_tokens_reach_no_log_metric_or_answer(
    json_logs, start_writebacks, ats, capsys: pytest.CaptureFixture[str]
) -> None:
    from relay import sender
    from tests.conftest import ATS_TOKEN, WRITEBACK_TOKEN

    async with start_writebacks() as sense:
        accepted = await sense.post(
            sender.sample("ENTITY_CREATE"),
            token=None,
            params={"token": WRITEBACK_TOKEN},
        )
        refused = await sense.post(
            sender.sample("GENERIC_EVENT"), token=WRITEBACK_TOKEN + "x"
        )
        metrics = await sense.metrics()

    output = capsys.readouterr().out + metrics + str(accepted) + str(refused)
    assert "writeback_received" in output and "writeback_auth_failed" in output
    assert accepted[0] == 200
    for secret in (WRITEBACK_TOKEN, ATS_TOKEN):
        assert secret not in output


def test_write_back_settings_never_print_their_secrets() -> None:
    from tests.conftest import (
        ATS_TOKEN,
        WRITEBACK_TOKEN,
        relay_settings,
        writeback_settings,
    )

    settings = relay_settings(
        "outbox.db", "http://127.0.0.1:1", writeback=writeback_settings("http://x")
    )

    for rendering in (repr(settings), str(settings), settings.model_dump_json()):
        assert WRITEBACK_TOKEN not in rendering and ATS_TOKEN not in rendering
