"""Reads by id and metadata cost a fixed, small number of queries (issue 19): the token and
its organisation in one, then the row (and, below Patient/{id}, the patient)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from fhir_api.capability import capability_statement
from scheduling.db import search_cache
from scheduling.models import Organization
from tests.api_helpers import url
from tests.factories import AppointmentFactory, PatientFactory, ScheduleFactory, SlotFactory

AMS = ZoneInfo("Europe/Amsterdam")


@pytest.fixture
def rows(org: Organization) -> dict[str, Any]:
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
    return {"schedule": schedule, "slot": slot, "appointment": appointment}


PINNED = [
    ("Schedule/sched-v", 2),
    ("Slot/slot-v", 2),
    ("Patient/pat-v/Appointment/appt-v", 2),
    ("metadata", 1),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("path", "queries"), PINNED)
def test_reads_by_id_and_metadata_are_pinned(
    api: APIClient,
    rows: dict[str, Any],
    path: str,
    queries: int,
) -> None:
    assert api.get(url(path)).status_code == 200  # compiled and warm
    # Uncached: what a read costs when the read cache cannot answer (tests/test_read_cache.py).
    search_cache.read_cache.clear()
    with CaptureQueriesContext(connection) as captured:
        response = api.get(url(path))
    assert response.status_code == 200
    assert len(captured) == queries, [q["sql"] for q in captured.captured_queries]
    if path != "metadata":
        # The ETag and a 304 cost no more.
        search_cache.read_cache.clear()
        with CaptureQueriesContext(connection) as captured:
            again = api.get(url(path), HTTP_IF_NONE_MATCH=response["ETag"])
        assert again.status_code == 304 and len(captured) == queries


@pytest.mark.django_db
def test_an_uncached_appointment_read_maps_from_the_columns_it_loads(
    api: APIClient, rows: dict[str, Any]
) -> None:
    """The read loads only the fields the resource shows of the appointment's slot,
    practitioner role and patient: a mapper that needs more would ask another query (here,
    with every relation present), and the resource must equal the full rows' mapping."""
    from fhir_api import mappers
    from scheduling.models import Appointment

    stored = Appointment.objects.get(pk=rows["appointment"].pk)
    stored.slot = rows["slot"]
    stored.comment = "bring your card"
    stored.save()
    path = url("Patient/pat-v/Appointment/appt-v")
    assert api.get(path).status_code == 200
    search_cache.read_cache.clear()
    with CaptureQueriesContext(connection) as captured:
        response = api.get(path)
    assert response.status_code == 200
    assert len(captured) == 2, [q["sql"] for q in captured.captured_queries]
    resource = response.json()
    assert resource["slot"] == [{"reference": "Slot/slot-v"}]
    assert len(resource["participant"]) == 2
    full = Appointment.objects.select_related(
        "slot", "practitioner_role", "patient", "organization"
    ).get(pk=stored.pk)
    assert resource == mappers.appointment_to_fhir(full)


@pytest.mark.django_db
def test_anonymous_metadata_asks_the_database_nothing(org: Organization) -> None:
    client = APIClient()
    client.get(url("metadata"))
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url("metadata"))
    assert response.status_code == 200 and len(captured) == 0
    assert response.json()["implementation"]["description"] == "MediKIT scheduling"


@pytest.mark.django_db
def test_the_cached_statement_follows_the_organisation_name(
    org: Organization, make_api_client: Callable[..., tuple[Any, str]]
) -> None:
    _, token = make_api_client(org)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    first = client.get(url("metadata")).json()
    assert first["implementation"]["description"] == f"MediKIT scheduling for {org.name}"
    org.name = "Renamed clinic"
    org.save()
    renamed = client.get(url("metadata")).json()
    assert renamed["implementation"]["description"] == "MediKIT scheduling for Renamed clinic"
    # Built once per name and URLs: the same object again.
    kwargs = {"base_url": "http://x/v2/a/fhir/R4", "token_url": "http://x/oauth/token"}
    assert capability_statement(organization=org, **kwargs) is capability_statement(
        organization=org, **kwargs
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    ["Slot/nope", "Schedule/nope", "Patient/pat-v/Appointment/nope", "Patient/nope/Appointment/x"],
)
def test_unknown_ids_are_still_404(
    api: APIClient,
    rows: dict[str, Any],
    path: str,
) -> None:
    response = api.get(url(path))
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


