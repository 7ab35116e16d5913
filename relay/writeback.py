"""Write-backs: what Sense pushes to the agency, and the shape it must have.

The reference ("Write-back API Specification") defines an envelope (``id``,
``type``, ``version``, ``created_date``, ``data``) and, per type, the objects
inside ``data``. Validation is lenient where the reference is loose: unknown
fields are kept (minor versions add fields without notice), an unknown type
or a new major version is stored with only its envelope checked, and entity
types are not held to the reference's list, which lacks leads. The body is
kept exactly as received: it is what the ATS is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import orjson
import pydantic
from pydantic import AfterValidator, Field, PlainValidator, StrictBool, StrictStr

from relay import errors

ENTITY_CREATE = "ENTITY_CREATE"
TYPES = (
    "ENGAGE_SENT_EVENT",
    "ENGAGE_EVENT_RESPONSE",
    "MESSAGING_INCOMING_MESSAGE",
    "MESSAGING_OUTGOING_MESSAGE",
    "MESSAGING_DIGEST",
    "CHATBOT_RESPONSE_SUMMARY",
    ENTITY_CREATE,
    "ENTITY_UPDATE",
    "ENTITY_DELETE",
    "GENERIC_EVENT",
)
# Metrics label every type Sense may invent later with this one value.
UNKNOWN_TYPE = "unknown"
# Majors from 2 on are "reserved for breaking changes": their data may not
# follow the shapes below, so only the envelope is checked.
KNOWN_MAJOR_VERSION = 1


@dataclass(frozen=True, slots=True)
class WriteBack:
    """One validated write-back, with its body exactly as Sense sent it.

    ``subject`` names the entity it is about (``AE_CANDIDATE/123``): the ATS
    receives the write-backs of one subject oldest first.
    """

    id: str
    type: str
    subject: str
    body: bytes

    @property
    def type_label(self) -> str:
        return self.type if self.type in TYPES else UNKNOWN_TYPE


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a write-back was refused: the field (dotted path) and the reason."""

    field: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "message": self.message}

    def __str__(self) -> str:
        return f"{self.field} ({self.message})" if self.field else self.message


class InvalidWriteBack(errors.RelayError):
    """The body is not a write-back relay can store; carries every problem."""

    def __init__(self, problems: list[Problem], type_label: str) -> None:
        if all(problem.field for problem in problems):
            fields = ", ".join(map(str, problems))
            super().__init__(f"unable to store because of field {fields}")
        else:
            reasons = "; ".join(map(str, problems))
            super().__init__(f"unable to store: {reasons}")
        self.problems = problems
        self.type_label = type_label


def _identifier(value: Any) -> str:
    # "All ids are treated as strings": a number is taken as its digits.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("must be a string")
    text = str(value).strip()
    if not text:
        raise ValueError("must not be empty")
    return text


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _date_time(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date-time string")
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            "must be an ISO 8601 date-time such as 2018-12-18T03:33:46+00:00"
        ) from None
    return value


def _optional_date_time(value: Any) -> str:
    # The reference's templates leave dates empty (""): take that as unknown.
    return value if value == "" else _date_time(value)


