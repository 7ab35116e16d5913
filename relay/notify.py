"""Telling systemd how relay is doing, over the ``NOTIFY_SOCKET`` protocol.

With ``Type=notify`` systemd waits for READY=1 before it counts relay as
started, and with ``WatchdogSec=`` it restarts relay when the WATCHDOG=1
pings stop. Outside systemd ``NOTIFY_SOCKET`` is unset and every call here
does nothing. The protocol is one datagram of ``KEY=value`` lines to a Unix
socket; a name starting with "@" is in the abstract namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable, Mapping

import structlog

log = structlog.get_logger("relay.notify")


class Notifier:
    """Sends state changes to systemd, if relay runs under it."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        self._address = _address(environ.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval_s = _watchdog_interval_s(environ)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, **state: str) -> None:
        """Sends one message, e.g. ``send(READY="1", STATUS="serving")``."""
        if self._address is None:
            return
        message = "\n".join(f"{key}={value}" for key, value in state.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message.encode(), self._address)
        except OSError as exc:
            # systemd going away must not take relay with it.
            log.warning("systemd_notify_failed", error=str(exc))

    async def keep_alive(
        self, healthy: Callable[[], Awaitable[bool]], stopping: asyncio.Event
    ) -> None:
        """Pings the watchdog twice per interval, only while ``healthy()`` holds.

        A blocked event loop sends no ping at all, so systemd notices it too.
        """
        interval_s = self.watchdog_interval_s
        if interval_s is None or not self.enabled:
            return
        period_s = interval_s / 2
        loop = asyncio.get_running_loop()
        while not stopping.is_set():
            started = loop.time()
            await self._ping_if(healthy, timeout_s=period_s / 2)
            remaining_s = max(0.0, period_s - (loop.time() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=remaining_s)

    async def _ping_if(
        self, healthy: Callable[[], Awaitable[bool]], timeout_s: float
    ) -> None:
        try:
            ok = await asyncio.wait_for(healthy(), timeout=timeout_s)
        except TimeoutError:
            ok = False
        if ok:
            self.send(WATCHDOG="1")
        else:
            log.error("watchdog_ping_withheld", reason="health check failed")


def _address(name: str) -> str | None:
    if not name or name[0] not in "/@":
        return None
    return "\0" + name[1:] if name[0] == "@" else name


def _watchdog_interval_s(environ: Mapping[str, str]) -> float | None:
    # systemd sets WATCHDOG_PID when the variable could leak to children.
    pid = environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1_000_000 if usec > 0 else None
