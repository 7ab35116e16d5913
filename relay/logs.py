"""Structured logging: one JSON object per line on standard output."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

# Keys that may carry credentials; their values never reach a log line.
SECRET_KEYS = frozenset(
    {
        "authorization",
        "client_secret",
        "token",
        "access_token",
        "hook_token",
        "password",
        "secret",
        "body",
    }
)
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def drop_secrets(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Masks every field whose name says it may hold a secret or a record body."""
    for key in event.keys() & SECRET_KEYS:
        event[key] = "[secure]"
    return event


def configure(
    level: str = "info", fmt: str = "json", stream: TextIO | None = None
) -> None:
    """Sets up structlog for the whole process, writing to stdout by default.

    ``fmt`` "auto" means console on a terminal and JSON anywhere else, where
    a program rather than a person reads the lines.
    """
    stream = stream or sys.stdout
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    # Under systemd or Docker stdout is a pipe, block-buffered by default:
    # flush each event so that logs are never stale or lost on a crash.
    if isinstance(stream, io.TextIOWrapper):
        stream.reconfigure(line_buffering=True)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            drop_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
