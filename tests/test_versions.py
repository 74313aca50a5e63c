"""meta.versionId, ETag and If-None-Match (docs/api.md section 15).

The version is kept by a database trigger (migration 0005), so every path that changes a
row moves it on: services, the admin, import, and plain SQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from scheduling import services
from scheduling.models import Schedule, Slot
from tests.api_helpers import url
from tests.factories import AppointmentFactory, PatientFactory, ScheduleFactory, SlotFactory
from tests.test_admin import make_staff, schedule_post

AMS = ZoneInfo("Europe/Amsterdam")


@pytest.fixture
def rows(org: Any) -> dict[str, Any]:
    schedule = ScheduleFactory(
        organization=org,
        fhir_id="sched-v",
        planning_start=datetime(2030, 6, 3, 9, tzinfo=AMS),
        planning_end=datetime(2030, 6, 3, 12, tzinfo=AMS),
    )
    patient = PatientFactory(organization=org, fhir_id="pat-v")
    slot = SlotFactory(organization=org, fhir_id="slot-v", schedule=schedule)
    appointment = AppointmentFactory(
        organization=org,
        fhir_id="appt-v",
        patient=patient,
        schedule=schedule,
        practitioner_role=schedule.practitioner_role,
        start=datetime(2030, 6, 3, 11, tzinfo=AMS),
    )
    return {"schedule": schedule, "slot": slot, "appointment": appointment, "patient": patient}


READS = ["Schedule/sched-v", "Slot/slot-v", "Patient/pat-v/Appointment/appt-v"]


def _read(api: APIClient, path: str, **headers: str) -> Any:
    return api.get(url(path), **headers)


@pytest.mark.django_db
@pytest.mark.parametrize("path", READS)
def test_read_has_version_etag_and_answers_304_to_a_match(
    api: APIClient, rows: dict[str, Any], path: str
) -> None:
    response = _read(api, path)
    assert response.status_code == 200
    meta = response.json()["meta"]
    assert meta["versionId"] == "1"
    assert meta["lastUpdated"].endswith("+00:00")
    assert response["ETag"] == 'W/"1"'
    not_modified = _read(api, path, HTTP_IF_NONE_MATCH='W/"1"')
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert not_modified["ETag"] == 'W/"1"'
    # A strong form of the same tag, a list and '*' match as well (weak comparison).
    for header in ('"1"', 'W/"7", W/"1"', "*"):
        assert _read(api, path, HTTP_IF_NONE_MATCH=header).status_code == 304
    assert _read(api, path, HTTP_IF_NONE_MATCH='W/"2"').status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("path", READS)
def test_a_raw_sql_update_moves_version_and_last_updated(
    api: APIClient, rows: dict[str, Any], path: str
) -> None:
    before = _read(api, path).json()["meta"]
    table = {"Schedule": "schedule", "Slot": "slot", "Patient": "appointment"}[path.split("/")[0]]
    fhir_id = path.rsplit("/", 1)[1]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE scheduling_{table} SET comment = %s WHERE fhir_id = %s", ["edited", fhir_id]
        )
    response = _read(api, path, HTTP_IF_NONE_MATCH='W/"1"')
    assert response.status_code == 200
    after = response.json()["meta"]
    assert after["versionId"] == "2" and response["ETag"] == 'W/"2"'
    assert after["lastUpdated"] >= before["lastUpdated"]


@pytest.mark.django_db
def test_queryset_update_and_version_written_by_a_statement_still_move_on(
    rows: dict[str, Any],
) -> None:
    slot: Slot = rows["slot"]
    Slot.objects.filter(pk=slot.pk).update(comment="x")
    # A statement that tries to set the version itself is overruled.
    Slot.objects.filter(pk=slot.pk).update(version=1)
    slot.refresh_from_db()
    assert slot.version == 3


@pytest.mark.django_db
def test_cancel_moves_the_version(api: APIClient, org: Any, rows: dict[str, Any]) -> None:
    path = "Patient/pat-v/Appointment/appt-v"
    etag = _read(api, path)["ETag"]
    cancelled = services.appointment_cancel(
        organization=org, appointment=rows["appointment"], actor="test", reason="ill"
    )
    # The service's returned instance carries the stored version, not the one it loaded.
    assert cancelled.version == 2
    response = _read(api, path, HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["meta"]["versionId"] == "2"
    # Cancelling again changes nothing, and the version stays.
    services.appointment_cancel(
        organization=org, appointment=rows["appointment"], actor="test", reason="ill"
    )
    assert _read(api, path, HTTP_IF_NONE_MATCH='W/"2"').status_code == 304


@pytest.mark.django_db
def test_booking_and_the_patients_answer_move_versions(
    api: APIClient, org: Any, rows: dict[str, Any]
) -> None:
    schedule = rows["schedule"]
    start = datetime(2030, 6, 3, 9, 30, tzinfo=AMS)
    booked = api.post(
        url("Patient/pat-v/Appointment/$book-slot"),
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "start", "valueDateTime": start.isoformat()},
                {"name": "schedule", "valueString": f"Schedule/{schedule.fhir_id}"},
                {
                    "name": "practitionerRole",
                    "valueString": f"PractitionerRole/{schedule.practitioner_role.fhir_id}",
                },
                {"name": "status", "valueString": "booked"},
            ],
        },
        format="json",
    )
    assert booked.status_code == 201, booked.content
    appointment = booked.json()
    assert appointment["meta"]["versionId"] == "1"
    path = f"Patient/pat-v/Appointment/{appointment['id']}"
    assert _read(api, path, HTTP_IF_NONE_MATCH='W/"1"').status_code == 304
    answered = api.post(
        url("Patient/pat-v/AppointmentResponse"),
        {
            "resourceType": "AppointmentResponse",
            "appointment": {"reference": f"Appointment/{appointment['id']}"},
            "actor": {"reference": "Patient/pat-v"},
            "participantStatus": "declined",
        },
        format="json",
    )
    assert answered.status_code == 201, answered.content
    assert answered.json()["meta"]["versionId"] == "1"
    response = _read(api, path, HTTP_IF_NONE_MATCH='W/"1"')
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert int(response.json()["meta"]["versionId"]) > 1


@pytest.mark.django_db
def test_an_admin_edit_moves_the_version(api: APIClient, org: Any) -> None:
    staff = Client()
    staff.force_login(make_staff("staff-v", org))
    role = ScheduleFactory(organization=org).practitioner_role
    data = schedule_post(org, role.pk)
    assert staff.post(reverse("admin:scheduling_schedule_add"), data).status_code == 302
    assert _read(api, "Schedule/new-sched")["ETag"] == 'W/"1"'
    schedule = Schedule.objects.get(organization=org, fhir_id="new-sched")
    change = reverse("admin:scheduling_schedule_change", args=[schedule.pk])
    response = staff.post(change, {**data, "comment": "moved to room 2"})
    assert response.status_code == 302, response.content[:2000]
    read = _read(api, "Schedule/new-sched", HTTP_IF_NONE_MATCH='W/"1"')
    assert read.status_code == 200
    assert read.json()["comment"] == "moved to room 2"
    assert read["ETag"] == 'W/"2"'


@pytest.mark.django_db
def test_generated_occurrences_carry_no_version(api: APIClient, org: Any) -> None:
    ScheduleFactory(
        organization=org,
        fhir_id="weekly",
        planning_start=datetime(2030, 6, 3, 9, tzinfo=AMS),
        planning_end=datetime(2030, 6, 3, 10, tzinfo=AMS),
        rrule="FREQ=WEEKLY",
    )
    data = api.get(url("Schedule?date=ge2030-06-03")).json()
    occurrence = data["entry"][0]["resource"]
    assert occurrence["id"].startswith("weekly-")
    assert "versionId" not in occurrence.get("meta", {})
    stored = api.get(url("Schedule?_id=weekly")).json()["entry"][0]["resource"]
    assert stored["meta"]["versionId"] == "1"


@pytest.mark.django_db
def test_import_of_an_existing_row_moves_its_version(org: Any, rows: dict[str, Any]) -> None:
    from fhir_api.ingest import bundle_import

    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "resource": {
                    "resourceType": "Patient",
                    "id": "pat-v",
                    "name": [{"family": "Renamed"}],
                }
            }
        ],
    }
    bundle_import(organization=org, data=bundle)
    patient = rows["patient"]
    patient.refresh_from_db()
    assert patient.family == "Renamed"
    assert patient.version == 2


@pytest.mark.django_db
def test_a_table_rebuild_on_sqlite_gets_its_version_trigger_back(rows: dict[str, Any]) -> None:
    from scheduling.db.version_triggers import ensure_sqlite_triggers

    if connection.vendor != "sqlite":
        # PostgreSQL keeps triggers across ALTER TABLE: the upkeep must leave them alone.
        ensure_sqlite_triggers()
    else:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER scheduling_slot_version")
        ensure_sqlite_triggers()
    Slot.objects.filter(pk=rows["slot"].pk).update(comment="after upkeep")
    rows["slot"].refresh_from_db()
    assert rows["slot"].version == 2
