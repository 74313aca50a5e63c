"""FHIR search values as tables of examples (fhirpy searchset.py style). Pure, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from fhir_api.search import (
    PREFIXES,
    Window,
    derive_window,
    parse_bool,
    parse_count,
    parse_date_value,
    parse_instant_strict,
    parse_offset,
    parse_token,
)
from scheduling.errors import InvalidInput, InvalidSearchValue, WindowTooLarge

AMS = ZoneInfo("Europe/Amsterdam")
NY = ZoneInfo("America/New_York")


def loc(text: str, tz: ZoneInfo = AMS) -> datetime:
    """A wall-clock time in tz as an aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=tz)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --------------------------------------------------------------------------- window table
# (values, zone, expected start, expected end); local expectations are wall clock in the zone.
WINDOW_TABLE = [
    # docs/api.md section 5, row by row
    (["2026-06-01"], AMS, loc("2026-06-01"), loc("2026-06-02")),
    (["eq2026-06-01"], AMS, loc("2026-06-01"), loc("2026-06-02")),
    # a lone bound is the same search with the other bound derived 7 days away and read as
    # written: ge2026-06-01 alone is ge2026-06-01&le2026-06-08, and le includes its whole day
    (["ge2026-06-01"], AMS, loc("2026-06-01"), loc("2026-06-09")),
    (["gt2026-06-01"], AMS, loc("2026-06-01"), loc("2026-06-09")),
    (["le2026-06-01"], AMS, loc("2026-05-25"), loc("2026-06-02")),
    (["lt2026-06-01"], AMS, loc("2026-05-25"), loc("2026-06-01")),
    (["ge2026-06-01", "le2026-06-30"], AMS, loc("2026-06-01"), loc("2026-07-01")),
    (["le2026-06-30", "ge2026-06-01"], AMS, loc("2026-06-01"), loc("2026-07-01")),
    (["gt2026-06-01", "lt2026-06-30"], AMS, loc("2026-06-01"), loc("2026-06-30")),
    # precisions: year, month, day, minute, second, fraction
    (["2026"], AMS, loc("2026-01-01"), loc("2027-01-01")),
    (["2026-02"], AMS, loc("2026-02-01"), loc("2026-03-01")),
    (["2026-12"], AMS, loc("2026-12-01"), loc("2027-01-01")),
    (["2026-06-01T10:00"], AMS, loc("2026-06-01T10:00"), loc("2026-06-01T10:01")),
    (["2026-06-01T10:00:30"], AMS, loc("2026-06-01T10:00:30"), loc("2026-06-01T10:00:31")),
    (["2026-06-01T10:00:30.5"], AMS, loc("2026-06-01T10:00:30.5"), loc("2026-06-01T10:00:30.6")),
    (["2026-06-01T10:00:00Z"], AMS, utc("2026-06-01T10:00:00"), utc("2026-06-01T10:00:01")),
    (["2026-06-01T10:00:00+02:00"], NY, utc("2026-06-01T08:00:00"), utc("2026-06-01T08:00:01")),
    (["2026-06-01T10:00-04:00"], AMS, utc("2026-06-01T14:00"), utc("2026-06-01T14:01")),
    # le/lt/ge per precision
    # a month or a year plus or minus 7 days is that month or year (FHIRPath date arithmetic)
    (["le2026-06"], AMS, loc("2026-06-01"), loc("2026-07-01")),
    (["ge2026-06"], AMS, loc("2026-06-01"), loc("2026-07-01")),
    (["ge2026"], AMS, loc("2026-01-01"), loc("2027-01-01")),
    (["le2026"], AMS, loc("2026-01-01"), loc("2027-01-01")),
    (["ge2026-01", "le2026-12"], AMS, loc("2026-01-01"), loc("2027-01-01")),
    # a date-time bound includes its whole second (or minute), derived or written
    (["ge2026-06-01T09:00:00Z"], AMS, utc("2026-06-01T09:00:00"), utc("2026-06-08T09:00:01")),
    (["le2026-06-01T12:00:00Z"], AMS, utc("2026-05-25T12:00:00"), utc("2026-06-01T12:00:01")),
    (
        ["ge2026-06-01T09:00:00+02:00", "lt2026-06-01T17:00:00+02:00"],
        NY,
        utc("2026-06-01T07:00"),
        utc("2026-06-01T15:00"),
    ),
    # the organisation's zone is applied to values without an offset
    (["2026-06-01"], NY, loc("2026-06-01", NY), loc("2026-06-02", NY)),
    (["ge2026-06-01T09:00"], NY, loc("2026-06-01T09:00", NY), loc("2026-06-08T09:01", NY)),
    # default span keeps 00:00 local across DST (Amsterdam 2026-03-29, New York 2026-11-01)
    (["ge2026-03-25"], AMS, loc("2026-03-25"), loc("2026-04-02")),
    (["ge2026-03-25T10:00"], AMS, loc("2026-03-25T10:00"), loc("2026-04-01T10:01")),
    # ... while a written offset is kept: 7 x 24 hours later
    (["ge2026-03-25T10:00+01:00"], AMS, utc("2026-03-25T09:00"), utc("2026-04-01T09:01")),
    (["le2026-11-03"], NY, loc("2026-10-27", NY), loc("2026-11-04", NY)),
    # exactly 366 local days is allowed (2028 is a leap year: 366 days in the year)
    (["2028"], AMS, loc("2028-01-01"), loc("2029-01-01")),
    (["ge2026-01-01", "lt2027-01-02"], AMS, loc("2026-01-01"), loc("2027-01-02")),
    (["ge2026-01-01", "le2027-01-01"], AMS, loc("2026-01-01"), loc("2027-01-02")),
    (["ge2026-06-01", "lt2027-06-02"], NY, loc("2026-06-01", NY), loc("2027-06-02", NY)),
]


