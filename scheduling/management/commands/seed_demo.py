"""``manage.py seed_demo``: a demo clinic to click through (docs/api.md section 9).

Idempotent: rows are looked up by their fixed ids and only created when missing, so a
second run changes nothing. The admin and security work rely on the exact names below
(organisation ``demo-clinic``, user ``staff``, group "Clinic staff", client ``demo-client``).
"""

from __future__ import annotations

import io
from datetime import date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from scheduling import models as m
from scheduling import recurrence
from scheduling.services.records import appointment_store

ORGANIZATION_ID = "demo-clinic"
STAFF_USERNAME = "staff"
STAFF_PASSWORD = "medikit-demo"
STAFF_GROUP = "Clinic staff"
# Created by fhir_api's seed_demo_api_client command (scheduling does not import fhir_api).
CLIENT_ID = "demo-client"
CLIENT_SECRET = "demo-secret"
#: Staff may read these but not rewrite history.
VIEW_ONLY_MODELS = ("auditevent", "appointmentresponse")

HL7_SERVICE_CATEGORY = "http://terminology.hl7.org/CodeSystem/service-category"
GP = {"system": HL7_SERVICE_CATEGORY, "code": "17", "display": "General Practice"}
PHYSIO = {
    "system": "http://medikit.example/service-category",
    "code": "physio",
    "display": "Physiotherapy",
}
SNOMED = "http://snomed.info/sct"

# (practitioner id, given, family, prefix, role code, service category)
PRACTITIONERS = (
    (
        "practitioner-1",
        "Anna",
        "de Vries",
        "Dr.",
        {"system": SNOMED, "code": "62247001", "display": "General practitioner"},
        GP,
    ),
    (
        "practitioner-2",
        "Bram",
        "Bakker",
        "Dr.",
        {"system": SNOMED, "code": "62247001", "display": "General practitioner"},
        GP,
    ),
    (
        "practitioner-3",
        "Carla",
        "Visser",
        "",
        {"system": SNOMED, "code": "36682004", "display": "Physiotherapist"},
        PHYSIO,
    ),
)
PATIENTS = (
    ("patient-1", "Daan", "Jansen", "male"),
    ("patient-2", "Emma", "de Jong", "female"),
    ("patient-3", "Finn", "van den Berg", "male"),
    ("patient-4", "Gijs", "Mulder", "male"),
    ("patient-5", "Hanna", "Smit", "female"),
)
# (suffix, RRULE, weekday of the first window (0 = Monday), local start, local end)
WINDOWS = (
    ("am", "FREQ=WEEKLY;BYDAY=MO,WE,FR", 0, time(9), time(12)),
    ("pm", "FREQ=WEEKLY;BYDAY=TU,TH", 1, time(13), time(17)),
)
SLOT_MINUTES = 15


class Command(BaseCommand):
    help = "Create (once) a demo organisation with practitioners, schedules, patients, bookings."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--allow-demo-credentials",
            action="store_true",
            help="Seed even with DEBUG off. The demo logins are public: never on a server "
            "that holds real data or can be reached by others.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            if not options["allow_demo_credentials"]:
                raise CommandError(
                    "seed_demo installs publicly known logins (staff / medikit-demo, "
                    "demo-client / demo-secret) and refuses to run with DEBUG off. Use it "
                    "on a development machine (DEBUG=1), or pass --allow-demo-credentials "
                    "for a throwaway demo server."
                )
            self.stderr.write(
                "WARNING: seeding publicly known demo credentials with DEBUG off "
                f"(admin {STAFF_USERNAME}, API client {CLIENT_ID}). Anyone who can reach "
                "this server can log in with them."
            )
        with transaction.atomic():
            created = seed_demo()
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo clinic '{ORGANIZATION_ID}' ready ({created} rows created). "
                f"Admin: {STAFF_USERNAME} / {STAFF_PASSWORD}. "
                f"API client: {CLIENT_ID} / {CLIENT_SECRET}."
            )
        )


