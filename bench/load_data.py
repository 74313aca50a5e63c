"""A realistic one-clinic dataset for bench/load.py, created fast with bulk_create.

Import only after ``django.setup()``. Times are computed on the wall clock of the
organisation's zone and converted to UTC, exactly as the recurrence engine expands them,
so appointments land on real slot starts (also across DST changes).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.db import transaction

from fhir_api.models import ApiClient, ApiClientOrganization
from fhir_api.tokens import issue_access_token
from scheduling import models as m

ORG_ID = "load-clinic"
ZONE = "Europe/Amsterdam"
SCOPES = (
    "system/Schedule.rs system/Slot.rs system/Appointment.rs system/Appointment.c "
    "system/AppointmentResponse.c"
)
SLOT_MINUTES = 15
#: Morning or afternoon surgery, 3 hours = 12 slots of 15 minutes.
SESSIONS = (time(9, 0), time(13, 0))
SESSION_HOURS = 3
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR")


@dataclass(frozen=True)
class Sizes:
    practitioners: int = 50
    schedules: int = 200
    patients: int = 5_000
    appointments: int = 20_000
    upcoming_share: float = 0.05  # of appointments, in the coming week
    history_weeks: int = 52
    stored_slots: int = 1_000


@dataclass
class Dataset:
    """What the load driver needs to build requests (plain data, JSON-serialisable)."""

    organization: str
    token: str
    patients: list[str] = field(default_factory=list)
    #: Bookable future slot starts: [schedule id, practitioner role id, start ISO].
    booking_candidates: list[list[str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _ScheduleSpec:
    fhir_id: str
    role_index: int
    weekday: int  # 0 = Monday
    session: time


def _first_on_or_after(day: date, weekday: int) -> date:
    return day + timedelta(days=(weekday - day.weekday()) % 7)


def _slot_starts(day: date, session: time, zone: ZoneInfo) -> list[datetime]:
    """The slot starts of one session on one day, in UTC (wall clock kept across DST)."""
    local = datetime.combine(day, session, tzinfo=zone)
    return [
        (local + timedelta(minutes=SLOT_MINUTES * k)).astimezone(UTC)
        for k in range(SESSION_HOURS * 60 // SLOT_MINUTES)
    ]


def build(*, sizes: Sizes, seed: int = 8) -> Dataset:
    """Create the organisation, its people, schedules and appointments, and a token."""
    rng = random.Random(seed)
    zone = ZoneInfo(ZONE)
    now = datetime.now(UTC)
    today = now.astimezone(zone).date()
    first_week = today - timedelta(weeks=sizes.history_weeks)
    until = (now + timedelta(days=400)).strftime("%Y%m%dT%H%M%SZ")

    with transaction.atomic():
        org = m.Organization.objects.create(id=ORG_ID, name="Load test clinic", timezone=ZONE)
        practitioners = m.Practitioner.objects.bulk_create(
            m.Practitioner(
                organization=org, fhir_id=f"prac-{i}", family=f"Arts{i}", given="Eva", prefix="Dr."
            )
            for i in range(sizes.practitioners)
        )
        roles = m.PractitionerRole.objects.bulk_create(
            m.PractitionerRole(
                organization=org,
                fhir_id=f"role-{i}",
                practitioner=practitioners[i],
                code=[{"code": "gp", "display": "General practitioner"}],
            )
            for i in range(sizes.practitioners)
        )

        specs = []
        for i in range(sizes.schedules):
            # Each practitioner gets schedules/practitioners half-days spread over the week.
            role_index = i % sizes.practitioners
            slot_of_week = (i // sizes.practitioners + role_index) % (len(WEEKDAYS) * 2)
            specs.append(
                _ScheduleSpec(
                    fhir_id=f"sched-{i}",
                    role_index=role_index,
                    weekday=slot_of_week // 2,
                    session=SESSIONS[slot_of_week % 2],
                )
            )
        schedules = m.Schedule.objects.bulk_create(
            m.Schedule(
                organization=org,
                fhir_id=spec.fhir_id,
                practitioner_role=roles[spec.role_index],
                practitioner=practitioners[spec.role_index],
                service_category=[
                    {
                        "system": "http://example.org/service-category",
                        "code": "gp",
                        "display": "General practice",
                    }
                ],
                planning_start=_slot_starts(
                    _first_on_or_after(first_week, spec.weekday), spec.session, zone
                )[0],
                planning_end=_slot_starts(
                    _first_on_or_after(first_week, spec.weekday), spec.session, zone
                )[0]
                + timedelta(hours=SESSION_HOURS),
                slot_minutes=SLOT_MINUTES,
                rrule=f"FREQ=WEEKLY;BYDAY={WEEKDAYS[spec.weekday]};UNTIL={until}",
            )
            for spec in specs
        )
        patients = m.Patient.objects.bulk_create(
            (
                m.Patient(
                    organization=org,
                    fhir_id=f"pat-{i}",
                    family=f"Jansen{i}",
                    given=rng.choice(("Anna", "Sem", "Noah", "Julia", "Mila", "Daan")),
                    gender=rng.choice(("female", "male")),
                    birth_date=date(1940, 1, 1) + timedelta(days=rng.randrange(30_000)),
                )
                for i in range(sizes.patients)
            ),
            batch_size=2_000,
        )

        # Every (schedule, slot start) at most once, so the database's one-active-
        # appointment-per-slot constraint holds.
        past: list[tuple[int, datetime]] = []
        upcoming: list[tuple[int, datetime]] = []
        for index, spec in enumerate(specs):
            day = _first_on_or_after(first_week, spec.weekday)
            while day <= today + timedelta(days=21):
                for start in _slot_starts(day, spec.session, zone):
                    if start < now:
                        past.append((index, start))
                    else:
                        upcoming.append((index, start))
                day += timedelta(weeks=1)
        n_upcoming = int(sizes.appointments * sizes.upcoming_share)
        week_ahead = [s for s in upcoming if s[1] < now + timedelta(days=7)]
        chosen = rng.sample(past, sizes.appointments - n_upcoming) + rng.sample(
            week_ahead, min(n_upcoming, len(week_ahead))
        )
        past_statuses = ("fulfilled",) * 17 + ("cancelled", "noshow", "booked")
        appointments = []
        # A person is never in two places at once (the exclusion constraints of migration
        # 0004): an active appointment takes its practitioner's and its patient's start.
        occupied: set[tuple[str, datetime]] = set()
        for n, (index, start) in enumerate(chosen):
            spec = specs[index]
            schedule = schedules[index]
            status = rng.choice(past_statuses) if start < now else "booked"
            active = status not in ("cancelled", "noshow")
            if active and (schedule.occupant, start) in occupied:
                continue
            patient = patients[rng.randrange(len(patients))]
            while active and (f"patient:{patient.pk}", start) in occupied:
                patient = patients[rng.randrange(len(patients))]
            if active:
                occupied.update({(schedule.occupant, start), (f"patient:{patient.pk}", start)})
            end = start + timedelta(minutes=SLOT_MINUTES)
            appointments.append(
                m.Appointment(
                    organization=org,
                    fhir_id=f"appt-{n}",
                    patient=patient,
                    status=status,
                    start=start,
                    end=end,
                    schedule=schedule,
                    practitioner_role=roles[spec.role_index],
                    service_category=schedule.service_category,
                    # bulk_create skips clean(), which derives these.
                    occupant=schedule.occupant,
                    occupied_start=start,
                    occupied_end=end,
                )
            )
        m.Appointment.objects.bulk_create(appointments, batch_size=2_000)

        # Stored busy-unavailable slots (a practitioner's afternoon off, a course day):
        # the slot search has to read them as well as the appointments.
        taken = set(chosen)
        free_past = [s for s in past if s not in taken]
        remaining = rng.sample(free_past, min(sizes.stored_slots, len(free_past)))
        remaining += [s for s in upcoming if s not in taken][::97]
        stored_slots = m.Slot.objects.bulk_create(
            (
                m.Slot(
                    organization=org,
                    fhir_id=f"slot-{n}",
                    schedule=schedules[index],
                    status="busy-unavailable",
                    start=start,
                    end=start + timedelta(minutes=SLOT_MINUTES),
                )
                for n, (index, start) in enumerate(remaining)
            ),
            batch_size=2_000,
        )

        client = ApiClient.objects.create(
            name="load test", client_id=ApiClient.new_client_id(), scopes=SCOPES
        )
        ApiClientOrganization.objects.create(organization=org, client=client)
        token, _ = issue_access_token(client=client, lifetime=24 * 3600)

    # Bookable: from tomorrow to two weeks ahead, including some already taken (409s are
    # part of a realistic mix: two patients racing for the same slot).
    horizon = [s for s in upcoming if now + timedelta(days=1) <= s[1] < now + timedelta(days=15)]
    candidates = [
        [specs[index].fhir_id, f"role-{specs[index].role_index}", start.isoformat()]
        for index, start in horizon
        if (index, start) not in taken or rng.random() < 0.5
    ]
    return Dataset(
        organization=ORG_ID,
        token=token,
        patients=[p.fhir_id for p in patients],
        booking_candidates=candidates,
        counts={
            "practitioners": len(practitioners),
            "practitioner_roles": len(roles),
            "schedules": len(schedules),
            "patients": len(patients),
            "appointments": len(appointments),
            "stored_slots": len(stored_slots),
            "appointments_upcoming_week": sum(1 for a in appointments if a.start >= now),
        },
    )


# --- A clinic of stored slots (issue 19) -------------------------------------------------

STORED_ORG_ID = "stored-clinic"
#: 36 slots of 15 minutes a weekday (08:00-17:00) x 20 weekdays = 720 stored slots.
STORED_DAY_START = time(8, 0)
STORED_SLOTS_PER_DAY = 36


@dataclass(frozen=True)
class StoredSizes:
    schedules: int = 50
    slots_per_schedule: int = 720
    busy_share: float = 0.30


@dataclass
class StoredDataset:
    """The stored-slot clinic for the load driver's stored phases (JSON-serialisable)."""

    organization: str
    token: str
    schedules: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def build_stored(*, sizes: StoredSizes, seed: int = 19) -> StoredDataset:
    """A clinic imported from another system: schedules WITHOUT a slot duration (nothing is
    generated), each with ``slots_per_schedule`` stored 15-minute Slots on the weekdays
    from today, ``busy_share`` of them busy. Its own organisation and token."""
    rng = random.Random(seed)
    zone = ZoneInfo(ZONE)
    today = datetime.now(UTC).astimezone(zone).date()
    days: list[date] = []
    day = today
    while len(days) * STORED_SLOTS_PER_DAY < sizes.slots_per_schedule:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    starts = [
        (datetime.combine(d, STORED_DAY_START, tzinfo=zone) + timedelta(minutes=15 * k)).astimezone(
            UTC
        )
        for d in days
        for k in range(STORED_SLOTS_PER_DAY)
    ][: sizes.slots_per_schedule]
    with transaction.atomic():
        org = m.Organization.objects.create(id=STORED_ORG_ID, name="Imported clinic", timezone=ZONE)
        practitioners = m.Practitioner.objects.bulk_create(
            m.Practitioner(organization=org, fhir_id=f"sp-{i}", family=f"Smit{i}", given="Jan")
            for i in range(sizes.schedules)
        )
        roles = m.PractitionerRole.objects.bulk_create(
            m.PractitionerRole(organization=org, fhir_id=f"sr-{i}", practitioner=practitioners[i])
            for i in range(sizes.schedules)
        )
        schedules = m.Schedule.objects.bulk_create(
            m.Schedule(
                organization=org,
                fhir_id=f"ss-{i}",
                practitioner_role=roles[i],
                practitioner=practitioners[i],
                planning_start=starts[0],
                planning_end=starts[-1] + timedelta(minutes=15),
                slot_minutes=None,  # imported: the stored Slots are the grid
            )
            for i in range(sizes.schedules)
        )
        slots = m.Slot.objects.bulk_create(
            (
                m.Slot(
                    organization=org,
                    fhir_id=f"ss-{i}-{n}",
                    schedule=schedule,
                    status="busy" if rng.random() < sizes.busy_share else "free",
                    start=start,
                    end=start + timedelta(minutes=15),
                )
                for i, schedule in enumerate(schedules)
                for n, start in enumerate(starts)
            ),
            batch_size=5_000,
        )
        client = ApiClient.objects.create(
            name="stored load test", client_id=ApiClient.new_client_id(), scopes=SCOPES
        )
        ApiClientOrganization.objects.create(organization=org, client=client)
        token, _ = issue_access_token(client=client, lifetime=24 * 3600)
    return StoredDataset(
        organization=STORED_ORG_ID,
        token=token,
        schedules=[s.fhir_id for s in schedules],
        counts={
            "schedules": len(schedules),
            "stored_slots": len(slots),
            "busy": sum(1 for s in slots if s.status == "busy"),
            "weekdays": len(days),
        },
    )


