"""Recurrence rules (RFC 5545 RRULE) -> occurrences in a window. PURE: stdlib only.

How a rule is read (docs/api.md section 4; RFC 5545 3.3.10 is the reference, not any library):

- ``first_start``/``first_end`` are DTSTART/DTEND: the first occurrence. DTSTART is always the
  first instance of the set (RFC 5545 3.8.5.3) and counts towards COUNT, even where it does not
  match the rule.
- The rule runs on naive wall-clock times in ``tzid``; each generated time is then localized.
  A wall-clock time that does not exist that day (spring-forward gap) is not part of the set:
  it is skipped and counted neither for COUNT nor for BYSETPOS; an ambiguous one (fall-back)
  means its first instance (``fold=0``).
- Every occurrence lasts the exact duration ``first_end - first_start``.
- UNTIL is applied after the set is built: a UTC ``Z`` value bounds by instant, a floating
  value by wall-clock time in ``tzid``, a date-only value includes the whole of that local day.
- Each period (a day, a WKST-started week, a month or a year, INTERVAL periods apart from
  DTSTART's) is built whole, from the RFC's expand/limit table: every BYxxx part is a condition
  on the day, BYDAY is met by any of its items (plain or ordinal), then the times of the day,
  then BYSETPOS on the period's set, and only then are instances before DTSTART dropped.
  python-dateutil, which this module used to wrap, departs from this for mixed plain/ordinal
  BYDAY lists (it yields nothing) and for BYSETPOS in a partial first week (dateutil #1398).

Cost does not grow with the rule's age: ``expand`` starts at the period boundary (in INTERVAL
phase) just before the window, which yields the identical set because every period's instances
depend only on that period and the rule. For COUNT rules the last counted occurrence is
computed once (and cached) and then used like an UNTIL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from scheduling.errors import InvalidRecurrence, WindowTooLarge, gettext_noop

__all__ = [
    "FORBIDDEN_FREQS",
    "MAX_OCCURRENCES",
    "Period",
    "expand",
    "expand_naive",
    "occurrence_id",
    "split_occurrence_id",
    "upcoming",
    "validate_rrule",
    "validate_timezone",
]

FORBIDDEN_FREQS = frozenset({"SECONDLY", "MINUTELY", "HOURLY"})
# One expansion may not produce more than this many occurrences (a 366-day window of a rule
# with, say, BYHOUR and BYMINUTE lists could otherwise yield millions).
MAX_OCCURRENCES = 50_000
# Frequencies, numbered as python-dateutil numbers them.
_YEARLY, _MONTHLY, _WEEKLY, _DAILY = 0, 1, 2, 3
_FREQS = {"DAILY": _DAILY, "WEEKLY": _WEEKLY, "MONTHLY": _MONTHLY, "YEARLY": _YEARLY}
_DAYS = {"MO": 0, "TU": 1, "WE": 2, "TH": 3, "FR": 4, "SA": 5, "SU": 6}
_KNOWN_PARTS = frozenset(
    {
        "FREQ",
        "UNTIL",
        "COUNT",
        "INTERVAL",
        "BYSECOND",
        "BYMINUTE",
        "BYHOUR",
        "BYDAY",
        "BYMONTHDAY",
        "BYYEARDAY",
        "BYWEEKNO",
        "BYMONTH",
        "BYSETPOS",
        "WKST",
    }
)
_BYDAY_RE = re.compile(r"^([+-]?)(\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)$")
_UNTIL_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2})(Z?))?$")
_OCC_ID_RE = re.compile(r"^(.+)-(\d{8}T\d{6}Z)$")
# The Gregorian calendar repeats every 400 years: a COUNT that is not reached within that
# horizon is not looked for further (only pathological rules get there).
_HORIZON_YEARS = 400
_ONE_DAY = timedelta(days=1)
_BOUND_SLACK = timedelta(hours=1)
_STOP_NAIVE = datetime(9999, 12, 31, 23, 59, 59)


@dataclass(frozen=True, slots=True)
class Period:
    """One occurrence: a half-open interval of aware UTC datetimes."""

    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class _Until:
    kind: str  # "utc" | "floating" | "date"
    instant: datetime | None  # aware UTC, for "utc"
    wall: datetime | None  # naive wall clock, for "floating"; end of day for "date"


@dataclass(frozen=True, slots=True)
class _Rule:
    freq: int
    interval: int
    count: int | None
    until: _Until | None
    wkst: int
    bysecond: tuple[int, ...] | None
    byminute: tuple[int, ...] | None
    byhour: tuple[int, ...] | None
    byday: tuple[tuple[int, int | None], ...] | None  # (weekday, ordinal or None)
    bymonthday: tuple[int, ...] | None
    byyearday: tuple[int, ...] | None
    byweekno: tuple[int, ...] | None
    bymonth: tuple[int, ...] | None
    bysetpos: tuple[int, ...] | None


# --------------------------------------------------------------------------- parsing


def _int_list(name: str, raw: str, lo: int, hi: int, *, signed: bool) -> tuple[int, ...]:
    values: list[int] = []
    for item in raw.split(","):
        if not re.fullmatch(r"[+-]?\d{1,3}" if signed else r"\d{1,3}", item):
            raise InvalidRecurrence(
                gettext_noop(
                    "RRULE part %(name)s=%(value)r is not a comma-separated list of integers."
                ),
                expression=["rrule"],
                params={"name": name, "value": raw},
            )
        value = int(item)
        if not (lo <= abs(value) <= hi) or (not signed and value < 0):
            rng = f"{lo}..{hi}" + (f" or -{hi}..-{lo}" if signed else "")
            raise InvalidRecurrence(
                gettext_noop(
                    "RRULE part %(name)s value %(value)s is out of range (allowed %(range)s)."
                ),
                expression=["rrule"],
                params={"name": name, "value": item, "range": rng},
            )
        values.append(value)
    return tuple(sorted(set(values)))


def _parse_until(raw: str) -> _Until:
    m = _UNTIL_RE.match(raw)
    if not m:
        raise InvalidRecurrence(
            gettext_noop(
                "RRULE UNTIL=%(value)r is not a date (YYYYMMDD) or date-time (YYYYMMDDTHHMMSSZ)."
            ),
            expression=["rrule"],
            params={"value": raw},
        )
    y, mo, d, hh, mi, ss, z = m.groups()
    try:
        day = date(int(y), int(mo), int(d))
        if hh is None:
            return _Until("date", None, datetime.combine(day, time(23, 59, 59)))
        wall = datetime(int(y), int(mo), int(d), int(hh), int(mi), int(ss))
    except ValueError:
        raise InvalidRecurrence(
            gettext_noop("RRULE UNTIL=%(value)r is not a valid calendar date or time."),
            expression=["rrule"],
            params={"value": raw},
        ) from None
    if z:
        return _Until("utc", wall.replace(tzinfo=UTC), None)
    return _Until("floating", None, wall)


@lru_cache(maxsize=4096)
def _parse(rrule: str) -> _Rule:
    if not isinstance(rrule, str) or not rrule.strip():
        raise InvalidRecurrence(
            gettext_noop("The RRULE is empty; give e.g. 'FREQ=WEEKLY;BYDAY=MO'."),
            expression=["rrule"],
        )
    text = rrule.strip()
    if text.upper().startswith("RRULE:"):
        raise InvalidRecurrence(
            gettext_noop(
                "Give the RRULE value without the 'RRULE:' prefix, e.g. 'FREQ=WEEKLY;BYDAY=MO'."
            ),
            expression=["rrule"],
        )
    parts: dict[str, str] = {}
    for chunk in text.split(";"):
        if "=" not in chunk:
            raise InvalidRecurrence(
                gettext_noop(
                    "RRULE part %(part)r is not of the form NAME=VALUE "
                    "(parts are separated by ';')."
                ),
                expression=["rrule"],
                params={"part": chunk},
            )
        name, _, value = chunk.partition("=")
        name = name.strip().upper()
        value = value.strip().upper()
        if name not in _KNOWN_PARTS:
            raise InvalidRecurrence(
                gettext_noop("RRULE part %(name)r is not supported by RFC 5545 RRULE."),
                expression=["rrule"],
                params={"name": name},
            )
        if name in parts:
            raise InvalidRecurrence(
                gettext_noop("RRULE part %(name)s is given more than once."),
                expression=["rrule"],
                params={"name": name},
            )
        if not value:
            raise InvalidRecurrence(
                gettext_noop("RRULE part %(name)s has no value."),
                expression=["rrule"],
                params={"name": name},
            )
        parts[name] = value

    freq_name = parts.get("FREQ")
    if freq_name is None:
        raise InvalidRecurrence(
            gettext_noop("The RRULE has no FREQ; it must say e.g. FREQ=WEEKLY."),
            expression=["rrule"],
        )
    if freq_name in FORBIDDEN_FREQS:
        raise InvalidRecurrence(
            gettext_noop("FREQ=%(freq)s is not allowed; use DAILY, WEEKLY, MONTHLY or YEARLY."),
            expression=["rrule"],
            params={"freq": freq_name},
        )
    if freq_name not in _FREQS:
        raise InvalidRecurrence(
            gettext_noop(
                "FREQ=%(freq)s is not a known frequency; use DAILY, WEEKLY, MONTHLY or YEARLY."
            ),
            expression=["rrule"],
            params={"freq": freq_name},
        )
    freq = _FREQS[freq_name]

    def positive(name: str) -> int | None:
        raw = parts.get(name)
        if raw is None:
            return None
        if not raw.isdigit() or int(raw) < 1:
            raise InvalidRecurrence(
                gettext_noop("RRULE %(name)s=%(value)r must be a positive integer."),
                expression=["rrule"],
                params={"name": name, "value": raw},
            )
        return int(raw)

    interval = positive("INTERVAL") or 1
    count = positive("COUNT")
    until = _parse_until(parts["UNTIL"]) if "UNTIL" in parts else None
    if count is not None and until is not None:
        raise InvalidRecurrence(
            gettext_noop("An RRULE may have COUNT or UNTIL, not both (RFC 5545)."),
            expression=["rrule"],
        )

    def ints(name: str, lo: int, hi: int, *, signed: bool) -> tuple[int, ...] | None:
        raw = parts.get(name)
        return None if raw is None else _int_list(name, raw, lo, hi, signed=signed)

    bysecond = ints("BYSECOND", 0, 59, signed=False)
    byminute = ints("BYMINUTE", 0, 59, signed=False)
    byhour = ints("BYHOUR", 0, 23, signed=False)
    bymonthday = ints("BYMONTHDAY", 1, 31, signed=True)
    byyearday = ints("BYYEARDAY", 1, 366, signed=True)
    byweekno = ints("BYWEEKNO", 1, 53, signed=True)
    bymonth = ints("BYMONTH", 1, 12, signed=False)
    bysetpos = ints("BYSETPOS", 1, 366, signed=True)

    byday: tuple[tuple[int, int | None], ...] | None = None
    if "BYDAY" in parts:
        items: list[tuple[int, int | None]] = []
        for item in parts["BYDAY"].split(","):
            m = _BYDAY_RE.match(item)
            if not m:
                raise InvalidRecurrence(
                    gettext_noop(
                        "RRULE BYDAY item %(item)r is not a weekday such as MO, 1MO or -1FR."
                    ),
                    expression=["rrule"],
                    params={"item": item},
                )
            sign, num, day = m.groups()
            ordinal: int | None = None
            if num is not None:
                ordinal = -int(num) if sign == "-" else int(num)
                if not 1 <= abs(ordinal) <= 53:
                    raise InvalidRecurrence(
                        gettext_noop(
                            "RRULE BYDAY item %(item)r: the ordinal must be 1..53 or -53..-1."
                        ),
                        expression=["rrule"],
                        params={"item": item},
                    )
            elif sign:
                raise InvalidRecurrence(
                    gettext_noop("RRULE BYDAY item %(item)r has a sign but no number."),
                    expression=["rrule"],
                    params={"item": item},
                )
            if ordinal is not None and freq not in (_MONTHLY, _YEARLY):
                raise InvalidRecurrence(
                    gettext_noop(
                        "RRULE BYDAY item %(item)r has an ordinal; ordinals are only allowed"
                        " with FREQ=MONTHLY or YEARLY."
                    ),
                    expression=["rrule"],
                    params={"item": item},
                )
            if ordinal is not None and byweekno is not None:
                raise InvalidRecurrence(
                    gettext_noop(
                        "RRULE BYDAY item %(item)r has an ordinal; ordinals are not allowed"
                        " together with BYWEEKNO."
                    ),
                    expression=["rrule"],
                    params={"item": item},
                )
            items.append((_DAYS[day], ordinal))
        byday = tuple(sorted(set(items), key=lambda x: (x[0], x[1] or 0)))

    wkst = 0
    if "WKST" in parts:
        if parts["WKST"] not in _DAYS:
            raise InvalidRecurrence(
                gettext_noop("RRULE WKST=%(value)r must be a weekday code such as MO or SU."),
                expression=["rrule"],
                params={"value": parts["WKST"]},
            )
        wkst = _DAYS[parts["WKST"]]

    if byweekno is not None and freq != _YEARLY:
        raise InvalidRecurrence(
            gettext_noop("RRULE BYWEEKNO is only allowed with FREQ=YEARLY."), expression=["rrule"]
        )
    if byyearday is not None and freq in (_DAILY, _WEEKLY, _MONTHLY):
        raise InvalidRecurrence(
            gettext_noop("RRULE BYYEARDAY is only allowed with FREQ=YEARLY here."),
            expression=["rrule"],
        )
    if bymonthday is not None and freq == _WEEKLY:
        raise InvalidRecurrence(
            gettext_noop("RRULE BYMONTHDAY is not allowed with FREQ=WEEKLY."), expression=["rrule"]
        )
    if bysetpos is not None and not any(
        p is not None
        for p in (bysecond, byminute, byhour, byday, bymonthday, byyearday, byweekno, bymonth)
    ):
        raise InvalidRecurrence(
            gettext_noop("RRULE BYSETPOS needs another BYxxx part to select from."),
            expression=["rrule"],
        )
    if bymonthday is not None and byday is None and byyearday is None and byweekno is None:
        _check_month_days(bymonth, bymonthday)

    return _Rule(
        freq=freq,
        interval=interval,
        count=count,
        until=until,
        wkst=wkst,
        bysecond=bysecond,
        byminute=byminute,
        byhour=byhour,
        byday=byday,
        bymonthday=bymonthday,
        byyearday=byyearday,
        byweekno=byweekno,
        bymonth=bymonth,
        bysetpos=bysetpos,
    )


_MONTH_LEN = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _check_month_days(bymonth: tuple[int, ...] | None, bymonthday: tuple[int, ...]) -> None:
    """Reject BYMONTH/BYMONTHDAY combinations that can never happen (e.g. 30 February)."""
    for month in bymonth or range(1, 13):
        if any(abs(d) <= _MONTH_LEN[month - 1] for d in bymonthday):
            return
    raise InvalidRecurrence(
        gettext_noop(
            "The RRULE can never occur: none of its BYMONTHDAY values exists in its BYMONTH months."
        ),
        expression=["rrule"],
    )


def validate_rrule(rrule: str) -> None:
    """Check an RRULE value (without the ``RRULE:`` prefix); raise InvalidRecurrence if unusable.

    Rejected: empty values, the ``RRULE:`` prefix, parts that are not NAME=VALUE or not RFC 5545,
    a missing FREQ or FREQ of SECONDLY/MINUTELY/HOURLY, bad numbers or ranges, an unparsable
    UNTIL, COUNT together with UNTIL, and BYxxx combinations the RFC does not allow.
    """
    _parse(rrule)


@lru_cache(maxsize=512)
def _zone(tzid: str) -> ZoneInfo:
    return ZoneInfo(tzid)


def validate_timezone(tzid: str) -> ZoneInfo:
    """Return the IANA zone ``tzid``; raise InvalidRecurrence if it is not a known zone."""
    if not isinstance(tzid, str) or not tzid or tzid != tzid.strip():
        raise InvalidRecurrence(
            gettext_noop("Time zone %(zone)r is not an IANA zone name."),
            expression=["timezone"],
            params={"zone": tzid},
        )
    try:
        return _zone(tzid)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidRecurrence(
            gettext_noop("Time zone %(zone)r is not a known IANA zone (e.g. 'Europe/Amsterdam')."),
            expression=["timezone"],
            params={"zone": tzid},
        ) from None


# --------------------------------------------------------------------------- expansion core


def _require_aware(value: datetime, name: str) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InvalidRecurrence(
            gettext_noop("%(name)s must be a timezone-aware datetime."),
            expression=[name],
            params={"name": name},
        )


def _local(value: datetime, tz: ZoneInfo) -> datetime:
    """Aware -> naive wall clock in tz."""
    return value.astimezone(tz).replace(tzinfo=None)


def _to_utc(wall: datetime, tz: ZoneInfo) -> datetime | None:
    """Naive wall clock in tz -> aware UTC (first instance), or None if it does not exist.

    PEP 495: ``fold=0`` reads a wall time with the offset before a transition, ``fold=1`` with
    the one after. Where they differ, the offset went up (a gap: the time does not exist) or
    down (an overlap: ``fold=0`` is the first instance, as RFC 5545 wants).
    """
    before = tz.utcoffset(wall)
    if before is None:  # pragma: no cover - ZoneInfo always answers
        return None
    after = tz.utcoffset(wall.replace(fold=1))
    if after is not None and after > before:
        return None
    return (wall - before).replace(tzinfo=UTC)


def _period_index(rule: _Rule, wall: datetime | date) -> int:
    if rule.freq == _DAILY:
        return wall.toordinal()
    if rule.freq == _WEEKLY:
        return wall.toordinal() - (wall.weekday() - rule.wkst) % 7
    if rule.freq == _MONTHLY:
        return wall.year * 12 + wall.month - 1
    return wall.year


def _period_step(rule: _Rule) -> int:
    return rule.interval * 7 if rule.freq == _WEEKLY else rule.interval


def _period_start(rule: _Rule, index: int) -> datetime:
    if rule.freq in (_DAILY, _WEEKLY):
        return datetime.fromordinal(index)
    if rule.freq == _MONTHLY:
        return datetime(index // 12, index % 12 + 1, 1)
    if rule.byweekno is not None:
        return datetime.fromordinal(_week_year(index, rule.wkst)[0])
    return datetime(index, 1, 1)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What each period of a rule holds: its BYxxx parts with DTSTART's defaults filled in.

    RFC 5545 3.3.10: information the rule does not give is taken from DTSTART. Without any of
    BYWEEKNO, BYYEARDAY, BYMONTHDAY and BYDAY that is DTSTART's day of the month (MONTHLY,
    YEARLY, plus its month for YEARLY without BYMONTH) or its weekday (WEEKLY); with BYWEEKNO
    alone it is DTSTART's weekday within those weeks, as BYMONTH alone keeps DTSTART's day
    within those months. Times come from BYHOUR/BYMINUTE/BYSECOND or DTSTART.
    """

    freq: int
    wkst: int
    bymonth: frozenset[int] | None
    byweekno: frozenset[int] | None
    byyearday: frozenset[int] | None
    bymonthday: frozenset[int] | None
    has_byday: bool
    weekdays: frozenset[int]  # plain BYDAY items: every such weekday in the period
    nth: frozenset[tuple[int, int]]  # ordinal BYDAY items (weekday, n), n counted in the scope
    times: tuple[time, ...]
    bysetpos: tuple[int, ...] | None


