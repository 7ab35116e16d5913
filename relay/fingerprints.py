"""Fingerprints: what Sense last accepted for each record, in eight bytes.

ATS hooks often fire when nothing Sense holds has changed, and a change Sense
pushed back to the ATS comes back as a hook. The outbox keeps a digest of the
last whole version Sense accepted for each record, written in the same commit
that settles the delivery, and an accepted version identical to it is
acknowledged without being queued. A fingerprint is only ever a reason not
to send: when it is missing, the version goes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from relay.outbox import Pending

DIGEST_BYTES = 8

Key = tuple[str, str]


def of(body: bytes) -> bytes:
    """The fingerprint of a record body as relay forwards it.

    Bodies are canonical already: validation writes the fields in the order
    of Sense's schema, whatever order the ATS sent them in.
    """
    return hashlib.blake2b(body, digest_size=DIGEST_BYTES).digest()


def of_delivered(
    delivered: Sequence[Pending],
) -> tuple[list[tuple[str, str, bytes]], list[tuple[str, str]]]:
    """Fingerprints of delivered whole versions, and the records patched.

    After a patch, relay no longer knows the whole of what Sense holds.
    """
    known = [
        (p.entity, p.record_id, of(p.body)) for p in delivered if p.kind == "upsert"
    ]
    unknown = [(p.entity, p.record_id) for p in delivered if p.kind != "upsert"]
    return known, unknown


def unchanged(
    rows: list[tuple[Any, ...]], pending: dict[Key, Any], delivered: dict[Key, bytes]
) -> set[Key]:
    """Records whose newest version in ``rows`` is what Sense holds already.

    ``rows`` are outbox rows in the order accepted, ``pending`` the records
    with a version in the outbox (pending or being sent), ``delivered`` the
    stored fingerprints. A record with a version in the outbox never
    qualifies: the newest version must replace it, or follow it to Sense.
    """
    if not delivered:
        return set()
    newest: dict[Key, tuple[Any, ...]] = {}
    for row in rows:
        key = (row[0], row[1])
        if key in delivered and key not in pending:
            newest[key] = row
    return {
        key
        for key, (_, _, _, _, _, body, kind) in newest.items()
        if kind == "upsert" and of(body) == delivered[key]
    }
