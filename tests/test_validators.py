"""Large hooks validated in worker processes: same answers, nothing lost."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from relay.validators import OFFLOAD_MIN_BYTES
from tests.conftest import SenseStandIn, candidate, eventually
from tests.test_delivery import metric

ONE_WORKER = {"validation_workers": 1}


def big_hook(prefix: str, count: int = 60) -> list[dict[str, Any]]:
    """A hook large enough to be handed to a worker."""
    hook = [
        candidate(
            f"{prefix}{n}",
            email=f"{prefix}{n}@example.com",
            address1=f"{n} Congress Avenue, Suite 100",
            city="Austin",
            date_added="2020-04-01T10:30:00+0000",
        )
        for n in range(count)
    ]
    assert len(orjson.dumps(hook)) >= OFFLOAD_MIN_BYTES
    return hook


def validator_pids(parent: int | None = None) -> set[int]:
    """The running validation workers started by ``parent`` (this process)."""
    pids = set()
    for children in Path(f"/proc/{parent or os.getpid()}/task").glob("*/children"):
        for pid in children.read_text().split():
            if alive(int(pid)) and b"relay.validators" in _command_line(int(pid)):
                pids.add(int(pid))
    return pids


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _command_line(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return b""


async def workers_ready(hooks: Any, count: int) -> None:
    async def ready() -> bool:
        return metric(await hooks.metrics(), "relay_validation_workers") == count

    await eventually(ready)


async def test_a_large_hook_is_validated_by_a_worker_and_delivered(
    start_relay, sense: SenseStandIn
) -> None:
    hook = big_hook("W")
    async with start_relay(server=ONE_WORKER) as hooks:
        await workers_ready(hooks, 1)

        status, body = await hooks.post("candidates", hook)

        assert (status, body) == (202, {"accepted": len(hook)})
        text = await hooks.metrics()
        assert metric(text, "relay_hooks_validated_total", process="worker") == 1
        assert metric(text, "relay_hooks_validated_total", process="daemon") == 0
        stored = sense.sandbox.records["candidates"]
        await eventually(lambda: len(stored) == len(hook))
    assert stored["W7"] == {**hook[7], "id": "W7"}


def _invalid_records() -> list[dict[str, Any]]:
    hook: list[dict[str, Any]] = big_hook("B")
    hook[3]["email"] = 42
    hook[40]["favourite_colour"] = "teal"
    del hook[50]["id"]
    hook[51]["id"] = 51  # a number is a valid id: no problem reported
    return hook


BAD_HOOKS = {
    "invalid records": orjson.dumps(_invalid_records()),
    "not JSON": orjson.dumps(big_hook("J"))[:-1],
    "neither object nor array": orjson.dumps("x" * OFFLOAD_MIN_BYTES),
    "more records than allowed": orjson.dumps(big_hook("M", count=120)),
}


@pytest.mark.parametrize("body", BAD_HOOKS.values(), ids=BAD_HOOKS.keys())
async def test_a_worker_refuses_a_bad_hook_exactly_as_the_daemon_does(
    start_relay, tmp_path: Path, body: bytes
) -> None:
    answers, rejected = [], []
    for workers in (1, 0):
        server = {"validation_workers": workers, "max_request_records": 100}
        outbox = {"path": tmp_path / f"{workers}.db"}
        async with start_relay(server=server, outbox=outbox) as hooks:
            await workers_ready(hooks, workers)

            answers.append(await hooks.post("candidates", body))

            text = await hooks.metrics()
            where = "worker" if workers else "daemon"
            assert metric(text, "relay_hooks_validated_total", process=where) == 1
            rejected.append(metric(text, "relay_records_rejected_total"))
            assert hooks.relay.outbox.total_records() == 0

    assert answers[0] == answers[1]
    assert answers[0][0] in (400, 413, 422)
    assert rejected[0] == rejected[1]


async def test_invalid_records_are_named_precisely_by_a_worker(start_relay) -> None:
    async with start_relay(server=ONE_WORKER) as hooks:
        await workers_ready(hooks, 1)

        status, body = await hooks.post("candidates", _invalid_records())

    assert status == 422
    assert body["problems"] == [
        {
            "index": 3,
            "id": "B3",
            "field": "email",
            "message": "Input should be a valid string",
        },
        {
            "index": 40,
            "id": "B40",
            "field": "favourite_colour",
            "message": "is not a field of this entity type; "
            "Sense rejects unknown fields",
        },
        {"index": 50, "id": None, "field": "id", "message": "is required"},
    ]


async def test_a_hook_held_by_a_worker_that_dies_is_validated_by_the_daemon(
    start_relay, sense: SenseStandIn
) -> None:
    async with start_relay(server=ONE_WORKER) as hooks:
        await workers_ready(hooks, 1)
        [worker] = validator_pids()
        os.kill(worker, signal.SIGSTOP)  # the hook waits in the worker's queue

        posting = asyncio.create_task(hooks.post("candidates", big_hook("D")))
        await asyncio.sleep(0.3)
        assert not posting.done()
        os.kill(worker, signal.SIGKILL)

        assert (await posting)[0] == 202
        text = await hooks.metrics()
        assert metric(text, "relay_hooks_validated_total", process="daemon") == 1
        await workers_ready(hooks, 1)
        assert validator_pids() - {worker}
        text = await hooks.metrics()
        assert metric(text, "relay_validation_worker_restarts_total") == 1
        assert (await hooks.post("candidates", big_hook("E")))[0] == 202
        await eventually(lambda: len(sense.sandbox.records["candidates"]) == 120)


async def test_stopping_relay_stops_its_workers(start_relay) -> None:
    async with start_relay(server={"validation_workers": 2}) as hooks:
        await workers_ready(hooks, 2)
        workers = validator_pids()
        assert len(workers) == 2

    assert not any(alive(pid) for pid in workers)


async def test_small_hooks_are_validated_in_the_daemon(start_relay) -> None:
    async with start_relay(server=ONE_WORKER) as hooks:
        await workers_ready(hooks, 1)

        await hooks.send("candidates", [candidate(n) for n in range(10)])

        text = await hooks.metrics()
    assert metric(text, "relay_hooks_validated_total", process="daemon") == 1
    assert metric(text, "relay_hooks_validated_total", process="worker") == 0


async def test_relay_validates_everything_itself_when_no_worker_can_start(
    start_relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", "/nonexistent/python3")
    async with start_relay(server=ONE_WORKER) as hooks:
        status, _ = await hooks.post("candidates", big_hook("N"))

        text = await hooks.metrics()
    assert status == 202
    assert metric(text, "relay_hooks_validated_total", process="daemon") == 1
    assert metric(text, "relay_validation_workers") == 0
