"""Every mapper's output is valid FHIR R4 for fhir.resources (R4B) and fhirclient."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.appointmentresponse import AppointmentResponse
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.practitionerrole import PractitionerRole
from fhir.resources.R4B.schedule import Schedule
from fhir.resources.R4B.slot import Slot
from fhirclient.models import appointment as fc_appointment
from fhirclient.models import appointmentresponse as fc_response
from fhirclient.models import patient as fc_patient
from fhirclient.models import practitioner as fc_practitioner
from fhirclient.models import practitionerrole as fc_role
from fhirclient.models import schedule as fc_schedule
from fhirclient.models import slot as fc_slot

from fhir_api import mappers
from scheduling.recurrence import Period
from scheduling.selectors import GeneratedSlot
from tests.factories import (
    AppointmentFactory,
    AppointmentResponseFactory,
    PatientFactory,
    PractitionerRoleFactory,
    ScheduleFactory,
    SlotFactory,
)

pytestmark = pytest.mark.django_db


def both(r4b: Any, fc: Any, data: dict[str, Any]) -> None:
    r4b.model_validate(data)
    fc(data)


def test_patient(org: Any) -> None:
    p = PatientFactory(
        organization=org,
        fhir_id="p",
        given="Anna Maria",
        family="Jansen",
        gender="female",
        birth_date=date(1990, 2, 3),
        email="a@example.org",
        phone="+31 6 1234",
    )
    data = mappers.patient_to_fhir(p)
    assert data["name"] == [{"family": "Jansen", "given": ["Anna", "Maria"]}]
    assert data["birthDate"] == "1990-02-03" and data["gender"] == "female"
    assert {"system": "email", "value": "a@example.org"} in data["telecom"]
    both(Patient, fc_patient.Patient, data)


def test_practitioner_and_role(org: Any) -> None:
    role = PractitionerRoleFactory(
        organization=org,
        fhir_id="r",
        specialty=[{"system": "http://snomed.info/sct", "code": "394814009"}],
    )
    role.practitioner.prefix = "Dr."
    role.practitioner.save()
    prac = mappers.practitioner_to_fhir(role.practitioner)
    assert prac["name"][0]["prefix"] == ["Dr."]
    both(Practitioner, fc_practitioner.Practitioner, prac)
    data = mappers.practitioner_role_to_fhir(role)
    assert data["practitioner"]["reference"] == f"Practitioner/{role.practitioner.fhir_id}"
    assert data["specialty"][0]["coding"][0]["code"] == "394814009"
    both(PractitionerRole, fc_role.PractitionerRole, data)


def test_schedule_and_occurrence(org: Any) -> None:
    s = ScheduleFactory(
        organization=org,
        fhir_id="s",
        rrule="FREQ=WEEKLY",
        recurrence_timezone="Australia/Sydney",
        comment="Mornings",
        service_type=[{"code": "57", "display": "Immunization"}],
    )
    data = mappers.schedule_to_fhir(s)
    rec = data["extension"][0]
    assert rec["extension"][1] == {"url": "timezone", "valueCode": "Australia/Sydney"}
    assert data["extension"][1]["valueDuration"] == {
        "value": 15,
        "unit": "min",
        "system": "http://unitsofmeasure.org",
        "code": "min",
    }
    assert data["planningHorizon"]["start"].endswith("+00:00")
    both(Schedule, fc_schedule.Schedule, data)
    start = datetime(2030, 1, 7, 8, tzinfo=UTC)
    occ = mappers.schedule_occurrence_to_fhir(s, Period(start, start.replace(hour=11)))
    assert occ["id"] == "s-20300107T080000Z"
    assert occ["extension"][0]["url"] == "urn:extension:parent:schedule"
    both(Schedule, fc_schedule.Schedule, occ)


def test_schedule_without_actor_still_valid(org: Any) -> None:
    s = ScheduleFactory(
        organization=org, practitioner_role=None, practitioner=None, slot_minutes=None
    )
    data = mappers.schedule_to_fhir(s)
    assert "extension" not in data
    both(Schedule, fc_schedule.Schedule, data)


def test_slots(org: Any) -> None:
    slot = SlotFactory(organization=org, overbooked=True, comment="extra")
    data = mappers.slot_to_fhir(slot)
    assert data["overbooked"] is True and data["status"] == "free"
    both(Slot, fc_slot.Slot, data)
    start = datetime(2030, 1, 7, 8, tzinfo=UTC)
    gen = mappers.generated_slot_to_fhir(
        slot.schedule, GeneratedSlot("x-20300107T080000Z", start, start.replace(minute=15), "busy")
    )
    assert gen["schedule"] == {"reference": f"Schedule/{slot.schedule.fhir_id}"}
    assert gen["status"] == "busy"
    both(Slot, fc_slot.Slot, gen)


def test_appointment_and_response(org: Any) -> None:
    role = PractitionerRoleFactory(organization=org)
    appt = AppointmentFactory(
        organization=org,
        practitioner_role=role,
        status="cancelled",
        cancelation_reason="ill",
        description="Check-up",
        service_category=[{"code": "gp"}],
        practitioner_status="accepted",
    )
    data = mappers.appointment_to_fhir(appt)
    assert data["cancelationReason"] == {"text": "ill"}
    assert data["participant"][1] == {
        "actor": {"reference": f"PractitionerRole/{role.fhir_id}"},
        "required": "required",
        "status": "accepted",
    }
    both(Appointment, fc_appointment.Appointment, data)
    response = AppointmentResponseFactory(organization=org, appointment=appt, comment="ok")
    out = mappers.appointment_response_to_fhir(response)
    assert out["actor"] == {"reference": f"Patient/{appt.patient.fhir_id}"}
    assert out["participantStatus"] == "accepted"
    both(AppointmentResponse, fc_response.AppointmentResponse, out)


def test_holds_live_lapsed_and_confirmed(org: Any) -> None:
    from datetime import timedelta

    start = datetime(2026, 6, 1, 7, tzinfo=UTC)
    held = AppointmentFactory(
        organization=org,
        status="pending",
        start=start,
        end=start + timedelta(minutes=15),
        held_until=datetime(2026, 5, 30, 12, 0, 30, tzinfo=UTC),
    )
    live = mappers.appointment_to_fhir(held, now=datetime(2026, 5, 30, 12, 0, 29, tzinfo=UTC))
    assert live["status"] == "pending"
    assert live["extension"] == [
        {"url": "urn:extension:held-until", "valueInstant": "2026-05-30T12:00:30+00:00"}
    ]
    assert "cancelationReason" not in live
    both(Appointment, fc_appointment.Appointment, live)
    lapsed = mappers.appointment_to_fhir(held, now=datetime(2026, 5, 30, 12, 0, 30, tzinfo=UTC))
    assert lapsed["status"] == "cancelled"
    assert lapsed["cancelationReason"] == {"text": "hold expired"}
    assert "extension" not in lapsed
    both(Appointment, fc_appointment.Appointment, lapsed)
    # Mapping is a read: the row is left as it is.
    assert held.status == "pending"


def test_response_to_one_occurrence_names_it(org: Any) -> None:
    from datetime import timedelta

    parent = AppointmentFactory(
        organization=org,
        fhir_id="series",
        start=datetime(2026, 6, 1, 7, tzinfo=UTC),
        end=datetime(2026, 6, 1, 7, 15, tzinfo=UTC),
        rrule="FREQ=DAILY;COUNT=3",
    )
    occurrence_start = parent.start + timedelta(days=1)
    response = AppointmentResponseFactory(
        organization=org,
        appointment=parent,
        start=occurrence_start,
        end=occurrence_start + timedelta(minutes=15),
        participant_status="declined",
    )
    data = mappers.appointment_response_to_fhir(response)
    assert data["appointment"] == {"reference": "Appointment/series-20260602T070000Z"}
    assert data["start"] == "2026-06-02T07:00:00+00:00"
    both(AppointmentResponse, fc_response.AppointmentResponse, data)


def test_a_plain_page_maps_to_what_the_model_path_maps(org: Any) -> None:
    """A search page rendered from plain values (``SlotResults.plain``, the API's path) is
    exactly what the stored and generated mappers make of the same results, slot by slot:
    categories, comment, overbooked, meta, sub-second stored instants, busy and free."""
    from datetime import timedelta

    from scheduling.selectors import slot_search

    categories = [{"system": "urn:cat", "code": "gp", "display": "GP"}]
    start = datetime(2030, 1, 7, 8, tzinfo=UTC)
    schedule = ScheduleFactory(
        organization=org,
        planning_start=start,
        planning_end=start + timedelta(hours=2),
        slot_minutes=15,
        service_category=categories,
    )
    plain_schedule = ScheduleFactory(
        organization=org,
        planning_start=start,
        planning_end=start + timedelta(hours=1),
        slot_minutes=20,
    )
    SlotFactory(
        organization=org,
        schedule=schedule,
        start=start + timedelta(minutes=30, seconds=1, microseconds=500_000),
        end=start + timedelta(minutes=45, microseconds=999_999),
        overbooked=True,
        comment="extra",
        service_category=categories,
    )
    SlotFactory(
        organization=org,
        schedule=plain_schedule,
        fhir_id="taken",
        status="busy",
        start=start + timedelta(hours=3),
        end=start + timedelta(hours=3, minutes=20),
    )
    AppointmentFactory(
        organization=org,
        schedule=schedule,
        practitioner_role=schedule.practitioner_role,
        start=start,
        end=start + timedelta(minutes=15),
    )
    results = slot_search(
        organization=org,
        window=Period(start - timedelta(days=1), start + timedelta(days=1)),
        now=start - timedelta(days=2),
    )
    plain = results.plain()
    assert len(plain) == len(results) >= 12
    kinds = set()
    for index, (model, values) in enumerate(zip(results[:], plain[:], strict=True)):
        expected = (
            mappers.slot_to_fhir(model.slot)
            if model.slot is not None
            else mappers.generated_slot_to_fhir(model.schedule, model.generated)
        )
        assert mappers.page_slot_to_fhir(values) == expected
        assert mappers.page_slot_to_fhir(plain[index]) == expected
        kinds.add((model.slot is not None, expected["status"], "serviceCategory" in expected))
    # Both kinds, both statuses and both with and without categories were compared.
    assert {stored for stored, _, _ in kinds} == {True, False}
    assert {status for _, status, _ in kinds} == {"free", "busy"}
    assert {has for _, _, has in kinds} == {True, False}
    assert mappers.page_slot_to_fhir(plain[-1]) == mappers.page_slot_to_fhir(plain[len(plain) - 1])
