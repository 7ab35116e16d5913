"""Sense's write-back sender, as ``relay sandbox --send-writebacks`` plays it.

It posts write-backs (from files, or generated samples of every type) to a
receiver the way Sense does: one POST per write-back with a bearer token in
the header or the query string, and a retry for any answer that is not a
2xx with an ``id`` (ENTITY_CREATE also needs an ``entity_id``). Sense does
not publish its retry schedule; the sandbox uses exponential backoff.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aiohttp
import orjson
import structlog

from relay.backoff import Backoff
from relay.writeback import ENTITY_CREATE, TYPES

log = structlog.get_logger("relay.sender")


@dataclass(frozen=True)
class SenderSettings:
    """Where and how the sandbox sends write-backs."""

    url: str
    token: str
    token_in: Literal["header", "query"] = "header"
    query_param: str = "token"
    max_attempts: int = 5
    retry_base_s: float = 1.0
    retry_cap_s: float = 30.0
    timeout_s: float = 30.0
    tls: ssl.SSLContext | None = None

    def __repr__(self) -> str:
        return f"SenderSettings(url={self.url!r}, token='[secure]')"


@dataclass(frozen=True)
class Sent:
    """What became of one write-back: the last answer and the attempts made."""

    id: str
    type: str
    acknowledged: bool
    attempts: int
    status: int | None
    answer: Any

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "acknowledged": self.acknowledged,
            "attempts": self.attempts,
            "status": self.status,
            "answer": self.answer,
        }


async def send_all(
    writebacks: Iterable[dict[str, Any]], settings: SenderSettings
) -> list[Sent]:
    """Sends write-backs one after another, each until acknowledged or given up."""
    async with aiohttp.ClientSession() as session:
        return [await send(session, w, settings) for w in writebacks]


async def send(
    session: aiohttp.ClientSession, writeback: dict[str, Any], settings: SenderSettings
) -> Sent:
    """Sends one write-back, retrying as Sense does."""
    backoff = Backoff(settings.retry_base_s, settings.retry_cap_s)
    status, answer = None, None
    for attempt in range(1, settings.max_attempts + 1):
        status, answer = await _post(session, writeback, settings)
        if _acknowledged(writeback, status, answer):
            log.info("sandbox_writeback_sent", writeback_id=writeback.get("id"))
            return _sent(writeback, True, attempt, status, answer)
        delay_s = backoff.delay_s(attempt)
        log.warning(
            "sandbox_writeback_retry_scheduled",
            writeback_id=writeback.get("id"),
            status=status,
            attempt=attempt,
            retry_in_s=round(delay_s, 3),
        )
        if attempt < settings.max_attempts:
            await asyncio.sleep(delay_s)
    return _sent(writeback, False, settings.max_attempts, status, answer)


async def _post(
    session: aiohttp.ClientSession, writeback: dict[str, Any], settings: SenderSettings
) -> tuple[int | None, Any]:
    headers = {"Content-Type": "application/json"}
    params = {}
    if settings.token_in == "header":
        headers["Authorization"] = f"Bearer {settings.token}"
    else:
        params[settings.query_param] = settings.token
    try:
        async with session.post(
            settings.url,
            data=orjson.dumps(writeback),
            headers=headers,
            params=params,
            ssl=settings.tls if settings.tls is not None else True,
            timeout=aiohttp.ClientTimeout(total=settings.timeout_s),
        ) as response:
            text = await response.text()
            return response.status, _json_or_text(text)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return None, f"no answer: {type(exc).__name__}"


def _acknowledged(writeback: dict[str, Any], status: int | None, answer: Any) -> bool:
    if status is None or not 200 <= status < 300 or not isinstance(answer, dict):
        return False
    if not answer.get("id"):
        return False
    return writeback.get("type") != ENTITY_CREATE or bool(answer.get("entity_id"))


def _sent(
    writeback: dict[str, Any],
    acknowledged: bool,
    attempts: int,
    status: int | None,
    answer: Any,
) -> Sent:
    return Sent(
        str(writeback.get("id")),
        str(writeback.get("type")),
        acknowledged,
        attempts,
        status,
        answer,
    )


def _json_or_text(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


# -- write-backs to send ----------------------------------------------------


def load(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Reads write-backs from files: a JSON object or array, or JSON Lines.

    Raises ValueError naming the file and line of anything unreadable.
    """
    writebacks: list[dict[str, Any]] = []
    for path in paths:
        writebacks.extend(_read(path))
    return writebacks


def _read(path: Path) -> list[dict[str, Any]]:
    text = path.read_text("utf-8")
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        parsed = [_line(path, n, line) for n, line in _lines(text)]
    items = parsed if isinstance(parsed, list) else [parsed]
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"{path}: item {index + 1} is not a JSON object")
    return items


def _lines(text: str) -> list[tuple[int, str]]:
    numbered = enumerate(text.splitlines(), start=1)
    return [(number, line) for number, line in numbered if line.strip()]


def _line(path: Path, number: int, line: str) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path}, line {number}: not valid JSON: {exc}") from None


