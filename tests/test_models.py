"""Model validation: what full_clean (and therefore save) refuses, and what the database
itself guarantees when validation is bypassed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from scheduling import models as m
from tests.factories import (
    AppointmentFactory,
    AppointmentResponseFactory,
    OrganizationFactory,
    PatientFactory,
    PractitionerFactory,
    PractitionerRoleFactory,
    ScheduleFactory,
    SlotFactory,
)


def errors_of(obj: Any) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as excinfo:
        obj.full_clean()
    return excinfo.value.message_dict


@pytest.mark.parametrize(
    ("rrule", "fragment"),
    [
        ("FREQ=HOURLY", "HOURLY"),
        ("FREQ=MINUTELY;INTERVAL=15", "MINUTELY"),
        ("FREQ=SECONDLY", "SECONDLY"),
        ("this is junk", ""),
        ("RRULE:FREQ=DAILY", ""),
        ("FREQ=DAILY;COUNT=3;UNTIL=20270101T000000Z", ""),
        ("FREQ=WEEKLY;BYDAY=XX", ""),
        ("BYDAY=MO", ""),
    ],
)
@pytest.mark.django_db
def test_bad_rules_are_refused(org: m.Organization, rrule: str, fragment: str) -> None:
    schedule = ScheduleFactory.build(
        organization=org, practitioner_role=None, practitioner=None, rrule=rrule
    )
    errors = errors_of(schedule)
    assert "rrule" in errors
    assert fragment in " ".join(errors["rrule"])


@pytest.mark.django_db
def test_good_rule_is_accepted(org: m.Organization) -> None:
    schedule = ScheduleFactory(
        organization=org, rrule="FREQ=WEEKLY;BYDAY=MO,WE;UNTIL=20271231T230000Z"
    )
    schedule.full_clean()
    assert schedule.is_recurring


@pytest.mark.django_db
def test_appointment_rule_is_validated_too(org: m.Organization) -> None:
    appointment = AppointmentFactory.build(
        organization=org, patient=PatientFactory(organization=org), rrule="FREQ=HOURLY"
    )
    assert "rrule" in errors_of(appointment)


@pytest.mark.django_db
def test_end_before_start_is_refused(org: m.Organization) -> None:
    schedule = ScheduleFactory(organization=org)
    schedule.planning_end = schedule.planning_start - timedelta(minutes=1)
    assert "planning_end" in errors_of(schedule)
    schedule.planning_end = schedule.planning_start  # empty window
    assert "planning_end" in errors_of(schedule)

    slot = SlotFactory.build(organization=org, schedule=ScheduleFactory(organization=org))
    slot.end = slot.start
    assert "end" in errors_of(slot)

    appointment = AppointmentFactory.build(
        organization=org, patient=PatientFactory(organization=org)
    )
    appointment.end = appointment.start - timedelta(hours=1)
    assert "end" in errors_of(appointment)


@pytest.mark.django_db
def test_save_validates_as_well(org: m.Organization) -> None:
    schedule = ScheduleFactory(organization=org)
    schedule.rrule = "FREQ=HOURLY"
    with pytest.raises(ValidationError):
        schedule.save()
    schedule.refresh_from_db()
    assert schedule.rrule == ""


@pytest.mark.django_db
def test_unknown_zones_are_refused(org: m.Organization) -> None:
    organization = m.Organization(id="clinic-z", name="Z", timezone="Europe/Atlantis")
    assert "timezone" in errors_of(organization)
    schedule = ScheduleFactory(organization=org)
    schedule.recurrence_timezone = "Not/AZone"
    assert "recurrence_timezone" in errors_of(schedule)
    schedule.recurrence_timezone = "Australia/Sydney"
    schedule.full_clean()


@pytest.mark.parametrize(
    "exdates",
    [
        ["2026-12-28T09:00:00"],  # no offset: which instant?
        ["not a date"],
        "2026-12-28T09:00:00+01:00",  # a string, not a list
        [20261228],
    ],
)
@pytest.mark.django_db
def test_bad_exdates_are_refused(org: m.Organization, exdates: Any) -> None:
    schedule = ScheduleFactory(organization=org, rrule="FREQ=DAILY")
    schedule.exdates = exdates
    assert "exdates" in errors_of(schedule)


@pytest.mark.django_db
def test_bad_codes_are_refused(org: m.Organization) -> None:
    slot = SlotFactory(organization=org)
    slot.status = "open"
    assert "status" in errors_of(slot)

    appointment = AppointmentFactory(organization=org)
    appointment.status = "done"
    assert "status" in errors_of(appointment)
    appointment.status = m.AppointmentStatus.BOOKED
    appointment.patient_status = "maybe"
    assert "patient_status" in errors_of(appointment)

    patient = PatientFactory(organization=org)
    patient.gender = "m"
    assert "gender" in errors_of(patient)

    response = AppointmentResponseFactory(organization=org)
    response.participant_status = "yes"
    assert "participant_status" in errors_of(response)


@pytest.mark.parametrize(
    "fhir_id", ["", "has space", "under_score", "x" * 65, "slash/inside", "ümlaut"]
)
@pytest.mark.django_db
def test_bad_fhir_ids_are_refused(org: m.Organization, fhir_id: str) -> None:
    patient = PatientFactory.build(organization=org, fhir_id=fhir_id)
    assert "fhir_id" in errors_of(patient)
    organization = m.Organization(id=fhir_id, name="X")
    assert "id" in errors_of(organization)


@pytest.mark.parametrize("fhir_id", ["a", "A-1.b", "x" * 64, "2026"])
@pytest.mark.django_db
def test_good_fhir_ids_are_accepted(org: m.Organization, fhir_id: str) -> None:
    PatientFactory(organization=org, fhir_id=fhir_id).full_clean()


@pytest.mark.django_db
def test_cross_tenant_links_are_refused(org: m.Organization, outsider_org: m.Organization) -> None:
    foreign_practitioner = PractitionerFactory(organization=outsider_org)
    foreign_role = PractitionerRoleFactory(organization=outsider_org)
    foreign_schedule = ScheduleFactory(organization=outsider_org)
    foreign_patient = PatientFactory(organization=outsider_org)
    foreign_slot = SlotFactory(organization=outsider_org)

    role = PractitionerRoleFactory.build(organization=org, practitioner=foreign_practitioner)
    assert "practitioner" in errors_of(role)

    schedule = ScheduleFactory.build(
        organization=org, practitioner_role=foreign_role, practitioner=None
    )
    assert "practitioner_role" in errors_of(schedule)

    slot = SlotFactory.build(organization=org, schedule=foreign_schedule)
    assert "schedule" in errors_of(slot)

    appointment = AppointmentFactory.build(organization=org, patient=foreign_patient)
    assert "patient" in errors_of(appointment)
    appointment = AppointmentFactory.build(
        organization=org, patient=PatientFactory(organization=org), slot=foreign_slot
    )
    assert "slot" in errors_of(appointment)

    home_appointment = AppointmentFactory(organization=org)
    response = AppointmentResponseFactory.build(
        organization=org, appointment=home_appointment, patient=foreign_patient
    )
    assert "patient" in errors_of(response)

    # save() refuses too, so a service or an import cannot slip it through.
    with pytest.raises(ValidationError):
        m.Slot(
            organization=org,
            fhir_id="s1",
            schedule=foreign_schedule,
            status="free",
            start=foreign_schedule.planning_start,
            end=foreign_schedule.planning_end,
        ).save()
    assert not m.Slot.objects.filter(organization=org).exists()


@pytest.mark.django_db
def test_same_fhir_id_in_two_organisations_is_fine(
    org: m.Organization, outsider_org: m.Organization
) -> None:
    PatientFactory(organization=org, fhir_id="p1")
    PatientFactory(organization=outsider_org, fhir_id="p1")
    with pytest.raises(IntegrityError), transaction.atomic():
        PatientFactory(organization=org, fhir_id="p1")
    assert m.Patient.objects.filter(fhir_id="p1").count() == 2


@pytest.mark.django_db
def test_database_refuses_end_before_start_even_without_validation(org: m.Organization) -> None:
    schedule = ScheduleFactory(organization=org)
    with pytest.raises(IntegrityError), transaction.atomic():
        m.Slot.objects.bulk_create(
            [
                m.Slot(
                    organization=org,
                    fhir_id="bad",
                    schedule=schedule,
                    status="free",
                    start=schedule.planning_start,
                    end=schedule.planning_start - timedelta(minutes=5),
                )
            ]
        )


@pytest.mark.django_db
def test_database_refuses_two_active_appointments_on_one_slot(org: m.Organization) -> None:
    schedule = ScheduleFactory(organization=org)
    start = schedule.planning_start
    AppointmentFactory(organization=org, schedule=schedule, start=start)
    with pytest.raises(IntegrityError), transaction.atomic():
        AppointmentFactory(organization=org, schedule=schedule, start=start)
    # A cancelled appointment no longer holds the slot.
    AppointmentFactory(
        organization=org, schedule=schedule, start=start, status=m.AppointmentStatus.CANCELLED
    )
    assert m.Appointment.objects.filter(schedule=schedule, start=start).count() == 2


@pytest.mark.django_db
def test_organisation_default_zone() -> None:
    organization = OrganizationFactory(id="clinic-d")
    assert organization.zone.key == "Europe/Amsterdam"
