"""A brute-force RFC 5545 recurrence expander, written from the RFC's text; for tests only.

It shares no code with ``scheduling.recurrence`` and uses no recurrence library: it walks every
day of every period (day, week, month or year, INTERVAL periods apart) from DTSTART on, and
applies the BYxxx parts literally as RFC 5545 3.3.10 describes them:

- the expand/limit table: for the day parts, "expand" and "limit" both come down to "the day
  must satisfy the part"; BYDAY with an ordinal counts that weekday within the month (MONTHLY,
  or YEARLY with BYMONTH) or within the year (YEARLY), and BYDAY is satisfied by ANY of its
  items; BYHOUR/BYMINUTE/BYSECOND expand each day into times;
- what the rule does not say comes from DTSTART (its day of the month, its month, its weekday,
  its time), as in the RFC's own examples ("FREQ=YEARLY;BYMONTH=6,7" keeps DTSTART's day);
- BYSETPOS picks from the whole period's set, in time order;
- local times that do not exist are ignored and not counted, an ambiguous one is its first
  instance; DTSTART is always the first instance and counts towards COUNT;
- UNTIL bounds inclusively (UTC by instant, floating by wall clock, a date by the whole day);
  EXDATEs are taken out after COUNT has been applied.

Week numbers (BYWEEKNO, RFC 5545: "week number one of the calendar year is the first week that
contains at least four days in that calendar year", weeks starting on WKST) are found by walking
the year's weeks. With BYWEEKNO a YEARLY period is expanded into the year's numbered weeks,
whole (week 1 may begin in the December before); INTERVAL counts calendar years from DTSTART's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from scheduling.recurrence import Period

WEEKDAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]
ONE_DAY = timedelta(days=1)


def _parse(rrule: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in rrule.upper().split(";"))


def _ints(parts: dict[str, str], name: str) -> list[int] | None:
    return [int(v) for v in parts[name].split(",")] if name in parts else None


def _byday(parts: dict[str, str]) -> list[tuple[int | None, int]] | None:
    if "BYDAY" not in parts:
        return None
    out: list[tuple[int | None, int]] = []
    for item in parts["BYDAY"].split(","):
        m = re.fullmatch(r"([+-]?\d+)?([A-Z]{2})", item)
        assert m is not None, item
        out.append((int(m.group(1)) if m.group(1) else None, WEEKDAYS.index(m.group(2))))
    return out


def _add_months(year: int, month: int, n: int) -> tuple[int, int]:
    total = year * 12 + month - 1 + n
    return total // 12, total % 12 + 1


def _days_between(first: date, last: date) -> tuple[date, ...]:
    """Every day from first to last inclusive, one by one."""
    out = []
    day = first
    while day <= last:
        out.append(day)
        day += ONE_DAY
    return tuple(out)


@cache
def _month_days(year: int, month: int) -> tuple[date, ...]:
    ny, nm = _add_months(year, month, 1)
    return _days_between(date(year, month, 1), date(ny, nm, 1) - ONE_DAY)


@cache
def _year_days(year: int) -> tuple[date, ...]:
    return _days_between(date(year, 1, 1), date(year, 12, 31))


def _positions(days: tuple[date, ...]) -> dict[date, tuple[int, int]]:
    """Each day's 1-based position in ``days``, from the start and (negative) from the end."""
    return {d: (i + 1, i - len(days)) for i, d in enumerate(days)}


@cache
def _scope_positions(
    year: int, month: int | None, weekday: int | None
) -> dict[date, tuple[int, int]]:
    """Positions in a month (or the year when month is None), of one weekday's days if given."""
    scope = _year_days(year) if month is None else _month_days(year, month)
    return _positions(tuple(d for d in scope if weekday is None or d.weekday() == weekday))


def _owner_year(week_start: date) -> int:
    """The calendar year holding at least four of the week's seven days."""
    years = [(week_start + timedelta(days=i)).year for i in range(7)]
    return max(set(years), key=years.count)


