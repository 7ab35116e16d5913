"""Packing pending records into request bodies as full as Sense allows."""

from __future__ import annotations

import bisect
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from relay.outbox import Pending

# Compressing a prefix and measuring is exact but costs a full compression;
# these bound the search for the largest prefix under the byte limit.
MAX_ATTEMPTS = 8


@dataclass(frozen=True, slots=True)
class Batch:
    """Records of one entity type and the request body that carries them."""

    entity: str
    records: Sequence[Pending]
    body: bytes
    compressed: bool
    kind: str = "upsert"

    @property
    def body_bytes(self) -> int:
        return len(self.body)


@dataclass(frozen=True, slots=True)
class Packer:
    """Builds bodies whose size on the wire is at most ``max_body_bytes``."""

    max_body_bytes: int
    compression_level: int = 6
    compress: bool = True

    def pack(self, entity: str, candidates: Sequence[Pending]) -> Batch:
        """Returns a batch of the longest prefix of ``candidates`` that fits.

        The size check is exact: the body returned is the one that is sent.
        A single record too large to fit on its own still forms a batch, so
        that Sense's 413 isolates it. A patch travels alone (Sense patches
        one entity a request), and a batch of whole entities stops before
        the first patch, so that records leave in the order they came.
        """
        if candidates[0].kind == "patch":
            body = self._compress(candidates[0].body)
            return Batch(entity, candidates[:1], body, self.compress, "patch")
        upserts = _upsert_prefix(candidates)
        body = self._encode(upserts)
        if len(body) <= self.max_body_bytes or len(upserts) == 1:
            return Batch(entity, upserts, body, self.compress)

        count, body = self._largest_fitting_prefix(upserts, len(body))
        return Batch(entity, upserts[:count], body, self.compress)

    def _largest_fitting_prefix(
        self, candidates: Sequence[Pending], whole_size: int
    ) -> tuple[int, bytes]:
        raw_ends = _cumulative_sizes(candidates)
        fits, fits_body = 0, b""
        too_big, too_big_size = len(candidates), whole_size
        for _ in range(MAX_ATTEMPTS):
            if too_big - fits <= 1:
                break
            guess = _interpolate(
                raw_ends, fits, too_big, too_big_size, self.max_body_bytes
            )
            body = self._encode(candidates[:guess])
            if len(body) <= self.max_body_bytes:
                fits, fits_body = guess, body
            else:
                too_big, too_big_size = guess, len(body)
        if fits == 0:
            fits, fits_body = 1, self._encode(candidates[:1])
        return fits, fits_body

    def _encode(self, records: Sequence[Pending]) -> bytes:
        return self._compress(b"[" + b",".join(r.body for r in records) + b"]")

    def _compress(self, raw: bytes) -> bytes:
        if not self.compress:
            return raw
        # wbits=31 writes the gzip container that Content-Encoding: gzip names.
        compressor = zlib.compressobj(self.compression_level, zlib.DEFLATED, 31)
        return compressor.compress(raw) + compressor.flush()


def _upsert_prefix(candidates: Sequence[Pending]) -> Sequence[Pending]:
    for index, pending in enumerate(candidates):
        if pending.kind == "patch":
            return candidates[:index]
    return candidates


def _cumulative_sizes(records: Sequence[Pending]) -> list[int]:
    ends, total = [], 1
    for record in records:
        total += len(record.body) + 1
        ends.append(total)
    return ends


def _interpolate(
    raw_ends: list[int], fits: int, too_big: int, too_big_size: int, limit: int
) -> int:
    # Compressed size grows about linearly with raw size: aim the next guess
    # a little under the limit along that line.
    ratio = too_big_size / raw_ends[too_big - 1]
    guess = bisect.bisect_right(raw_ends, 0.995 * limit / ratio)
    return max(fits + 1, min(guess, too_big - 1))
