"""What a sync tells its user: the figures per file and the refused rows."""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from relay.syncstate import RowProblem, Run

SHOWN_PROBLEMS = 20


def figures(run: Run) -> list[str]:
    """A table of what became of each file's rows."""
    lines = [
        f"{'entity':<16} {'rows':>11} {'sent':>11} {'invalid':>9} {'refused':>9}  state"
    ]
    for f in run.files:
        state = "done" if f.done else f"at line {f.line:,}"
        lines.append(
            f"{f.entity:<16} {f.rows:>11,} {f.sent:>11,} {f.invalid:>9,} "
            f"{f.refused:>9,}  {state}"
        )
    return lines


def status(run: Run, running: bool) -> list[str]:
    """The watermark and figures of a run, for ``relay sync --status``."""
    state = "running" if running and run.outcome == "running" else run.outcome
    if state == "running" and not running:
        state = "interrupted (rerun the same command to continue)"
    lines = [
        f"source:    {run.source}",
        f"watermark: {iso(run.started_at)} (when this sync began)",
        f"state:     {state}"
        + (f" at {iso(run.finished_at)}" if run.finished_at else ""),
        "",
    ]
    return lines + figures(run)


def status_json(run: Run, running: bool) -> dict[str, Any]:
    return {
        "source": run.source,
        "watermark": iso(run.started_at),
        "state": run.outcome
        if not (running and run.outcome == "running")
        else "running",
        "finished_at": iso(run.finished_at) if run.finished_at else None,
        "files": [
            {
                "entity": f.entity,
                "path": str(f.path),
                "rows": f.rows,
                "sent": f.sent,
                "invalid": f.invalid,
                "refused": f.refused,
                "done": f.done,
                "line": f.line,
            }
            for f in run.files
        ],
    }


def problem_lines(problems: Sequence[RowProblem], report: Path) -> list[str]:
    """The first refused rows, and where to find all of them."""
    lines = [_describe(p) for p in problems[:SHOWN_PROBLEMS]]
    if len(problems) > SHOWN_PROBLEMS:
        lines.append(f"... and {len(problems) - SHOWN_PROBLEMS:,} more")
    lines.append(f"every refused row is listed in {report}")
    return lines


def _describe(problem: RowProblem) -> str:
    where = f"{Path(problem.path).name}:{problem.line}"
    record = f" id={problem.record_id}" if problem.record_id else ""
    field = f" {problem.field}:" if problem.field else ""
    by = "Sense refused it" if problem.found_by == "sense" else "invalid"
    return f"{where}{record} ({by}){field} {problem.reason}"


def write_report(path: Path, problems: Sequence[RowProblem]) -> None:
    """Writes one JSON object per refused row, replacing the file whole."""
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as out:
        for p in problems:
            line = {
                "file": p.path,
                "line": p.line,
                "id": p.record_id,
                "field": p.field,
                "reason": p.reason,
                "found_by": p.found_by,
            }
            out.write(orjson.dumps(line) + b"\n")
    os.replace(partial, path)


def iso(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
