"""Reads by id served from the per-process read cache (issue 19) are never stale or foreign.

The cache is keyed by the organisation's data stamps, which come with the token query: a
hit costs no query of its own. These tests run outside a test transaction, so the cache
is used on PostgreSQL as well (inside a transaction it is bypassed there).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from scheduling.db import search_cache
from scheduling.models import AppointmentStatus, Organization, SlotStatus
from tests.api_helpers import url
from tests.factories import AppointmentFactory, PatientFactory, ScheduleFactory, SlotFactory

AMS = ZoneInfo("Europe/Amsterdam")
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    search_cache.read_cache.clear()


@pytest.fixture
def rows(org: Organization) -> dict[str, Any]:
    schedule = ScheduleFactory(
        organization=org,
        fhir_id="sched-c",
        planning_start=datetime(2030, 6, 3, 9, tzinfo=AMS),
        planning_end=datetime(2030, 6, 3, 12, tzinfo=AMS),
    )
    patient = PatientFactory(organization=org, fhir_id="pat-c", family="Jansen")
    other = PatientFactory(organization=org, fhir_id="pat-other")
    slot = SlotFactory(organization=org, fhir_id="slot-c", schedule=schedule)
    appointment = AppointmentFactory(
        organization=org,
        fhir_id="appt-c",
        patient=patient,
        schedule=schedule,
        practitioner_role=schedule.practitioner_role,
        start=datetime(2030, 6, 3, 11, tzinfo=AMS),
    )
    return {
        "schedule": schedule,
        "slot": slot,
        "appointment": appointment,
        "patient": patient,
        "other": other,
    }


def client_for(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


#: The read, and its queries once cached: the token (and below Patient/{id}, the patient).
CACHED = [
    ("Schedule/sched-c", 1),
    ("Slot/slot-c", 1),
    ("Patient/pat-c/Appointment/appt-c", 1),
]


@pytest.mark.parametrize(("path", "queries"), CACHED)
def test_a_cached_read_asks_no_query_of_its_own(
    api: APIClient, rows: dict[str, Any], path: str, queries: int
) -> None:
    first = api.get(url(path))
    assert first.status_code == 200
    with CaptureQueriesContext(connection) as captured:
        again = api.get(url(path))
    assert again.status_code == 200 and again.content == first.content
    assert again["ETag"] == first["ETag"]
    assert len(captured) == queries, [q["sql"][:100] for q in captured.captured_queries]


def test_a_changed_row_is_read_at_once(api: APIClient, rows: dict[str, Any]) -> None:
    paths = [path for path, _ in CACHED]
    before = {path: api.get(url(path)) for path in paths}
    slot, schedule, appointment = rows["slot"], rows["schedule"], rows["appointment"]
    slot.status = SlotStatus.BUSY_UNAVAILABLE
    slot.save()
    schedule.comment = "now with a comment"
    schedule.save()
    appointment.comment = "bring your card"
    appointment.save()
    after = {path: api.get(url(path)) for path in paths}
    for path in paths:
        assert after[path]["ETag"] != before[path]["ETag"], path
    assert after["Slot/slot-c"].json()["status"] == "busy-unavailable"
    assert after["Schedule/sched-c"].json()["comment"] == "now with a comment"
    assert after["Patient/pat-c/Appointment/appt-c"].json()["comment"] == "bring your card"


def test_a_renamed_practitioner_role_or_patient_is_read_at_once(
    api: APIClient, rows: dict[str, Any]
) -> None:
    path = "Patient/pat-c/Appointment/appt-c"
    patient_ref = api.get(url(path)).json()["participant"][0]["actor"]
    assert "Jansen" in patient_ref["display"]
    patient = rows["patient"]
    patient.family = "de Boer"
    patient.save()  # the patient's table has no data stamp: its version keys the entry
    patient_ref = api.get(url(path)).json()["participant"][0]["actor"]
    assert "de Boer" in patient_ref["display"] and "Jansen" not in patient_ref["display"]

    role = rows["schedule"].practitioner_role
    assert api.get(url("Schedule/sched-c")).json()["actor"][0]["reference"] == (
        f"PractitionerRole/{role.fhir_id}"
    )
    role.fhir_id = "role-renamed"
    role.save()
    actor = api.get(url("Schedule/sched-c")).json()["actor"][0]
    assert actor["reference"] == "PractitionerRole/role-renamed"


def test_another_organisation_never_gets_the_entry(
    api: APIClient,
    rows: dict[str, Any],
    outsider_org: Organization,
    make_api_client: Callable[..., tuple[Any, str]],
) -> None:
    # The same ids in another organisation, with other contents.
    schedule = ScheduleFactory(organization=outsider_org, fhir_id="sched-c", comment="theirs")
    SlotFactory(
        organization=outsider_org,
        fhir_id="slot-c",
        schedule=schedule,
        status=SlotStatus.BUSY_TENTATIVE,
    )
    _, outsider_token = make_api_client(outsider_org)
    outsider = client_for(outsider_token)
    ours = {path: api.get(url(path)).json() for path in ("Slot/slot-c", "Schedule/sched-c")}
    theirs = {
        path: outsider.get(url(path, org="clinic-b")).json()
        for path in ("Slot/slot-c", "Schedule/sched-c")
    }
    assert ours["Slot/slot-c"]["status"] == "free"
    assert theirs["Slot/slot-c"]["status"] == "busy-tentative"
    assert "comment" not in ours["Schedule/sched-c"]
    assert theirs["Schedule/sched-c"]["comment"] == "theirs"
    # With every entry cached, a token still reaches only its own organisation.
    for path in ("Slot/slot-c", "Schedule/sched-c", "Patient/pat-c/Appointment/appt-c"):
        assert outsider.get(url(path)).status_code == 404, path
        assert api.get(url(path, org="clinic-b")).status_code == 404, path


def test_another_patient_never_gets_the_entry(
    api: APIClient,
    rows: dict[str, Any],
    org: Organization,
    make_api_client: Callable[..., tuple[Any, str]],
) -> None:
    assert api.get(url("Patient/pat-c/Appointment/appt-c")).status_code == 200  # cached
    # Below another patient of the same organisation, the appointment does not exist ...
    assert api.get(url("Patient/pat-other/Appointment/appt-c")).status_code == 404
    # ... and a client bound to that patient reaches neither path.
    _, token = make_api_client(org, scopes="patient/Appointment.rs", patient_id="pat-other")
    patient_app = client_for(token)
    assert patient_app.get(url("Patient/pat-other/Appointment/appt-c")).status_code == 404
    assert patient_app.get(url("Patient/pat-c/Appointment/appt-c")).status_code == 404


def test_a_cached_hold_lapses_on_time(
    api: APIClient, rows: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime(2030, 6, 1, 12, tzinfo=UTC)
    monkeypatch.setattr("scheduling.selectors.utc_now", lambda: now)
    hold = AppointmentFactory(
        organization=rows["schedule"].organization,
        fhir_id="hold-c",
        patient=rows["patient"],
        schedule=rows["schedule"],
        practitioner_role=rows["schedule"].practitioner_role,
        start=datetime(2030, 6, 3, 10, tzinfo=AMS),
        status=AppointmentStatus.PENDING,
        held_until=now + timedelta(minutes=10),
    )
    path = url(f"Patient/pat-c/Appointment/{hold.fhir_id}")
    live = api.get(path)
    assert live.json()["status"] == "pending"
    assert api.get(path).json()["status"] == "pending"  # from the cache
    later = now + timedelta(minutes=10)
    monkeypatch.setattr("scheduling.selectors.utc_now", lambda: later)
    lapsed = api.get(path)
    assert lapsed.json()["status"] == "cancelled"
    assert lapsed["ETag"] != live["ETag"]


# --- Schedule search: mapped occurrences kept across searches (fhir_api.views) ------------


@pytest.fixture
def daily(org: Organization) -> Any:
    from fhir_api.views import mapped_schedules

    mapped_schedules.clear()
    return ScheduleFactory(
        organization=org,
        fhir_id="daily",
        planning_start=datetime(2030, 6, 3, 9, tzinfo=AMS),
        planning_end=datetime(2030, 6, 3, 12, tzinfo=AMS),
        rrule="FREQ=DAILY",
    )


def week(api: APIClient, start: str = "2030-06-03") -> list[dict[str, Any]]:
    response = api.get(url(f"Schedule?date=ge{start}&date=lt2030-06-10&_count=50"))
    assert response.status_code == 200, response.content
    return [entry["resource"] for entry in response.json()["entry"]]


def test_a_renamed_practitioner_shows_in_every_occurrence_at_once(
    api: APIClient, daily: Any
) -> None:
    first = week(api)
    assert len(first) == 7
    assert week(api, "2030-06-04")[0] is not None  # another window: the kept resources
    practitioner = daily.practitioner
    practitioner.family = "Renamed"
    practitioner.save()
    for resource in week(api) + week(api, "2030-06-04"):
        displays = [actor.get("display", "") for actor in resource["actor"]]
        assert any("Renamed" in display for display in displays), displays


def test_a_version_written_by_a_rolled_back_transaction_is_never_served(
    api: APIClient, daily: Any
) -> None:
    from django.db import transaction

    week(api)
    with pytest.raises(RuntimeError), transaction.atomic():
        daily.comment = "rolled back"
        daily.save()  # version 2, never committed
        assert week(api)[0]["comment"] == "rolled back"
        raise RuntimeError
    daily.refresh_from_db()
    daily.comment = "committed"
    daily.save()  # version 2 again, other contents
    assert {resource["comment"] for resource in week(api)} == {"committed"}
