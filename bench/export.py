"""An ATS export for the sync scenario: realistic candidates as JSON Lines."""

from __future__ import annotations

import random
from pathlib import Path

import orjson

from bench import candidates

LINES_PER_WRITE = 10_000


def write_candidates(path: Path, count: int, seed: int = 11) -> int:
    """Writes ``count`` distinct candidates, one per line; returns the file size."""
    rng = random.Random(seed)
    with path.open("wb") as out:
        for start in range(0, count, LINES_PER_WRITE):
            lines = []
            for number in range(start, min(count, start + LINES_PER_WRITE)):
                record = candidates.candidate(rng)
                record["id"] = f"sync-{number}"
                lines.append(orjson.dumps(record))
            out.write(b"\n".join(lines) + b"\n")
    return path.stat().st_size