def samples(types: Iterable[str] = TYPES) -> list[dict[str, Any]]:
    """One realistic write-back of each type, with fresh ids."""
    return [sample(type_name) for type_name in types]


def sample(type_name: str) -> dict[str, Any]:
    """A write-back of one type as Sense would send it, with a fresh id."""
    build = _SAMPLE_DATA.get(type_name, _generic)
    return {
        "id": f"wb-{uuid.uuid4().hex}",
        "type": type_name,
        "version": 1.1 if type_name.startswith("MESSAGING_") else 1.0,
        "created_date": _now(),
        "data": build(),
    }


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _entity(entity_type: str = "AE_CANDIDATE", entity_id: str = "123") -> Any:
    return {"id": entity_id, "type": entity_type}


def _actor(entity_type: str, entity_id: str, email: str, phone: str) -> Any:
    return {"entity": _entity(entity_type, entity_id), "email": email, "phone": phone}


CANDIDATE = _actor("AE_CANDIDATE", "123", "ada@example.com", "+1-555-010-0123")
RECRUITER = _actor(
    "AE_INTERNAL_USER", "7", "recruiter@agency.example", "+1-555-010-0007"
)


def _sms(direction: str = "outgoing") -> Any:
    incoming = direction == "incoming"
    return {
        "to": [RECRUITER if incoming else CANDIDATE],
        "from": CANDIDATE if incoming else RECRUITER,
        "body": "Are you available for a shift on Monday?",
        "date": _now(),
        "direction": direction,
        "mms_urls": [],
        "is_broadcast": False,
    }


def _email() -> Any:
    return {
        "to": [CANDIDATE],
        "from": RECRUITER,
        "reply-to": RECRUITER,
        "bcc": [],
        "cc": [],
        "date": _now(),
        "direction": "outgoing",
        "is_alert_email": False,
        "subject": "How was your first week?",
        "body": "Hi Ada, how is the new placement going?",
        "mms_urls": [],
    }


def _meta(event_type: str) -> Any:
    return {
        "event": {"id": "evt-1", "type": event_type},
        "journey": {"id": "j-1", "name": "First week check-in"},
        "touchpoint": {"id": "t-1", "name": "Day 5", "type": "survey"},
    }


def _common(summary: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "user_defined_data": {"note_type": "Sense"},
        "associated_entities": [_entity()],
    }


def _engage_sent() -> Any:
    return {
        **_common("Sent the first week check-in"),
        "sms": [_sms()],
        "email": [_email()],
        "sense_meta_data": _meta("engage_sent_event"),
    }


def _engage_response() -> Any:
    response = {"question": "How was your first week?", "response": "Great"}
    return {**_engage_sent(), "survey_responses": [response]}


def _messaging(direction: str) -> Any:
    data = {
        **_common("Text message"),
        "sms": [_sms(direction)],
        "sense_meta_data": {"event": {"id": "evt-2", "type": "messaging_message"}},
    }
    if direction == "outgoing":
        data["is_broadcast"] = False
    return data


def _digest() -> Any:
    return {
        **_common("3 messages today"),
        "sms": [_sms(), _sms("incoming")],
        "sense_meta_data": {"event": {"id": "evt-3", "type": "messaging_digest"}},
    }


def _chatbot() -> Any:
    bot = {"sender": None, "is_bot": True, "message": "Hi!", "date": _now()}
    human = {"sender": _entity(), "is_bot": False, "message": "Hi", "date": _now()}
    return {
        "summary": "Chatbot screening completed",
        "subject": _entity(),
        "conversation": [bot, human],
        "user_defined_data": {},
        "entity": "AE_CANDIDATE",
    }


def _fields() -> list[Any]:
    return [
        {"name": "first_name", "value": "Ada"},
        {"name": "email", "value": "ada@example.com"},
    ]


def _create() -> Any:
    return {
        "entity_type": "AE_CANDIDATE",
        "fields": _fields(),
        "user_defined_data": {},
        "associated_entities": [],
        "sense_meta_data": {},
    }


def _update() -> Any:
    return {
        "entity": _entity(),
        "fields": _fields(),
        "user_defined_data": {},
        "associated_entities": [],
        "sense_meta_data": {},
    }


def _delete() -> Any:
    return {"entity": _entity(), "user_defined_data": {}, "sense_meta_data": {}}


def _generic() -> Any:
    return {
        **_common("Something happened in Sense"),
        "subject": _entity(),
        "sense_meta_data": {"event": {"id": "evt-4", "type": "generic"}},
    }


_SAMPLE_DATA = {
    "ENGAGE_SENT_EVENT": _engage_sent,
    "ENGAGE_EVENT_RESPONSE": _engage_response,
    "MESSAGING_INCOMING_MESSAGE": lambda: _messaging("incoming"),
    "MESSAGING_OUTGOING_MESSAGE": lambda: _messaging("outgoing"),
    "MESSAGING_DIGEST": _digest,
    "CHATBOT_RESPONSE_SUMMARY": _chatbot,
    ENTITY_CREATE: _create,
    "ENTITY_UPDATE": _update,
    "ENTITY_DELETE": _delete,
    "GENERIC_EVENT": _generic,
}
