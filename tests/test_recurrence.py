"""Recurrence engine: pinned DST days, validation, and properties (fast == naive)."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from scheduling.errors import InvalidRecurrence, WindowTooLarge
from scheduling.recurrence import (
    FORBIDDEN_FREQS,
    Period,
    expand,
    expand_naive,
    occurrence_id,
    split_occurrence_id,
    upcoming,
    validate_rrule,
    validate_timezone,
)
from tests.rfc5545_reference import reference_expand

# Pure: no database; CI runs these once, in its SQLite pass.
pytestmark = pytest.mark.nodb

AMS = ZoneInfo("Europe/Amsterdam")
LHI = ZoneInfo("Australia/Lord_Howe")
SYD = ZoneInfo("Australia/Sydney")


def _local(periods: list[Period], tz: ZoneInfo) -> list[datetime]:
    return [p.start.astimezone(tz) for p in periods]


def _expand(
    rrule: str, start: datetime, end: datetime, tzid: str, ws: datetime, we: datetime, **kw
):  # type: ignore[no-untyped-def]
    fast = expand(
        rrule=rrule,
        first_start=start,
        first_end=end,
        tzid=tzid,
        window_start=ws,
        window_end=we,
        **kw,
    )
    naive = expand_naive(
        rrule=rrule,
        first_start=start,
        first_end=end,
        tzid=tzid,
        window_start=ws,
        window_end=we,
        **kw,
    )
    assert fast == naive
    return fast


# --------------------------------------------------------------------------- pinned DST days


def test_weekly_monday_0900_amsterdam_keeps_wall_clock_across_both_transitions() -> None:
    start = datetime(2026, 3, 2, 9, 0, tzinfo=AMS)
    got = _expand(
        "FREQ=WEEKLY;BYDAY=MO",
        start,
        start + timedelta(hours=1),
        "Europe/Amsterdam",
        datetime(2026, 3, 16, tzinfo=UTC),
        datetime(2026, 11, 10, tzinfo=UTC),
    )
    local = _local(got, AMS)
    assert all((d.hour, d.minute, d.weekday()) == (9, 0, 0) for d in local)
    offsets = {d.date(): d.utcoffset() for d in local}
    assert offsets[date(2026, 3, 23)] == timedelta(hours=1)
    assert offsets[date(2026, 3, 30)] == timedelta(hours=2)
    assert offsets[date(2026, 10, 19)] == timedelta(hours=2)
    assert offsets[date(2026, 10, 26)] == timedelta(hours=1)
    assert got[0].start == datetime(2026, 3, 16, 8, 0, tzinfo=UTC)
    assert all(p.end - p.start == timedelta(hours=1) for p in got)
    assert len(got) == 35


def test_daily_0230_skips_nonexistent_spring_forward_and_does_not_count_it() -> None:
    start = datetime(2026, 3, 27, 2, 30, tzinfo=AMS)
    got = _expand(
        "FREQ=DAILY;COUNT=5",
        start,
        start + timedelta(minutes=30),
        "Europe/Amsterdam",
        datetime(2026, 3, 1, tzinfo=UTC),
        datetime(2026, 5, 1, tzinfo=UTC),
    )
    assert [d.date() for d in _local(got, AMS)] == [
        date(2026, 3, 27),
        date(2026, 3, 28),
        date(2026, 3, 30),
        date(2026, 3, 31),
        date(2026, 4, 1),
    ]
    assert all((d.hour, d.minute) == (2, 30) for d in _local(got, AMS))


def test_daily_0230_fall_back_gives_first_instance() -> None:
    start = datetime(2026, 10, 24, 2, 30, tzinfo=AMS)
    got = _expand(
        "FREQ=DAILY",
        start,
        start + timedelta(minutes=15),
        "Europe/Amsterdam",
        datetime(2026, 10, 25, tzinfo=UTC) - timedelta(hours=2),
        datetime(2026, 10, 25, 12, tzinfo=UTC),
    )
    assert len(got) == 1
    assert got[0].start == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30+02:00
    assert got[0].start.astimezone(AMS).utcoffset() == timedelta(hours=2)
    assert got[0].end == datetime(2026, 10, 25, 0, 45, tzinfo=UTC)


def test_duration_is_exact_across_a_transition() -> None:
    # 01:30-03:30 on the fall-back day lasts the same 2 exact hours as on other days.
    start = datetime(2026, 10, 24, 1, 30, tzinfo=AMS)
    got = _expand(
        "FREQ=DAILY;COUNT=3",
        start,
        start + timedelta(hours=2),
        "Europe/Amsterdam",
        datetime(2026, 10, 1, tzinfo=UTC),
        datetime(2026, 11, 1, tzinfo=UTC),
    )
    assert [p.end - p.start for p in got] == [timedelta(hours=2)] * 3


def test_lord_howe_half_hour_shift_spring_forward_skipped() -> None:
    # 2026-10-04 (first Sunday of October): 02:00 -> 02:30, so 02:15 does not exist.
    start = datetime(2026, 10, 2, 2, 15, tzinfo=LHI)
    got = _expand(
        "FREQ=DAILY;COUNT=4",
        start,
        start + timedelta(minutes=10),
        "Australia/Lord_Howe",
        datetime(2026, 9, 1, tzinfo=UTC),
        datetime(2026, 11, 1, tzinfo=UTC),
    )
    local = _local(got, LHI)
    assert [d.date() for d in local] == [
        date(2026, 10, 2),
        date(2026, 10, 3),
        date(2026, 10, 5),
        date(2026, 10, 6),
    ]
    assert all((d.hour, d.minute) == (2, 15) for d in local)
    assert local[0].utcoffset() == timedelta(hours=10, minutes=30)
    assert local[-1].utcoffset() == timedelta(hours=11)


def test_lord_howe_fall_back_is_first_instance() -> None:
    # 2026-04-05 (first Sunday of April): 02:00 -> 01:30, so 01:45 happens twice.
    start = datetime(2026, 4, 3, 1, 45, tzinfo=LHI)
    got = _expand(
        "FREQ=DAILY",
        start,
        start + timedelta(minutes=10),
        "Australia/Lord_Howe",
        datetime(2026, 4, 4, 12, tzinfo=UTC),
        datetime(2026, 4, 5, 12, tzinfo=UTC),
    )
    assert len(got) == 1
    first = got[0].start.astimezone(LHI)
    assert (first.date(), first.hour, first.minute) == (date(2026, 4, 5), 1, 45)
    assert first.utcoffset() == timedelta(hours=11)  # before the shift back to +10:30
    assert got[0].start == datetime(2026, 4, 4, 14, 45, tzinfo=UTC)


def test_southern_zone_weekly_keeps_wall_clock() -> None:
    # Sydney: DST ends 2026-04-05, starts 2026-10-04.
    start = datetime(2026, 3, 3, 14, 0, tzinfo=SYD)
    got = _expand(
        "FREQ=WEEKLY;BYDAY=TU,TH",
        start,
        start + timedelta(minutes=45),
        "Australia/Sydney",
        datetime(2026, 3, 1, tzinfo=UTC),
        datetime(2026, 12, 1, tzinfo=UTC),
    )
    local = _local(got, SYD)
    assert all((d.hour, d.minute) == (14, 0) and d.weekday() in (1, 3) for d in local)
    assert {d.utcoffset() for d in local} == {timedelta(hours=10), timedelta(hours=11)}


def test_chatham_weekly_keeps_wall_clock() -> None:
    tz = ZoneInfo("Pacific/Chatham")
    start = datetime(2026, 1, 5, 8, 45, tzinfo=tz)
    got = _expand(
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO",
        start,
        start + timedelta(hours=2),
        "Pacific/Chatham",
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    local = _local(got, tz)
    assert all((d.hour, d.minute, d.weekday()) == (8, 45, 0) for d in local)
    assert all((b - a).days == 14 for a, b in itertools.pairwise(local))
    assert {d.utcoffset() for d in local} == {
        timedelta(hours=12, minutes=45),
        timedelta(hours=13, minutes=45),
    }


def test_first_start_given_in_another_zone_is_read_in_rule_zone() -> None:
    start = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)  # 09:00 Amsterdam
    got = _expand(
        "FREQ=WEEKLY",
        start,
        start + timedelta(hours=1),
        "Europe/Amsterdam",
        datetime(2026, 6, 1, tzinfo=UTC),
        datetime(2026, 6, 8, tzinfo=UTC),
    )
    assert _local(got, AMS) == [datetime(2026, 6, 1, 9, 0, tzinfo=AMS)]


# --------------------------------------------------------------------------- exdate, UNTIL, COUNT


def test_exdates_by_instant_and_by_local_date() -> None:
    start = datetime(2026, 12, 21, 9, 0, tzinfo=AMS)
    got = _expand(
        "FREQ=DAILY",
        start,
        start + timedelta(hours=1),
        "Europe/Amsterdam",
        datetime(2026, 12, 21, tzinfo=UTC),
        datetime(2026, 12, 26, tzinfo=UTC),
        exdates=[datetime(2026, 12, 22, 8, 0, tzinfo=UTC), date(2026, 12, 24)],
    )
    assert [d.day for d in _local(got, AMS)] == [21, 23, 25]


def test_exdate_can_remove_dtstart_and_a_non_matching_instant_removes_nothing() -> None:
    start = datetime(2026, 12, 21, 9, 0, tzinfo=AMS)
    got = _expand(
        "FREQ=DAILY;COUNT=3",
        start,
        start + timedelta(hours=1),
        "Europe/Amsterdam",
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
        exdates=[start, datetime(2026, 12, 22, 9, 30, tzinfo=AMS)],
    )
    # COUNT counts before exdates are taken out (RFC 5545).
    assert [d.day for d in _local(got, AMS)] == [22, 23]


def test_until_utc_is_inclusive_by_instant() -> None:
    start = datetime(2026, 1, 5, 9, 0, tzinfo=AMS)
    kw = {"first_start": start, "first_end": start + timedelta(hours=1), "tzid": "Europe/Amsterdam"}
    ws, we = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)
    on = expand(rrule="FREQ=WEEKLY;UNTIL=20260119T080000Z", window_start=ws, window_end=we, **kw)  # type: ignore[arg-type]
    before = expand(
        rrule="FREQ=WEEKLY;UNTIL=20260119T075959Z", window_start=ws, window_end=we, **kw
    )  # type: ignore[arg-type]
    assert len(on) == 3
    assert len(before) == 2


def test_until_floating_and_date_only_are_read_in_the_rule_zone() -> None:
    start = datetime(2026, 1, 5, 9, 0, tzinfo=AMS)
    kw = {"first_start": start, "first_end": start + timedelta(hours=1), "tzid": "Europe/Amsterdam"}
    ws, we = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)
    floating = expand(
        rrule="FREQ=WEEKLY;UNTIL=20260119T090000", window_start=ws, window_end=we, **kw
    )  # type: ignore[arg-type]
    date_only = expand(rrule="FREQ=WEEKLY;UNTIL=20260119", window_start=ws, window_end=we, **kw)  # type: ignore[arg-type]
    assert len(floating) == 3
    assert len(date_only) == 3


def test_count_is_honoured_far_from_the_window() -> None:
    start = datetime(2020, 1, 6, 9, 0, tzinfo=AMS)
    kw = {"first_start": start, "first_end": start + timedelta(hours=1), "tzid": "Europe/Amsterdam"}
    got = expand(
        rrule="FREQ=WEEKLY;BYDAY=MO,TH;COUNT=10",
        window_start=datetime(2020, 1, 1, tzinfo=UTC),
        window_end=datetime(2030, 1, 1, tzinfo=UTC),
        **kw,  # type: ignore[arg-type]
    )
    assert len(got) == 10
    late = expand(
        rrule="FREQ=WEEKLY;BYDAY=MO,TH;COUNT=10",
        window_start=datetime(2020, 2, 3, tzinfo=UTC),
        window_end=datetime(2030, 1, 1, tzinfo=UTC),
        **kw,  # type: ignore[arg-type]
    )
    assert late == got[-2:]  # 3 and 6 February are the 9th and 10th


def test_dtstart_is_always_the_first_instance_even_off_rule() -> None:
    start = datetime(2026, 6, 2, 9, 0, tzinfo=AMS)  # a Tuesday
    got = _expand(
        "FREQ=WEEKLY;BYDAY=MO;COUNT=3",
        start,
        start + timedelta(hours=1),
        "Europe/Amsterdam",
        datetime(2026, 6, 1, tzinfo=UTC),
        datetime(2026, 8, 1, tzinfo=UTC),
    )
    assert [d.day for d in _local(got, AMS)] == [2, 8, 15]


def test_window_is_half_open_and_overlap_based() -> None:
    start = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    kw = {"first_start": start, "first_end": start + timedelta(hours=2), "tzid": "UTC"}
    # ends exactly at the window start: not overlapping
    assert (
        expand(
            rrule="FREQ=DAILY",
            window_start=start + timedelta(hours=2),
            window_end=start + timedelta(hours=3),
            **kw,
        )
        == []
    )  # type: ignore[arg-type]
    # starts exactly at the window end: not overlapping
    assert (
        expand(rrule="FREQ=DAILY", window_start=start - timedelta(hours=1), window_end=start, **kw)
        == []
    )  # type: ignore[arg-type]
    # partial overlap at either edge counts
    got = expand(
        rrule="FREQ=DAILY",
        window_start=start + timedelta(hours=1),
        window_end=start + timedelta(days=1, minutes=1),
        **kw,
    )  # type: ignore[arg-type]
    assert [p.start for p in got] == [start, start + timedelta(days=1)]


def test_upcoming_preview() -> None:
    start = datetime(2016, 1, 4, 9, 0, tzinfo=AMS)
    got = upcoming(
        rrule="FREQ=WEEKLY;BYDAY=MO,WE",
        first_start=start,
        first_end=start + timedelta(hours=1),
        tzid="Europe/Amsterdam",
        exdates=[date(2026, 6, 3)],
        after=datetime(2026, 6, 1, 9, 0, tzinfo=AMS),
        limit=3,
    )
    assert [d.date() for d in _local(got, AMS)] == [
        date(2026, 6, 1),
        date(2026, 6, 8),
        date(2026, 6, 10),
    ]
    assert (
        upcoming(
            rrule="FREQ=DAILY", first_start=start, first_end=start, tzid="UTC", after=start, limit=0
        )
        == []
    )


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("freq", sorted(FORBIDDEN_FREQS))
def test_forbidden_freqs_are_rejected(freq: str) -> None:
    with pytest.raises(InvalidRecurrence, match=f"FREQ={freq} is not allowed") as exc:
        validate_rrule(f"FREQ={freq};INTERVAL=1")
    assert exc.value.expression == ["rrule"]


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("RRULE:FREQ=DAILY", "without the 'RRULE:' prefix"),
        ("INTERVAL=2", "no FREQ"),
        ("FREQ=FORTNIGHTLY", "not a known frequency"),
        ("FREQ=DAILY;FREQ=WEEKLY", "more than once"),
        ("FREQ=DAILY;BOGUS=1", "not supported"),
        ("FREQ=DAILY;COUNT", "NAME=VALUE"),
        ("FREQ=DAILY;COUNT=0", "positive integer"),
        ("FREQ=DAILY;COUNT=x", "positive integer"),
        ("FREQ=DAILY;INTERVAL=-1", "positive integer"),
        ("FREQ=DAILY;UNTIL=tomorrow", "UNTIL"),
        ("FREQ=DAILY;UNTIL=20261301", "not a valid calendar date"),
        ("FREQ=DAILY;UNTIL=20260101T250000Z", "not a valid calendar date"),
        ("FREQ=DAILY;COUNT=3;UNTIL=20270101", "COUNT or UNTIL"),
        ("FREQ=WEEKLY;BYDAY=XX", "BYDAY"),
        ("FREQ=WEEKLY;BYDAY=1MO", "only allowed with FREQ=MONTHLY"),
        ("FREQ=MONTHLY;BYDAY=0MO", "1..53"),
        ("FREQ=MONTHLY;BYMONTHDAY=32", "out of range"),
        ("FREQ=MONTHLY;BYMONTHDAY=0", "out of range"),
        ("FREQ=YEARLY;BYMONTH=13", "out of range"),
        ("FREQ=DAILY;BYHOUR=24", "out of range"),
        ("FREQ=DAILY;BYSECOND=60", "out of range"),
        ("FREQ=MONTHLY;BYWEEKNO=3", "only allowed with FREQ=YEARLY"),
        ("FREQ=WEEKLY;BYMONTHDAY=3", "not allowed with FREQ=WEEKLY"),
        ("FREQ=MONTHLY;BYYEARDAY=3", "BYYEARDAY"),
        ("FREQ=MONTHLY;BYSETPOS=1", "needs another BYxxx"),
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "can never occur"),
        ("FREQ=WEEKLY;WKST=XY", "WKST"),
        ("FREQ=DAILY;BYMONTH=1,,2", "integers"),
    ],
)
def test_junk_rules_are_rejected_with_a_reason(rule: str, fragment: str) -> None:
    with pytest.raises(InvalidRecurrence, match=fragment.replace("(", r"\(").replace("+", r"\+")):
        validate_rrule(rule)


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=WEEKLY;BYDAY=MO,WE;UNTIL=20271231T230000Z",
        "freq=monthly;byday=-1fr",
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29",
        "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
        "FREQ=YEARLY;BYWEEKNO=1,-1;BYDAY=MO;WKST=SU",
    ],
)
def test_good_rules_validate(rule: str) -> None:
    validate_rrule(rule)


def test_unknown_zone_raises() -> None:
    for bad in ("Mars/Olympus", "", "../etc/passwd", "Europe/Amsterdam "):
        with pytest.raises(InvalidRecurrence) as exc:
            validate_timezone(bad)
        assert exc.value.expression == ["timezone"]
    with pytest.raises(InvalidRecurrence):
        expand(
            rrule="FREQ=DAILY",
            first_start=datetime(2026, 1, 1, tzinfo=UTC),
            first_end=datetime(2026, 1, 1, 1, tzinfo=UTC),
            tzid="Nowhere/Land",
            window_start=datetime(2026, 1, 1, tzinfo=UTC),
            window_end=datetime(2026, 1, 2, tzinfo=UTC),
        )
    assert validate_timezone("Europe/Amsterdam") == AMS


def test_naive_first_start_is_rejected() -> None:
    with pytest.raises(InvalidRecurrence, match="timezone-aware"):
        expand(
            rrule="FREQ=DAILY",
            first_start=datetime(2026, 1, 1),
            first_end=datetime(2026, 1, 1, 1, tzinfo=UTC),
            tzid="UTC",
            window_start=datetime(2026, 1, 1, tzinfo=UTC),
            window_end=datetime(2026, 1, 2, tzinfo=UTC),
        )


def test_too_many_occurrences_is_too_costly() -> None:
    start = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    kw = {
        "rrule": "FREQ=DAILY;BYHOUR=0,1,2,3,4,5,6,7,8,9,10,11;BYMINUTE=0,15,30,45",
        "first_start": start,
        "first_end": start + timedelta(minutes=5),
        "tzid": "UTC",
        "window_start": start,
        "window_end": start + timedelta(days=366),
    }
    with pytest.raises(WindowTooLarge, match="more than 10000 occurrences") as exc:
        expand(**kw, max_occurrences=10_000)  # type: ignore[arg-type]
    assert exc.value.issue_code == "too-costly"
    assert len(expand(**kw)) == 366 * 48  # type: ignore[arg-type]
    assert len(expand(**kw, max_occurrences=None)) == 366 * 48  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("start", "tzid"),
    [
        (datetime(9999, 12, 30, 12, 0, tzinfo=UTC), "Pacific/Kiritimati"),
        (datetime(1, 1, 1, 1, 0, tzinfo=UTC), "America/New_York"),
    ],
)
def test_dates_at_the_ends_of_the_calendar_do_not_crash(start: datetime, tzid: str) -> None:
    for engine in (expand, expand_naive):
        try:
            got = engine(
                rrule="FREQ=DAILY",
                first_start=start,
                first_end=start + timedelta(hours=1),
                tzid=tzid,
                window_start=start,
                window_end=start + timedelta(hours=30),
            )
        except InvalidRecurrence as exc:
            assert "supported range" in exc.message
        else:
            assert all(p.start >= start for p in got)


# --------------------------------------------------------------------------- ids


def test_occurrence_id_round_trip() -> None:
    start = datetime(2026, 6, 1, 9, 0, tzinfo=AMS)
    value = occurrence_id("sched-1.a", start)
    assert value == "sched-1.a-20260601T070000Z"
    assert split_occurrence_id(value) == ("sched-1.a", datetime(2026, 6, 1, 7, 0, tzinfo=UTC))


@pytest.mark.parametrize(
    "value",
    [
        "sched-1",
        "-20260601T070000Z",
        "s-20261301T070000Z",
        "s-20260601T070000",
        "s20260601T070000Z",
    ],
)
def test_split_occurrence_id_rejects_non_ids(value: str) -> None:
    assert split_occurrence_id(value) is None


# --------------------------------------------------------------------------- properties

ZONES = [
    "Europe/Amsterdam",
    "America/New_York",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Asia/Kolkata",
    "UTC",
]
DAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]
FREQS = ["DAILY", "WEEKLY", "MONTHLY", "YEARLY"]


@st.composite
def rules(draw: st.DrawFn, *, allow_bysetpos_weekly: bool = True) -> str:
    freq = draw(st.sampled_from(FREQS))
    parts = [f"FREQ={freq}"]
    if draw(st.booleans()):
        parts.append(f"INTERVAL={draw(st.integers(1, 4))}")
    has_by = False
    if draw(st.booleans()):
        days = draw(st.lists(st.sampled_from(DAYS), min_size=1, max_size=3, unique=True))
        if freq in ("MONTHLY", "YEARLY") and draw(st.booleans()):
            days = [f"{draw(st.sampled_from([1, 2, 3, -1, -2]))}{d}" for d in days]
        parts.append("BYDAY=" + ",".join(days))
        has_by = True
    if freq != "WEEKLY" and draw(st.integers(0, 3)) == 0:
        mdays = draw(
            st.lists(st.integers(-31, 31).filter(bool), min_size=1, max_size=3, unique=True)
        )
        parts.append("BYMONTHDAY=" + ",".join(map(str, mdays)))
        has_by = True
    if draw(st.integers(0, 3)) == 0:
        months = draw(st.lists(st.integers(1, 12), min_size=1, max_size=4, unique=True))
        parts.append("BYMONTH=" + ",".join(map(str, months)))
        has_by = True
    if (
        freq == "YEARLY"
        and draw(st.integers(0, 5)) == 0
        and not any("BYDAY=" in p and any(c.isdigit() for c in p) for p in parts)
    ):
        weeks = draw(
            st.lists(st.integers(-53, 53).filter(bool), min_size=1, max_size=2, unique=True)
        )
        parts.append("BYWEEKNO=" + ",".join(map(str, weeks)))
        has_by = True
    if draw(st.integers(0, 4)) == 0:
        parts.append(
            "BYHOUR="
            + ",".join(
                map(str, draw(st.lists(st.integers(0, 23), min_size=1, max_size=2, unique=True)))
            )
        )
        has_by = True
    if draw(st.integers(0, 5)) == 0:
        parts.append(
            "BYMINUTE="
            + ",".join(
                map(
                    str,
                    draw(
                        st.lists(
                            st.sampled_from([0, 15, 30, 45]), min_size=1, max_size=2, unique=True
                        )
                    ),
                )
            )
        )
        has_by = True
    if has_by and (allow_bysetpos_weekly or freq != "WEEKLY") and draw(st.integers(0, 3)) == 0:
        pos = draw(
            st.lists(st.sampled_from([1, 2, 3, -1, -2]), min_size=1, max_size=2, unique=True)
        )
        parts.append("BYSETPOS=" + ",".join(map(str, pos)))
    if draw(st.booleans()):
        parts.append(f"WKST={draw(st.sampled_from(DAYS))}")
    end = draw(
        st.sampled_from(["none", "none", "count", "until_z", "until_floating", "until_date"])
    )
    if end == "count":
        parts.append(f"COUNT={draw(st.integers(1, 60))}")
    elif end != "none":
        when = draw(st.datetimes(min_value=datetime(1975, 1, 1), max_value=datetime(2095, 1, 1)))
        if end == "until_z":
            parts.append(f"UNTIL={when:%Y%m%dT%H%M%S}Z")
        elif end == "until_floating":
            parts.append(f"UNTIL={when:%Y%m%dT%H%M%S}")
        else:
            parts.append(f"UNTIL={when:%Y%m%d}")
    order = draw(st.permutations(parts))
    rule = ";".join(order)
    try:
        validate_rrule(rule)
    except InvalidRecurrence:
        assume(False)
    return rule


local_times = st.one_of(
    st.times(),
    st.sampled_from([(2, 0), (2, 15), (2, 30), (2, 45), (1, 45), (3, 0), (9, 0)]).map(
        lambda hm: datetime(2000, 1, 1, *hm).time()
    ),
)


@st.composite
def scenarios(draw: st.DrawFn, max_years: int = 60) -> dict[str, object]:
    tzid = draw(st.sampled_from(ZONES))
    tz = ZoneInfo(tzid)
    day = draw(st.dates(min_value=date(1975, 1, 1), max_value=date(2030, 12, 31)))
    t = draw(local_times).replace(microsecond=0)
    first_start = datetime.combine(day, t, tzinfo=tz).replace(fold=draw(st.integers(0, 1)))
    duration = timedelta(minutes=draw(st.sampled_from([0, 15, 30, 60, 90, 480, 1440, 2000])))
    years = draw(st.integers(0, max_years))
    offset = timedelta(
        days=years * 365 + draw(st.integers(-40, 40)), minutes=draw(st.integers(0, 1439))
    )
    window_start = first_start + offset
    window_end = window_start + timedelta(
        days=draw(st.integers(1, 40)), minutes=draw(st.integers(0, 1439))
    )
    exdates: list[datetime | date] = []
    for _ in range(draw(st.integers(0, 3))):
        d = (window_start + timedelta(days=draw(st.integers(0, 40)))).astimezone(tz)
        if draw(st.booleans()):
            exdates.append(d.date())
        else:
            exdates.append(datetime.combine(d.date(), first_start.astimezone(tz).time(), tzinfo=tz))
    return {
        "tzid": tzid,
        "first_start": first_start,
        "first_end": first_start + duration,
        "exdates": exdates,
        "window_start": window_start,
        "window_end": window_end,
    }


@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(rule=rules(), data=st.data())
def test_property_expand_equals_naive(rule: str, data: st.DataObject) -> None:
    # The naive reference walks every day since DTSTART: keep DAILY rules nearer (cost only).
    sc = data.draw(scenarios(max_years=25 if "FREQ=DAILY" in rule else 60))
    fast = expand(rrule=rule, **sc)  # type: ignore[arg-type]
    naive = expand_naive(rrule=rule, **sc)  # type: ignore[arg-type]
    assert fast == naive
    assert fast == sorted(fast, key=lambda p: (p.start, p.end))
    ws, we = sc["window_start"], sc["window_end"]
    assert all(p.start < we and p.end > ws for p in fast)  # type: ignore[operator]
    assert all(p.start.tzinfo is UTC for p in fast)


@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(rule=rules(), data=st.data(), limit=st.integers(1, 8))
def test_property_upcoming_equals_naive_prefix(rule: str, data: st.DataObject, limit: int) -> None:
    sc = data.draw(scenarios(max_years=25 if "FREQ=DAILY" in rule else 60))
    after: datetime = sc.pop("window_start")  # type: ignore[assignment]
    sc.pop("window_end")
    got = upcoming(rrule=rule, after=after, limit=limit, **sc)  # type: ignore[arg-type]
    # The reference looks ahead a horizon long enough for most rules; when it finds fewer
    # than `limit`, what it found must still be the start of what upcoming() returns.
    freq = rule.split("FREQ=")[1].split(";")[0]
    years = {"DAILY": 2, "WEEKLY": 6, "MONTHLY": 16, "YEARLY": 40}[freq]
    naive = expand_naive(
        rrule=rule,
        window_start=after - timedelta(seconds=1),  # zero-length occurrences at `after` overlap
        window_end=after + timedelta(days=366 * years),
        **sc,  # type: ignore[arg-type]
    )
    expected = [p for p in naive if p.start >= after][:limit]
    assert got[: len(expected)] == expected
    # Anything upcoming() found beyond what the reference found lies beyond its horizon.
    assert all(p.start >= after + timedelta(days=366 * years) for p in got[len(expected) :])


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(rule=rules(), data=st.data())
def test_property_naive_matches_the_rfc_reference(rule: str, data: st.DataObject) -> None:
    """The walk from DTSTART agrees with the brute-force RFC 5545 reference.

    This used to compare with python-dateutil, which departs from the RFC (mixed plain and
    ordinal BYDAY, BYSETPOS in a partial first week); tests/test_recurrence_rfc.py has the
    reference's own check against the RFC's examples and the full comparison with expand().
    """
    sc = data.draw(scenarios(max_years=8 if "FREQ=DAILY" in rule else 20))
    assert expand_naive(rrule=rule, **sc) == reference_expand(rrule=rule, **sc)  # type: ignore[arg-type]
