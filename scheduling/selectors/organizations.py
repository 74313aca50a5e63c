"""Reads of organisations, with the data stamps the search caches are keyed on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db.models import (
    Subquery,
)

from scheduling.db import search_cache
from scheduling.db.compiled_query import CompiledQuery
from scheduling.models import (
    DataStamp,
    Organization,
)


def organization_columns(organization_id: Any) -> list[Subquery]:
    """(id, name, time zone, schedules stamp, bookings stamp) of one organisation as scalar
    subqueries, all None when it does not exist: to ride along in another query (the
    request's token lookup) and save a round trip. See :func:`organization_from_row`.
    """
    organization = Organization.objects.filter(pk=organization_id)
    stamps = DataStamp.objects.filter(organization_id=organization_id)
    return [
        *(Subquery(organization.values(name)[:1]) for name in ("id", "name", "timezone")),
        *(Subquery(stamps.values(name)[:1]) for name in ("schedules", "bookings")),
    ]


def organization_from_row(row: Sequence[Any]) -> Organization | None:
    """The organisation of :func:`organization_columns`' values, with its data stamps.

    The id, name and time zone are loaded; other fields load on first access.
    """
    pk, name, tz, schedules_stamp, bookings_stamp = row
    if pk is None:
        return None
    organization = Organization.from_db("default", ["id", "name", "timezone"], [pk, name, tz])
    schedules_name, bookings_name = search_cache.STAMP_ATTRIBUTES
    setattr(organization, schedules_name, schedules_stamp)
    setattr(organization, bookings_name, bookings_stamp)
    return organization


_ORGANIZATION = CompiledQuery(
    lambda organization_id: (
        Organization.objects.filter(pk=organization_id)
        .order_by()
        .values_list(*organization_columns(organization_id))
    )
)


def organization_get(*, organization_id: str) -> Organization | None:
    """The organisation with its data stamps (``search_cache``), in one query.

    Every API request needs it, so the SQL is compiled once per process.
    """
    rows = _ORGANIZATION.rows(organization_id)
    return organization_from_row(rows[0]) if rows else None
