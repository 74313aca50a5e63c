"""PURE parsing of FHIR search values: date windows, tokens, paging, booleans, instants.

No Django and no DRF here: the view layer passes raw query strings in and maps the domain
errors raised here to OperationOutcome (``fhir_api.errors``).

Date windows (docs/api.md section 5)::

    date=2026-06-01 / eq2026-06-01          -> that day, in the organisation's zone
    date=ge2026-06-01&date=le2026-06-30     -> [2026-06-01, 2026-07-01)   (le includes its day)
    date=ge2026-06-01 (or gt)               -> as ge2026-06-01&le2026-06-08: [06-01, 06-09)
    date=le2026-06-01                       -> as ge2026-05-25&le2026-06-01: [05-25, 06-02)
    date=lt2026-06-01                       -> as ge2026-05-25&lt2026-06-01: [05-25, 06-01)

A lone bound is an equivalence, not a rule of its own: the missing bound is derived as a value
of the same precision 7 days away and then read exactly like a written one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from scheduling.errors import InvalidInput, InvalidSearchValue, WindowTooLarge

__all__ = [
    "PREFIXES",
    "Include",
    "Window",
    "derive_window",
    "etag_matches",
    "parse_bool",
    "parse_count",
    "parse_date_value",
    "parse_include",
    "parse_instant_strict",
    "parse_offset",
    "parse_token",
]

PREFIXES = ("eq", "ge", "gt", "le", "lt")
_ALL_FHIR_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")

_DATE_RE = re.compile(
    r"^(?P<y>\d{4})"
    r"(?:-(?P<mo>\d{2})"
    r"(?:-(?P<d>\d{2})"
    r"(?:T(?P<h>\d{2}):(?P<mi>\d{2})"
    r"(?::(?P<s>\d{2})(?:\.(?P<f>\d{1,9}))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?"
    r")?)?)?$"
)
_INSTANT_RE = re.compile(
    r"^(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})"
    r"T(?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})(?:\.(?P<f>\d{1,9}))?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?$"
)
_INT_RE = re.compile(r"^[+-]?\d{1,18}$")


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open window ``[start, end)`` of aware UTC datetimes."""

    start: datetime
    end: datetime


def _offset(text: str) -> timedelta | None:
    """``Z``/``+hh:mm``/``-hh:mm`` -> offset; None when malformed."""
    if text == "Z":
        return timedelta(0)
    hours, minutes = int(text[1:3]), int(text[4:6])
    if hours > 14 or minutes > 59:
        return None
    delta = timedelta(hours=hours, minutes=minutes)
    return -delta if text[0] == "-" else delta


def _localize(wall: datetime, tz: ZoneInfo) -> datetime:
    """Naive wall clock in tz -> aware UTC (an ambiguous time means its first instance)."""
    return wall.replace(tzinfo=tz).astimezone(UTC)


def _split_prefix(value: str, param: str) -> tuple[str, str]:
    head = value[:2]
    if head.isalpha():
        if head.lower() not in PREFIXES or head != head.lower():
            known = (
                " (a FHIR prefix this server does not support)"
                if head in _ALL_FHIR_PREFIXES
                else ""
            )
            raise InvalidSearchValue(
                f"Search value {value!r} for {param!r} has prefix {head!r}{known}; "
                f"use one of {', '.join(PREFIXES)} or no prefix.",
                expression=[param],
            )
        return head, value[2:]
    return "eq", value