def _plan(rule: _Rule, dtstart: datetime) -> _Plan:
    bymonth = rule.bymonth
    bymonthday = rule.bymonthday
    byday = rule.byday
    if rule.byweekno is None and rule.byyearday is None and bymonthday is None and byday is None:
        if rule.freq == _YEARLY:
            bymonth = bymonth or (dtstart.month,)
            bymonthday = (dtstart.day,)
        elif rule.freq == _MONTHLY:
            bymonthday = (dtstart.day,)
        elif rule.freq == _WEEKLY:
            byday = ((dtstart.weekday(), None),)
    elif (
        rule.byweekno is not None
        and rule.byyearday is None
        and bymonthday is None
        and byday is None
    ):
        byday = ((dtstart.weekday(), None),)
    times = sorted(
        time(h, m, s)
        for h in rule.byhour or (dtstart.hour,)
        for m in rule.byminute or (dtstart.minute,)
        for s in rule.bysecond or (dtstart.second,)
    )
    return _Plan(
        freq=rule.freq,
        wkst=rule.wkst,
        bymonth=None if bymonth is None else frozenset(bymonth),
        byweekno=None if rule.byweekno is None else frozenset(rule.byweekno),
        byyearday=None if rule.byyearday is None else frozenset(rule.byyearday),
        bymonthday=None if bymonthday is None else frozenset(bymonthday),
        has_byday=byday is not None,
        weekdays=frozenset(d for d, n in byday or () if n is None),
        nth=frozenset((d, n) for d, n in byday or () if n is not None),
        times=tuple(times),
        bysetpos=rule.bysetpos,
    )


