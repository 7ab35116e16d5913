"""Runs relay's benchmarks: ``.venv/bin/python bench/run.py [scenario ...]``.

See ``--help`` for the scenarios and docs/benchmarks.md for the results.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> int:
    # Run as a script, Python puts bench/ on sys.path rather than the checkout
    # that holds the bench package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import cli

    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