@cache
def _week_table(wyear: int, wkst: int) -> tuple[dict[date, int], int]:
    """Week starts of the week-numbering year wyear -> week number, and how many weeks it has."""
    numbers: dict[date, int] = {}
    walk = date(wyear, 1, 1) - timedelta(days=7 + (date(wyear, 1, 1).weekday() - wkst) % 7)
    while walk.year <= wyear:
        if _owner_year(walk) == wyear:
            numbers[walk] = len(numbers) + 1
        walk += timedelta(days=7)
    return numbers, len(numbers)


def _week_of(day: date, wkst: int) -> tuple[int, int, int]:
    """(week number, weeks in its week-numbering year, that year) of the week holding ``day``."""
    start = day - timedelta(days=(day.weekday() - wkst) % 7)
    owner = _owner_year(start)
    numbers, total = _week_table(owner, wkst)
    return numbers[start], total, owner


def _period_days(
    freq: str, index: int, start_day: date, interval: int, wkst: int, byweekno: bool
) -> tuple[date, ...]:
    """The days of the index-th period (0 = the period holding DTSTART)."""
    if freq == "DAILY":
        return [start_day + timedelta(days=index * interval)]
    if freq == "WEEKLY":
        week0 = start_day - timedelta(days=(start_day.weekday() - wkst) % 7)
        first = week0 + timedelta(days=7 * index * interval)
        return _days_between(first, first + timedelta(days=6))
    if freq == "MONTHLY":
        return _month_days(*_add_months(start_day.year, start_day.month, index * interval))
    year = start_day.year + index * interval
    if byweekno:
        # BYWEEKNO expands the year into its numbered weeks: the days of the weeks that
        # belong to this year, some perhaps in the December before or the January after.
        around = _days_between(date(year - 1, 12, 20), date(year + 1, 1, 10))
        return tuple(d for d in around if _week_of(d, wkst)[2] == year)
    return _year_days(year)


def _day_ok(day: date, freq: str, parts: dict[str, object], wkst: int) -> bool:
    bymonth = parts["BYMONTH"]
    if bymonth is not None and day.month not in bymonth:  # type: ignore[operator]
        return False
    byweekno = parts["BYWEEKNO"]
    if byweekno is not None:
        number, total, _year = _week_of(day, wkst)
        if number not in byweekno and number - total - 1 not in byweekno:  # type: ignore[operator]
            return False
    byyearday = parts["BYYEARDAY"]
    if byyearday is not None:
        pos, neg = _scope_positions(day.year, None, None)[day]
        if pos not in byyearday and neg not in byyearday:  # type: ignore[operator]
            return False
    bymonthday = parts["BYMONTHDAY"]
    if bymonthday is not None:
        pos, neg = _scope_positions(day.year, day.month, None)[day]
        if pos not in bymonthday and neg not in bymonthday:  # type: ignore[operator]
            return False
    byday = parts["BYDAY"]
    if byday is not None:
        ok = False
        for n, weekday in byday:  # type: ignore[attr-defined]
            if day.weekday() != weekday:
                continue
            if n is None:
                ok = True
                break
            in_month = freq == "MONTHLY" or (freq == "YEARLY" and bymonth is not None)
            if n in _scope_positions(day.year, day.month if in_month else None, weekday)[day]:
                ok = True
                break
        if not ok:
            return False
    return True


def _exists(wall: datetime, tz: ZoneInfo) -> bool:
    """A wall time exists when it survives the round trip through UTC (fold=0)."""
    back = wall.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None)
    return back == wall


