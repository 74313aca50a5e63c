"""Availability windows -> slots, minus busy intervals. PURE: stdlib only.

All intervals are half-open ``[start, end)`` with aware datetimes (UTC by convention); two
intervals overlap when ``a.start < b.end and b.start < a.end``, so touching is not overlapping.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from scheduling.errors import InvalidInput
from scheduling.recurrence import Period, occurrence_id

__all__ = ["BUSY", "FREE", "GeneratedSlot", "Interval", "cut_slots", "generate_slots", "slot_id"]

FREE = "free"
BUSY = "busy"

Interval = Period


@dataclass(frozen=True, slots=True)
class GeneratedSlot:
    """A slot cut from an availability window, with its FHIR status (``free`` or ``busy``)."""

    start: datetime
    end: datetime
    status: str


def cut_slots(windows: Iterable[Period], duration: timedelta) -> list[Period]:
    """Cut each window into back-to-back slots of ``duration``, starting at the window start.

    A remainder shorter than ``duration`` is left unslotted. The result is sorted by start;
    slots with identical starts (from overlapping windows) appear once.
    Raises InvalidInput if ``duration`` is not positive.
    """
    if duration <= timedelta(0):
        raise InvalidInput(
            f"Slot duration must be positive, got {duration}.", expression=["slot-duration"]
        )
    starts: set[datetime] = set()
    for window in windows:
        start = window.start
        while start + duration <= window.end:
            starts.add(start)
            start += duration
    return [Period(s, s + duration) for s in sorted(starts)]


def _merge(busy: Iterable[Period]) -> list[Period]:
    """Sorted intervals, strictly overlapping ones merged (ends become non-decreasing)."""
    merged: list[Period] = []
    for item in sorted(busy, key=lambda p: (p.start, p.end)):
        if item.end < item.start:
            continue
        if merged and item.start < merged[-1].end:
            if item.end > merged[-1].end:
                merged[-1] = Period(merged[-1].start, item.end)
        else:
            merged.append(item)
    return merged


def generate_slots(
    *,
    windows: Iterable[Period],
    duration: timedelta,
    busy: Iterable[Period],
    now: datetime,
    range_start: datetime | None = None,
    range_end: datetime | None = None,
) -> list[GeneratedSlot]:
    """Slots of ``duration`` cut from ``windows``, each marked ``free`` or ``busy``.

    Only slots overlapping ``[range_start, range_end)`` are kept (either bound may be None).
    A slot is ``busy`` when it overlaps any busy interval (touching does not count) or starts
    before ``now``; otherwise ``free``. Cost is O((n + m) log(n + m)): sort, then one sweep.
    """
    slots = cut_slots(windows, duration)
    if range_start is not None:
        slots = [s for s in slots if s.end > range_start]
    if range_end is not None:
        slots = [s for s in slots if s.start < range_end]
    merged = _merge(busy)
    out: list[GeneratedSlot] = []
    i = 0
    for slot in slots:  # sorted by start, and (one duration) by end
        while i < len(merged) and merged[i].end <= slot.start:
            i += 1
        taken = i < len(merged) and merged[i].start < slot.end
        status = BUSY if taken or slot.start < now else FREE
        out.append(GeneratedSlot(slot.start, slot.end, status))
    return out


def slot_id(schedule_id: str, start: datetime) -> str:
    """Id of a generated slot: ``{schedule_id}-{start in UTC as YYYYMMDDTHHMMSSZ}``."""
    return occurrence_id(schedule_id, start)
