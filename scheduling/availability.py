"""THE availability engine: what is free for one occupant. PURE: stdlib only.

Clinics book people, not schedules. An *occupant* is a practitioner (or a role that has no
practitioner); it may have several schedules, possibly overlapping. This module turns an
occupant's availability windows and everything that occupies it (appointments of any of its
schedules, occurrences of recurring appointments, blocked time, live holds) into slots that
are free, busy or busy-tentative. It is the only code that decides this: Slot search,
``$book-slot`` and the other booking operations, the admin calendar and forms, and import
all load their rows (``scheduling.selectors.occupancy``) and then ask these functions, so a
slot that search shows free is exactly a slot that a booking accepts.

The hot functions work on integer seconds since 1970 (UTC): a week of a busy clinic is
thousands of slots, and integers compare and hash far faster than aware datetimes. All
intervals are half-open ``[start, end)``; two overlap when ``a.start < b.end and b.start <
a.end``, so touching is not overlapping. The datetime functions at the end are thin
wrappers for callers that hold datetimes.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from scheduling.errors import InvalidInput, gettext_noop
from scheduling.recurrence import Period, occurrence_id

__all__ = [
    "BUSY",
    "BUSY_TENTATIVE",
    "FREE",
    "NO_RULES",
    "GeneratedSlot",
    "Interval",
    "Occupancy",
    "Rules",
    "Sweep",
    "cut",
    "cut_slots",
    "generate_slots",
    "merge",
    "reach",
    "rule_refusal",
    "slot_id",
    "slot_status",
]

FREE = "free"
BUSY = "busy"
BUSY_TENTATIVE = "busy-tentative"

Interval = Period
#: ``(start, end)`` in integer seconds since 1970, UTC.
Span = tuple[int, int]


def cut(
    windows: Iterable[Span], step: int, lo: int | None = None, hi: int | None = None
) -> list[int]:
    """Starts of the slots of ``step`` seconds cut from ``windows``, sorted and distinct.

    Each window is cut back to back from its own start; a remainder shorter than ``step`` is
    left unslotted. Overlapping windows (two schedules of one occupant, or a schedule's
    overlapping occurrences) yield a start once. Only slots overlapping ``[lo, hi)`` are kept
    (either bound may be None). Raises InvalidInput unless ``step`` is positive.
    """
    if step <= 0:
        raise InvalidInput(
            gettext_noop("Slot duration must be positive, got %(seconds)s s."),
            expression=["slot-duration"],
            params={"seconds": step},
        )
    runs: list[range] = []
    apart = True  # whether each run starts after the previous one's last start
    for window_start, window_end in windows:
        first, last = window_start, window_end - step
        if lo is not None and lo - step >= first:
            # Skip whole slots that end before the range: the grid stays anchored on the
            # window start, and a long window costs what the range holds, not its length.
            first += ((lo - step - first) // step + 1) * step
        if hi is not None and hi - 1 < last:
            last = hi - 1
        if first <= last:
            if runs and first <= runs[-1][-1]:
                apart = False
            runs.append(range(first, last + 1, step))
    if apart:
        # The common case (a schedule's occurrences, one after another): the runs in order
        # are already sorted and distinct, with no set to build and sort.
        ordered: list[int] = []
        for run in runs:
            ordered.extend(run)
        return ordered
    starts: set[int] = set()
    for run in runs:
        starts.update(run)
    return sorted(starts)


def merge(intervals: Iterable[Span]) -> list[Span]:
    """Sorted intervals, overlapping ones merged (so the ends are increasing too).

    Touching intervals stay apart: they do not overlap, and a slot between them is free.
    Inverted intervals are dropped; an empty one is kept, and counts as overlapping a slot
    it lies strictly inside (``a.start < b.end and b.start < a.end``), as it always did.
    """
    merged: list[Span] = []
    for start, end in sorted(intervals):
        if end < start:
            continue
        if merged and start < merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _overlapped(merged: Sequence[Span], starts: Sequence[int], start: int, end: int) -> bool:
    # The only candidate is the first interval that ends after ``start``: merged intervals
    # are disjoint and sorted, so if it starts at or after ``end`` no later one overlaps.
    i = bisect.bisect_right(starts, start)
    if i and merged[i - 1][1] > start:
        return True
    return i < len(merged) and merged[i][0] < end


@dataclass(frozen=True, slots=True)
class Rules:
    """A schedule's booking rules, in seconds (``urn:extension:booking-rules``).

    ``notice``: a slot starting sooner than now + notice is not free. ``advance``: nor one
    starting later than now + advance. ``before``/``after``: a booking also occupies its
    occupant this long before and after, so a slot is free only if it and its buffers
    overlap nothing (the existing bookings' buffers included). ``capacity``: patients per
    slot; the slot stays free until that many bookings hold it.
    """

    notice: int = 0
    advance: int | None = None
    before: int = 0
    after: int = 0
    capacity: int = 1

    @property
    def clocked(self) -> bool:
        """Whether ``now`` decides more than "has it started" (notice or advance)."""
        return self.notice > 0 or self.advance is not None


NO_RULES = Rules()

#: Why a slot is refused by a rule of the clock (None: it is not).
NOTICE, ADVANCE, STARTED = "minimumNotice", "maximumAdvance", "started"


def rule_refusal(start: int, now: int, rules: Rules) -> str | None:
    """Which clock rule keeps a slot starting at ``start`` from being booked at ``now``:
    ``started``, ``minimumNotice`` or ``maximumAdvance``; None when none does. Search shows
    such a slot busy and booking answers 422 naming the rule: one decision for both."""
    if start < now:
        return STARTED
    if start < now + rules.notice:
        return NOTICE
    if rules.advance is not None and start > now + rules.advance:
        return ADVANCE
    return None


def reach(now: int, rules: Rules) -> tuple[int, int | None]:
    """The starts :func:`rule_refusal` accepts at ``now``, as ``[lo, hi)`` (``hi`` None: no
    end): what a search counts as within reach without asking slot by slot."""
    lo = max(now, now + rules.notice)
    return lo, None if rules.advance is None else max(lo, now + rules.advance + 1)


#: A seat holder: (start, end, slot key) of a booking in a slot of a schedule with a
#: capacity above one; the key is (schedule pk, slot start).
Seat = tuple[int, int, tuple[int, int]]


@dataclass(frozen=True, slots=True)
class Occupancy:
    """What occupies one occupant: ``busy`` (appointments with their buffers, occurrences,
    blocks) and ``tentative`` (live holds), each merged, and ``seats`` (bookings of group
    slots, counted per slot). Build it with :meth:`of`."""

    busy: list[Span] = field(default_factory=list)
    tentative: list[Span] = field(default_factory=list)
    seats: list[Seat] = field(default_factory=list)
    _busy_starts: list[int] = field(default_factory=list, repr=False, compare=False)
    _tentative_starts: list[int] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def of(
        cls,
        busy: Iterable[Span] = (),
        tentative: Iterable[Span] = (),
        seats: Iterable[Seat] = (),
    ) -> Occupancy:
        merged_busy, merged_tentative = merge(busy), merge(tentative)
        return cls(
            merged_busy,
            merged_tentative,
            sorted(seats),
            [s for s, _ in merged_busy],
            [s for s, _ in merged_tentative],
        )

    def status(
        self,
        start: int,
        end: int,
        rules: Rules = NO_RULES,
        key: tuple[int, int] | None = None,
    ) -> str:
        """The status of a slot ``[start, end)`` (of the slot ``key`` of a schedule with
        ``rules``) by what occupies the occupant, ignoring the clock: ``busy`` wins over
        ``busy-tentative``, which wins over ``free``. The slot's own buffers widen it."""
        lo, hi = start - rules.before, end + rules.after
        if self.busy and _overlapped(self.busy, self._busy_starts, lo, hi):
            return BUSY
        if self.seats and self._seats_full(lo, hi, rules, key):
            return BUSY
        if self.tentative and _overlapped(self.tentative, self._tentative_starts, lo, hi):
            return BUSY_TENTATIVE
        return FREE

    def not_free(
        self, starts: Sequence[int], step: int, rules: Rules = NO_RULES, pk: int | None = None
    ) -> dict[int, str]:
        """:meth:`status` of the slots ``[s, s + step)`` for the sorted ``starts``, for the
        ones that are not free (the slot key is ``(pk, s)``, None without ``pk``).

        A slot is free unless something that occupies the occupant overlaps it with its
        buffers, so only the starts near a busy, tentative or seat span are asked: a week
        of slots costs what occupies the occupant, not the number of slots.
        """
        spans = [*self.busy, *self.tentative, *((s, e) for s, e, _ in self.seats)]
        if not spans:
            return {}
        out: dict[int, str] = {}
        if self.seats and rules.capacity < 1:
            candidates: Iterable[int] = starts  # no seat free even where no one sits
        else:
            # [s - before, s + step + after) overlaps [lo, hi) exactly when
            # lo - step - after < s < hi + before.
            found: set[int] = set()
            for lo, hi in spans:
                first = bisect.bisect_right(starts, lo - step - rules.after)
                last = bisect.bisect_left(starts, hi + rules.before, first)
                found.update(starts[first:last])
            candidates = found
        for start in candidates:
            status = self.status(start, start + step, rules, None if pk is None else (pk, start))
            if status != FREE:
                out[start] = status
        return out

    def _seats_full(self, lo: int, hi: int, rules: Rules, key: tuple[int, int] | None) -> bool:
        taken = 0
        for seat_start, seat_end, seat_key in self.seats:
            if seat_start >= hi:
                break
            if seat_end <= lo:
                continue
            if seat_key != key:
                return True  # another slot's group booking: the person is busy then
            taken += 1
        return taken >= rules.capacity

    def sweep(self) -> Sweep:
        """A one-pass :meth:`status` for slots asked in increasing start order."""
        return Sweep(self)


class Sweep:
    """:meth:`Occupancy.status` for slots in non-decreasing start order, in one pass.

    Slot search asks for thousands of slots of one occupant, from all its schedules, in the
    order of their starts; a cursor per list makes that linear instead of a bisection each.
    A slot whose buffered start goes back (schedules with different buffers) resets the
    cursors by bisection, so the answer is always :meth:`Occupancy.status`'s.
    """

    __slots__ = ("_busy", "_i", "_j", "_last", "_occupancy", "_tentative")

    def __init__(self, occupancy: Occupancy) -> None:
        self._occupancy = occupancy
        self._busy = occupancy.busy
        self._tentative = occupancy.tentative
        self._i = 0
        self._j = 0
        self._last = -(2**62)

    def __call__(
        self, start: int, end: int, rules: Rules = NO_RULES, key: tuple[int, int] | None = None
    ) -> str:
        lo, hi = start - rules.before, end + rules.after
        if lo < self._last:
            self._i = bisect.bisect_left(self._occupancy._busy_starts, lo)
            self._j = bisect.bisect_left(self._occupancy._tentative_starts, lo)
            # Step back once: the interval before may still reach past ``lo``.
            self._i = max(0, self._i - 1)
            self._j = max(0, self._j - 1)
        self._last = lo
        busy, i = self._busy, self._i
        n = len(busy)
        while i < n and busy[i][1] <= lo:
            i += 1
        self._i = i
        if i < n and busy[i][0] < hi:
            return BUSY
        if self._occupancy.seats and self._occupancy._seats_full(lo, hi, rules, key):
            return BUSY
        tentative, j = self._tentative, self._j
        m = len(tentative)
        while j < m and tentative[j][1] <= lo:
            j += 1
        self._j = j
        if j < m and tentative[j][0] < hi:
            return BUSY_TENTATIVE
        return FREE


def slot_status(
    start: int,
    end: int,
    occupancy: Occupancy,
    now: int,
    rules: Rules = NO_RULES,
    key: tuple[int, int] | None = None,
) -> str:
    """The status of one slot at ``now``: what occupies its occupant, then the clock (a slot
    that has started, or that the notice or advance rule keeps out of reach, is busy)."""
    status = occupancy.status(start, end, rules, key)
    if status == FREE and rule_refusal(start, now, rules) is not None:
        return BUSY
    return status


# --------------------------------------------------------------------------- datetimes


@dataclass(frozen=True, slots=True)
class GeneratedSlot:
    """A slot cut from an availability window, with its FHIR status."""

    start: datetime
    end: datetime
    status: str


def _ts(value: datetime) -> int:
    return int(value.timestamp())


def _dt(value: int) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _seconds(duration: timedelta) -> int:
    if duration <= timedelta(0) or duration % timedelta(seconds=1):
        raise InvalidInput(
            gettext_noop(
                "Slot duration must be a positive whole number of seconds, got %(value)s."
            ),
            expression=["slot-duration"],
            params={"value": duration},
        )
    return int(duration.total_seconds())


def cut_slots(windows: Iterable[Period], duration: timedelta) -> list[Period]:
    """:func:`cut` for datetime windows: back-to-back slots of ``duration``, sorted, once
    each. Raises InvalidInput if ``duration`` is not positive."""
    step = _seconds(duration)
    starts = cut(((_ts(w.start), _ts(w.end)) for w in windows), step)
    return [Period(_dt(s), _dt(s + step)) for s in starts]


def generate_slots(
    *,
    windows: Iterable[Period],
    duration: timedelta,
    busy: Iterable[Period],
    now: datetime,
    tentative: Iterable[Period] = (),
    range_start: datetime | None = None,
    range_end: datetime | None = None,
) -> list[GeneratedSlot]:
    """Slots of ``duration`` cut from ``windows``, each with its status by :func:`slot_status`.

    Only slots overlapping ``[range_start, range_end)`` are kept (either bound may be None).
    Cost is O((n + m) log(n + m)): sort, then one sweep.
    """
    step = _seconds(duration)
    starts = cut(
        ((_ts(w.start), _ts(w.end)) for w in windows),
        step,
        None if range_start is None else _ts(range_start),
        None if range_end is None else _ts(range_end),
    )
    occupancy = Occupancy.of(
        ((_ts(p.start), _ts(p.end)) for p in busy),
        ((_ts(p.start), _ts(p.end)) for p in tentative),
    )
    sweep, now_ts = occupancy.sweep(), _ts(now)
    out: list[GeneratedSlot] = []
    for start in starts:
        status = sweep(start, start + step)
        if status == FREE and start < now_ts:
            status = BUSY
        out.append(GeneratedSlot(_dt(start), _dt(start + step), status))
    return out


def slot_id(schedule_id: str, start: datetime) -> str:
    """Id of a generated slot: ``{schedule_id}-{start in UTC as YYYYMMDDTHHMMSSZ}``."""
    return occurrence_id(schedule_id, start)