@pytest.mark.parametrize(("values", "tz", "start", "end"), WINDOW_TABLE)
def test_window_table(values: list[str], tz: ZoneInfo, start: datetime, end: datetime) -> None:
    window = derive_window(values, tz=tz)
    assert window == Window(start, end)
    assert window.start.tzinfo is UTC and window.end.tzinfo is UTC


def test_no_values_no_window() -> None:
    assert derive_window([], tz=AMS) is None


def test_default_days_is_configurable() -> None:
    assert derive_window(["ge2026-06-01"], tz=AMS, default_days=1) == Window(
        loc("2026-06-01"), loc("2026-06-03")
    )


@pytest.mark.parametrize(
    "values",
    [
        ["ge2026-01-01", "lt2027-01-03"],  # 367 days
        ["ge2026-01-01", "le2027-01-02"],
        ["ge2026", "le2027"],  # two years
        ["ge2026-06-01T00:00:00Z", "lt2027-06-03T00:00:00Z"],
    ],
)
def test_window_longer_than_366_days_is_too_costly(values: list[str]) -> None:
    with pytest.raises(WindowTooLarge, match="maximum is 366 days") as exc:
        derive_window(values, tz=AMS, param="start")
    assert exc.value.expression == ["start"]
    assert exc.value.issue_code == "too-costly"


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        (["ge2026-06-01", "gt2026-06-02"], "at most one lower bound"),
        (["le2026-06-01", "lt2026-06-02"], "at most one"),
        (["2026-06-01", "2026-06-02"], "cannot be combined"),
        (["eq2026-06-01", "ge2026-05-01"], "cannot be combined"),
        (["2026-06-01", "le2026-07-01"], "cannot be combined"),
        (["ge2026-06-30", "le2026-06-01"], "empty or inverted"),
        (["ge2026-06-01", "lt2026-06-01"], "empty or inverted"),
        # lt2026-06 alone is ge2026-06&lt2026-06: a month minus 7 days is that same month
        (["lt2026-06"], "empty or inverted"),
    ],
)
def test_bad_combinations(values: list[str], fragment: str) -> None:
    with pytest.raises(InvalidSearchValue, match=fragment) as exc:
        derive_window(values, tz=AMS)
    assert exc.value.expression == ["date"]


@pytest.mark.parametrize(
    "value",
    [
        "ne2026-06-01",
        "sa2026-06-01",
        "eb2026-06-01",
        "ap2026-06-01",
        "xx2026-06-01",
        "GE2026-06-01",
        "",
        "yesterday",
        "26-06-01",
        "2026-6-1",
        "2026-13",
        "2026-02-30",
        "2026-06-01T10",  # hours without minutes
        "2026-06-01T25:00",
        "2026-06-01T10:00:60",
        "2026-06-01Z",  # an offset needs a time
        "2026-06-01T10:00+2",
        "2026-06-01T10:00+15:00",
        "2026-06-01T10:00:00+02:00junk",
        "2026-06-01,2026-06-02",
        "ge",
    ],
)
def test_malformed_or_unsupported_values_name_the_value(value: str) -> None:
    with pytest.raises(InvalidSearchValue) as exc:
        derive_window([value], tz=AMS)
    assert repr(value) in exc.value.message
    assert exc.value.expression == ["date"]


