"""relay's Prometheus metrics, in one registry per running daemon.

For each entity type the record counters reconcile, so that silent loss
cannot hide::

    accepted + recovered == delivered + coalesced + dead_lettered + unchanged
                            + pending

where ``recovered`` counts the records found pending when the daemon started,
``unchanged`` the versions not sent because Sense held them already, and
``pending`` is ``relay_outbox_records``. Resume uploads reconcile the same
way, with ``relay_resumes_*_total`` and ``relay_outbox_resumes``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from relay.inbox import Inbox
from relay.outbox import Ledger, Outbox
from relay.uploads import Uploads

RECORD_BUCKETS = (1, 5, 10, 25, 50, 100, 200, 300, 400, 450, 500)
BYTE_BUCKETS = (
    1_000,
    5_000,
    25_000,
    50_000,
    100_000,
    150_000,
    200_000,
    230_000,
    250_000,
    256_000,
    262_144,
)
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


LEDGER = {
    "accepted": "Records acknowledged to the ATS after a durable commit.",
    "recovered": "Records found pending in the outbox at start-up.",
    "delivered": "Records Sense accepted.",
    "coalesced": "Pending versions replaced by a newer accepted version.",
    "dead_lettered": "Records Sense refused for good, kept as dead letters.",
    "unchanged": "Records acknowledged but not sent: identical to the version "
    "Sense last accepted.",
}


class Metrics:
    """Every metric relay exports; attributes are labelled by entity type."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        counter = self._counter
        self.records_rejected = counter(
            "records_rejected",
            "Records refused at ingest because they broke Sense's schema.",
            ["entity"],
        )
        self.hook_requests = counter(
            "hook_requests", "Hook requests answered, by HTTP status.", ["status"]
        )
        self.batches = counter(
            "batches",
            "Batch requests sent to Sense, by outcome.",
            ["entity", "outcome"],
        )
        self.retries = counter(
            "retries",
            "Batch attempts retried after a transient failure.",
            ["entity", "reason"],
        )
        self.sense_warnings = counter(
            "sense_warnings",
            "Warnings Sense returned with accepted batches.",
            ["entity"],
        )
        self.resumes_rejected = Counter(
            "relay_resumes_rejected",
            "Resume uploads refused at ingest (413, 415 or 422).",
            registry=self.registry,
        )
        self.resume_retries = counter(
            "resume_retries",
            "Resume upload attempts retried after a transient failure.",
            ["reason"],
        )
        self.token_requests = counter(
            "token_requests",
            "Requests to Sense's token endpoint, by outcome.",
            ["outcome"],
        )
        self.batch_records = Histogram(
            "relay_batch_records",
            "Records per batch sent to Sense.",
            ["entity"],
            buckets=RECORD_BUCKETS,
            registry=self.registry,
        )
        self.batch_body_bytes = Histogram(
            "relay_batch_compressed_bytes",
            "Request body bytes per batch as sent "
            "(gzip-compressed unless compression is off).",
            ["entity"],
            buckets=BYTE_BUCKETS,
            registry=self.registry,
        )
        self.sense_request_seconds = Histogram(
            "relay_sense_request_duration_seconds",
            "Duration of requests to Sense.",
            ["operation"],
            buckets=SECONDS_BUCKETS,
            registry=self.registry,
        )

        self.validators_ready = Gauge(
            "relay_validation_workers",
            "Worker processes ready to validate large hooks.",
            registry=self.registry,
        )
        self.validators_wanted = Gauge(
            "relay_validation_workers_wanted",
            "Validation workers relay keeps running (server.validation_workers, "
            "or its default for this machine).",
            registry=self.registry,
        )
        self.hooks_validated = counter(
            "hooks_validated",
            "Hook bodies validated, by the process that did it (worker or daemon).",
            ["process"],
        )
        self.validator_restarts = counter(
            "validation_worker_restarts",
            "Validation workers that exited unasked and were replaced.",
            [],
        )

        # A setting, exported so that alert rules can compare ages with it.
        self.flush_max_age_seconds = Gauge(
            "relay_flush_max_age_seconds",
            "Setting flush.max_age_seconds: the longest a record waits for a "
            "fuller batch.",
            registry=self.registry,
        )

        self._add_writeback_metrics()

    def _add_writeback_metrics(self) -> None:
        counter = self._counter
        self.writebacks_received = counter(
            "writebacks_received",
            "Write-backs received from Sense, by type and outcome "
            "(stored, duplicate, invalid).",
            ["type", "outcome"],
        )
        self.writeback_auth_failures = counter(
            "writeback_auth_failures",
            "Write-back requests refused for their credentials, by reason.",
            ["reason"],
        )
        self.writeback_requests = counter(
            "writeback_requests",
            "Requests to the write-back listener answered, by HTTP status.",
            ["status"],
        )
        self.writeback_delivery_attempts = counter(
            "writeback_delivery_attempts",
            "Write-backs posted to the ATS, by outcome (delivered, failed, refused).",
            ["outcome"],
        )
        self.writebacks_dead_lettered = counter(
            "writebacks_dead_lettered",
            "Write-backs moved to dead letters: refused by the ATS, or out of "
            "attempts.",
            [],
        )
        self.ats_request_seconds = Histogram(
            "relay_writeback_ats_request_duration_seconds",
            "Duration of write-back requests to the ATS.",
            buckets=SECONDS_BUCKETS,
            registry=self.registry,
        )

    def watch_inbox(self, inbox: Inbox) -> None:
        """Exports the write-backs pending and dead-lettered, read at scrape time.

        Also starts every delivery outcome at 0, so that rates and alerts on
        them work before the first write-back.
        """
        self.registry.register(_InboxCollector(inbox))
        for outcome in ("delivered", "failed", "refused"):
            self.writeback_delivery_attempts.labels(outcome)

    def watch_outbox(self, box: Outbox) -> None:
        """Exports outbox depth, size, age and coalescing, read at scrape time."""
        self.registry.register(_OutboxCollector(box))

    def watch_uploads(self, uploads: Uploads) -> None:
        """Exports pending resume uploads and their ledger, read at scrape time."""
        self.registry.register(_UploadCollector(uploads))

    def _counter(self, name: str, documentation: str, labels: list[str]) -> Counter:
        return Counter(f"relay_{name}", documentation, labels, registry=self.registry)


