"""Bookings follow their person when a schedule or role changes hands.

An appointment's ``occupant`` (whose time it takes, ``models.occupant_key``) is derived
from its schedule's practitioner or role, or its role's practitioner. The engine, the
occupant locks and PostgreSQL's exclusion constraints all compare that key, so when staff
or an import give a schedule or a role to another practitioner, the appointments already
booked there must take the new person's time from then on. Otherwise the new person could
be booked again at those times, and the old one would stay busy for bookings that are no
longer theirs.

:func:`occupants_rekey` re-derives the key of every appointment of the changed schedules
and roles, under the locks of the old and the new occupants, and refuses (raising, so the
caller's transaction writes nothing) when an active one would double-book the new person.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import Q

from scheduling.errors import SlotTaken, Text, gettext_noop
from scheduling.models import Appointment, AuditEvent, Organization, PractitionerRole, Schedule
from scheduling.selectors.common import utc_now
from scheduling.services.claims import ClashCheck, integrity_conflict, lock_occupants
from scheduling.services.common import audit

__all__ = ["occupants_rekey"]


def occupants_rekey(
    *,
    organization: Organization,
    schedules: Iterable[Schedule] = (),
    roles: Iterable[PractitionerRole] = (),
    actor: str,
    now: datetime | None = None,
    check_only: bool = False,
) -> list[Appointment]:
    """Give the appointments of ``schedules`` and ``roles`` the occupant these instances
    name. Returns the appointments whose occupant changed, each active one with an
    AuditEvent; raises SlotTaken naming the clashes, writing nothing, when an active one
    would overlap the new occupant's other bookings. Call it in the transaction that saved
    the schedules or roles, after saving them.

    ``check_only``: the instances are not saved yet (a form being validated); only
    refuse, without locks or writes. The saving call checks again under the locks."""
    now = now or utc_now()
    schedules, roles = list(schedules), list(roles)
    schedule_ids = {s.pk for s in schedules if s.pk}
    role_ids = {r.pk for r in roles if r.pk}
    if not schedule_ids and not role_ids:
        return []
    whose = (
        Q(schedule_id__in=schedule_ids)
        | Q(schedule__practitioner_role_id__in=role_ids)
        | Q(schedule__isnull=True, practitioner_role_id__in=role_ids)
    )
    with transaction.atomic():
        rows = (
            Appointment.objects.filter(organization=organization)
            .filter(whose)
            .select_related("schedule__practitioner_role", "practitioner_role", "patient")
            .order_by("pk")
        )
        by_schedule = {s.pk: s for s in schedules if s.pk}
        by_role = {r.pk: r for r in roles if r.pk}
        loaded = []
        for appointment in rows:
            # The given instances, which may be newer than the database (check_only).
            if appointment.schedule_id in by_schedule:
                appointment.schedule = by_schedule[appointment.schedule_id]
            schedule = appointment.schedule
            if schedule is not None and schedule.practitioner_role_id in by_role:
                schedule.practitioner_role = by_role[schedule.practitioner_role_id]
            if appointment.practitioner_role_id in by_role:
                appointment.practitioner_role = by_role[appointment.practitioner_role_id]
            loaded.append(appointment)
        moved = [(a, a.occupant) for a in loaded if a.resolve_occupant() != a.occupant]
        if not moved:
            return []
        for appointment, _old in moved:
            appointment.occupant = appointment.resolve_occupant()
        if not check_only:
            # Both sides: nobody books the new person meanwhile, and the old person's time
            # is not handed out while these still hold it.
            lock_occupants(
                organization=organization,
                keys={old for _a, old in moved} | {a.occupant for a, _old in moved},
            )
        changed = [a for a, _old in moved]
        check = ClashCheck(
            organization=organization,
            appointments=changed,
            now=now,
            exclude=[a.pk for a in changed],
        )
        clashes: list[Text] = []
        for appointment in changed:
            found = check.check(appointment)
            if found:
                clashes.append(
                    Text(
                        gettext_noop("Appointment/%(appointment)s: %(clashes)s"),
                        {"appointment": appointment.fhir_id, "clashes": found},
                    )
                )
        if clashes:
            raise SlotTaken(
                gettext_noop(
                    "The bookings already made here would double-book the new practitioner: "
                    "%(clashes)s. Move or cancel them first."
                ),
                expression=["practitioner"],
                params={"clashes": clashes[:5]},
            )
        if check_only:
            for appointment, old in moved:
                appointment.occupant = old  # loaded copies, but leave them as stored
            return changed
        try:
            with transaction.atomic():
                Appointment.objects.bulk_update(changed, ["occupant"])
        except IntegrityError as exc:
            if integrity_conflict(exc):
                raise SlotTaken(
                    gettext_noop(
                        "The bookings already made here would double-book the new "
                        "practitioner (refused by the database)."
                    ),
                    expression=["practitioner"],
                ) from None
            raise
        for appointment, old in moved:
            if appointment.is_active:
                audit(
                    organization=organization,
                    actor=actor,
                    action=AuditEvent.Action.UPDATED,
                    appointment=appointment,
                    detail={"occupant": {"from": old, "to": appointment.occupant}},
                )
    return changed
