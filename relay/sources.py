"""Reading an ATS export, row by row, for the initial sync.

Two formats: JSON Lines (one entity object a line) and CSV (a header of
Sense field names, one entity a row). Each row comes with the byte offset
just past it, so that an interrupted sync can seek back to where it stopped
instead of reading the file again from the top.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from relay import entities

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
DEFAULT_ARRAY_DELIMITER = "|"
TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "0"})
# Rows are read in blocks of this many bytes; larger blocks gain nothing.
READ_BUFFER_BYTES = 1 << 20


class SourceError(Exception):
    """A whole file cannot be read as an export (not a single bad row)."""


@dataclass(frozen=True, slots=True)
class Row:
    """One entity read from an export, or why it could not be read."""

    line: int
    """Line number where the row starts, counting from 1."""
    end_line: int
    """Line number where the row ends (CSV values may span lines)."""
    end_offset: int
    """Byte offset just past the row: where reading resumes after it."""
    item: Any
    problem: str | None = None


def file_format(path: Path) -> str:
    """ "jsonl" or "csv", from the file name; SourceError for anything else."""
    found = FORMATS.get(path.suffix.lower())
    if found is None:
        known = ", ".join(sorted(FORMATS))
        raise SourceError(f"{path}: unknown file type; expected one of {known}")
    return found


def read_rows(
    path: Path,
    entity_type: entities.EntityType,
    offset: int = 0,
    line: int = 0,
    array_delimiter: str = DEFAULT_ARRAY_DELIMITER,
) -> Iterator[Row]:
    """Yields the rows of an export after byte ``offset``, the ``line``-th line.

    ``offset`` and ``line`` are a previous row's ``end_offset`` and last line,
    or 0 to start at the top.
    """
    if file_format(path) == "jsonl":
        yield from _jsonl_rows(path, offset, line)
    else:
        yield from _csv_rows(path, entity_type, offset, line, array_delimiter)


def _jsonl_rows(path: Path, offset: int, line: int) -> Iterator[Row]:
    with path.open("rb", buffering=READ_BUFFER_BYTES) as source:
        source.seek(offset)
        for raw in source:
            line += 1
            offset += len(raw)
            if not raw.strip():
                continue
            try:
                item = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                yield Row(line, line, offset, None, f"not valid JSON: {exc}")
                continue
            yield Row(line, line, offset, item)


def _csv_rows(
    path: Path,
    entity_type: entities.EntityType,
    offset: int,
    line: int,
    array_delimiter: str,
) -> Iterator[Row]:
    with path.open("rb", buffering=READ_BUFFER_BYTES) as source:
        header_line = source.readline()
        header = next(csv.reader([header_line.decode("utf-8-sig")]), [])
        columns = _check_columns(path, entity_type, header)
        if offset == 0:
            offset, line = len(header_line), 1
        source.seek(offset)

        position = _Position(offset, line)
        reader = csv.reader(position.lines(source), strict=True)
        while True:
            start = position.line + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                problem = f"not valid CSV: {exc}"
                yield Row(start, position.line, position.offset, None, problem)
                continue
            if not any(cells):
                continue
            end = (start, position.line, position.offset)
            yield _csv_row(end, columns, cells, array_delimiter)


class _Position:
    """Counts the bytes and lines the CSV reader has taken so far."""

    def __init__(self, offset: int, line: int) -> None:
        self.offset = offset
        self.line = line

    def lines(self, source: BinaryIO) -> Iterator[str]:
        # csv.reader pulls one line at a time, and only as many as the row
        # it is building needs: after each row, the count is exact.
        for raw in source:
            self.offset += len(raw)
            self.line += 1
            yield raw.decode("utf-8")


@dataclass(frozen=True, slots=True)
class _Column:
    name: str
    kind: str


def _check_columns(
    path: Path, entity_type: entities.EntityType, header: list[str]
) -> list[_Column]:
    if "id" not in header:
        raise SourceError(f"{path}: the header has no id column")
    unknown = [name for name in header if name not in entity_type.fields]
    if unknown:
        raise SourceError(
            f"{path}: column(s) {', '.join(unknown)} are not fields of "
            f"{entity_type.name}"
        )
    return [_Column(name, entity_type.fields[name]) for name in header]


def _csv_row(
    where: tuple[int, int, int],
    columns: list[_Column],
    cells: list[str],
    array_delimiter: str,
) -> Row:
    if len(cells) != len(columns):
        problem = f"has {len(cells)} cells, the header has {len(columns)} columns"
        return Row(*where, None, problem)
    item = {
        column.name: _convert(cell, column.kind, array_delimiter)
        for column, cell in zip(columns, cells, strict=True)
    }
    return Row(*where, item)


def _convert(cell: str, kind: str, array_delimiter: str) -> Any:
    """Turns a CSV cell into the JSON value of a field of that kind.

    A cell that does not convert is kept as text, so that validation names
    the field and the expected type.
    """
    if cell == "":
        return None
    if kind == "integer":
        return _or_text(int, cell)
    if kind == "number":
        return _or_text(float, cell)
    if kind == "boolean":
        return _boolean(cell)
    if kind == "string[]":
        return _array(cell, array_delimiter)
    return cell


def _or_text(convert: Any, cell: str) -> Any:
    try:
        return convert(cell)
    except ValueError:
        return cell


def _boolean(cell: str) -> bool | str:
    word = cell.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return cell


def _array(cell: str, delimiter: str) -> Any:
    if cell.startswith("["):
        try:
            return orjson.loads(cell)
        except orjson.JSONDecodeError:
            return cell
    return [part.strip() for part in cell.split(delimiter)]