def reference_expand(
    *,
    rrule: str,
    first_start: datetime,
    first_end: datetime,
    tzid: str,
    exdates: Iterable[datetime | date] = (),
    window_start: datetime,
    window_end: datetime,
) -> list[Period]:
    """Occurrences overlapping ``[window_start, window_end)``, in UTC, sorted; see the module."""
    tz = ZoneInfo(tzid)
    raw = _parse(rrule)
    freq = raw["FREQ"]
    interval = int(raw.get("INTERVAL", "1"))
    wkst = WEEKDAYS.index(raw.get("WKST", "MO"))
    count = int(raw["COUNT"]) if "COUNT" in raw else None
    dtstart = first_start.astimezone(tz).replace(tzinfo=None, microsecond=0)
    duration = first_end - first_start
    parts: dict[str, object] = {
        name: _ints(raw, name) for name in ("BYMONTH", "BYWEEKNO", "BYYEARDAY", "BYMONTHDAY")
    }
    parts["BYDAY"] = _byday(raw)
    # What the rule does not give comes from DTSTART.
    if all(parts[n] is None for n in ("BYWEEKNO", "BYYEARDAY", "BYMONTHDAY", "BYDAY")):
        if freq == "YEARLY":
            parts["BYMONTH"] = parts["BYMONTH"] or [dtstart.month]
            parts["BYMONTHDAY"] = [dtstart.day]
        elif freq == "MONTHLY":
            parts["BYMONTHDAY"] = [dtstart.day]
        elif freq == "WEEKLY":
            parts["BYDAY"] = [(None, dtstart.weekday())]
    elif all(parts[n] is None for n in ("BYYEARDAY", "BYMONTHDAY", "BYDAY")):
        parts["BYDAY"] = [(None, dtstart.weekday())]  # BYWEEKNO alone: DTSTART's weekday
    hours = _ints(raw, "BYHOUR") or [dtstart.hour]
    minutes = _ints(raw, "BYMINUTE") or [dtstart.minute]
    seconds = _ints(raw, "BYSECOND") or [dtstart.second]
    times = sorted(time(h, m, s) for h in hours for m in minutes for s in seconds)
    bysetpos = _ints(raw, "BYSETPOS")

    until_ok = _until_test(raw.get("UNTIL"), tz)
    stop_wall = window_end.astimezone(tz).replace(tzinfo=None) + 2 * ONE_DAY

    instances: list[tuple[datetime, datetime]] = [(dtstart, _utc(dtstart, tz))]
    index = 0
    done = False
    while not done:
        days = _period_days(
            freq, index, dtstart.date(), interval, wkst, parts["BYWEEKNO"] is not None
        )
        index += 1
        if datetime.combine(days[0], time()) > stop_wall:
            break
        walls = [
            datetime.combine(d, t) for d in days if _day_ok(d, freq, parts, wkst) for t in times
        ]
        walls = [w for w in walls if _exists(w, tz)]
        if bysetpos is not None:
            walls = [
                w for i, w in enumerate(walls) if i + 1 in bysetpos or i - len(walls) in bysetpos
            ]
        for wall in walls:
            if wall <= dtstart:
                continue
            if count is not None and len(instances) >= count:
                done = True
                break
            utc = _utc(wall, tz)
            if not until_ok(wall, utc):
                done = True
                break
            instances.append((wall, utc))

    ex_utc = {e.astimezone(UTC) for e in exdates if isinstance(e, datetime) and e.tzinfo}
    ex_utc |= {
        _utc(e, tz) for e in exdates if isinstance(e, datetime) and not e.tzinfo and _exists(e, tz)
    }
    ex_days = {e for e in exdates if not isinstance(e, datetime)}
    out = []
    for wall, utc in instances:
        if utc in ex_utc or wall.date() in ex_days:
            continue
        # Overlap, as the engine defines it: a zero-length occurrence at the window's start
        # does not overlap the half-open window.
        if not (utc < window_end and utc + duration > window_start):
            continue
        out.append(Period(utc, utc + duration))
    return sorted(out, key=lambda p: (p.start, p.end))


def _utc(wall: datetime, tz: ZoneInfo) -> datetime:
    return wall.replace(tzinfo=tz).astimezone(UTC)


def _until_test(value: str | None, tz: ZoneInfo):  # type: ignore[no-untyped-def]
    """UNTIL as a test on (wall, utc): inclusive, read as the RFC's three forms say."""
    if value is None:
        return lambda wall, utc: True
    if "T" not in value:
        last_day = datetime.strptime(value, "%Y%m%d").date()
        return lambda wall, utc: wall.date() <= last_day
    if value.endswith("Z"):
        instant = datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        return lambda wall, utc: utc <= instant
    floating = datetime.strptime(value, "%Y%m%dT%H%M%S")
    return lambda wall, utc: wall <= floating
