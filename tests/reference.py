"""Reads the entity schemas out of the vendor's text reference.

The text rendering drops the names of the fields that take "a date or a
date-time" (their type line has no name line above it). Those names are taken
from the same section's request sample, which lists every field by name.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference"
API_TEXT = REFERENCE_DIR / "sense-api.txt"
OPENAPI = REFERENCE_DIR / "sense-openapi.json"

TYPES = {
    "string non-empty": "id",
    "string or null": "string",
    "integer or null": "integer",
    "number or null": "number",
    "boolean or null": "boolean",
    "Array of strings or null": "string[]",
    "string or null <date>": "date",
    "string or null <date-time>": "date-time",
    "(string or null) or (string or null)": "date|date-time",
}
MAX_LENGTH = re.compile(r"^string or null <= (\d+) characters$")
UPSERT = re.compile(r"^Upsert (\w+)$")
SAMPLE_FIELD = re.compile(r'^\s*• "(\w+)":')


def _type_of(line: str) -> str | None:
    if line in TYPES:
        return TYPES[line]
    match = MAX_LENGTH.match(line)
    return f"string({match.group(1)})" if match else None


def _fields(lines: list[str], start: int) -> tuple[list[tuple[str | None, str]], int]:
    fields: list[tuple[str | None, str]] = []
    name: str | None = None
    index = start
    while lines[index] != "Responses":
        line = lines[index]
        kind = _type_of(line)
        if kind is not None:
            fields.append((name, kind))
            name = None
        elif (
            line
            and line != "required"
            and (_type_of(lines[index + 1]) or lines[index + 1] == "required")
        ):
            name = line
        index += 1
    return fields, index


def _sample_names(lines: list[str], start: int) -> list[str]:
    """Field names of the first request sample after ``start``."""
    index = lines.index("Request samples", start)
    names = []
    for line in lines[index:]:
        if line == "Response samples":
            break
        match = SAMPLE_FIELD.match(line)
        if match:
            names.append(match.group(1))
    return names


def entity_fields() -> dict[str, dict[str, str]]:
    """Returns {entity name: {field name: type}} as the text reference gives it."""
    lines = API_TEXT.read_text(encoding="utf-8").split("\n")
    entities: dict[str, dict[str, str]] = {}
    for index, line in enumerate(lines):
        match = UPSERT.match(line)
        if not match:
            continue
        first = lines.index("Array ([ 1 .. 500 ] items)", index) + 1
        fields, end = _fields(lines, first)
        named = {name: kind for name, kind in fields if name}
        unnamed = [kind for name, kind in fields if not name]
        update = lines.index(f"Update {match.group(1)}", end)
        missing = [n for n in _sample_names(lines, update) if n not in named]
        assert len(missing) == len(unnamed), (match.group(1), missing, unnamed)
        named.update(zip(missing, unnamed, strict=True))
        entities[match.group(1)] = named
    return entities


def openapi_fields() -> dict[str, dict[str, str]]:
    """The same table read from the third-party OpenAPI copy, for comparison."""
    schemas = json.loads(OPENAPI.read_text(encoding="utf-8"))["components"]["schemas"]
    return {
        name: {
            field: _openapi_type(spec) for field, spec in schema["properties"].items()
        }
        for name, schema in schemas.items()
        if "required" in schema and "id" in schema["properties"]
    }


def _openapi_type(spec: dict[str, object]) -> str:
    if "anyOf" in spec:
        return "date|date-time"
    if spec.get("type") == "array":
        return "string[]"
    if "minLength" in spec:
        return "id"
    if "maxLength" in spec:
        return f"string({spec['maxLength']})"
    return str(spec.get("format") or spec["type"])