#: How many ids of each kind the reads-by-id phases draw from (bench/load.py).
READ_SAMPLE = 2_000


def read_targets(organization_id: str, *, seed: int = 19) -> dict[str, Any]:
    """Ids for the reads-by-id phases, drawn from what :func:`build` stored.

    ``slot``: stored Slot ids; ``schedule``: Schedule ids; ``appointment``: [patient id,
    appointment id] pairs (an appointment is read below its patient). Random samples of
    at most ``READ_SAMPLE`` each, so a phase reads many different rows, not one row that
    every cache would hold.
    """
    rng = random.Random(seed)

    def sample(rows: list[Any]) -> list[Any]:
        return rng.sample(rows, min(READ_SAMPLE, len(rows)))

    slots = list(
        m.Slot.objects.filter(organization_id=organization_id).values_list("fhir_id", flat=True)
    )
    schedules = list(
        m.Schedule.objects.filter(organization_id=organization_id).values_list("fhir_id", flat=True)
    )
    appointments = [
        [patient, appointment]
        for patient, appointment in m.Appointment.objects.filter(
            organization_id=organization_id
        ).values_list("patient__fhir_id", "fhir_id")
    ]
    return {
        "slot": sample(slots),
        "schedule": sample(schedules),
        "appointment": sample(appointments),
    }
