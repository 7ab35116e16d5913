"""relay under systemd: readiness, stopping and watchdog over NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SenseStandIn
from tests.test_process import relay_process

WATCHDOG_USEC = 400_000


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    """The datagram socket systemd would listen on, bound in tmp_path."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    yield sock
    sock.close()


async def messages_until(sock: socket.socket, wanted: str) -> list[str]:
    """Reads notifications until one contains ``wanted``; returns them all."""
    loop = asyncio.get_running_loop()
    received: list[str] = []
    async with asyncio.timeout(15):
        while not any(wanted in message for message in received):
            received.append((await loop.sock_recv(sock, 4096)).decode())
    return received


async def test_ready_watchdog_and_stopping_are_announced(
    tmp_path: Path, sense: SenseStandIn, notify_socket: socket.socket
) -> None:
    environment = {
        "NOTIFY_SOCKET": str(tmp_path / "notify"),
        "WATCHDOG_USEC": str(WATCHDOG_USEC),
    }
    async with relay_process(tmp_path / "outbox.db", sense.url, **environment) as (
        process,
        _,
    ):
        first = await messages_until(notify_socket, "READY=1")
        assert "STATUS=serving hooks on port" in first[-1]

        pings = await messages_until(notify_socket, "WATCHDOG=1")
        pings += await messages_until(notify_socket, "WATCHDOG=1")
        assert pings.count("WATCHDOG=1") >= 2

        process.send_signal(signal.SIGTERM)
        stopping = await messages_until(notify_socket, "STOPPING=1")
        assert await asyncio.wait_for(process.wait(), 15) == 0
    assert any(m.startswith("STOPPING=1\nSTATUS=draining") for m in stopping)


async def test_an_abstract_socket_name_works_too(
    tmp_path: Path, sense: SenseStandIn
) -> None:
    name = f"relay-test-{tmp_path.name}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.setblocking(False)
        async with relay_process(
            tmp_path / "outbox.db", sense.url, NOTIFY_SOCKET="@" + name
        ):
            assert "READY=1" in (await messages_until(sock, "READY=1"))[-1]