def _month_len(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return _MONTH_LEN[month - 1]


def _week1_start(year: int, wkst: int) -> int:
    """Ordinal of the first day of week 1: the first WKST-started week with 4+ days in year."""
    jan1 = date(year, 1, 1).toordinal()
    back = (date(year, 1, 1).weekday() - wkst) % 7
    return jan1 - back if back <= 3 else jan1 + 7 - back


def _week_year(year: int, wkst: int) -> tuple[int, int]:
    """Ordinals ``[first, end)`` of the days in the weeks numbered for ``year`` (BYWEEKNO).

    Week 1 may begin in late December of the year before, and the last days of December may
    belong to week 1 of the next year (clipped to the calendar's range).
    """
    first = max(_week1_start(year, wkst), 1)
    end = _week1_start(year + 1, wkst) if year < 9999 else date.max.toordinal() + 1
    return first, end


def _weekno_matches(plan: _Plan, ordinal: int, year: int) -> bool:
    """Whether the day is in a BYWEEKNO week (of the week-numbering year its week belongs to)."""
    assert plan.byweekno is not None
    wy = year
    start = _week1_start(year, plan.wkst)
    if ordinal < start:
        if year == 1:  # the weeks of year 0 are outside the calendar
            return False
        wy = year - 1
        start = _week1_start(wy, plan.wkst)
    elif year < 9999 and ordinal >= (nxt := _week1_start(year + 1, plan.wkst)):
        wy, start = year + 1, nxt
    weekno = (ordinal - start) // 7 + 1
    if weekno in plan.byweekno:
        return True
    if wy >= 9999:
        return False
    weeks = (_week1_start(wy + 1, plan.wkst) - start) // 7
    return weekno - weeks - 1 in plan.byweekno


def _scope_days(plan: _Plan, first: date, length: int) -> list[date]:
    """The days of one scope (a day, week, month or year) that every BYxxx part allows.

    Each BYxxx part is a condition on the day; a day belongs to the period's set when it meets
    all of them, and BYDAY is met by ANY of its items (plain: that weekday; ordinal: the n-th
    such weekday of the scope, counted from the end when negative). python-dateutil requires a
    day to meet a plain AND an ordinal item, so mixed lists such as BYDAY=MO,3TU yielded nothing.
    """
    out: list[date] = []
    o0 = first.toordinal()
    wd0 = first.weekday()
    for i in range(length):
        if plan.has_byday:
            wd = (wd0 + i) % 7
            if wd not in plan.weekdays and not (
                plan.nth
                and ((wd, i // 7 + 1) in plan.nth or (wd, -((length - 1 - i) // 7) - 1) in plan.nth)
            ):
                continue
        day = date.fromordinal(o0 + i)
        if plan.bymonth is not None and day.month not in plan.bymonth:
            continue
        if plan.bymonthday is not None and (
            day.day not in plan.bymonthday
            and day.day - _month_len(day.year, day.month) - 1 not in plan.bymonthday
        ):
            continue
        if plan.byyearday is not None:
            yday = o0 + i - date(day.year, 1, 1).toordinal() + 1
            ylen = 366 if _month_len(day.year, 2) == 29 else 365
            if yday not in plan.byyearday and yday - ylen - 1 not in plan.byyearday:
                continue
        if plan.byweekno is not None and not _weekno_matches(plan, o0 + i, day.year):
            continue
        out.append(day)
    return out


# Days only (not their times): a period's days are at most 366 dates, while its instances can
# be thousands (BYHOUR x BYMINUTE), too many to keep for thousands of periods.
@lru_cache(maxsize=4096)
def _period_days(plan: _Plan, index: int) -> tuple[date, ...]:
    """The days of one whole period that the rule's BYxxx parts allow, in order.

    Ordinal BYDAY items count in the month for MONTHLY, and for YEARLY in the month when BYMONTH
    is given, else in the year (RFC 5545 3.3.10, BYDAY). A YEARLY period with BYWEEKNO is the
    year's numbered weeks (Monday 30 December 2024 is in week 1 of 2025); INTERVAL still counts
    calendar years from DTSTART's.
    """
    if plan.freq == _DAILY:
        days = _scope_days(plan, date.fromordinal(index), 1)
    elif plan.freq == _WEEKLY:
        days = _scope_days(plan, date.fromordinal(index), 7)
    elif plan.freq == _MONTHLY:
        year, month = index // 12, index % 12 + 1
        if plan.bymonth is not None and month not in plan.bymonth:
            return ()
        days = _scope_days(plan, date(year, month, 1), _month_len(year, month))
    elif plan.byweekno is not None:
        # BYWEEKNO expands the year into its numbered weeks, whole, even where a week begins
        # in December of the year before; days of week 1 of the next year are not this year's.
        first, end = _week_year(index, plan.wkst)
        days = _scope_days(plan, date.fromordinal(first), end - first)
    elif plan.bymonth is not None:
        days = []
        for month in sorted(plan.bymonth):
            days += _scope_days(plan, date(index, month, 1), _month_len(index, month))
    else:
        days = _scope_days(plan, date(index, 1, 1), 366 if _month_len(index, 2) == 29 else 365)
    return tuple(days)


def _select(
    pairs: list[tuple[datetime, datetime]], bysetpos: tuple[int, ...]
) -> list[tuple[datetime, datetime]]:
    """BYSETPOS: the n-th (or n-th from last) instances of one period's set, in order."""
    n = len(pairs)
    chosen = sorted({p - 1 if p > 0 else n + p for p in bysetpos if -n <= p <= n})
    return [pairs[i] for i in chosen]


@dataclass(frozen=True, slots=True)
class _Context:
    text: str
    rule: _Rule
    tz: ZoneInfo
    dtstart: datetime  # naive wall clock
    first_utc: datetime
    duration: timedelta
    ex_instants: frozenset[datetime]
    ex_dates: frozenset[date]
    plan: _Plan


def _context(
    rrule: str,
    first_start: datetime,
    first_end: datetime,
    tzid: str,
    exdates: Iterable[datetime | date],
) -> _Context:
    rule = _parse(rrule)
    tz = validate_timezone(tzid)
    _require_aware(first_start, "first_start")
    _require_aware(first_end, "first_end")
    if first_end < first_start:
        raise InvalidRecurrence(
            gettext_noop("The first occurrence ends before it starts."), expression=["end"]
        )
    dtstart = _local(first_start, tz).replace(microsecond=0)
    ex_instants: set[datetime] = set()
    ex_dates: set[date] = set()
    for ex in exdates:
        if isinstance(ex, datetime):
            if ex.tzinfo is None or ex.utcoffset() is None:
                # A floating EXDATE is a wall-clock time in the rule's zone (RFC 5545 TZID form).
                utc = _to_utc(ex, tz)
                if utc is not None:
                    ex_instants.add(utc)
            else:
                ex_instants.add(ex.astimezone(UTC))
        elif isinstance(ex, date):
            ex_dates.add(ex)
        else:
            raise InvalidRecurrence(
                gettext_noop("exdate %(value)r is not a date or datetime."),
                expression=["exdate"],
                params={"value": ex},
            )
    return _Context(
        text=rrule,
        rule=rule,
        tz=tz,
        dtstart=dtstart,
        first_utc=first_start.astimezone(UTC).replace(microsecond=0),
        duration=first_end - first_start,
        ex_instants=frozenset(ex_instants),
        ex_dates=frozenset(ex_dates),
        plan=_plan(rule, dtstart),
    )


def _stream(
    ctx: _Context, period_index: int, stop: datetime
) -> Iterator[tuple[datetime, datetime]]:
    """(wall, utc) for rule instances from the period ``period_index`` up to wall ``stop``.

    Each period's set is built whole (RFC 5545: BYSETPOS and the other BYxxx parts act on the
    whole day, week, month or year, also the first one that DTSTART falls inside); wall times
    that do not exist in the zone are not part of the set, so BYSETPOS does not count them.
    DTSTART itself is not included here; instances at or before it are dropped.
    """
    rule = ctx.rule
    plan = ctx.plan
    tz = ctx.tz
    dtstart = ctx.dtstart
    step = _period_step(rule)
    # A BYWEEKNO year may begin in the December before: its period can hold days up to `stop`.
    last = min(
        _period_index(rule, min(stop, _STOP_NAIVE)) + (rule.byweekno is not None),
        _period_index(rule, _STOP_NAIVE),
    )
    index = period_index
    while index <= last:
        if _period_start(rule, index) > stop:
            return
        days = _period_days(plan, index)
        if plan.bysetpos is not None:
            walls = [datetime.combine(d, t) for d in days for t in plan.times]
            pairs = [(w, u) for w in walls if (u := _to_utc(w, tz)) is not None]
            for wall, utc in _select(pairs, plan.bysetpos):
                if wall > stop:
                    return
                if wall > dtstart:
                    yield wall, utc
        else:
            for day in days:
                for t in plan.times:
                    wall = datetime.combine(day, t)
                    if wall > stop:
                        return
                    if wall <= dtstart:
                        continue
                    utc_or_none = _to_utc(wall, tz)
                    if utc_or_none is not None:
                        yield wall, utc_or_none
        index += step


def _until_ok(ctx: _Context, wall: datetime, utc: datetime) -> bool:
    until = ctx.rule.until
    if until is None:
        return True
    if until.kind == "utc":
        assert until.instant is not None
        return utc <= until.instant
    assert until.wall is not None
    return wall <= until.wall


def _until_stop(ctx: _Context) -> datetime:
    """A wall-clock bound at or after the last instance UNTIL allows (generation stops there)."""
    until = ctx.rule.until
    if until is None:
        return _STOP_NAIVE
    if until.kind == "utc":
        assert until.instant is not None
        if until.instant >= datetime(9999, 12, 30, tzinfo=UTC):
            return _STOP_NAIVE
        return _local(until.instant, ctx.tz) + _ONE_DAY  # offsets shift by far less than a day
    assert until.wall is not None
    return until.wall


def _excluded(ctx: _Context, wall: datetime, utc: datetime) -> bool:
    return utc in ctx.ex_instants or (bool(ctx.ex_dates) and wall.date() in ctx.ex_dates)


def _safe_wall(value: datetime, tz: ZoneInfo, shift: timedelta) -> datetime:
    try:
        return _local(value, tz) + shift
    except OverflowError:
        return datetime.min if shift < timedelta(0) else _STOP_NAIVE


def _wall_bound(instant: datetime, tz: ZoneInfo, *, lower: bool) -> datetime:
    """Wall-clock bound for the instances whose instant lies after (lower) or before ``instant``.

    Wall = instant + offset, and near ``instant`` the offset is one of the offsets a day either
    side (zones do not change offset twice within two days), plus an hour to spare.
    """
    try:
        offsets = [
            off
            for d in (-_ONE_DAY, timedelta(0), _ONE_DAY)
            if (off := (instant + d).astimezone(tz).utcoffset()) is not None
        ]
        base = instant.astimezone(UTC).replace(tzinfo=None)
        if lower:
            return base + min(offsets) - _BOUND_SLACK
        return base + max(offsets) + _BOUND_SLACK
    except (OverflowError, ValueError):
        return datetime.min if lower else _STOP_NAIVE


def _window_bounds(
    ctx: _Context, window_start: datetime, window_end: datetime
) -> tuple[datetime, datetime]:
    """Wall-clock range in which every instance overlapping the window starts."""
    _require_aware(window_start, "window_start")
    _require_aware(window_end, "window_end")
    try:
        lo = _wall_bound(window_start - ctx.duration, ctx.tz, lower=True)
    except OverflowError:
        lo = datetime.min
    hi = _wall_bound(window_end, ctx.tz, lower=False)
    return lo, min(hi, _until_stop(ctx))


def _collect(
    ctx: _Context,
    seq: Iterable[tuple[datetime, datetime]],
    window_start: datetime,
    window_end: datetime,
    last_wall: datetime | None,
    max_occurrences: int | None,
) -> list[Period]:
    out: list[Period] = []
    room = -1 if max_occurrences is None else max_occurrences
    ws = window_start.astimezone(UTC)
    we = window_end.astimezone(UTC)
    dur = ctx.duration
    check_until = ctx.rule.until is not None
    check_ex = bool(ctx.ex_instants or ctx.ex_dates)
    for wall, utc in seq:
        if last_wall is not None and wall > last_wall:
            break
        if check_until and not _until_ok(ctx, wall, utc):
            continue
        if check_ex and _excluded(ctx, wall, utc):
            continue
        end = utc + dur
        if utc < we and end > ws:
            out.append(Period(utc, end))
            room -= 1
            if room == -1:
                raise WindowTooLarge(
                    gettext_noop(
                        "The recurrence has more than %(limit)s occurrences in the date window; "
                        "search a shorter window."
                    ),
                    expression=["date"],
                    params={"limit": max_occurrences},
                )
    return out


@contextmanager
def _in_range() -> Iterator[None]:
    """Dates beyond what datetime can hold are a bad input, not a crash."""
    try:
        yield
    except OverflowError:
        raise InvalidRecurrence(
            gettext_noop(
                "The recurrence reaches dates outside the supported range (years 1 to 9999)."
            ),
            expression=["rrule"],
        ) from None


def _dtstart_period(ctx: _Context, window_start: datetime, window_end: datetime) -> list[Period]:
    """DTSTART is always the first instance (RFC 5545 3.8.5.3), whatever the rule says."""
    utc = ctx.first_utc
    if _excluded(ctx, ctx.dtstart, utc):
        return []
    if utc < window_end and utc + ctx.duration > window_start:
        return [Period(utc, utc + ctx.duration)]
    return []


def _sorted(periods: list[Period]) -> list[Period]:
    periods.sort(key=lambda p: (p.start, p.end))
    return periods


def expand_naive(
    *,
    rrule: str,
    first_start: datetime,
    first_end: datetime,
    tzid: str,
    exdates: Iterable[datetime | date] = (),
    window_start: datetime,
    window_end: datetime,
) -> list[Period]:
    """Slow expansion: walk the rule from DTSTART, counting every instance.

    Same result as :func:`expand`, which skips ahead to the window (the property tests check
    that skipping changes nothing, and compare both with a brute-force RFC 5545 expander); its
    cost grows with the rule's age, so it is for tests and benchmarks only.
    """
    with _in_range():
        ctx = _context(rrule, first_start, first_end, tzid, exdates)
        _lo, hi = _window_bounds(ctx, window_start, window_end)
        out = _dtstart_period(ctx, window_start, window_end)
        count = ctx.rule.count
        seen = 1  # DTSTART
        for wall, utc in _stream(ctx, _period_index(ctx.rule, ctx.dtstart), hi):
            if count is not None:
                if seen >= count:
                    break
                seen += 1
            out.extend(_collect(ctx, [(wall, utc)], window_start, window_end, None, None))
        return _sorted(out)


@lru_cache(maxsize=2048)
def _count_last_wall(rrule: str, tzid: str, first_utc: datetime) -> datetime | None:
    """Wall clock of the COUNT-th instance (DTSTART counted first), or None beyond the horizon."""
    ctx = _context(rrule, first_utc, first_utc, tzid, ())
    count = ctx.rule.count
    assert count is not None
    if count <= 1:
        return ctx.dtstart
    try:
        horizon = ctx.dtstart.replace(
            year=min(ctx.dtstart.year + _HORIZON_YEARS, 9999), day=min(ctx.dtstart.day, 28)
        )
    except ValueError:
        horizon = _STOP_NAIVE
    seen = 1
    for wall, _utc in _stream(ctx, _period_index(ctx.rule, ctx.dtstart), horizon):
        seen += 1
        if seen == count:
            return wall
    return None


def _fast_stream(
    ctx: _Context, lo: datetime, hi: datetime
) -> tuple[Iterator[tuple[datetime, datetime]], datetime | None]:
    rule = ctx.rule
    last_wall: datetime | None = None
    if rule.count is not None:
        last_wall = _count_last_wall(ctx.text, ctx.tz.key, ctx.first_utc)
        if last_wall is not None:
            hi = min(hi, last_wall)
    p0 = _period_index(rule, ctx.dtstart)
    index = p0
    if lo > ctx.dtstart:
        step = _period_step(rule)
        # A BYWEEKNO year may end in early January of the next: start a year sooner.
        at = _period_index(rule, lo) - (rule.byweekno is not None)
        index = max(p0, p0 + ((at - p0) // step) * step)
    return _stream(ctx, index, hi), last_wall


def expand(
    *,
    rrule: str,
    first_start: datetime,
    first_end: datetime,
    tzid: str,
    exdates: Iterable[datetime | date] = (),
    window_start: datetime,
    window_end: datetime,
    max_occurrences: int | None = MAX_OCCURRENCES,
) -> list[Period]:
    """Occurrences overlapping the half-open window, sorted by start, in UTC.

    An occurrence overlaps when ``start < window_end and end > window_start``. The cost
    depends on the occurrences near the window, not on how long ago the rule began.
    Raises InvalidRecurrence for an unusable rule, zone, or naive datetimes, and
    WindowTooLarge (too-costly) when the window holds more than ``max_occurrences``
    occurrences (None: no limit).
    """
    with _in_range():
        ctx = _context(rrule, first_start, first_end, tzid, exdates)
        lo, hi = _window_bounds(ctx, window_start, window_end)
        out = _dtstart_period(ctx, window_start, window_end)
        stream, last_wall = _fast_stream(ctx, lo, hi)
        out.extend(_collect(ctx, stream, window_start, window_end, last_wall, max_occurrences))
        return _sorted(out)


def upcoming(
    *,
    rrule: str,
    first_start: datetime,
    first_end: datetime,
    tzid: str,
    exdates: Iterable[datetime | date] = (),
    after: datetime,
    limit: int,
) -> list[Period]:
    """The next ``limit`` occurrences starting at or after ``after`` (e.g. an admin preview).

    Like :func:`expand`, the cost does not depend on the rule's age. Occurrences are looked
    for up to 400 years after ``after``.
    """
    with _in_range():
        return _upcoming(
            _context(rrule, first_start, first_end, tzid, exdates), after=after, limit=limit
        )


def _upcoming(ctx: _Context, *, after: datetime, limit: int) -> list[Period]:
    _require_aware(after, "after")
    if limit <= 0:
        return []
    after_utc = after.astimezone(UTC)
    lo = _safe_wall(after_utc, ctx.tz, -_ONE_DAY)
    try:
        hi = lo.replace(year=min(lo.year + _HORIZON_YEARS, 9999), day=min(lo.day, 28))
    except ValueError:
        hi = _STOP_NAIVE
    hi = min(hi, _until_stop(ctx))
    out: list[Period] = []
    if ctx.first_utc >= after_utc and not _excluded(ctx, ctx.dtstart, ctx.first_utc):
        out.append(Period(ctx.first_utc, ctx.first_utc + ctx.duration))
    stream, last_wall = _fast_stream(ctx, lo, hi)
    for wall, utc in stream:
        if len(out) >= limit + 1:
            break
        if last_wall is not None and wall > last_wall:
            break
        if utc < after_utc or not _until_ok(ctx, wall, utc) or _excluded(ctx, wall, utc):
            continue
        out.append(Period(utc, utc + ctx.duration))
    return _sorted(out)[:limit]


# --------------------------------------------------------------------------- ids


def occurrence_id(parent_id: str, start: datetime) -> str:
    """Id of a generated occurrence: ``{parent_id}-{start in UTC as YYYYMMDDTHHMMSSZ}``."""
    _require_aware(start, "start")
    return f"{parent_id}-{start.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def split_occurrence_id(value: str) -> tuple[str, datetime] | None:
    """Inverse of :func:`occurrence_id`: ``(parent_id, start UTC)``, or None if not such an id."""
    m = _OCC_ID_RE.match(value)
    if not m:
        return None
    try:
        start = datetime.strptime(m.group(2), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    return m.group(1), start
