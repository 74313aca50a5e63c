"""The isolation matrix (issue 6 "Done means"): every API route x every kind of caller.

Each cell asserts the exact status and that nothing of another tenant (or, for a patient
app, of another patient) appears anywhere in the response body.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client

from fhir_api.models import ApiClient
from fhir_api.tokens import issue_access_token
from scheduling.models import Organization
from tests.conftest import ALL_SYSTEM_SCOPES
from tests.factories import (
    AppointmentFactory,
    PatientFactory,
    PractitionerRoleFactory,
    ScheduleFactory,
    SlotFactory,
)

pytestmark = pytest.mark.django_db

ALL_PATIENT_SCOPES = ALL_SYSTEM_SCOPES.replace("system/", "patient/")


@pytest.fixture(autouse=True)
def fast_hasher(settings: Any) -> None:
    # PBKDF2 at Django's default cost would make each of the matrix's clients take ~0.3 s.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class World:
    org: Organization
    patient_id: str
    schedule_id: str
    role_id: str
    slot_id: str
    appointment_id: str
    held_id: str
    book_start: str
    # Strings of the outsider organisation's data, none of which may ever be shown to
    # clinic-a's callers.
    foreign_markers: tuple[str, ...]
    # Strings of clinic-a's patient that another patient's app must never see.
    patient_markers: tuple[str, ...]


@pytest.fixture
def world(org: Organization, outsider_org: Organization) -> World:
    patient = PatientFactory(organization=org, fhir_id="pat-own", given="Olga", family="Eigenaar")
    PatientFactory(organization=org, fhir_id="pat-other", given="Otto", family="Anderen")
    role = PractitionerRoleFactory(organization=org, fhir_id="role-own")
    schedule = ScheduleFactory(organization=org, fhir_id="sched-own", practitioner_role=role)
    slot = SlotFactory(organization=org, fhir_id="slot-own", schedule=schedule)
    appointment = AppointmentFactory(
        organization=org,
        fhir_id="appt-own",
        patient=patient,
        schedule=schedule,
        practitioner_role=role,
        start=schedule.planning_start + timedelta(minutes=30),
        end=schedule.planning_start + timedelta(minutes=45),
    )
    # A live hold (for $confirm): pending, lapsing long after the test.
    held = AppointmentFactory(
        organization=org,
        fhir_id="appt-held",
        patient=patient,
        schedule=schedule,
        practitioner_role=role,
        status="pending",
        held_until=datetime.now(UTC) + timedelta(days=1),
        start=schedule.planning_start + timedelta(minutes=45),
        end=schedule.planning_start + timedelta(minutes=60),
    )

    foreign_patient = PatientFactory(
        organization=outsider_org, fhir_id="xb-patient", given="Xaver", family="Buitenstaander"
    )
    foreign_role = PractitionerRoleFactory(organization=outsider_org, fhir_id="xb-role")
    foreign_schedule = ScheduleFactory(
        organization=outsider_org, fhir_id="xb-schedule", practitioner_role=foreign_role
    )
    SlotFactory(organization=outsider_org, fhir_id="xb-slot", schedule=foreign_schedule)
    AppointmentFactory(
        organization=outsider_org,
        fhir_id="xb-appointment",
        patient=foreign_patient,
        schedule=foreign_schedule,
        start=foreign_schedule.planning_start,
        end=foreign_schedule.planning_start + timedelta(minutes=15),
    )
    return World(
        org=org,
        patient_id=patient.fhir_id,
        schedule_id=schedule.fhir_id,
        role_id=role.fhir_id,
        slot_id=slot.fhir_id,
        appointment_id=appointment.fhir_id,
        held_id=held.fhir_id,
        book_start=(schedule.planning_start + timedelta(hours=1)).isoformat(),
        foreign_markers=(
            "xb-",
            "Xaver",
            "Buitenstaander",
            outsider_org.name,
            foreign_role.practitioner.family,
        ),
        patient_markers=("appt-own", "appt-held", "Olga", "Eigenaar"),
    )


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    # Scope the route needs; None for the public CapabilityStatement.
    scope: str | None
    patient: bool
    ok_status: int

    def path(self, w: World, org_id: str | None = None) -> str:
        base = f"/v2/{org_id or w.org.pk}/fhir/R4"
        p = f"{base}/Patient/{w.patient_id}"
        return {
            "metadata": f"{base}/metadata",
            "schedule-search": f"{base}/Schedule?_id={w.schedule_id}",
            "schedule-read": f"{base}/Schedule/{w.schedule_id}",
            "slot-search": (
                f"{base}/Slot?schedule=Schedule/{w.schedule_id}&start=ge{w.book_start[:10]}"
            ),
            "slot-read": f"{base}/Slot/{w.slot_id}",
            "appointment-search": f"{p}/Appointment?_id={w.appointment_id}",
            "appointment-read": f"{p}/Appointment/{w.appointment_id}",
            "book-slot": f"{p}/Appointment/$book-slot",
            "hold": f"{p}/Appointment/$hold",
            "confirm": f"{p}/Appointment/{w.held_id}/$confirm",
            "cancel": f"{p}/Appointment/{w.appointment_id}/$cancel",
            "reschedule": f"{p}/Appointment/{w.appointment_id}/$reschedule",
            "operation-definition": f"{base}/OperationDefinition/hold",
            "appointment-response": f"{p}/AppointmentResponse",
        }[self.name]

    def body(self, w: World) -> dict[str, Any] | None:
        if self.name == "book-slot":
            return {
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "start", "valueDateTime": w.book_start},
                    {"name": "schedule", "valueString": w.schedule_id},
                    {"name": "practitionerRole", "valueString": w.role_id},
                    {"name": "status", "valueString": "booked"},
                ],
            }
        if self.name == "hold":
            start = datetime.fromisoformat(w.book_start) + timedelta(minutes=15)
            return {
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "start", "valueDateTime": start.isoformat()},
                    {"name": "schedule", "valueString": w.schedule_id},
                    {"name": "practitionerRole", "valueString": w.role_id},
                ],
            }
        if self.name == "cancel":
            return {
                "resourceType": "Parameters",
                "parameter": [{"name": "reason", "valueString": "matrix"}],
            }
        if self.name == "reschedule":
            return {
                "resourceType": "Parameters",
                "parameter": [{"name": "start", "valueDateTime": w.book_start}],
            }
        if self.name == "appointment-response":
            return {
                "resourceType": "AppointmentResponse",
                "appointment": {"reference": f"Appointment/{w.appointment_id}"},
                "actor": {"reference": f"Patient/{w.patient_id}"},
                "participantStatus": "accepted",
            }
        return None


ROUTES = [
    Route("metadata", "GET", None, False, 200),
    Route("schedule-search", "GET", "system/Schedule.rs", False, 200),
    Route("schedule-read", "GET", "system/Schedule.rs", False, 200),
    Route("slot-search", "GET", "system/Slot.rs", False, 200),
    Route("slot-read", "GET", "system/Slot.rs", False, 200),
    Route("appointment-search", "GET", "system/Appointment.rs", True, 200),
    Route("appointment-read", "GET", "system/Appointment.rs", True, 200),
    Route("book-slot", "POST", "system/Appointment.c", True, 201),
    Route("appointment-response", "POST", "system/AppointmentResponse.c", True, 201),
    Route("hold", "POST", "system/Appointment.c", True, 201),
    Route("confirm", "POST", "system/Appointment.c", True, 200),
    Route("cancel", "POST", "system/Appointment.c", True, 200),
    Route("reschedule", "POST", "system/Appointment.c", True, 200),
    Route("operation-definition", "GET", None, False, 200),
]

CASES = [
    "no-token",
    "malformed-header",
    "bad-token",
    "expired-token",
    "revoked-client",
    "unknown-organization",
    "other-organization-client",
    "other-patient-client",
    "missing-scope",
    "own-patient-client",
    "right-client",
]

MakeApiClient = Callable[..., tuple[ApiClient, str]]


def expected_status(route: Route, case: str) -> int:
    public = route.scope is None
    if case in ("no-token", "malformed-header", "bad-token", "expired-token", "revoked-client"):
        return route.ok_status if public else 401
    if case == "unknown-organization":
        return 404
    if case == "other-organization-client":
        # Even the public CapabilityStatement: a caller who shows another organisation's
        # token may not use this one, and is told 404 like for a missing organisation.
        return 404
    if case == "other-patient-client":
        return 404 if route.patient else route.ok_status
    if case == "missing-scope":
        return route.ok_status if public else 403
    return route.ok_status


def authorization(case: str, route: Route, w: World, make: MakeApiClient, outsider: Any) -> str:
    """The Authorization header a caller of this kind sends ('' for none)."""
    if case == "no-token":
        return ""
    if case == "malformed-header":
        return "Token abc"
    if case == "bad-token":
        return "Bearer this-token-was-never-issued"
    if case == "expired-token":
        client, _ = make(w.org)
        raw, _ = issue_access_token(client=client, lifetime=-1)
        return f"Bearer {raw}"
    if case == "revoked-client":
        from django.core.management import call_command

        client, raw = make(w.org)
        call_command("revoke_api_client", client.client_id, stdout=_Sink())
        return f"Bearer {raw}"
    if case == "other-organization-client":
        _, raw = make(outsider)
        return f"Bearer {raw}"
    if case == "other-patient-client":
        _, raw = make(w.org, scopes=ALL_PATIENT_SCOPES, patient_id="pat-other")
        return f"Bearer {raw}"
    if case == "own-patient-client":
        _, raw = make(w.org, scopes=ALL_PATIENT_SCOPES, patient_id=w.patient_id)
        return f"Bearer {raw}"
    if case == "missing-scope":
        held = [s for s in ALL_SYSTEM_SCOPES.split() if s != route.scope]
        _, raw = make(w.org, scopes=" ".join(held))
        return f"Bearer {raw}"
    _, raw = make(w.org)  # right-client and unknown-organization: a fully scoped client
    return f"Bearer {raw}"


class _Sink:
    def write(self, _: str) -> None:
        pass

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_isolation(
    route: Route,
    case: str,
    world: World,
    make_api_client: MakeApiClient,
    outsider_org: Organization,
) -> None:
    header = authorization(case, route, world, make_api_client, outsider_org)
    headers = {"Authorization": header} if header else {}
    path = route.path(world, "no-such-clinic" if case == "unknown-organization" else None)
    http = Client()
    if route.method == "GET":
        response = http.get(path, headers=headers)
    else:
        response = http.post(
            path, route.body(world), content_type="application/fhir+json", headers=headers
        )

    expected = expected_status(route, case)
    assert response.status_code == expected, (case, route.name, response.content[:400])
    assert response["Content-Type"].startswith("application/fhir+json")
    text = response.content.decode()
    data = response.json()
    if expected >= 400:
        assert data["resourceType"] == "OperationOutcome"
        assert data["issue"][0]["diagnostics"]
    if expected == 401:
        assert response["WWW-Authenticate"].startswith("Bearer")
    if route.scope is not None:
        assert response["Cache-Control"] == "no-store"

    for marker in world.foreign_markers:
        assert marker not in text, (case, route.name, marker)
    if case == "other-patient-client":
        for marker in world.patient_markers:
            assert marker not in text, (case, route.name, marker)
    if expected < 400 and route.name not in (
        "metadata",
        "book-slot",
        "hold",
        "operation-definition",
    ):
        # A success must really carry this tenant's data, or the no-leak check is empty.
        assert (
            world.schedule_id in text
            or world.slot_id in text
            or world.appointment_id in text
            or world.held_id in text
        )


# --- foreign ids smuggled through one's own tenant and patient ------------------------------


def _get(path: str, token: str) -> Any:
    return Client().get(path, headers={"Authorization": f"Bearer {token}"})


def _no_foreign(response: Any, w: World, *extra: str) -> str:
    text = response.content.decode()
    for marker in (*w.foreign_markers, *extra):
        assert marker not in text, marker
    return text


@pytest.mark.parametrize(
    "path",
    [
        "Schedule/xb-schedule",
        "Slot/xb-slot",
        "Patient/xb-patient/Appointment/xb-appointment",
        "Patient/pat-own/Appointment/xb-appointment",
    ],
)
def test_foreign_ids_read_through_own_organisation_are_404(
    world: World, make_api_client: MakeApiClient, path: str
) -> None:
    _, token = make_api_client(world.org)
    response = _get(f"/v2/{world.org.pk}/fhir/R4/{path}", token)
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    "query",
    [
        "Schedule?_id=xb-schedule",
        "Schedule?actor=PractitionerRole/xb-role",
        "Slot?schedule=Schedule/xb-schedule",
        "Patient/pat-own/Appointment?_id=xb-appointment",
    ],
)
def test_foreign_ids_searched_through_own_organisation_find_nothing(
    world: World, make_api_client: MakeApiClient, query: str
) -> None:
    _, token = make_api_client(world.org)
    response = _get(f"/v2/{world.org.pk}/fhir/R4/{query}", token)
    assert response.status_code == 200
    data = response.json()
    assert data["total"] == 0
    assert "entry" not in data
    # The self link echoes the caller's own query; everything else must be clean.
    data.pop("link")
    for marker in world.foreign_markers:
        assert marker not in str(data), marker


@pytest.mark.parametrize("operation", ["confirm", "cancel", "reschedule"])
@pytest.mark.parametrize(
    "path",
    ["Patient/pat-own/Appointment/xb-appointment", "Patient/xb-patient/Appointment/xb-appointment"],
)
def test_operations_on_foreign_appointments_through_own_organisation_are_404(
    world: World, make_api_client: MakeApiClient, operation: str, path: str
) -> None:
    from scheduling.models import Appointment

    _, token = make_api_client(world.org)
    before = list(Appointment.objects.values().order_by("pk"))
    response = Client().post(
        f"/v2/{world.org.pk}/fhir/R4/{path}/${operation}",
        {"resourceType": "Parameters", "parameter": []}
        if operation != "reschedule"
        else {
            "resourceType": "Parameters",
            "parameter": [{"name": "start", "valueDateTime": world.book_start}],
        },
        content_type="application/fhir+json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 404
    # The diagnostics may echo the ids the caller sent, but nothing it could not know.
    for marker in world.foreign_markers[1:]:
        assert marker not in response.content.decode(), marker
    assert list(Appointment.objects.values().order_by("pk")) == before


def test_another_patients_appointment_is_404_for_a_system_client(
    world: World, make_api_client: MakeApiClient
) -> None:
    _, token = make_api_client(world.org)
    response = _get(f"/v2/{world.org.pk}/fhir/R4/Patient/pat-other/Appointment/appt-own", token)
    assert response.status_code == 404
    _no_foreign(response, world, "Olga", "Eigenaar")


def test_patient_app_cannot_answer_for_another_patients_appointment(
    world: World, make_api_client: MakeApiClient
) -> None:
    _, token = make_api_client(world.org, scopes=ALL_PATIENT_SCOPES, patient_id="pat-other")
    body = {
        "resourceType": "AppointmentResponse",
        "appointment": {"reference": f"Appointment/{world.appointment_id}"},
        "actor": {"reference": "Patient/pat-other"},
        "participantStatus": "declined",
    }
    response = Client().post(
        f"/v2/{world.org.pk}/fhir/R4/Patient/pat-other/AppointmentResponse",
        body,
        content_type="application/fhir+json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code in (404, 422)
    _no_foreign(response, world, "Olga", "Eigenaar")
    from scheduling.models import Appointment

    assert Appointment.objects.get(fhir_id=world.appointment_id).status == "booked"


def test_booking_a_foreign_schedule_through_own_organisation_is_refused(
    world: World, make_api_client: MakeApiClient
) -> None:
    _, token = make_api_client(world.org)
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "start", "valueDateTime": world.book_start},
            {"name": "schedule", "valueString": "xb-schedule"},
            {"name": "practitionerRole", "valueString": "xb-role"},
            {"name": "status", "valueString": "booked"},
        ],
    }
    response = Client().post(
        f"/v2/{world.org.pk}/fhir/R4/Patient/{world.patient_id}/Appointment/$book-slot",
        body,
        content_type="application/fhir+json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 422
    # The diagnostics may echo the id the caller sent, but nothing it could not know.
    text = response.content.decode()
    assert "does not exist" in text
    for marker in world.foreign_markers[1:]:
        assert marker not in text, marker
    from scheduling.models import Appointment

    assert not Appointment.objects.filter(organization=world.org, schedule__fhir_id="xb-schedule")
