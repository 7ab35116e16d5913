"""relay's exceptions, split by what the caller does about them."""

from __future__ import annotations


class RelayError(Exception):
    """Root of every error relay raises on purpose."""


class ConfigError(RelayError):
    """A setting is missing or invalid; the process exits with status 2."""


class OutboxError(RelayError):
    """The outbox file cannot be opened or written; nothing can be acknowledged."""


class OutboxFull(RelayError):
    """The outbox holds as much as it is allowed to; the ATS should retry later."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"the outbox is full; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class SenseUnavailable(RelayError):
    """A transient failure talking to Sense; the work is retried, never dropped."""

    def __init__(
        self,
        reason: str,
        retry_after_s: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s
        self.status = status


class AuthRejected(SenseUnavailable):
    """Sense refused relay's credentials; a person must check them."""


class Stopping(RelayError):
    """relay is shutting down; work waiting to be retried is left for later."""
