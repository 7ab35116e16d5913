"""relay's Prometheus metrics, in one registry per running daemon.

For each entity type the record counters reconcile, so that silent loss
cannot hide::

    accepted + recovered == delivered + coalesced + dead_lettered + unchanged
                            + pending

where ``recovered`` counts the records found pending when the daemon started,
``unchanged`` the versions not sent because Sense held them already, and
``pending`` is ``relay_outbox_records``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from relay.outbox import Outbox

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

    def watch_outbox(self, box: Outbox) -> None:
        """Exports outbox depth, size, age and coalescing, read at scrape time."""
        self.registry.register(_OutboxCollector(box))

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
