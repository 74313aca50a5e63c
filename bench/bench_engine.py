"""Benchmark of the pure scheduling engine (no Django). Run: python bench/bench_engine.py

Prints, side by side in one run, medians of interleaved repeats after a warm-up:
- age ratio: a one-week expand() of a DAILY rule that began 10 and 50 years ago vs yesterday
  (target <= 1.2), with the naive (iterate-from-DTSTART) ratio for contrast;
- linearity: a 28-day window vs a 7-day window (target <= 4.5);
- 100 weekly schedules expanded over 7 days and cut into 15-minute slots: microseconds per slot.
Exits non-zero when a target is missed.
"""

from __future__ import annotations

import random
import statistics
import sys
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from time import perf_counter
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scheduling.availability import generate_slots
from scheduling.recurrence import Period, expand, expand_naive

TZID = "Europe/Amsterdam"
TZ = ZoneInfo(TZID)
NOW = datetime(2026, 6, 1, 0, 0, tzinfo=TZ)
REPEATS = 61

AGE_TARGET = 1.2
LINEAR_TARGET = 4.5
SLOT_TARGET_US = 50.0


def timed(fn: Callable[[], object], inner: int) -> float:
    """Seconds per call of fn, over `inner` calls."""
    start = perf_counter()
    for _ in range(inner):
        fn()
    return (perf_counter() - start) / inner


def medians(
    cases: dict[str, Callable[[], object]], inner: int, repeats: int = REPEATS
) -> dict[str, float]:
    """Median seconds per call of each case.

    Repeats are short and interleaved in a shuffled order, so load from other processes on
    the machine hits every case alike instead of skewing one of them.
    """
    for fn in cases.values():  # warm-up (caches, zone data)
        timed(fn, max(1, inner))
    samples: dict[str, list[float]] = {name: [] for name in cases}
    order = list(cases)
    rng = random.Random(7)
    for _ in range(repeats):
        rng.shuffle(order)
        for name in order:
            samples[name].append(timed(cases[name], inner))
    return {name: statistics.median(values) for name, values in samples.items()}


def daily_case(
    years_ago: float, days: int, engine: Callable[..., list[Period]]
) -> Callable[[], object]:
    began = (NOW - timedelta(days=max(1, round(365.25 * years_ago)))).date()
    first = datetime.combine(began, time(9, 0), tzinfo=TZ)

    def run() -> object:
        return engine(
            rrule="FREQ=DAILY",
            first_start=first,
            first_end=first + timedelta(hours=8),
            tzid=TZID,
            window_start=NOW,
            window_end=NOW + timedelta(days=days),
        )

    return run


def line(label: str, value: float, target: float, unit: str = "") -> bool:
    ok = value <= target
    print(f"{label}: {value:.2f}{unit}  target <= {target}{unit}  {'PASS' if ok else 'FAIL'}")
    return ok


WEEKLY_PATTERNS = [
    ("FREQ=WEEKLY;BYDAY=MO,WE,FR", 9, 0, 180),
    ("FREQ=WEEKLY;BYDAY=TU,TH", 13, 30, 210),
    ("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", 8, 0, 240),
    ("FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH", 14, 0, 120),
    ("FREQ=WEEKLY;BYDAY=SA;WKST=SU", 10, 0, 150),
]


def slots_case() -> tuple[Callable[[], int], int]:
    schedules = []
    for i in range(100):
        rule, hour, minute, length = WEEKLY_PATTERNS[i % len(WEEKLY_PATTERNS)]
        began = NOW - timedelta(days=7 * (1 + i * 13))  # between a week and 25 years old
        first = datetime.combine(began.date(), time(hour, minute), tzinfo=TZ)
        schedules.append((rule, first, first + timedelta(minutes=length)))
    window_end = NOW + timedelta(days=7)
    now_utc = NOW.astimezone(UTC) + timedelta(hours=36)

    def run() -> int:
        total = 0
        for rule, first, last in schedules:
            windows = expand(
                rrule=rule,
                first_start=first,
                first_end=last,
                tzid=TZID,
                window_start=NOW,
                window_end=window_end,
            )
            busy = [
                Period(w.start + timedelta(minutes=30), w.start + timedelta(minutes=50))
                for w in windows
            ]
            slots = generate_slots(
                windows=windows,
                duration=timedelta(minutes=15),
                busy=busy,
                now=now_utc,
                range_start=NOW,
                range_end=window_end,
            )
            total += len(slots)
        return total

    return run, run()


def main() -> int:
    ok = True
    fast = medians(
        {
            "1d": daily_case(0, 7, expand),
            "10y": daily_case(10, 7, expand),
            "50y": daily_case(50, 7, expand),
        },
        inner=40,
    )
    naive = medians(
        {
            "1d": daily_case(0, 7, expand_naive),
            "10y": daily_case(10, 7, expand_naive),
            "50y": daily_case(50, 7, expand_naive),
        },
        inner=1,
        repeats=5,
    )
    print(
        f"expand() one week of a DAILY rule: began yesterday {fast['1d'] * 1e6:.1f} us, "
        f"10 years ago {fast['10y'] * 1e6:.1f} us, 50 years ago {fast['50y'] * 1e6:.1f} us"
    )
    print(
        f"naive   one week of a DAILY rule: began yesterday {naive['1d'] * 1e6:.1f} us, "
        f"10 years ago {naive['10y'] * 1e6:.1f} us, 50 years ago {naive['50y'] * 1e6:.1f} us"
    )
    ok &= line("age ratio expand() 10y/1d", fast["10y"] / fast["1d"], AGE_TARGET)
    ok &= line("age ratio expand() 50y/1d", fast["50y"] / fast["1d"], AGE_TARGET)
    print(
        f"age ratio naive (contrast, no target) 10y/1d: {naive['10y'] / naive['1d']:.1f}, "
        f"50y/1d: {naive['50y'] / naive['1d']:.1f}"
    )

    lin = medians(
        {"7d": daily_case(10, 7, expand), "28d": daily_case(10, 28, expand)},
        inner=30,
    )
    ok &= line("linearity expand() 28-day / 7-day window", lin["28d"] / lin["7d"], LINEAR_TARGET)

    run, n_slots = slots_case()
    per_run = medians({"slots": run}, inner=1, repeats=21)["slots"]
    print(
        f"100 weekly schedules x 7 days, 15-minute slots: {n_slots} slots in {per_run * 1e3:.1f} ms"
    )
    ok &= line(
        "expansion + generate_slots per slot", per_run / n_slots * 1e6, SLOT_TARGET_US, " us"
    )
    print("ALL TARGETS PASS" if ok else "SOME TARGETS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
