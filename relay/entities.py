"""The ten Sense entity types and the rules their records must follow.

The field table in ``sense_fields.json`` is transcribed from the vendor's API
reference (the "Upsert <Entity>" request schemas); ``tests/test_entities.py``
proves it still equals the reference, field by field.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from importlib import resources
from typing import Annotated, Any, NotRequired, Required, cast

import pydantic
from pydantic import (
    AfterValidator,
    BeforeValidator,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
)
from typing_extensions import TypedDict

# The order in which Sense asks a full sync to load entity types, so that a
# reference always lands after the record it points to ("Sync Operation").
DEPENDENCY_ORDER = (
    ("InternalUser", "internal-users"),
    ("Candidate", "candidates"),
    ("ClientContact", "client-contacts"),
    ("Company", "companies"),
    ("JobOrder", "job-orders"),
    ("Submission", "submissions"),
    ("Placement", "placements"),
    ("Lead", "leads"),
    ("Certification", "certifications"),
    ("Appointment", "appointments"),
)

# "ref" fields: primary keys of other entities, which Sense treats as strings.
REFERENCE_FIELD = re.compile(r"_id\d*$")


def _looks_like_a_date(value: str) -> bool:
    # Cheaper than a regular expression on the hot path; fromisoformat then
    # checks the digits and the calendar.
    return len(value) >= 10 and value[4] == "-" and value[7] == "-"


def _check_date(value: str) -> str:
    if len(value) != 10 or not _looks_like_a_date(value):
        raise ValueError("must be a date in the form YYYY-MM-DD")
    date.fromisoformat(value)
    return value


def _check_date_time(value: str) -> str:
    # Sense rejects a datetime it cannot parse as ISO 8601; its own examples
    # use offsets without a colon (2020-04-01T10:30:00+0000) and "Z".
    if len(value) < 13 or not _looks_like_a_date(value) or value[10] != "T":
        raise ValueError("must be an ISO 8601 date-time such as 2020-04-01T10:30:00Z")
    try:
        datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"is not a valid ISO 8601 date-time: {exc}") from None
    return value


def _check_date_or_date_time(value: str) -> str:
    if len(value) == 10:
        return _check_date(value)
    return _check_date_time(value)


def _id_as_string(value: Any) -> Any:
    # "All ids are treated as strings": an ATS may still send them as numbers.
    if type(value) is int:  # not bool, which is an int too
        return str(value)
    return value


def _check_not_empty(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    return value


Identifier = Annotated[
    StrictStr, BeforeValidator(_id_as_string), AfterValidator(_check_not_empty)
]
Reference = Annotated[StrictStr, BeforeValidator(_id_as_string)]
Date = Annotated[StrictStr, AfterValidator(_check_date)]
DateTime = Annotated[StrictStr, AfterValidator(_check_date_time)]
DateOrDateTime = Annotated[StrictStr, AfterValidator(_check_date_or_date_time)]

FIELD_TYPES: dict[str, Any] = {
    "string": StrictStr,
    "integer": StrictInt,
    "number": StrictFloat,
    "boolean": StrictBool,
    "string[]": list[StrictStr],
    "date": Date,
    "date-time": DateTime,
    "date|date-time": DateOrDateTime,
}
MAX_LENGTH = re.compile(r"^string\((\d+)\)$")


def _python_type(field: str, kind: str) -> Any:
    if REFERENCE_FIELD.search(field) and kind == "string":
        return Reference
    match = MAX_LENGTH.match(kind)
    if match:
        return Annotated[StrictStr, StringConstraints(max_length=int(match.group(1)))]
    return FIELD_TYPES[kind]


def _schema(name: str, fields: dict[str, str]) -> type[dict[str, Any]]:
    # A TypedDict rather than a BaseModel: pydantic then validates only the
    # fields present, instead of filling up to 185 defaults per record, which
    # makes validation about three times faster on typical ATS hooks.
    annotations: dict[str, Any] = {
        field: NotRequired[_python_type(field, kind) | None]
        for field, kind in fields.items()
        if kind != "id"
    }
    annotations["id"] = Required[Identifier]
    make_typed_dict: Any = TypedDict  # built at run time from the field table
    schema = make_typed_dict(name, annotations, total=False)
    schema.__pydantic_config__ = pydantic.ConfigDict(extra="forbid")
    return cast(type[dict[str, Any]], schema)


@dataclass(frozen=True)
class EntityType:
    """One kind of record Sense accepts, named as in its API paths."""

    name: str
    path: str
    fields: dict[str, str]
    schema: type[dict[str, Any]]

    def __str__(self) -> str:
        return self.path


def _load() -> tuple[EntityType, ...]:
    text = resources.files("relay").joinpath("sense_fields.json").read_text("utf-8")
    table: dict[str, dict[str, str]] = json.loads(text)
    return tuple(
        EntityType(name, path, table[name], _schema(name, table[name]))
        for name, path in DEPENDENCY_ORDER
    )


ENTITY_TYPES = _load()
# Validated records list their fields in this order; a record assembled
# another way (a patch merged into a pending version) is put in it too, so
# that equal records are equal bytes and share a fingerprint.
_POSITIONS = {
    entity_type.path: {
        name: n for n, name in enumerate(entity_type.schema.__annotations__)
    }
    for entity_type in ENTITY_TYPES
}


def in_schema_order(path: str, fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` in the order validation gives them, for an entity path."""
    positions = _POSITIONS[path]
    return dict(sorted(fields.items(), key=lambda item: positions[item[0]]))


BY_PATH = {entity_type.path: entity_type for entity_type in ENTITY_TYPES}
PATHS = tuple(BY_PATH)
