"""Reads of the resources other resources reference, by primary key (for ``_include``).

Each read is one query filtered by ``organization`` as well as by key: a reference that
somehow pointed into another tenant yields nothing rather than the other tenant's row.
"""

from __future__ import annotations

from collections.abc import Iterable

from scheduling.models import Organization, Patient, Practitioner, PractitionerRole, Schedule


def _keys(pks: Iterable[int | None]) -> set[int]:
    return {pk for pk in pks if pk is not None}


def schedules_by_pk(*, organization: Organization, pks: Iterable[int | None]) -> list[Schedule]:
    """Stored schedules of ``organization`` with these keys, ordered by id, actors joined."""
    keys = _keys(pks)
    if not keys:
        return []
    rows = list(
        Schedule.objects.filter(organization=organization, pk__in=keys)
        .select_related("practitioner_role__practitioner", "practitioner")
        .order_by("fhir_id")
    )
    for schedule in rows:
        schedule.organization = organization  # the mappers read its zone: no query per row
    return rows


def practitioner_roles_by_pk(
    *, organization: Organization, pks: Iterable[int | None]
) -> list[PractitionerRole]:
    """Practitioner roles of ``organization`` with these keys, ordered by id."""
    keys = _keys(pks)
    if not keys:
        return []
    return list(
        PractitionerRole.objects.filter(organization=organization, pk__in=keys)
        .select_related("practitioner")
        .order_by("fhir_id")
    )


def practitioners_by_pk(
    *, organization: Organization, pks: Iterable[int | None]
) -> list[Practitioner]:
    """Practitioners of ``organization`` with these keys, ordered by id."""
    keys = _keys(pks)
    if not keys:
        return []
    return list(
        Practitioner.objects.filter(organization=organization, pk__in=keys).order_by("fhir_id")
    )


def patients_by_pk(*, organization: Organization, pks: Iterable[int | None]) -> list[Patient]:
    """Patients of ``organization`` with these keys, ordered by id."""
    keys = _keys(pks)
    if not keys:
        return []
    return list(Patient.objects.filter(organization=organization, pk__in=keys).order_by("fhir_id"))
