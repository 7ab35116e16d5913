"""Realistic candidate hooks, as an ATS posts them, built from templates.

A template is a hook body whose record ids are the placeholder ``@ID@``; the
load generators (wrk's Lua script and ``load.post_backlog``) put a fresh id
in each, so that no record coalesces with another and every one is stored.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from relay import entities

ID_PLACEHOLDER = "@ID@"
QUOTED_PLACEHOLDER = f'"{ID_PLACEHOLDER}"'.encode()

FIRST_NAMES = ("Ada", "Grace", "Linus", "Alan", "Margaret", "Edsger", "Barbara")
LAST_NAMES = ("Lovelace", "Hopper", "Torvalds", "Turing", "Hamilton", "Liskov")
CITIES = (
    ("Austin", "TX", "78701"),
    ("Denver", "CO", "80202"),
    ("Boston", "MA", "02108"),
    ("Seattle", "WA", "98101"),
    ("Chicago", "IL", "60601"),
)
STATUSES = ("Active", "Placed", "Interviewing", "Inactive", "New Lead")
SOURCES = ("LinkedIn", "Referral", "Job board", "Career site", "Agency")
TITLES = ("Registered Nurse", "Welder", "Data Analyst", "Forklift Operator")
SKILLS = ("python", "sql", "welding", "triage", "excel", "forklift", "spanish")


def _core_fields(rng: random.Random) -> dict[str, Any]:
    """The fields every ATS sends: 14 with the id."""
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    city, state, zipcode = rng.choice(CITIES)
    return {
        "id": ID_PLACEHOLDER,
        "first_name": first,
        "last_name": last,
        "email": f"{first}.{last}{rng.randrange(10_000)}@example.com".lower(),
        "mobile_phone": _phone(rng),
        "status": rng.choice(STATUSES),
        "source": rng.choice(SOURCES),
        "date_added": _date_time(rng, 2019),
        "date_last_modified": _date_time(rng, 2025),
        "address1": f"{rng.randrange(1, 9_999)} {rng.choice(LAST_NAMES)} Street",
        "city": city,
        "state": state,
        "zipcode": zipcode,
        "country": "US",
    }


def _optional_fields(rng: random.Random) -> dict[str, Any]:
    """Fields some ATS records have: up to 11 more, each half of the time."""
    makers: dict[str, Callable[[], Any]] = {
        "home_phone": lambda: _phone(rng),
        "work_phone": lambda: _phone(rng),
        "email2": lambda: f"candidate{rng.randrange(100_000)}@example.org",
        "title": lambda: rng.choice(TITLES),
        "date_of_birth": lambda: f"19{rng.randrange(60, 99)}-0{rng.randrange(1, 9)}-15",
        "skills": lambda: rng.sample(SKILLS, rng.randrange(1, 5)),
        "internal_user_id": lambda: f"user-{rng.randrange(200)}",
        "custom_text1": lambda: f"Shift preference: {rng.choice(('day', 'night'))}",
        "custom_date1": lambda: f"2026-0{rng.randrange(1, 9)}-01",
        "opt_out_email": lambda: rng.random() < 0.1,
        "is_archived": lambda: False,
    }
    return {name: make() for name, make in makers.items() if rng.random() < 0.5}


def _phone(rng: random.Random) -> str:
    return f"+1-555-{rng.randrange(100, 999)}-{rng.randrange(1_000, 9_999)}"


def _date_time(rng: random.Random, year: int) -> str:
    month, day, hour = rng.randrange(1, 12), rng.randrange(1, 28), rng.randrange(24)
    return f"{year}-{month:02d}-{day:02d}T{hour:02d}:30:00+0000"


def candidate(rng: random.Random) -> dict[str, Any]:
    """One candidate of 14 to 25 fields, its id still the placeholder."""
    return {**_core_fields(rng), **_optional_fields(rng)}


def hook_templates(records_per_hook: int, hooks: int, seed: int = 7) -> list[bytes]:
    """Distinct hook bodies; a hook of one record is an object, else an array."""
    rng = random.Random(seed)
    templates = []
    for _ in range(hooks):
        records = [candidate(rng) for _ in range(records_per_hook)]
        body = records[0] if records_per_hook == 1 else records
        templates.append(orjson.dumps(body))
    return templates


def fill(template: bytes, ids: Iterator[str]) -> bytes:
    """The template with each placeholder replaced by the next id."""
    parts = template.split(QUOTED_PLACEHOLDER)
    out = [parts[0]]
    for part in parts[1:]:
        out.append(orjson.dumps(next(ids)))
        out.append(part)
    return b"".join(out)


def _check_field_names() -> None:
    # Keep the generator honest: relay refuses any field Sense does not know.
    rng = random.Random(0)
    used: set[str] = set().union(*(candidate(rng) for _ in range(100)))
    unknown = used - set(entities.BY_PATH["candidates"].fields)
    assert not unknown, f"not Candidate fields: {sorted(unknown)}"


_check_field_names()