#: A winning $book-slot (issue 19): token and organisation, patient, the early check, a
#: savepoint (BEGIN in production), the locks (one statement), the plain check under the
#: lock (a query, but in the locks' round trip on PostgreSQL: a pipeline), the checks (one
#: statement: the stored slot, the occupant's appointments and blocked time, the
#: patient's, lapsed holds), the insert, its AuditEvent, the release (COMMIT). The schedule
#: is kept per process under the organisation's schedules stamp, which PostgreSQL cannot
#: trust inside the test's transaction: one more query there. Was 16, then 14 before this
#: pin.
BOOKING_QUERIES = {"postgresql": 11, "sqlite": 10}
#: A request for a plainly taken slot is answered before any lock: token and
#: organisation (with the patient's key), the early check (and the schedule on
#: PostgreSQL, as above). No read of the patient's row: only a winner's answer shows it.
LOSING_QUERIES = {"postgresql": 3, "sqlite": 2}


@pytest.mark.django_db
def test_a_winning_booking_is_pinned(api: APIClient, org: Organization) -> None:
    from datetime import timedelta

    from tests.test_one_truth import _book

    schedule = ScheduleFactory(organization=org, slot_minutes=15)
    PatientFactory(organization=org, fhir_id="p1")
    PatientFactory(organization=org, fhir_id="p2")
    first = _book(api, org, "p2", schedule, schedule.planning_start + timedelta(minutes=15))
    assert first.status_code == 201
    with CaptureQueriesContext(connection) as captured:
        response = _book(api, org, "p1", schedule, schedule.planning_start)
    assert response.status_code == 201, response.content
    # An upper bound: a query that comes back fails here.
    assert len(captured) <= BOOKING_QUERIES[connection.vendor], [
        (q["sql"] or "(prepared)")[:120] for q in captured.captured_queries
    ]
    with CaptureQueriesContext(connection) as captured:
        lost = _book(api, org, "p2", schedule, schedule.planning_start)
    assert lost.status_code == 409, lost.content
    assert len(captured) <= LOSING_QUERIES[connection.vendor], [
        (q["sql"] or "(prepared)")[:120] for q in captured.captured_queries
    ]


def _kept_connection_for_a_new_request() -> None:
    """What Django does for a kept connection when the next request starts (the test client
    leaves it out): its health is unknown again."""
    connection.health_check_done = False


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_kept_connection_is_checked_by_the_first_query_not_a_select_1(
    api: APIClient, rows: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (run with DATABASE_URL=postgres://...)")
    assert connection.settings_dict["CONN_HEALTH_CHECKS"]
    assert api.get(url("Slot/slot-v")).status_code == 200
    checks: list[bool] = []
    monkeypatch.setattr(connection, "is_usable", lambda: checks.append(True) or True)
    _kept_connection_for_a_new_request()
    assert api.get(url("Slot/slot-v")).status_code == 200
    assert checks == [], "a SELECT 1 round trip before the request's first query"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_kept_connection_that_died_is_replaced_not_answered_503(
    api: APIClient, rows: dict[str, Any]
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (run with DATABASE_URL=postgres://...)")
    import psycopg

    assert api.get(url("Slot/slot-v")).status_code == 200
    backend = connection.connection.info.backend_pid
    settings = connection.settings_dict
    with psycopg.connect(
        dbname=settings["NAME"],
        user=settings["USER"],
        host=settings["HOST"],
        port=settings["PORT"],
        autocommit=True,
    ) as other:
        # As a restarted server or a dropped socket would leave it.
        other.execute("SELECT pg_terminate_backend(%s, 5000)", [backend])
    _kept_connection_for_a_new_request()
    response = api.get(url("Slot/slot-v"))
    assert response.status_code == 200, response.content
    assert connection.connection.info.backend_pid != backend
