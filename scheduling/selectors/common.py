"""Pieces every selector shares: tokens, window filters, cached recurrence expansion."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, TypeVar

from django.db.models import (
    Model,
    Q,
)

from scheduling import recurrence
from scheduling.errors import NotFound, WindowTooLarge, gettext_noop
from scheduling.models import (
    Appointment,
    Organization,
    Schedule,
)
from scheduling.recurrence import Period

_DAY = 86_400


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: (system, code): system None matches any system, "" matches codings without a system.


Token = tuple[str | None, str]


def token_matches(concepts: object, tokens: Sequence[Token]) -> bool:
    """True if any stored coding ({system, code, display}) matches any token (OR)."""
    if not isinstance(concepts, list):
        return False
    for item in concepts:
        if not isinstance(item, dict):
            continue
        for system, code in tokens:
            if item.get("code") != code:
                continue
            if system is None or (item.get("system") or "") == system:
                return True
    return False


def overlaps(start: datetime, end: datetime, window: Period) -> bool:
    return start < window.end and end > window.start


def expand_rule(
    obj: Schedule | Appointment,
    organization: Organization,
    start: datetime,
    end: datetime,
    first: tuple[datetime, datetime],
    window: Period,
) -> list[Period]:
    return recurrence.expand(
        rrule=obj.rrule,
        first_start=first[0],
        first_end=first[1],
        tzid=obj.rule_timezone(organization),
        exdates=obj.exdate_values(),
        window_start=window.start,
        window_end=window.end,
    )


def ids_and_parents(ids: Iterable[str]) -> tuple[set[str], set[str]]:
    wanted = set(ids)
    lookup = set(wanted)
    for value in wanted:
        split = recurrence.split_occurrence_id(value)
        if split is not None:
            lookup.add(split[0])
    return wanted, lookup


def window_q(window: Period, start_field: str, end_field: str, blank: str = "") -> Q:
    """Rows overlapping the window, plus recurring rows that start before it ends.

    ``blank`` is the empty rule (a compiled query passes it as an argument)."""
    plain = Q(rrule=blank, **{f"{start_field}__lt": window.end, f"{end_field}__gt": window.start})
    recurring = ~Q(rrule=blank) & Q(**{f"{start_field}__lt": window.end})
    return plain | recurring


def generated_not_found(kind: str, fhir_id: str, parent_exists: bool, parent: str) -> NotFound:
    if parent_exists:
        parent_type = "Appointment" if kind == "Appointment" else "Schedule"
        return NotFound(
            gettext_noop(
                "%(kind)s '%(id)s' is a generated occurrence of %(parent_type)s/%(parent)s; "
                "generated occurrences cannot be read by id, only found by a search with a "
                "date window."
            ),
            params={"kind": kind, "id": fhir_id, "parent_type": parent_type, "parent": parent},
        )
    return NotFound(
        gettext_noop("%(kind)s '%(id)s' was not found."), params={"kind": kind, "id": fhir_id}
    )


def _day_floor(ts: int) -> int:
    return ts - ts % _DAY


def _from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _expand_stamps(
    rrule: str,
    first_start: int,
    first_end: int,
    tzid: str,
    exdates: str,
    window_start: datetime,
    window_end: datetime,
) -> tuple[tuple[int, int], ...]:
    periods = recurrence.expand(
        rrule=rrule,
        first_start=_from_micros(first_start),
        first_end=_from_micros(first_end),
        tzid=tzid,
        exdates=[datetime.fromisoformat(value) for value in json.loads(exdates or "[]")],
        window_start=window_start,
        window_end=window_end,
    )
    return tuple((int(p.start.timestamp()), int(p.end.timestamp())) for p in periods)


@lru_cache(maxsize=4096)
def _cached_expansion(
    rrule: str,
    first_start: int,
    first_end: int,
    tzid: str,
    exdates: str,
    day_start: int,
    day_end: int,
) -> tuple[tuple[int, int], ...]:
    """Occurrences as integer UTC timestamps over whole UTC days [day_start, day_end).

    A pure function of its arguments: every input of the rule is part of the key (the
    first period in microseconds, the exdates as stored JSON text), so the cache stays
    correct however many workers there are and whenever a row changes (a changed row is
    simply a new key). Whole days let the searches of one day share entries.
    """
    return _expand_stamps(
        rrule,
        first_start,
        first_end,
        tzid,
        exdates,
        datetime.fromtimestamp(day_start, UTC),
        datetime.fromtimestamp(day_end, UTC),
    )


def occurrence_stamps(
    *,
    rrule: str,
    first_start: int,
    first_end: int,
    tzid: str,
    exdates: str,
    window: Period,
    window_start: int,
    window_end: int,
) -> list[tuple[int, int]]:
    """Occurrences overlapping ``window`` as integer timestamps (through the cache).

    ``first_start``/``first_end`` are microseconds since 1970, ``exdates`` the stored JSON.
    """
    try:
        days = _cached_expansion(
            rrule,
            first_start,
            first_end,
            tzid,
            exdates,
            _day_floor(window_start),
            _day_floor(window_end - 1) + _DAY,
        )
    except WindowTooLarge:
        # The whole days may hold a few more occurrences than the window itself: only the
        # window decides whether a search is too costly.
        days = _expand_stamps(
            rrule, first_start, first_end, tzid, exdates, window.start, window.end
        )
    return [(s, e) for s, e in days if s < window_end and e > window_start]


@lru_cache(maxsize=65_536)
def occurrence_suffix(start: int) -> str:
    """What :func:`recurrence.occurrence_id` appends to a parent's id for an occurrence
    starting at ``start`` (epoch seconds): the ids of generated slots and occurrences are
    made in bulk, and many share their starts, so each is formatted once per process."""
    return recurrence.occurrence_id("", datetime.fromtimestamp(start, UTC))


_M = TypeVar("_M", bound=Model)


@lru_cache(maxsize=32)
def _attnames(model: type[Model]) -> tuple[str, ...]:
    return tuple(field.attname for field in model._meta.concrete_fields)


def loaded(model: type[_M], organization: Organization, **values: Any) -> _M:
    """An instance of ``model`` of ``organization`` with only ``values`` (by attname) loaded,
    as ``.only()`` would load it: the other fields are deferred, so reading one asks the
    database instead of giving a default that is not the row's. Built with Django's own
    ``from_db``, about three times cheaper than ``model(**values)``: a search page makes
    an instance per schedule and per stored slot it shows."""
    values["organization_id"] = organization.pk
    names = [name for name in _attnames(model) if name in values]
    instance = model.from_db(None, names, [values[name] for name in names])
    model._meta.get_field("organization").set_cached_value(instance, organization)  # type: ignore[union-attr]
    return instance


def ts(value: datetime) -> int:
    return int(value.timestamp())


def utc_now() -> datetime:
    return datetime.now(UTC)
