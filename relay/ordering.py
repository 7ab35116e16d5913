"""Dependency order in the live flow: a record never overtakes what it needs.

Sense loads entity types in a fixed order so that a reference always lands
after the record it points to (relay.entities.DEPENDENCY_ORDER). relay keeps
that order between the versions it delivers: a version may go only once
every version of a preceding entity type accepted before it has been
delivered or dead-lettered. A placement waits for the job order accepted
before it, never the other way round, so the waits cannot form a cycle.

A flusher held back this way, when the records it waits for do not move,
urges the flushers of the types it waits for to send at once, rather than
after their own size or age trigger.
"""

from __future__ import annotations

from collections import defaultdict

from relay import entities, outbox

PRECEDING = {path: entities.PATHS[:index] for index, path in enumerate(entities.PATHS)}
FOLLOWING = {
    path: entities.PATHS[index + 1 :] for index, path in enumerate(entities.PATHS)
}


class DependencyOrder:
    """What each entity type waits for, shared by every flusher."""

    def __init__(self, box: outbox.Outbox) -> None:
        self._outbox = box
        self._held: set[str] = set()
        # Per entity type, the types held back until it sends.
        self._urged_by: dict[str, set[str]] = defaultdict(set)

    def barrier(self, entity: str) -> float | None:
        """Versions of ``entity`` accepted from this time on must wait.

        None when no record of a preceding type is pending or being sent.
        """
        floors = (self._outbox.stats[t].oldest_accepted_at for t in PRECEDING[entity])
        return min((f for f in floors if f is not None), default=None)

    def hold(self, entity: str) -> None:
        """Notes that versions of ``entity`` wait for preceding types."""
        self._held.add(entity)

    def urge(self, entity: str, held_seq: int) -> None:
        """Urges each preceding type with a record accepted before ``held_seq``.

        ``held_seq`` is the seq of the oldest version of ``entity`` waiting.
        """
        for preceding in PRECEDING[entity]:
            oldest = self._outbox.stats[preceding].oldest_accepted_at
            if oldest is None or outbox.seq_before(oldest) > held_seq:
                self._urged_by[preceding].discard(entity)
            elif entity not in self._urged_by[preceding]:
                self._urged_by[preceding].add(entity)
                self._outbox.changed[preceding].set()

    def unhold(self, entity: str) -> None:
        """Notes that nothing of ``entity`` waits for a preceding type."""
        self._held.discard(entity)
        for preceding in PRECEDING[entity]:
            self._urged_by[preceding].discard(entity)

    def urged(self, entity: str) -> bool:
        """True while a following type waits for records of ``entity``."""
        return bool(self._urged_by[entity])

    def settled(self, entity: str) -> None:
        """Wakes the held flushers of following types: they may go now."""
        for following in FOLLOWING[entity]:
            if following in self._held:
                self._outbox.changed[following].set()
