"""$book-slot takes the references a Slot and a Schedule give, as well as bare ids."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from rest_framework.test import APIClient

from tests.api_helpers import assert_outcome, url
from tests.factories import PatientFactory, ScheduleFactory

AMS = ZoneInfo("Europe/Amsterdam")


def _body(schedule: str, role: str, minute: int) -> dict[str, Any]:
    start = datetime(2030, 6, 3, 9, minute, tzinfo=AMS).isoformat()
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "start", "valueDateTime": start},
            {"name": "schedule", "valueString": schedule},
            {"name": "practitionerRole", "valueString": role},
            {"name": "status", "valueString": "booked"},
        ],
    }


@pytest.fixture
def setup(org: Any) -> tuple[str, str]:
    schedule = ScheduleFactory(
        organization=org,
        fhir_id="refs",
        planning_start=datetime(2030, 6, 3, 9, tzinfo=AMS),
        planning_end=datetime(2030, 6, 3, 12, tzinfo=AMS),
    )
    PatientFactory(organization=org, fhir_id="pat-r")
    return schedule.fhir_id, schedule.practitioner_role.fhir_id


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("schedule", "role", "minute"),
    [
        ("refs", "{role}", 0),
        ("Schedule/refs", "{role}", 15),
        ("refs", "PractitionerRole/{role}", 30),
        ("Schedule/refs", "PractitionerRole/{role}", 45),
    ],
)
def test_references_and_bare_ids_book_alike(
    api: APIClient, setup: tuple[str, str], schedule: str, role: str, minute: int
) -> None:
    _, role_id = setup
    response = api.post(
        url("Patient/pat-r/Appointment/$book-slot"),
        _body(schedule, role.format(role=role_id), minute),
        format="json",
    )
    assert response.status_code == 201, response.content
    participants = {p["actor"]["reference"] for p in response.json()["participant"]}
    assert participants == {"Patient/pat-r", f"PractitionerRole/{role_id}"}


@pytest.mark.django_db
@pytest.mark.parametrize("schedule", ["Slot/refs", "Schedule/", "Schedule/refs/x", "a b"])
def test_a_reference_to_anything_else_is_400_naming_schedule(
    api: APIClient, setup: tuple[str, str], schedule: str
) -> None:
    _, role_id = setup
    response = api.post(
        url("Patient/pat-r/Appointment/$book-slot"), _body(schedule, role_id, 0), format="json"
    )
    outcome = assert_outcome(response, 400)
    assert outcome["issue"][0]["expression"] == ["Parameters.parameter[schedule]"]
