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

from scheduling.errors import InvalidInput
from scheduling.recurrence import Period, occurrence_id

__all__ = [
    "BUSY",
    "BUSY_TENTATIVE",
    "FREE",
    "GeneratedSlot",
    "Interval",
    "Occupancy",
    "Sweep",
    "cut",
    "cut_slots",
    "generate_slots",
    "merge",
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
            f"Slot duration must be positive, got {step} s.", expression=["slot-duration"]
        )
    starts: set[int] = set()
    for window_start, window_end in windows:
        first, last = window_start, window_end - step
        if lo is not None and lo - step >= first:
            # Skip whole slots that end before the range: the grid stays anchored on the
            # window start, and a long window costs what the range holds, not its length.
            first += ((lo - step - first) // step + 1) * step
        if hi is not None and hi - 1 < last:
            last = hi - 1
        if first <= last:
            starts.update(range(first, last + 1, step))
    return sorted(starts)


def merge(intervals: Iterable[Span]) -> list[Span]:
    """Sorted intervals, overlapping ones merged (so the ends are increasing too).

    Touching intervals stay apart: they do not overlap, and a slot between them is free.
    Empty and inverted intervals are dropped.
    """
    merged: list[Span] = []
    for start, end in sorted(intervals):
        if end <= start:
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
class Occupancy:
    """What occupies one occupant: ``busy`` (appointments, occurrences, blocks) and
    ``tentative`` (live holds), each merged. Build it with :meth:`of`."""

    busy: list[Span] = field(default_factory=list)
    tentative: list[Span] = field(default_factory=list)
    _busy_starts: list[int] = field(default_factory=list, repr=False, compare=False)
    _tentative_starts: list[int] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def of(cls, busy: Iterable[Span] = (), tentative: Iterable[Span] = ()) -> Occupancy:
        merged_busy, merged_tentative = merge(busy), merge(tentative)
        return cls(
            merged_busy,
            merged_tentative,
            [s for s, _ in merged_busy],
            [s for s, _ in merged_tentative],
        )

    def status(self, start: int, end: int) -> str:
        """The status of a slot ``[start, end)`` by what occupies the occupant, ignoring the
        clock: ``busy`` wins over ``busy-tentative``, which wins over ``free``."""
        if self.busy and _overlapped(self.busy, self._busy_starts, start, end):
            return BUSY
        if self.tentative and _overlapped(self.tentative, self._tentative_starts, start, end):
            return BUSY_TENTATIVE
        return FREE

    def sweep(self) -> Sweep:
        """A one-pass :meth:`status` for slots asked in increasing start order."""
        return Sweep(self)


class Sweep:
    """:meth:`Occupancy.status` for slots in non-decreasing start order, in one pass.

    Slot search asks for thousands of slots of one occupant, from all its schedules, in the
    order of their starts; a cursor per list makes that linear instead of a bisection each.
    """

    __slots__ = ("_busy", "_i", "_j", "_tentative")

    def __init__(self, occupancy: Occupancy) -> None:
        self._busy = occupancy.busy
        self._tentative = occupancy.tentative
        self._i = 0
        self._j = 0

    def __call__(self, start: int, end: int) -> str:
        busy, i = self._busy, self._i
        n = len(busy)
        while i < n and busy[i][1] <= start:
            i += 1
        self._i = i
        if i < n and busy[i][0] < end:
            return BUSY
        tentative, j = self._tentative, self._j
        m = len(tentative)
        while j < m and tentative[j][1] <= start:
            j += 1
        self._j = j
        if j < m and tentative[j][0] < end:
            return BUSY_TENTATIVE
        return FREE


def slot_status(start: int, end: int, occupancy: Occupancy, now: int) -> str:
    """The status of one slot at ``now``: a slot that has started is never free."""
    status = occupancy.status(start, end)
    if status == FREE and start < now:
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
            f"Slot duration must be a positive whole number of seconds, got {duration}.",
            expression=["slot-duration"],
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
