"""Picklists: the "possible values" Sense offers for a field's dropdown."""

from __future__ import annotations

from typing import Any

import pydantic
from pydantic import StrictBool, StrictFloat, StrictInt, StrictStr

from relay import entities, errors


class PossibleValue(pydantic.BaseModel):
    """One dropdown option, as Sense's "Update possible values" takes it."""

    model_config = pydantic.ConfigDict(extra="forbid")

    label: StrictStr
    value: StrictStr | StrictInt | StrictFloat | StrictBool


class InvalidPicklist(errors.RelayError):
    """A picklist relay will not send; ``problems`` says where and why."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(problems)} problem(s) in the picklist")
        self.problems = problems


_values = pydantic.TypeAdapter(list[PossibleValue])


def check_field(entity_type: entities.EntityType, field: str) -> None:
    """Raises InvalidPicklist unless ``field`` is a field of the entity type."""
    if field not in entity_type.fields:
        message = f"is not a field of {entity_type.path}"
        raise InvalidPicklist([{"index": None, "field": field, "message": message}])


def validate(items: Any) -> list[dict[str, Any]]:
    """Returns the options as Sense takes them, or raises InvalidPicklist."""
    try:
        values = _values.validate_python(items)
    except pydantic.ValidationError as exc:
        raise InvalidPicklist([_problem(error) for error in exc.errors()]) from None
    return [value.model_dump() for value in values]


def _problem(error: Any) -> dict[str, Any]:
    location = list(error["loc"])
    index = location.pop(0) if location and isinstance(location[0], int) else None
    field = ".".join(str(part) for part in location) or None
    return {"index": index, "field": field, "message": error["msg"]}
