"""Sums up a py-spy profile that ``bench/run.py --profile`` wrote.

``.venv/bin/python -m bench.stacks FILE [--top N]`` prints each thread's share
of the samples, then the functions with the most samples in total (their
callees included) and in themselves. Waiting shows up too: py-spy's
--nonblocking mode cannot tell an idle thread from a busy one, so read
``EpollSelector.select`` (the event loop idle) and aiosqlite's
``_connection_worker_thread`` at its ``tx.get()`` line as waiting.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

LINE_NUMBER = re.compile(r":\d+\)$")
SITE_PACKAGES = re.compile(r"\(.*?(site-packages|python3\.\d+)/")
CHECKOUT = f"{Path(__file__).resolve().parents[1]}/"


def _frame(raw: str) -> str:
    # "validate (/work/main/relay/records.py:53)" -> "validate (relay/records.py)"
    return SITE_PACKAGES.sub("(", LINE_NUMBER.sub(")", raw)).replace(CHECKOUT, "")


def summarize(path: Path, top: int) -> str:
    threads: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        thread, *frames = stack.split(";")
        samples = int(count)
        threads[thread] += samples
        for frame in {_frame(raw) for raw in frames}:
            inclusive[frame] += samples
        if frames:
            own[_frame(frames[-1])] += samples
    total = sum(threads.values()) or 1
    out = [f"{total} samples in {path}", "threads:"]
    out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in threads.most_common()]
    for title, counter in (("inclusive", inclusive), ("self", own)):
        out.append(f"top {top} {title}:")
        out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in counter.most_common(top)]
    return "\n".join(out)


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("profile", type=Path)
    args.add_argument("--top", type=int, default=25)
    parsed = args.parse_args()
    print(summarize(parsed.profile, parsed.top))


if __name__ == "__main__":
    main()
