"""Turning what an ATS sent into validated records ready for the outbox."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pydantic

from relay import entities, errors


@dataclass(frozen=True, slots=True)
class Record:
    """One validated entity, holding only the fields the ATS sent.

    ``kind`` is "upsert" for a whole entity (Sense's POST) or "patch" for a
    partial one (Sense's PATCH: only the fields present change).
    """

    entity_type: str
    record_id: str
    body: bytes
    kind: str = "upsert"


@dataclass(frozen=True, slots=True)
class Problem:
    """Why one record of a request was refused."""

    index: int
    id: str | None
    field: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "id": self.id,
            "field": self.field,
            "message": self.message,
        }


class InvalidRecords(errors.RelayError):
    """At least one record broke Sense's schema; carries every problem found."""

    def __init__(self, problems: list[Problem], submitted: int) -> None:
        super().__init__(f"{len(problems)} problem(s) in the submitted records")
        self.problems = problems
        self.submitted = submitted


class UnreadableBody(errors.RelayError):
    """A body that is not one entity object or an array of them, or too long."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check(
    entity_type: entities.EntityType, body: bytes, max_records: int
) -> list[Record]:
    """The records of a hook body, validated; raises if anything is wrong."""
    return validate(entity_type, parse(body, max_records))


def parse(body: bytes, max_records: int) -> list[Any]:
    """The items of a JSON body holding one entity object or an array of them."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UnreadableBody(400, f"body is not valid JSON: {exc}") from None
    items = [parsed] if isinstance(parsed, dict) else parsed
    if not isinstance(items, list):
        raise UnreadableBody(400, "body must be an entity object or an array")
    if not items:
        raise UnreadableBody(400, "body holds no records")
    if len(items) > max_records:
        raise UnreadableBody(
            413, f"{len(items)} records in one request; the limit is {max_records}"
        )
    return items


def validate(entity_type: entities.EntityType, items: list[Any]) -> list[Record]:
    """Validates every item, raising InvalidRecords listing all problems at once."""
    adapter = _adapters[entity_type.path]
    try:
        valid = adapter.validate_python(items)
    except pydantic.ValidationError as exc:
        raise InvalidRecords(_problems(items, exc), len(items)) from None

    # Only the fields the ATS sent are kept: an absent field must not become
    # a null that would erase the value Sense already holds.
    return [
        Record(entity_type.path, fields["id"], _exact(orjson.dumps(fields)))
        for fields in valid
    ]


def _exact(body: bytes) -> bytes:
    # orjson's result can keep a buffer several times its length; a record
    # may wait in memory until its commit, so keep only the bytes it needs.
    return memoryview(body).tobytes()


def _problems(items: list[Any], exc: pydantic.ValidationError) -> list[Problem]:
    problems = []
    for error in exc.errors(include_url=False):
        location = error["loc"]
        index = int(location[0])
        field = ".".join(str(part) for part in location[1:]) or None
        problems.append(Problem(index, raw_id(items[index]), field, _message(error)))
    return problems


def _message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "is not a field of this entity type; Sense rejects unknown fields"
    if error["type"] == "missing":
        return "is required"
    message: str = error["msg"]
    return message.removeprefix("Value error, ")


def raw_id(item: Any) -> str | None:
    """The id an item was sent with, as a string, if it has a usable one."""
    if isinstance(item, dict):
        value = item.get("id")
        if isinstance(value, str | int) and not isinstance(value, bool):
            return str(value)
    return None


def _adapter(schema: type[dict[str, Any]]) -> pydantic.TypeAdapter[list[Any]]:
    return pydantic.TypeAdapter(list[schema])  # type: ignore[valid-type]


_adapters = {
    entity_type.path: _adapter(entity_type.schema)
    for entity_type in entities.ENTITY_TYPES
}
