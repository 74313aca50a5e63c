"""Included resources of one search page: ``_include`` (docs/api.md section 15).

The views say which includes they take (the tables below); :func:`requested` reads the
request's ``_include`` values against them, and the ``*_includes`` functions map the
resources the page's matches reference. Only the page is looked at, so the cost of an
include is per page, and it is nothing when no ``_include`` was asked for (the slot search
is a hot path). Loads go through ``scheduling.selectors.references``, which filters by
organisation: a foreign tenant's resource is never included.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fhir_api import mappers, search
from scheduling import selectors
from scheduling.errors import InvalidSearchValue
from scheduling.models import Organization, Patient, Schedule

#: parameter -> include -> the target types it may reach.
IncludeTable = Mapping[str, Mapping[str, tuple[str, ...]]]
#: include ("Source:param") -> target types asked for.
Requested = dict[str, frozenset[str]]
Entry = tuple[str, dict[str, Any]]

_ACTORS = ("PractitionerRole", "Practitioner")
SLOT: IncludeTable = {
    "_include": {"Slot:schedule": ("Schedule",)},
    # FHIR's iterate: the actors of the schedules that Slot:schedule included.
    "_include:iterate": {"Schedule:actor": _ACTORS},
}
SCHEDULE: IncludeTable = {"_include": {"Schedule:actor": _ACTORS}}
APPOINTMENT: IncludeTable = {"_include": {"Appointment:actor": ("Patient", "PractitionerRole")}}


def requested(
    values: Mapping[str, Sequence[str]], table: IncludeTable, *, lenient: bool
) -> Requested:
    """The includes asked for, each with its target types; InvalidSearchValue (400) for one
    this search does not offer, unless ``lenient`` (``Prefer: handling=lenient``)."""
    out: dict[str, set[str]] = {}
    for param, items in values.items():
        offered = table.get(param, {})
        for raw in items:
            try:
                include = search.parse_include(raw, param=param)
                targets = offered.get(include.key)
                if targets is None:
                    listed = [f"{p}={k}" for p, inc in table.items() for k in inc]
                    raise InvalidSearchValue(
                        f"{param}={raw} is not supported on this search; supported: "
                        f"{', '.join(listed) or 'none'} (or send 'Prefer: handling=lenient' "
                        "to ignore it).",
                        expression=[param],
                    )
                if include.target is not None and include.target not in targets:
                    raise InvalidSearchValue(
                        f"{param}={raw}: {include.key} reaches {' or '.join(targets)} here, "
                        f"not {include.target}.",
                        expression=[param],
                    )
            except InvalidSearchValue:
                if lenient:
                    continue
                raise
            wanted = {include.target} if include.target else set(targets)
            out.setdefault(include.key, set()).update(wanted)
    if "Schedule:actor" in out and "Slot:schedule" not in out and "_include:iterate" in table:
        # Iterate follows references of included schedules: without them it reaches nothing.
        if not lenient:
            raise InvalidSearchValue(
                "_include:iterate=Schedule:actor needs _include=Slot:schedule as well: it "
                "includes the actors of the included schedules.",
                expression=["_include:iterate"],
            )
        del out["Schedule:actor"]
    return {key: frozenset(targets) for key, targets in out.items()}


class _Entries:
    """Included entries in order, each resource once."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.items: list[Entry] = []
        self._seen: set[tuple[str, str]] = set()

    def add(self, resource: dict[str, Any]) -> None:
        key = (resource["resourceType"], resource["id"])
        if key not in self._seen:
            self._seen.add(key)
            self.items.append((f"{self.base}/{key[0]}/{key[1]}", resource))


def _actors(
    entries: _Entries,
    organization: Organization,
    schedules: Iterable[Schedule | selectors.ScheduleRow],
    targets: frozenset[str],
) -> None:
    schedules = list(schedules)
    if "PractitionerRole" in targets:
        roles = selectors.practitioner_roles_by_pk(
            organization=organization, pks=(s.practitioner_role_id for s in schedules)
        )
        for role in roles:
            entries.add(mappers.practitioner_role_to_fhir(role))
    if "Practitioner" in targets:
        people = selectors.practitioners_by_pk(
            organization=organization, pks=(s.practitioner_id for s in schedules)
        )
        for person in people:
            entries.add(mappers.practitioner_to_fhir(person))


def slot_includes(
    *,
    organization: Organization,
    page: Sequence[selectors.PageSlot],
    wanted: Requested,
    base: str,
) -> list[Entry]:
    """``Slot:schedule`` (the stored parent schedules) and, iterated, their actors."""
    entries = _Entries(base)
    if "Slot:schedule" not in wanted or not page:
        return entries.items
    schedules = selectors.schedules_by_pk(
        organization=organization, pks=(r.schedule_pk for r in page)
    )
    for schedule in schedules:
        entries.add(mappers.schedule_to_fhir(schedule))
    if "Schedule:actor" in wanted:
        _actors(entries, organization, schedules, wanted["Schedule:actor"])
    return entries.items


def schedule_includes(
    *,
    organization: Organization,
    page: Sequence[selectors.ScheduleResult],
    wanted: Requested,
    base: str,
) -> list[Entry]:
    """``Schedule:actor``: the practitioner roles and practitioners the page's schedules name."""
    entries = _Entries(base)
    if "Schedule:actor" in wanted and page:
        _actors(entries, organization, (r.row for r in page), wanted["Schedule:actor"])
    return entries.items


def appointment_includes(
    *,
    organization: Organization,
    patient: Patient,
    page: Sequence[selectors.AppointmentResult],
    wanted: Requested,
    base: str,
) -> list[Entry]:
    """``Appointment:actor``: the patient of the path and the practitioner roles."""
    entries = _Entries(base)
    targets = wanted.get("Appointment:actor")
    if not targets or not page:
        return entries.items
    if "Patient" in targets:
        # Every appointment of this search is the path's patient's (tenancy resolved it).
        entries.add(mappers.patient_to_fhir(patient))
    if "PractitionerRole" in targets:
        roles = selectors.practitioner_roles_by_pk(
            organization=organization, pks=(r.appointment.practitioner_role_id for r in page)
        )
        for role in roles:
            entries.add(mappers.practitioner_role_to_fhir(role))
    return entries.items