# --------------------------------------------------------------------------- parse_date_value


@pytest.mark.parametrize("prefix", PREFIXES)
def test_every_supported_prefix_is_returned(prefix: str) -> None:
    got = parse_date_value(f"{prefix}2026-06-01", AMS)
    assert got == (prefix, loc("2026-06-01"), loc("2026-06-02"))


def test_no_prefix_means_eq() -> None:
    assert parse_date_value("2026-06-01", AMS)[0] == "eq"


def test_space_for_unencoded_plus_is_read_as_plus() -> None:
    assert parse_date_value("2026-06-01T10:00:00 02:00", AMS)[1] == utc("2026-06-01T08:00:00")


def test_ambiguous_local_time_is_its_first_instance() -> None:
    _, start, end = parse_date_value("2026-10-25T02:30", AMS)
    assert start == utc("2026-10-25T00:30")  # +02:00
    assert end - start == timedelta(minutes=1)


def test_day_range_across_dst_is_23_hours() -> None:
    _, start, end = parse_date_value("2026-03-29", AMS)
    assert end - start == timedelta(hours=23)


# --------------------------------------------------------------------------- small helpers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("code", (None, "code")),
        ("http://snomed.info/sct|394814009", ("http://snomed.info/sct", "394814009")),
        ("|code", ("", "code")),
        ("http://example.org/cs|", ("http://example.org/cs", None)),
        ("a\\|b", (None, "a|b")),
        ("sys|a|b", ("sys", "a|b")),
        ("", (None, None)),
    ],
)
def test_parse_token(value: str, expected: tuple[str | None, str | None]) -> None:
    assert parse_token(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, 50),
        ("", 50),
        ("0", 0),
        ("1", 1),
        ("20", 20),
        ("500", 500),
        ("501", 500),
        ("100000", 500),
    ],
)
def test_parse_count(value: str | None, expected: int) -> None:
    assert parse_count(value) == expected


def test_parse_count_custom_default_and_maximum() -> None:
    assert parse_count(None, default=10, maximum=20) == 10
    assert parse_count("30", default=10, maximum=20) == 20


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", "10x", "1e3"])
def test_parse_count_rejects(value: str) -> None:
    with pytest.raises(InvalidSearchValue, match="_count") as exc:
        parse_count(value)
    assert exc.value.expression == ["_count"]


@pytest.mark.parametrize(("value", "expected"), [(None, 0), ("", 0), ("0", 0), ("150", 150)])
def test_parse_offset(value: str | None, expected: int) -> None:
    assert parse_offset(value) == expected


@pytest.mark.parametrize("value", ["-5", "x", "2.0"])
def test_parse_offset_rejects(value: str) -> None:
    with pytest.raises(InvalidSearchValue, match="_offset") as exc:
        parse_offset(value)
    assert exc.value.expression == ["_offset"]


def test_parse_bool() -> None:
    assert parse_bool("true", param="active") is True
    assert parse_bool("false", param="active") is False
    for bad in ("True", "1", "yes", ""):
        with pytest.raises(InvalidSearchValue, match="'true' or 'false'") as exc:
            parse_bool(bad, param="active")
        assert exc.value.expression == ["active"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-06-01T09:00:00+02:00", utc("2026-06-01T07:00:00")),
        ("2026-06-01T07:00:00Z", utc("2026-06-01T07:00:00")),
        ("2026-06-01T07:00:00.250Z", utc("2026-06-01T07:00:00.25")),
        ("2026-06-01T02:00:00-05:00", utc("2026-06-01T07:00:00")),
    ],
)
def test_parse_instant_strict(value: str, expected: datetime) -> None:
    got = parse_instant_strict(value, param="start")
    assert got == expected
    assert got.tzinfo is UTC


def test_parse_instant_strict_requires_a_timezone() -> None:
    with pytest.raises(InvalidInput, match="timezone is required") as exc:
        parse_instant_strict("2026-06-01T09:00:00", param="start")
    assert exc.value.expression == ["start"]


@pytest.mark.parametrize(
    "value",
    [
        "2026-06-01",
        "2026-06-01T09:00Z",
        "2026-06-01T09:00:00+2:00",
        "2026-02-30T09:00:00Z",
        "now",
        "",
    ],
)
def test_parse_instant_strict_requires_full_precision(value: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_instant_strict(value, param="start")
    assert exc.value.expression == ["start"]
