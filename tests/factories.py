"""factory-boy factories. The organisation is set once at the root and propagated, so
related objects never land in different tenants by accident."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import factory

from scheduling import models as m


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Organization
        django_get_or_create = ("id",)

    id = factory.Sequence(lambda n: f"org-{n}")
    name = factory.LazyAttribute(lambda o: f"Clinic {o.id}")
    timezone = "Europe/Amsterdam"


class TenantFactory(factory.django.DjangoModelFactory):
    organization = factory.SubFactory(OrganizationFactory)

    class Meta:
        abstract = True


class PatientFactory(TenantFactory):
    class Meta:
        model = m.Patient

    fhir_id = factory.Sequence(lambda n: f"pat-{n}")
    family = factory.Sequence(lambda n: f"Jansen{n}")
    given = "Anna"


class PractitionerFactory(TenantFactory):
    class Meta:
        model = m.Practitioner

    fhir_id = factory.Sequence(lambda n: f"prac-{n}")
    family = factory.Sequence(lambda n: f"de Vries{n}")
    given = "Pieter"


class PractitionerRoleFactory(TenantFactory):
    class Meta:
        model = m.PractitionerRole

    fhir_id = factory.Sequence(lambda n: f"role-{n}")
    practitioner = factory.SubFactory(
        PractitionerFactory, organization=factory.SelfAttribute("..organization")
    )
    code = factory.LazyFunction(lambda: [{"code": "gp", "display": "General practitioner"}])


def _next_monday_9() -> datetime:
    today = datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0)
    return today + timedelta(days=(7 - today.weekday()) % 7 or 7)


class ScheduleFactory(TenantFactory):
    class Meta:
        model = m.Schedule

    fhir_id = factory.Sequence(lambda n: f"sched-{n}")
    practitioner_role = factory.SubFactory(
        PractitionerRoleFactory, organization=factory.SelfAttribute("..organization")
    )
    practitioner = factory.LazyAttribute(lambda o: o.practitioner_role.practitioner)
    service_category = factory.LazyFunction(
        lambda: [
            {
                "system": "http://example.org/service-category",
                "code": "gp",
                "display": "General practice",
            }
        ]
    )
    planning_start = factory.LazyFunction(_next_monday_9)
    planning_end = factory.LazyAttribute(lambda o: o.planning_start + timedelta(hours=3))
    slot_minutes = 15


class SlotFactory(TenantFactory):
    class Meta:
        model = m.Slot

    fhir_id = factory.Sequence(lambda n: f"slot-{n}")
    schedule = factory.SubFactory(
        ScheduleFactory, organization=factory.SelfAttribute("..organization")
    )
    status = m.SlotStatus.FREE
    start = factory.LazyAttribute(lambda o: o.schedule.planning_start)
    end = factory.LazyAttribute(lambda o: o.start + timedelta(minutes=15))


class AppointmentFactory(TenantFactory):
    class Meta:
        model = m.Appointment

    fhir_id = factory.Sequence(lambda n: f"appt-{n}")
    patient = factory.SubFactory(
        PatientFactory, organization=factory.SelfAttribute("..organization")
    )
    status = m.AppointmentStatus.BOOKED
    start = factory.LazyFunction(_next_monday_9)
    end = factory.LazyAttribute(lambda o: o.start + timedelta(minutes=15))


class AppointmentResponseFactory(TenantFactory):
    class Meta:
        model = m.AppointmentResponse

    fhir_id = factory.Sequence(lambda n: f"resp-{n}")
    appointment = factory.SubFactory(
        AppointmentFactory, organization=factory.SelfAttribute("..organization")
    )
    patient = factory.LazyAttribute(lambda o: o.appointment.patient)
    participant_status = m.ParticipationStatus.ACCEPTED
