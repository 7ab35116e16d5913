"""``relay sync``: an ATS export loaded into the sandbox by the real command."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from relay.sandbox import Fault
from relay.syncstate import SyncState
from tests.conftest import SenseStandIn, candidate, eventually

ROWS = 1_200


def sync_environment(workdir: Path, sense_url: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    return {
        **base,
        "RELAY_SENSE__BASE_URL": f"{sense_url}/v1",
        "RELAY_SENSE__TOKEN_URL": f"{sense_url}/oauth2/token",
        "RELAY_SENSE__CLIENT_ID": "sandbox-client",
        "RELAY_SENSE__CLIENT_SECRET": "sandbox-secret",
        "RELAY_SENSE__REQUEST_TIMEOUT_SECONDS": "2",
        "RELAY_OUTBOX__PATH": str(workdir / "outbox.db"),
        "RELAY_RETRY__BASE_SECONDS": "0.05",
        "RELAY_RETRY__CAP_SECONDS": "0.2",
    }


async def start_sync(
    workdir: Path, sense: SenseStandIn, *args: str
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relay",
        "sync",
        *args,
        env=sync_environment(workdir, sense.url),
        cwd=workdir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def sync(workdir: Path, sense: SenseStandIn, *args: str) -> tuple[int, str, str]:
    """Runs ``relay sync`` to the end; returns its exit status, stdout, stderr."""
    process = await start_sync(workdir, sense, *args)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return path


def report(workdir: Path) -> list[dict[str, Any]]:
    text = (workdir / "relay-sync-report.jsonl").read_bytes()
    return [orjson.loads(line) for line in text.splitlines()]


async def test_a_jsonl_file_reaches_sense_in_full_batches(
    tmp_path: Path, sense: SenseStandIn
) -> None:
    rows = [candidate(f"c{n}", city=f"City {n}") for n in range(ROWS)]
    write_jsonl(tmp_path / "candidates.jsonl", rows)

    status, out, err = await sync(tmp_path, sense, "candidates.jsonl")

    assert status == 0, err
    stored = sense.sandbox.records["candidates"]
    assert len(stored) == ROWS
    assert stored["c1199"]["city"] == "City 1199"
    counts = sorted(batch.record_count for batch in sense.sandbox.batches)
    assert counts == [200, 500, 500]  # up to 4 in flight: any arrival order
    assert "watermark:" in out


async def test_invalid_rows_are_reported_and_the_rest_is_sent(
    tmp_path: Path, sense: SenseStandIn
) -> None:
    rows: list[Any] = [candidate(f"c{n}") for n in range(10)]
    rows[3]["email"] = 42
    rows[6]["favourite_colour"] = "blue"
    path = write_jsonl(tmp_path / "people.jsonl", rows)
    with path.open("ab") as out:
        out.write(b'{"id": "c10", "first_name": \n')

    status, _, err = await sync(
        tmp_path, sense, "people.jsonl", "--entity", "candidates"
    )

    assert status == 1
    assert len(sense.sandbox.records["candidates"]) == 8
    found = {(r["line"], r["id"], r["field"]) for r in report(tmp_path)}
    assert found == {
        (4, "c3", "email"),
        (7, "c6", "favourite_colour"),
        (11, None, None),
    }
    assert all(r["file"] == str(path) for r in report(tmp_path))
    assert "people.jsonl:4 id=c3 (invalid) email:" in err


async def test_records_sense_refuses_are_reported_with_its_reason(
    tmp_path: Path, sense: SenseStandIn
) -> None:
    write_jsonl(tmp_path / "candidates.jsonl", [candidate(f"c{n}") for n in range(50)])
    sense.sandbox.reject("c7", message="email domain is blocked")

    status, _, _ = await sync(tmp_path, sense, "candidates.jsonl")

    assert status == 1
    assert len(sense.sandbox.records["candidates"]) == 49
    [refused] = report(tmp_path)
    assert refused["id"] == "c7"
    assert refused["line"] == 8
    assert refused["found_by"] == "sense"
    assert "email domain is blocked" in refused["reason"]


async def test_csv_cells_become_typed_values_and_empty_cells_null(
    tmp_path: Path, sense: SenseStandIn
) -> None:
    (tmp_path / "internal-users.csv").write_text(
        "id,first_name,active,custom_float1,custom_integer1,custom_array1,"
        "custom_array2,last_name\n"
        'u1,"Ann\nMarie",yes,12.5,3,sql|python,"[""a|b""]",\n'
        "u2,Bo,false,,,,,Kim\n"
    )

    status, _, err = await sync(tmp_path, sense, "internal-users.csv")

    assert status == 0, err
    stored = sense.sandbox.records["internal-users"]
    assert stored["u1"] == {
        "id": "u1",
        "first_name": "Ann\nMarie",
        "active": True,
        "custom_float1": 12.5,
        "custom_integer1": 3,
        "custom_array1": ["sql", "python"],
        "custom_array2": ["a|b"],
        "last_name": None,
    }
    assert stored["u2"]["active"] is False
    assert stored["u2"]["custom_float1"] is None


async def test_a_csv_cell_of_the_wrong_type_is_reported_by_line(
    tmp_path: Path, sense: SenseStandIn
) -> None:
    (tmp_path / "companies.csv").write_text(
        "id,company_name,custom_integer1\nk1,A,1\nk2,B,x\n"
    )

    status, _, _ = await sync(tmp_path, sense, "companies.csv")

    assert status == 1
    [problem] = report(tmp_path)
    assert (problem["line"], problem["id"], problem["field"]) == (
        3,
        "k2",
        "custom_integer1",
    )
    assert list(sense.sandbox.records["companies"]) == ["k1"]


async def test_a_csv_column_that_is_not_a_field_stops_before_sending(
    tmp_path: Path, sense: SenseStandIn
) -> None:
    (tmp_path / "companies.csv").write_text("id,company_name,shoe_size\nk1,A,9\n")

    status, _, err = await sync(tmp_path, sense, "companies.csv")

    assert status == 2
    assert "shoe_size" in err
    assert sense.sandbox.batches == []


async def test_a_folder_is_loaded_in_dependency_order(
    tmp_path: Path, sense: SenseStandIn
) -> None:
    export = tmp_path / "export"
    export.mkdir()
    write_jsonl(export / "placements.jsonl", [{"id": "p1", "job_order_id": "j1"}])
    write_jsonl(export / "job-orders.jsonl", [{"id": "j1", "title": "Welder"}])
    write_jsonl(export / "candidates.jsonl", [candidate("c1")])
    (export / "internal-users.csv").write_text("id,first_name\nu1,Ann\n")
    (export / "notes.txt").write_text("not an export file")

    status, out, err = await sync(tmp_path, sense, "export")

    assert status == 0, err
    order = [batch.entity for batch in sense.sandbox.batches]
    assert order == ["internal-users", "candidates", "job-orders", "placements"]
    assert out.index("internal-users") < out.index("placements")


async def test_a_later_row_for_the_same_id_wins(
    tmp_path: Path, sense: SenseStandIn
) -> None:
    rows = [candidate(f"c{n}") for n in range(ROWS)]
    rows[-1] = candidate("c0", first_name="Later")
    write_jsonl(tmp_path / "candidates.jsonl", rows)

    status, _, err = await sync(tmp_path, sense, "candidates.jsonl")

    assert status == 0, err
    assert sense.sandbox.records["candidates"]["c0"]["first_name"] == "Later"


async def test_a_killed_sync_continues_where_it_stopped(
    tmp_path: Path, sense: SenseStandIn
) -> None:
    total = 5_000
    write_jsonl(tmp_path / "candidates.jsonl", [candidate(n) for n in range(total)])
    # Three batches get through, then Sense fails until the sync is killed.
    sense.sandbox.script(Fault(), Fault(), Fault(), *[Fault(status=503)] * 10_000)
    process = await start_sync(tmp_path, sense, "candidates.jsonl")
    await eventually(lambda: len(sense.sandbox.batches) == 3, timeout_s=30)
    # Four batches travel at once, so the three may not be the first three:
    # the checkpoint stops before the first batch Sense did not take.
    settled = _leading_rows(sense, batch_rows=500)
    await eventually(lambda: _checkpointed(tmp_path) == settled, timeout_s=30)
    process.send_signal(signal.SIGKILL)
    await process.wait()
    sense.sandbox.clear_faults()

    status, out, err = await sync(tmp_path, sense, "candidates.jsonl")

    assert status == 0, err
    assert "continuing the sync begun" in out
    assert len(sense.sandbox.records["candidates"]) == total
    received = sum(batch.record_count for batch in sense.sandbox.batches)
    # Only what was accepted beyond the checkpoint is sent a second time.
    assert received == 1_500 + total - settled
    assert _status(tmp_path)["state"] == "finished"


def _leading_rows(sense: SenseStandIn, batch_rows: int) -> int:
    """Rows in the unbroken run of accepted batches from the top of the file."""
    accepted = {int(batch.ids[0]) // batch_rows for batch in sense.sandbox.batches}
    leading = 0
    while leading in accepted:
        leading += 1
    return leading * batch_rows


async def test_a_changed_file_is_not_resumed_without_restart(
    tmp_path: Path, sense: SenseStandIn
) -> None:
    path = write_jsonl(
        tmp_path / "candidates.jsonl", [candidate(n) for n in range(600)]
    )
    sense.sandbox.script(Fault(), *[Fault(status=503)] * 10_000)
    process = await start_sync(tmp_path, sense, "candidates.jsonl")
    await eventually(lambda: len(sense.sandbox.batches) == 1, timeout_s=30)
    process.send_signal(signal.SIGKILL)
    await process.wait()
    sense.sandbox.clear_faults()
    write_jsonl(path, [candidate(n, first_name="New") for n in range(700)])

    status, _, err = await sync(tmp_path, sense, "candidates.jsonl")
    assert status == 2
    assert "--restart" in err

    status, _, err = await sync(tmp_path, sense, "candidates.jsonl", "--restart")
    assert status == 0, err
    assert len(sense.sandbox.records["candidates"]) == 700
    assert sense.sandbox.records["candidates"]["0"]["first_name"] == "New"


async def test_status_shows_the_watermark_and_figures(
    tmp_path: Path, sense: SenseStandIn
) -> None:
    write_jsonl(tmp_path / "candidates.jsonl", [candidate(1), {"id": ""}])
    await sync(tmp_path, sense, "candidates.jsonl")

    shown = _status(tmp_path)

    assert shown["state"] == "finished"
    assert shown["watermark"].endswith("Z")
    [figures] = shown["files"]
    assert (figures["rows"], figures["sent"], figures["invalid"]) == (2, 1, 1)
    status, out, _ = await sync(tmp_path, sense, "--status")
    assert status == 0
    assert "watermark:" in out


def _checkpointed(workdir: Path) -> int:
    """Rows the latest sync has recorded as sent, read from its state file."""
    path = workdir / "outbox.sync.db"
    if not path.exists():
        return 0
    with SyncState.open(path) as state:
        run = state.latest()
    return run.files[0].sent if run is not None else 0


def _status(workdir: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "relay", "sync", "--status", "--json"],
        env=sync_environment(workdir, "http://127.0.0.1:9"),
        cwd=workdir,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        return {"files": [{"sent": 0}], "state": None}
    result: dict[str, Any] = orjson.loads(done.stdout)
    return result


async def test_the_state_can_live_outside_the_outbox_directory(
    tmp_path: Path, sense: SenseStandIn
) -> None:
    write_jsonl(tmp_path / "candidates.jsonl", [candidate(1)])
    state = tmp_path / "elsewhere" / "my-sync.db"
    state.parent.mkdir()

    status, _, err = await sync(
        tmp_path, sense, "candidates.jsonl", "--state", str(state)
    )
    shown, out, _ = await sync(tmp_path, sense, "--status", "--state", str(state))

    assert status == 0, err
    assert shown == 0
    assert "watermark:" in out
    assert state.exists()
    assert not (tmp_path / "outbox.sync.db").exists()