@dataclass(frozen=True, slots=True)
class _DateValue:
    """One FHIR date search value as written: its prefix, precision, wall clock and offset."""

    prefix: str
    precision: str  # "year" | "month" | "day" | "time"
    wall: datetime  # naive: the written date (and time)
    offset: timedelta | None  # the written UTC offset; None: read in the organisation's zone
    step: timedelta  # for "time": how long the written time lasts (a minute, a second, ...)

    def range(self, tz: ZoneInfo) -> tuple[datetime, datetime]:
        """The value's implicit range by precision, as aware UTC datetimes."""
        if self.precision == "time":
            if self.offset is None:
                start = _localize(self.wall, tz)
            else:
                start = (self.wall - self.offset).replace(tzinfo=UTC)
            return start, start + self.step
        if self.precision == "day":
            end_wall = self.wall + timedelta(days=1)
        elif self.precision == "month":
            end_wall = datetime(self.wall.year + self.wall.month // 12, self.wall.month % 12 + 1, 1)
        else:
            end_wall = datetime(self.wall.year + 1, 1, 1)
        return _localize(self.wall, tz), _localize(end_wall, tz)

    def shifted(self, prefix: str, days: int) -> _DateValue:
        """The value ``days`` calendar days away, at the same precision, with ``prefix``.

        FHIRPath date arithmetic: a quantity finer than the value's precision is converted to
        that precision and truncated, so a year or a month plus or minus 7 days is that same
        year or month. A day moves 7 days; a date-time moves 7 days on its own wall clock
        (keeping its written offset, or 00:00 staying 00:00 in the zone across DST).
        """
        if self.precision in ("year", "month"):
            return _DateValue(prefix, self.precision, self.wall, self.offset, self.step)
        return _DateValue(
            prefix, self.precision, self.wall + timedelta(days=days), self.offset, self.step
        )


def _parse_date_value(value: str, tz: ZoneInfo, param: str) -> tuple[str, datetime, datetime]:
    parsed = _parse_value(value, param)
    return parsed.prefix, *_range(parsed, tz, param)


def _range(value: _DateValue, tz: ZoneInfo, param: str) -> tuple[datetime, datetime]:
    try:
        return value.range(tz)
    except (OverflowError, ValueError):
        raise InvalidSearchValue(
            f"{param!r}: the date window would fall outside the supported calendar range.",
            expression=[param],
        ) from None


def _parse_value(value: str, param: str) -> _DateValue:
    if "," in value:
        raise InvalidSearchValue(
            f"Search value {value!r} for {param!r}: comma-separated (OR) dates are not supported; "
            f"repeat the parameter with ge/le prefixes for a range instead.",
            expression=[param],
        )
    prefix, rest = _split_prefix(value.strip(), param)
    # An unencoded '+' in a query string arrives as a space: read "T10:00 02:00" as +02:00.
    rest = re.sub(r"(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:\d{2})$", r"\1+\2", rest)
    m = _DATE_RE.match(rest)
    hint = (
        "expected YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss[.fff]][Z|+hh:mm], "
        "optionally after a prefix such as ge"
    )
    if not m:
        raise InvalidSearchValue(
            f"Search value {value!r} for {param!r} is not a FHIR date; {hint}.", expression=[param]
        )
    g = m.groupdict()
    try:
        year = int(g["y"])
        month = int(g["mo"] or 1)
        day = int(g["d"] or 1)
        if g["h"] is None:
            precision = "day" if g["d"] is not None else "month" if g["mo"] is not None else "year"
            return _DateValue(prefix, precision, datetime(year, month, day), None, timedelta(0))
        fraction = g["f"] or ""
        micro = int((fraction + "000000")[:6])
        wall = datetime(year, month, day, int(g["h"]), int(g["mi"]), int(g["s"] or 0), micro)
    except (ValueError, OverflowError):
        raise InvalidSearchValue(
            f"Search value {value!r} for {param!r} is not a valid calendar date or time.",
            expression=[param],
        ) from None
    if g["s"] is None:
        step = timedelta(minutes=1)
    elif fraction:
        step = timedelta(microseconds=10 ** (6 - min(len(fraction), 6)))
    else:
        step = timedelta(seconds=1)
    offset = None
    if g["tz"] is not None:
        offset = _offset(g["tz"])
        if offset is None:
            raise InvalidSearchValue(
                f"Search value {value!r} for {param!r} has an invalid UTC offset {g['tz']!r}.",
                expression=[param],
            )
    return _DateValue(prefix, "time", wall, offset, step)


def parse_date_value(value: str, tz: ZoneInfo) -> tuple[str, datetime, datetime]:
    """Parse one FHIR date search value into ``(prefix, range_start, range_end)``.

    The range is the value's implicit range by precision: a year, a month, a day, a minute
    (``hh:mm``), a second (``hh:mm:ss``) or the fraction's last digit. Values without an offset
    are read in ``tz`` (the organisation's zone); an ambiguous local time means its first
    instance. Results are aware UTC datetimes. The prefix defaults to ``eq``.
    Raises InvalidSearchValue for malformed values and for prefixes other than eq/ge/gt/le/lt.
    """
    return _parse_date_value(value, tz, "date")


def _shift(value: _DateValue, prefix: str, days: int, param: str) -> _DateValue:
    try:
        return value.shifted(prefix, days)
    except OverflowError:
        raise InvalidSearchValue(
            f"{param!r}: the date window would fall outside the supported calendar range.",
            expression=[param],
        ) from None


def derive_window(
    values: Sequence[str],
    *,
    tz: ZoneInfo,
    param: str = "date",
    default_days: int = 7,
    max_days: int = 366,
) -> Window | None:
    """The expansion window ``[start, end)`` for the repeated values of one date parameter.

    Rules (docs/api.md section 5): no values -> None; ``X``/``eqX`` -> X's own range; one lower
    (``ge``/``gt``: from the start of its range) plus one upper bound (``le``: to the END of its
    range, the whole day, month or year; ``lt``: to its start) -> that range.

    A lone bound is the same search with the missing bound derived, then read exactly like a
    written one: ``geX`` alone is ``geX&le(X+N)`` and ``leX`` alone is ``ge(X-N)&leX``, with N =
    ``default_days`` days at X's own precision (see ``_DateValue.shifted``):

    ======================  ==========================================  =====================
    value alone             same as                                     window
    ======================  ==========================================  =====================
    ge2026-06-01            ge2026-06-01&le2026-06-08                   [06-01, 06-09)
    le2026-06-01            ge2026-05-25&le2026-06-01                   [05-25, 06-02)
    ge2026-06-01T10:00      ge2026-06-01T10:00&le2026-06-08T10:00       [.. 10:00, .. 10:01)
    ge2026-06 / le2026-06   ge2026-06&le2026-06                         all of June
    ge2026 / le2026         ge2026&le2026                               all of 2026
    ======================  ==========================================  =====================

    The window length is measured on the wall clock of ``tz``, so a span of exactly
    ``max_days`` local days is allowed whatever DST does in between.

    Raises InvalidSearchValue for malformed values, more than one lower or upper bound, ``eq``
    combined with anything, or an empty or inverted window; WindowTooLarge (too-costly) when the
    window spans more than ``max_days`` days. Errors name ``param`` in ``expression``.
    """
    if not values:
        return None
    eqs: list[_DateValue] = []
    lowers: list[_DateValue] = []
    uppers: list[_DateValue] = []
    for raw in values:
        parsed = _parse_value(raw, param)
        if parsed.prefix == "eq":
            eqs.append(parsed)
        elif parsed.prefix in ("ge", "gt"):
            lowers.append(parsed)
        else:  # le, lt
            uppers.append(parsed)
    if eqs and (len(eqs) > 1 or lowers or uppers):
        raise InvalidSearchValue(
            f"{param!r}: an exact date (no prefix or eq) cannot be combined with other {param!r} "
            f"values; give one date, or a ge/gt lower bound and a le/lt upper bound.",
            expression=[param],
        )
    if len(lowers) > 1 or len(uppers) > 1:
        raise InvalidSearchValue(
            f"{param!r}: give at most one lower bound (ge/gt) and one upper bound (le/lt).",
            expression=[param],
        )
    if eqs:
        start, end = _range(eqs[0], tz, param)
    else:
        lower = lowers[0] if lowers else _shift(uppers[0], "ge", -default_days, param)
        upper = uppers[0] if uppers else _shift(lowers[0], "le", default_days, param)
        start = _range(lower, tz, param)[0]
        upper_start, upper_end = _range(upper, tz, param)
        end = upper_end if upper.prefix == "le" else upper_start
    if start >= end:
        raise InvalidSearchValue(
            f"{param!r}: the date window is empty or inverted (from {start.isoformat()} to "
            f"{end.isoformat()}); the lower bound must come before the upper bound.",
            expression=[param],
        )
    span = end.astimezone(tz).replace(tzinfo=None) - start.astimezone(tz).replace(tzinfo=None)
    if span > timedelta(days=max_days):
        days = span / timedelta(days=1)
        raise WindowTooLarge(
            f"{param!r}: the date window spans {days:g} days; the maximum is {max_days} days. "
            f"Search a shorter range and page through it.",
            expression=[param],
        )
    return Window(start, end)


def _unescape(text: str) -> str:
    return re.sub(r"\\([\\|,$])", r"\1", text)


def parse_token(value: str) -> tuple[str | None, str | None]:
    """Split a FHIR token search value into ``(system, code)``.

    ``code`` -> (None, code): any system; ``system|code`` -> (system, code); ``|code`` ->
    ("", code): no system; ``system|`` -> (system, None): any code in that system. An empty
    part is None (or "" for the system before a ``|``). ``\\|`` escapes a literal bar.
    """
    for i, ch in enumerate(value):
        if ch == "|" and (i == 0 or value[i - 1] != "\\"):
            system, code = value[:i], value[i + 1 :]
            return _unescape(system), (_unescape(code) or None)
    return None, (_unescape(value) or None)


def _non_negative(value: str, param: str) -> int:
    text = value.strip()
    if not _INT_RE.match(text) or int(text) < 0:
        raise InvalidSearchValue(
            f"{param}={value!r} must be a whole number of 0 or more.", expression=[param]
        )
    return int(text)


def parse_count(value: str | None, *, default: int = 50, maximum: int = 500) -> int:
    """``_count``: the page size. Missing -> ``default``; above ``maximum`` -> ``maximum``.

    Raises InvalidSearchValue for anything but a non-negative integer (0 means "total only").
    """
    if value is None or value.strip() == "":
        return default
    return min(_non_negative(value, "_count"), maximum)


def parse_offset(value: str | None) -> int:
    """``_offset``: how many matches to skip. Missing -> 0; else a non-negative integer."""
    if value is None or value.strip() == "":
        return 0
    return _non_negative(value, "_offset")


def parse_bool(value: str, *, param: str) -> bool:
    """A FHIR boolean search value: exactly ``true`` or ``false``."""
    if value == "true":
        return True
    if value == "false":
        return False
    raise InvalidSearchValue(f"{param}={value!r} must be 'true' or 'false'.", expression=[param])


def parse_instant_strict(value: str, *, param: str) -> datetime:
    """A FHIR dateTime/instant to the second WITH an offset -> aware UTC datetime.

    ``2026-06-01T09:00:00+02:00`` and ``2026-06-01T07:00:00Z`` are accepted (fractions too).
    Raises InvalidInput when the value is not a full date-time, or has no timezone.
    """
    text = value.strip() if isinstance(value, str) else ""
    m = _INSTANT_RE.match(text)
    if not m:
        raise InvalidInput(
            f"{param}={value!r} must be a full date-time to the second with a timezone, "
            f"e.g. 2026-06-01T09:00:00+02:00.",
            expression=[param],
        )
    g = m.groupdict()
    if g["tz"] is None:
        raise InvalidInput(
            f"{param}={value!r} has no timezone; a timezone is required "
            f"(add Z or an offset such as +02:00).",
            expression=[param],
        )
    offset = _offset(g["tz"])
    try:
        if offset is None:
            raise ValueError
        micro = int(((g["f"] or "") + "000000")[:6])
        wall = datetime(
            int(g["y"]), int(g["mo"]), int(g["d"]), int(g["h"]), int(g["mi"]), int(g["s"]), micro
        )
        return (wall - offset).replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidInput(
            f"{param}={value!r} is not a valid date-time (check the date, time and offset).",
            expression=[param],
        ) from None


@dataclass(frozen=True, slots=True)
class Include:
    """One ``_include`` value: ``Source:param`` and an optional target type."""

    source: str
    param: str
    target: str | None = None

    @property
    def key(self) -> str:
        return f"{self.source}:{self.param}"


_INCLUDE_RE = re.compile(r"^([A-Z][A-Za-z]*):([a-z][a-z\-]*)(?::([A-Z][A-Za-z]*))?$")


def parse_include(value: str, *, param: str = "_include") -> Include:
    """``Source:param[:Target]`` -> Include; InvalidSearchValue for anything else.

    >>> parse_include("Slot:schedule")
    Include(source='Slot', param='schedule', target=None)
    >>> parse_include("Schedule:actor:PractitionerRole").target
    'PractitionerRole'
    """
    m = _INCLUDE_RE.match(value.strip())
    if not m:
        raise InvalidSearchValue(
            f"{param}={value!r} is not an include; write SourceType:searchParam, "
            "e.g. Slot:schedule, optionally :TargetType.",
            expression=[param],
        )
    return Include(m.group(1), m.group(2), m.group(3))


def etag_matches(header: str | None, version: str) -> bool:
    """Whether an ``If-None-Match`` header names ``version`` (weak comparison, RFC 9110).

    >>> etag_matches('W/"3"', "3"), etag_matches('"2", W/"3"', "3"), etag_matches("*", "1")
    (True, True, True)
    >>> etag_matches('W/"2"', "3"), etag_matches(None, "3")
    (False, False)
    """
    if not header:
        return False
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*":
            return True
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag == f'"{version}"':
            return True
    return False
