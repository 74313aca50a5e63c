"""Never a double booking: many clients race for one slot against a live server.

Each round fires N simultaneous ``$book-slot`` requests (released together by a barrier)
for one slot, each for a different patient; exactly one may win (201), the rest must get
409, none a 5xx, and the database must hold one active appointment for the slot. Every
round uses a different slot so rounds do not influence each other.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests
from django.db import connection

from fhir_api.models import ApiClient
from scheduling.models import INACTIVE_APPOINTMENT_STATUSES, Appointment, IdempotencyKey, Schedule
from tests.factories import OrganizationFactory, PatientFactory, ScheduleFactory, _next_monday_9

SLOT = timedelta(minutes=15)


class Race:
    """A pool of N threads, each with its own HTTP session, fired together per round."""

    def __init__(self, base_url: str, token: str, size: int) -> None:
        self.base_url = base_url
        self.size = size
        self.pool = ThreadPoolExecutor(max_workers=size)
        self.local = threading.local()
        self.token = token

    def _session(self) -> requests.Session:
        session = getattr(self.local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update(
                {
                    "Authorization": f"Bearer {self.token}",
                    "Content-Type": "application/fhir+json",
                    "Accept": "application/fhir+json",
                }
            )
            self.local.session = session
        return session

    def fire(self, requests_: list[tuple[str, dict[str, Any], dict[str, str]]]) -> list[Any]:
        """POST all requests at once; returns (status, json body) per request."""
        barrier = threading.Barrier(len(requests_))

        def one(item: tuple[str, dict[str, Any], dict[str, str]]) -> tuple[int, Any]:
            path, body, headers = item
            session = self._session()
            barrier.wait(timeout=30)
            response = session.post(self.base_url + path, json=body, headers=headers, timeout=60)
            try:
                payload = response.json()
            except ValueError:
                payload = response.text
            return response.status_code, payload

        return list(self.pool.map(one, requests_))

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def _body(schedule: Schedule, start: datetime) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "start", "valueDateTime": start.isoformat()},
            {"name": "schedule", "valueString": schedule.fhir_id},
            {"name": "practitionerRole", "valueString": schedule.practitioner_role.fhir_id},
            {"name": "status", "valueString": "booked"},
        ],
    }


@pytest.fixture
def race_setup(
    live_server: Any, make_api_client: Callable[..., tuple[ApiClient, str]]
) -> Iterator[Callable[[int, int], tuple[Race, Schedule, list[str], str]]]:
    races: list[Race] = []

    def make(rounds: int, size: int) -> tuple[Race, Schedule, list[str], str]:
        org = OrganizationFactory(id="race-clinic")
        start = _next_monday_9()
        schedule = ScheduleFactory(
            organization=org,
            fhir_id="race",
            planning_start=start,
            planning_end=start + SLOT * (rounds + 1),
        )
        patients = [
            PatientFactory(organization=org, fhir_id=f"racer-{i}").fhir_id for i in range(size)
        ]
        _, token = make_api_client(org)
        race = Race(live_server.url, token, size)
        races.append(race)
        return (
            race,
            schedule,
            patients,
            f"/v2/{org.id}/fhir/R4/Patient/{{pid}}/Appointment/$book-slot",
        )

    yield make
    for race in races:
        race.close()


def _active_at(schedule: Schedule, start: datetime) -> int:
    return (
        Appointment.objects.filter(schedule=schedule, start=start)
        .exclude(status__in=INACTIVE_APPOINTMENT_STATUSES)
        .count()
    )


def run_rounds(
    setup: Callable[[int, int], tuple[Race, Schedule, list[str], str]], rounds: int, size: int
) -> None:
    race, schedule, patients, url = setup(rounds, size)
    for index in range(rounds):
        start = schedule.planning_start + SLOT * index
        body = _body(schedule, start)
        results = race.fire([(url.format(pid=pid), body, {}) for pid in patients])
        statuses = Counter(status for status, _ in results)
        unexpected = [(s, b) for s, b in results if s not in (201, 409)]
        assert not unexpected, f"round {index}: {unexpected[:3]}"
        assert statuses == {201: 1, 409: size - 1}, f"round {index}: {statuses}"
        for status, payload in results:
            if status == 409:
                assert payload["resourceType"] == "OperationOutcome"
                assert payload["issue"][0]["code"] == "conflict"
        assert _active_at(schedule, start) == 1, f"round {index}"
    assert Appointment.objects.filter(schedule=schedule).count() == rounds


def run_idempotent_repeats(
    setup: Callable[[int, int], tuple[Race, Schedule, list[str], str]], rounds: int, size: int
) -> None:
    """The same request with the same key, sent N times at once: one booking, N answers."""
    race, schedule, patients, url = setup(rounds, size)
    for index in range(rounds):
        start = schedule.planning_start + SLOT * index
        path = url.format(pid=patients[0])
        key = {"Idempotency-Key": f"retry-{index}"}
        results = race.fire([(path, _body(schedule, start), key)] * size)
        assert {status for status, _ in results} == {201}, results[:3]
        assert len({payload["id"] for _, payload in results}) == 1
        assert _active_at(schedule, start) == 1
    assert IdempotencyKey.objects.count() == rounds


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_no_double_booking_postgres(
    race_setup: Callable[[int, int], tuple[Race, Schedule, list[str], str]],
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (run with DATABASE_URL=postgres://...)")
    run_rounds(race_setup, rounds=200, size=16)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_idempotent_concurrent_repeats_postgres(
    race_setup: Callable[[int, int], tuple[Race, Schedule, list[str], str]],
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (run with DATABASE_URL=postgres://...)")
    run_idempotent_repeats(race_setup, rounds=20, size=8)


# The short versions run on every database (SQLite: writers queue on IMMEDIATE transactions;
# a "database is locked" escaping would show up here as a 5xx).
@pytest.mark.django_db(transaction=True)
def test_no_double_booking(
    race_setup: Callable[[int, int], tuple[Race, Schedule, list[str], str]],
) -> None:
    run_rounds(race_setup, rounds=20, size=8)


@pytest.mark.django_db(transaction=True)
def test_idempotent_concurrent_repeats(
    race_setup: Callable[[int, int], tuple[Race, Schedule, list[str], str]],
) -> None:
    run_idempotent_repeats(race_setup, rounds=5, size=8)