def _version(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("must be a number such as 1.0")
    try:
        number = float(value)
    except ValueError:
        raise ValueError("must be a number such as 1.0") from None
    if not number > 0:
        raise ValueError("must be greater than 0")
    return number


def _direction(value: str) -> str:
    if value.lower() not in ("incoming", "outgoing"):
        raise ValueError("must be 'incoming' or 'outgoing'")
    return value


Identifier = Annotated[str, PlainValidator(_identifier)]
Name = Annotated[StrictStr, AfterValidator(_non_empty)]
DateTime = Annotated[str, PlainValidator(_date_time)]
MessageDate = Annotated[str, PlainValidator(_optional_date_time)]
Version = Annotated[float, PlainValidator(_version)]
Direction = Annotated[StrictStr, AfterValidator(_direction)]
Text = StrictStr | None


class _Object(pydantic.BaseModel):
    # Unknown fields are kept: minor versions add them without notice.
    model_config = pydantic.ConfigDict(extra="allow", populate_by_name=True)


class EntityObject(_Object):
    id: Identifier
    type: Name


class ActorObject(_Object):
    entity: EntityObject | None = None
    email: Text = None
    phone: Text = None


class SmsObject(_Object):
    to: list[ActorObject] | None = None
    sender: ActorObject | None = Field(None, alias="from")
    body: Text = None
    date: MessageDate | None = None
    direction: Direction | None = None
    mms_urls: list[StrictStr] | None = None
    is_broadcast: StrictBool | None = None


class EmailObject(_Object):
    to: list[ActorObject] | None = None
    sender: ActorObject | None = Field(None, alias="from")
    reply_to: ActorObject | None = Field(None, alias="reply-to")
    bcc: list[ActorObject] | None = None
    cc: list[ActorObject] | None = None
    date: MessageDate | None = None
    direction: Direction | None = None
    is_alert_email: StrictBool | None = None
    subject: Text = None
    body: Text = None
    mms_urls: list[StrictStr] | None = None


class FieldObject(_Object):
    name: Name
    value: Any = None


class ConversationObject(_Object):
    sender: EntityObject | None = None
    is_bot: StrictBool | None = None
    message: Text = None
    date: MessageDate | None = None


class SurveyResponse(_Object):
    question: Text = None
    response: Any = None


class _Data(_Object):
    summary: Text = None
    user_defined_data: dict[str, Any] | None = None
    associated_entities: list[EntityObject] | None = None
    sense_meta_data: dict[str, Any] | None = None


class MessagesData(_Data):
    sms: list[SmsObject] | None = None
    email: list[EmailObject] | None = None


class EngageResponseData(MessagesData):
    survey_responses: list[SurveyResponse] | None = None


class OutgoingMessageData(MessagesData):
    is_broadcast: StrictBool | None = None


class ChatbotData(_Data):
    subject: EntityObject | None = None
    conversation: list[ConversationObject] | None = None
    entity: Text = None  # the entity type of the chatbot flow


class EntityCreateData(_Data):
    entity_type: Name
    fields: list[FieldObject]


class EntityUpdateData(_Data):
    entity: EntityObject
    fields: list[FieldObject]


class EntityDeleteData(_Data):
    entity: EntityObject


class GenericData(_Data):
    subject: EntityObject | None = None


class Envelope(_Object):
    id: Identifier
    type: Name
    version: Version
    created_date: DateTime
    data: dict[str, Any]


DATA_SHAPES: dict[str, type[_Data]] = {
    "ENGAGE_SENT_EVENT": MessagesData,
    "ENGAGE_EVENT_RESPONSE": EngageResponseData,
    "MESSAGING_INCOMING_MESSAGE": MessagesData,
    "MESSAGING_OUTGOING_MESSAGE": OutgoingMessageData,
    "MESSAGING_DIGEST": MessagesData,
    "CHATBOT_RESPONSE_SUMMARY": ChatbotData,
    ENTITY_CREATE: EntityCreateData,
    "ENTITY_UPDATE": EntityUpdateData,
    "ENTITY_DELETE": EntityDeleteData,
    "GENERIC_EVENT": GenericData,
}


def parse(body: bytes) -> WriteBack:
    """Validates one write-back body; raises InvalidWriteBack naming each field."""
    try:
        fields = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        problem = Problem(None, f"not valid JSON: {exc}")
        raise InvalidWriteBack([problem], UNKNOWN_TYPE) from None
    if not isinstance(fields, dict):
        problem = Problem(None, "the body must be one write-back, a JSON object")
        raise InvalidWriteBack([problem], UNKNOWN_TYPE)

    envelope = _checked(fields)

    return WriteBack(
        envelope.id, envelope.type, subject_of(envelope.id, envelope.data), body
    )


def _checked(fields: dict[str, Any]) -> Envelope:
    type_name = fields.get("type")
    label = type_name if type_name in TYPES else UNKNOWN_TYPE
    problems: list[Problem] = []
    envelope = None
    try:
        envelope = Envelope.model_validate(fields)
    except pydantic.ValidationError as exc:
        problems += _problems(exc)
    shape = DATA_SHAPES.get(str(type_name))
    data = fields.get("data")
    if shape is not None and isinstance(data, dict) and _major(fields) <= 1:
        try:
            shape.model_validate(data)
        except pydantic.ValidationError as exc:
            problems += _problems(exc, prefix="data.")
    if problems or envelope is None:
        raise InvalidWriteBack(problems, label)
    return envelope


def _major(fields: dict[str, Any]) -> int:
    try:
        return int(_version(fields.get("version")))
    except ValueError:
        return KNOWN_MAJOR_VERSION


def subject_of(writeback_id: str, data: dict[str, Any]) -> str:
    """The entity a write-back is about, or the write-back itself if none.

    ``data.entity``, else ``data.subject``, else the first of
    ``data.associated_entities``.
    """
    associated = data.get("associated_entities")
    candidates = [data.get("entity"), data.get("subject")]
    if isinstance(associated, list) and associated:
        candidates.append(associated[0])
    for entity in candidates:
        if isinstance(entity, dict) and entity.get("id") not in (None, ""):
            return f"{entity.get('type') or 'entity'}/{entity['id']}"
    return f"writeback/{writeback_id}"


def _problems(exc: pydantic.ValidationError, prefix: str = "") -> list[Problem]:
    return [
        Problem(prefix + ".".join(str(part) for part in error["loc"]), _message(error))
        for error in exc.errors(include_url=False)
    ]


def _message(error: Any) -> str:
    if error["type"] == "missing":
        return "is required"
    message: str = error["msg"]
    return message.removeprefix("Value error, ")