class _OutboxCollector(Collector):
    def __init__(self, box: Outbox) -> None:
        self._outbox = box

    def collect(self) -> Iterator[Metric]:
        records = GaugeMetricFamily(
            "relay_outbox_records", "Records pending delivery.", labels=["entity"]
        )
        size = GaugeMetricFamily(
            "relay_outbox_bytes",
            "Bytes of records pending delivery.",
            labels=["entity"],
        )
        age = GaugeMetricFamily(
            "relay_outbox_oldest_age_seconds",
            "Age of the oldest record pending delivery (0 when none).",
            labels=["entity"],
        )
        now = time.time()
        for entity, stats in sorted(self._outbox.stats.items()):
            oldest = stats.oldest_accepted_at
            records.add_metric([entity], stats.records)
            size.add_metric([entity], stats.bytes)
            age.add_metric([entity], max(0.0, now - oldest) if oldest else 0.0)
        yield from (records, size, age)
        yield from self._ledger()

    def _ledger(self) -> Iterator[Metric]:
        for field, documentation in LEDGER.items():
            family = CounterMetricFamily(
                f"relay_records_{field}", documentation, labels=["entity"]
            )
            for entity, ledger in sorted(self._outbox.ledger.items()):
                family.add_metric([entity], getattr(ledger, field))
            yield family


class _UploadCollector(Collector):
    def __init__(self, uploads: Uploads) -> None:
        self._uploads = uploads

    def collect(self) -> Iterator[Metric]:
        stats = self._uploads.stats
        oldest = stats.oldest_accepted_at
        yield GaugeMetricFamily(
            "relay_outbox_resumes",
            "Resume uploads pending delivery.",
            value=stats.uploads,
        )
        yield GaugeMetricFamily(
            "relay_outbox_resume_bytes",
            "File bytes of resume uploads pending delivery.",
            value=stats.bytes,
        )
        yield GaugeMetricFamily(
            "relay_outbox_oldest_resume_age_seconds",
            "Age of the oldest resume upload pending delivery (0 when none).",
            value=max(0.0, time.time() - oldest) if oldest else 0.0,
        )
        yield from _resume_ledger(self._uploads.ledger)


def _resume_ledger(ledger: Ledger) -> Iterator[Metric]:
    for field, documentation in LEDGER.items():
        yield CounterMetricFamily(
            f"relay_resumes_{field}",
            documentation.replace("Records", "Resume uploads"),
            value=getattr(ledger, field),
        )


class _InboxCollector(Collector):
    def __init__(self, inbox: Inbox) -> None:
        self._inbox = inbox

    def collect(self) -> Iterator[Metric]:
        stats = self._inbox.stats
        oldest = stats.oldest_received_at
        age_s = max(0.0, time.time() - oldest) if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "relay_writebacks_pending",
            "Write-backs stored and not yet delivered to the ATS.",
            value=stats.pending,
        )
        yield GaugeMetricFamily(
            "relay_writeback_oldest_age_seconds",
            "Age of the oldest write-back not yet delivered (0 when none).",
            value=age_s,
        )
        yield GaugeMetricFamily(
            "relay_writeback_dead_letters",
            "Write-backs in dead letters now.",
            value=stats.dead_letters,
        )