def seed_demo() -> int:
    """Create whatever of the demo data is missing; return how many rows were created."""
    counter = _Counter()
    organization = counter.get_or_create(
        m.Organization,
        id=ORGANIZATION_ID,
        defaults={"name": "Demo Clinic", "timezone": "Europe/Amsterdam"},
    )
    patients = {
        pid: counter.get_or_create(
            m.Patient,
            organization=organization,
            fhir_id=pid,
            defaults={"given": given, "family": family, "gender": gender},
        )
        for pid, given, family, gender in PATIENTS
    }
    schedules: dict[str, m.Schedule] = {}
    roles: dict[str, m.PractitionerRole] = {}
    week_start = _week_start(organization)
    for n, (pid, given, family, prefix, code, category) in enumerate(PRACTITIONERS, start=1):
        practitioner = counter.get_or_create(
            m.Practitioner,
            organization=organization,
            fhir_id=pid,
            defaults={"given": given, "family": family, "prefix": prefix},
        )
        role = counter.get_or_create(
            m.PractitionerRole,
            organization=organization,
            fhir_id=f"role-{n}",
            defaults={"practitioner": practitioner, "code": [code]},
        )
        roles[role.fhir_id] = role
        for suffix, rule, weekday, opens, closes in WINDOWS:
            day = week_start + timedelta(days=weekday)
            schedule = counter.get_or_create(
                m.Schedule,
                organization=organization,
                fhir_id=f"schedule-{n}-{suffix}",
                defaults={
                    "practitioner_role": role,
                    "practitioner": practitioner,
                    "service_category": [category],
                    # The first window is in the current week and the rule has no end, so
                    # there are free slots in the next seven days whenever this runs.
                    "planning_start": datetime.combine(day, opens, organization.zone),
                    "planning_end": datetime.combine(day, closes, organization.zone),
                    "slot_minutes": SLOT_MINUTES,
                    "rrule": rule,
                    "recurrence_timezone": organization.timezone,
                },
            )
            schedules[schedule.fhir_id] = schedule

    # (appointment id, patient, schedule, slot index within the next window)
    bookings = (
        ("appointment-1", "patient-2", "schedule-1-am", 0),
        ("appointment-2", "patient-3", "schedule-1-am", 1),
        ("appointment-3", "patient-4", "schedule-2-am", 2),
        ("appointment-4", "patient-5", "schedule-3-am", 0),
    )
    for appointment_id, patient_id, schedule_id, index in bookings:
        if m.Appointment.objects.filter(organization=organization, fhir_id=appointment_id).exists():
            continue
        schedule = schedules[schedule_id]
        start = _next_window(schedule).start + timedelta(minutes=SLOT_MINUTES * index)
        counter.book(
            organization,
            appointment_id,
            {
                "patient": patients[patient_id],
                "status": m.AppointmentStatus.BOOKED,
                "start": start,
                "end": start + timedelta(minutes=SLOT_MINUTES),
                "schedule": schedule,
                "practitioner_role": schedule.practitioner_role,
                "practitioner_status": m.ParticipationStatus.ACCEPTED,
                "service_category": schedule.service_category,
                "description": "Consultation",
            },
        )
    if not m.Appointment.objects.filter(
        organization=organization, fhir_id="appointment-physio-weekly"
    ).exists():
        physio = schedules["schedule-3-pm"]
        start = _next_window(physio).start
        counter.book(
            organization,
            "appointment-physio-weekly",
            {
                "patient": patients["patient-1"],
                "status": m.AppointmentStatus.BOOKED,
                "start": start,
                "end": start + timedelta(minutes=2 * SLOT_MINUTES),
                "schedule": physio,
                "practitioner_role": roles["role-3"],
                "practitioner_status": m.ParticipationStatus.ACCEPTED,
                "service_category": [PHYSIO],
                "description": "Weekly physiotherapy",
                "rrule": "FREQ=WEEKLY;COUNT=10",
                "recurrence_timezone": organization.timezone,
            },
        )

    _seed_staff(organization, counter)
    _seed_api_client(organization, counter)
    return counter.created


class _Counter:
    def __init__(self) -> None:
        self.created = 0

    def get_or_create(
        self, model: type[Any], defaults: dict[str, Any] | None = None, **lookup: Any
    ) -> Any:
        row, created = model.objects.get_or_create(defaults=defaults or {}, **lookup)
        self.created += int(created)
        return row

    def book(self, organization: m.Organization, fhir_id: str, fields: dict[str, Any]) -> None:
        """Store a demo appointment through the booking services: the engine refuses a
        clash and the AuditEvent is written, as for every other path."""
        appointment_store(
            organization=organization,
            appointment=m.Appointment(organization=organization, fhir_id=fhir_id, **fields),
            actor="seed_demo",
            action=m.AuditEvent.Action.CREATED,
        )
        self.created += 1


def _week_start(organization: m.Organization) -> date:
    today = timezone.localdate(timezone.now(), organization.zone)
    return today - timedelta(days=today.weekday())


def _next_window(schedule: m.Schedule) -> recurrence.Period:
    periods = recurrence.upcoming(
        rrule=schedule.rrule,
        first_start=schedule.planning_start,
        first_end=schedule.planning_end,
        tzid=schedule.rule_timezone(schedule.organization),
        after=timezone.now(),
        limit=1,
    )
    return periods[0]


def _seed_staff(organization: m.Organization, counter: _Counter) -> None:
    user_model = get_user_model()
    user = user_model.objects.filter(username=STAFF_USERNAME).first()
    if user is None:
        user = user_model(username=STAFF_USERNAME, is_staff=True, is_superuser=False)
        user.set_password(STAFF_PASSWORD)
        user.save()
        counter.created += 1
    group = counter.get_or_create(Group, name=STAFF_GROUP)
    permissions = Permission.objects.filter(content_type__app_label="scheduling").select_related(
        "content_type"
    )
    wanted = [
        p
        for p in permissions
        if p.content_type.model not in VIEW_ONLY_MODELS or p.codename.startswith("view_")
    ]
    # set() only touches the rows that differ, so a second run writes nothing.
    group.permissions.set(wanted)
    user.groups.add(group)
    counter.get_or_create(m.StaffMembership, organization=organization, user=user)


def _seed_api_client(organization: m.Organization, counter: _Counter) -> None:
    # By command name: API clients belong to fhir_api, which scheduling must not import.
    created = call_command(
        "seed_demo_api_client", organization=organization.pk, stdout=io.StringIO()
    )
    counter.created += int(created or 0)
