"""The entity schemas equal the vendor's reference, and enforce its types."""

from __future__ import annotations

import typing
from typing import Any

import pytest

from relay import entities, records
from tests import reference

REFERENCE = reference.entity_fields()


def test_the_reference_lists_1324_fields_across_ten_entity_types() -> None:
    assert len(REFERENCE) == 10
    assert sum(len(fields) for fields in REFERENCE.values()) == 1324


@pytest.mark.parametrize("entity_type", entities.ENTITY_TYPES, ids=str)
def test_field_names_and_types_equal_the_text_reference(
    entity_type: entities.EntityType,
) -> None:
    assert entity_type.fields == REFERENCE[entity_type.name]


@pytest.mark.parametrize("entity_type", entities.ENTITY_TYPES, ids=str)
def test_the_schema_validates_every_field_the_reference_lists(
    entity_type: entities.EntityType,
) -> None:
    declared = typing.get_type_hints(entity_type.schema)

    assert set(declared) == set(REFERENCE[entity_type.name])


def test_the_openapi_copy_agrees_with_the_text_reference() -> None:
    assert reference.openapi_fields() == REFERENCE


def test_the_seven_unnamed_date_fields_are_named_from_the_samples() -> None:
    either = {
        name: sorted(f for f, kind in fields.items() if kind == "date|date-time")
        for name, fields in REFERENCE.items()
    }

    assert {name: fields for name, fields in either.items() if fields} == {
        "JobOrder": ["date_end", "date_start"],
        "Placement": ["date_end", "date_start"],
        "Submission": ["date_application", "date_end", "date_start"],
    }


def _validate(path: str, **fields: Any) -> dict[str, Any]:
    import orjson

    [record] = records.validate(entities.BY_PATH[path], [{"id": "1", **fields}])
    return dict(orjson.loads(record.body))


def _problems(path: str, **fields: Any) -> list[tuple[str | None, str]]:
    with pytest.raises(records.InvalidRecords) as caught:
        records.validate(entities.BY_PATH[path], [{"id": "1", **fields}])
    return [(p.field, p.message) for p in caught.value.problems]


@pytest.mark.parametrize(
    "value",
    [
        "2020-04-01T10:30:00+0000",
        "2020-04-01T10:30:00-0700",
        "2019-08-24T14:15:22Z",
        "2020-04-01T10:30:00.123+00:00",
        "2020-04-01T10:30",
    ],
)
def test_iso_8601_date_times_from_the_reference_pass(value: str) -> None:
    assert _validate("candidates", custom_datetime1=value)["custom_datetime1"] == value


@pytest.mark.parametrize(
    "value",
    [
        "2020-04-01",
        "01/04/2020 10:30",
        "2020-04-31T10:00:00Z",
        "yesterday",
        "2020-04-01T25:00:00Z",
    ],
)
def test_unparseable_date_times_are_refused(value: str) -> None:
    [(field, _)] = _problems("candidates", custom_datetime1=value)

    assert field == "custom_datetime1"


@pytest.mark.parametrize("value", ["2020-04-01", "2020-04-01T10:30:00+0000"])
def test_date_or_date_time_fields_take_either(value: str) -> None:
    assert _validate("placements", date_start=value)["date_start"] == value


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("custom_integer1", 1.5),
        ("custom_integer1", True),
        ("custom_float1", "1.0"),
        ("is_deleted", "yes"),
        ("custom_array1", "a,b"),
        ("custom_array1", [1]),
        ("custom_date1", "2020-02-30"),
        ("first_name", 7),
    ],
)
def test_values_of_the_wrong_type_are_refused(field: str, value: Any) -> None:
    [(reported, _)] = _problems("candidates", **{field: value})

    assert reported.split(".")[0] == field


def test_ids_and_references_sent_as_numbers_travel_as_strings() -> None:
    sent = _validate("placements", candidate_id=42, internal_user_id2=7)

    assert sent == {"id": "1", "candidate_id": "42", "internal_user_id2": "7"}


def test_only_the_fields_sent_are_forwarded_and_nulls_are_kept() -> None:
    assert _validate("candidates", email=None) == {"id": "1", "email": None}


@pytest.mark.parametrize("value", ["", None, True])
def test_a_record_needs_a_non_empty_id(value: Any) -> None:
    with pytest.raises(records.InvalidRecords) as caught:
        records.validate(entities.BY_PATH["leads"], [{"id": value}])

    assert [p.field for p in caught.value.problems] == ["id"]


def test_a_description_over_the_documented_length_is_refused() -> None:
    [(field, _)] = _problems("job-orders", description="x" * 1_500_001)

    assert field == "description"
