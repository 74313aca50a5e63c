"""Slot cutting and busy/free marking (pure, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduling.availability import (
    GeneratedSlot,
    Interval,
    cut_slots,
    generate_slots,
    slot_id,
)
from scheduling.errors import InvalidInput
from scheduling.recurrence import Period, split_occurrence_id

# Pure: no database; CI runs these once, in its SQLite pass.
pytestmark = pytest.mark.nodb

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
M15 = timedelta(minutes=15)
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def iv(a: int, b: int) -> Period:
    return Interval(at(a), at(b))


def test_cut_back_to_back_from_window_start() -> None:
    assert cut_slots([iv(0, 60)], M15) == [iv(0, 15), iv(15, 30), iv(30, 45), iv(45, 60)]


def test_cut_leaves_short_remainder_unslotted() -> None:
    assert cut_slots([iv(0, 50)], M15) == [iv(0, 15), iv(15, 30), iv(30, 45)]
    assert cut_slots([iv(0, 14)], M15) == []


def test_cut_sorts_and_dedupes_identical_starts() -> None:
    got = cut_slots([iv(60, 90), iv(0, 30), iv(0, 30)], M15)
    assert got == [iv(0, 15), iv(15, 30), iv(60, 75), iv(75, 90)]


def test_cut_window_starting_off_grid_keeps_its_own_grid() -> None:
    assert cut_slots([iv(7, 40)], M15) == [iv(7, 22), iv(22, 37)]


@pytest.mark.parametrize("duration", [timedelta(0), timedelta(minutes=-5)])
def test_cut_rejects_non_positive_duration(duration: timedelta) -> None:
    with pytest.raises(InvalidInput, match="positive"):
        cut_slots([iv(0, 60)], duration)


def _statuses(slots: list[GeneratedSlot]) -> list[str]:
    return [s.status for s in slots]


def test_busy_overlap_at_edges_touching_is_not_overlapping() -> None:
    windows = [iv(0, 60)]
    # busy 15..30 touches slot 0..15 and slot 30..45: only 15..30 is busy
    got = generate_slots(windows=windows, duration=M15, busy=[iv(15, 30)], now=LONG_AGO)
    assert _statuses(got) == ["free", "busy", "free", "free"]
    # busy 14..31 overlaps three slots by a minute at each edge
    got = generate_slots(windows=windows, duration=M15, busy=[iv(14, 31)], now=LONG_AGO)
    assert _statuses(got) == ["busy", "busy", "busy", "free"]


def test_busy_interval_covering_many_and_unsorted_busy_input() -> None:
    got = generate_slots(
        windows=[iv(0, 120)],
        duration=M15,
        busy=[iv(100, 200), iv(-30, 5), iv(40, 50), iv(41, 44)],
        now=LONG_AGO,
    )
    assert _statuses(got) == ["busy", "free", "busy", "busy", "free", "free", "busy", "busy"]


def test_past_slots_are_busy() -> None:
    got = generate_slots(windows=[iv(0, 60)], duration=M15, busy=[], now=at(20))
    # 0..15 and 15..30 start before now; 30.. and 45.. are in the future
    assert _statuses(got) == ["busy", "busy", "free", "free"]
    exact = generate_slots(windows=[iv(0, 30)], duration=M15, busy=[], now=at(15))
    assert _statuses(exact) == ["busy", "free"]  # starting exactly now is not the past


def test_range_filter_keeps_overlapping_slots_only() -> None:
    got = generate_slots(
        windows=[iv(0, 120)],
        duration=M15,
        busy=[],
        now=LONG_AGO,
        range_start=at(20),
        range_end=at(60),
    )
    assert [(s.start, s.end) for s in got] == [(at(15), at(30)), (at(30), at(45)), (at(45), at(60))]
    only_start = generate_slots(
        windows=[iv(0, 60)], duration=M15, busy=[], now=LONG_AGO, range_start=at(45)
    )
    assert [s.start for s in only_start] == [at(45)]
    only_end = generate_slots(
        windows=[iv(0, 60)], duration=M15, busy=[], now=LONG_AGO, range_end=at(15)
    )
    assert [s.start for s in only_end] == [at(0)]


def test_slot_ids_use_occurrence_id_format() -> None:
    start = datetime(2026, 6, 1, 11, 30, tzinfo=UTC)
    assert slot_id("sched-7", start) == "sched-7-20260601T113000Z"
    assert split_occurrence_id(slot_id("sched-7", start)) == ("sched-7", start)


def test_many_slots_across_many_windows() -> None:
    windows = [Period(T0 + timedelta(days=d), T0 + timedelta(days=d, hours=3)) for d in range(365)]
    busy = [
        Period(T0 + timedelta(days=d, minutes=30), T0 + timedelta(days=d, minutes=45))
        for d in range(0, 365, 2)
    ]
    got = generate_slots(windows=windows, duration=M15, busy=busy, now=T0 + timedelta(days=10))
    assert len(got) == 365 * 12
    by_start = {s.start: s.status for s in got}
    assert by_start[T0 + timedelta(days=12, minutes=30)] == "busy"
    assert by_start[T0 + timedelta(days=13, minutes=30)] == "free"
    assert by_start[T0 + timedelta(days=12, minutes=45)] == "free"
    assert by_start[T0 + timedelta(days=9, minutes=30)] == "busy"  # past
    assert sum(s.status == "free" for s in got) == 365 * 12 - 10 * 12 - len(range(10, 365, 2))


intervals = st.tuples(st.integers(-20, 200), st.integers(0, 60)).map(
    lambda t: iv(t[0], t[0] + t[1])
)


@settings(max_examples=500, deadline=None)
@given(
    windows=st.lists(intervals, max_size=6),
    busy=st.lists(intervals, max_size=8),
    minutes=st.integers(1, 40),
    now=st.integers(-30, 230),
    rng=st.tuples(st.none() | st.integers(-20, 220), st.none() | st.integers(-20, 220)),
)
def test_property_matches_brute_force(
    windows: list[Period],
    busy: list[Period],
    minutes: int,
    now: int,
    rng: tuple[int | None, int | None],
) -> None:
    duration = timedelta(minutes=minutes)
    lo = None if rng[0] is None else at(rng[0])
    hi = None if rng[1] is None else at(rng[1])
    got = generate_slots(
        windows=windows, duration=duration, busy=busy, now=at(now), range_start=lo, range_end=hi
    )
    expected: dict[datetime, GeneratedSlot] = {}
    for w in windows:
        k = 0
        while w.start + (k + 1) * duration <= w.end:
            s, e = w.start + k * duration, w.start + (k + 1) * duration
            k += 1
            if (lo is not None and e <= lo) or (hi is not None and s >= hi):
                continue
            taken = any(s < b.end and b.start < e for b in busy) or s < at(now)
            expected[s] = GeneratedSlot(s, e, "busy" if taken else "free")
    assert got == [expected[s] for s in sorted(expected)]


# --- The search's shortcuts agree with the per-slot answers --------------------------------

spans = st.lists(st.tuples(st.integers(-50, 300), st.integers(-10, 80)), max_size=6).map(
    lambda pairs: [(start, start + length) for start, length in pairs]
)


@settings(max_examples=400, deadline=None)
@given(
    starts=st.lists(st.integers(-60, 320), max_size=40).map(lambda xs: sorted(set(xs))),
    step=st.integers(1, 45),
    busy=spans,
    tentative=spans,
    seats=st.lists(
        st.tuples(st.integers(-50, 300), st.integers(1, 60), st.sampled_from([7, 8])), max_size=5
    ),
    before=st.integers(0, 20),
    after=st.integers(0, 20),
    capacity=st.integers(0, 3),
    keyed=st.booleans(),
)
def test_not_free_is_status_slot_by_slot(
    starts: list[int],
    step: int,
    busy: list[tuple[int, int]],
    tentative: list[tuple[int, int]],
    seats: list[tuple[int, int, int]],
    before: int,
    after: int,
    capacity: int,
    keyed: bool,
) -> None:
    """``Occupancy.not_free`` asks only the slots near what occupies the occupant: it must
    name exactly the starts whose ``status`` is not free, with that status (seats of this
    schedule's slots, of another's, inverted and empty spans, capacity 0 included)."""
    from scheduling.availability import FREE, Occupancy, Rules

    # Seats are bookings of slot (pk, start) of a schedule 7 or 8; this schedule is 7.
    occupancy = Occupancy.of(busy, tentative, [(s, s + n, (pk, s)) for s, n, pk in seats])
    rules = Rules(before=before, after=after, capacity=capacity)
    pk = 7 if keyed else None
    expected = {
        s: status
        for s in starts
        if (status := occupancy.status(s, s + step, rules, None if pk is None else (pk, s))) != FREE
    }

    assert occupancy.not_free(starts, step, rules, pk) == expected


@settings(max_examples=300, deadline=None)
@given(
    start=st.integers(-100, 400),
    now=st.integers(0, 200),
    notice=st.integers(0, 120),
    advance=st.none() | st.integers(0, 150),
)
def test_reach_is_what_rule_refusal_accepts(
    start: int, now: int, notice: int, advance: int | None
) -> None:
    from scheduling.availability import Rules, reach, rule_refusal

    rules = Rules(notice=notice, advance=advance)
    lo, hi = reach(now, rules)

    assert (rule_refusal(start, now, rules) is None) == (lo <= start and (hi is None or start < hi))
