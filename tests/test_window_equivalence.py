"""A lone date bound is the same search as the written pair (docs/api.md section 5), everywhere.

``ge X`` alone returns exactly what ``ge X & le X+7`` returns and ``le X`` alone exactly what
``ge X-7 & le X`` returns, at every precision, for Schedule?date,
Patient/{pid}/Appointment?date and Slot?start. The pairs below are written out by hand: a year
or a month plus or minus 7 days is that same year or month (FHIRPath date arithmetic), a day
moves 7 days, a date-time 7 days on its own clock (its written offset kept).

The occurrences start at 23:00 and 00:00 local time, so a window that lost or gained part of a
day (or the last minute of a date-time bound) would return a different set.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_api.search import derive_window
from scheduling.errors import InvalidSearchValue, WindowTooLarge
from tests.api_helpers import assert_bundle, ids, url
from tests.factories import AppointmentFactory, PatientFactory, ScheduleFactory

AMS = ZoneInfo("Europe/Amsterdam")
pytestmark = pytest.mark.django_db

# (lone value, the same search written out with both bounds)
EQUIVALENCES = [
    # day
    (["ge2027-05-10"], ["ge2027-05-10", "le2027-05-17"]),
    (["gt2027-05-10"], ["gt2027-05-10", "le2027-05-17"]),
    (["le2027-05-10"], ["ge2027-05-03", "le2027-05-10"]),
    (["lt2027-05-10"], ["ge2027-05-03", "lt2027-05-10"]),
    (["ge2027-12-28"], ["ge2027-12-28", "le2028-01-04"]),  # across a year end
    (["ge2027-03-25"], ["ge2027-03-25", "le2027-04-01"]),  # across the spring DST change
    # month
    (["ge2027-05"], ["ge2027-05", "le2027-05"]),
    (["le2027-05"], ["ge2027-05", "le2027-05"]),
    # year
    (["ge2027"], ["ge2027", "le2027"]),
    (["le2027"], ["ge2027", "le2027"]),
    # date-time, without an offset (the organisation's zone) and with one
    (["ge2027-05-10T23:00"], ["ge2027-05-10T23:00", "le2027-05-17T23:00"]),
    (["le2027-05-10T00:00:00Z"], ["ge2027-05-03T00:00:00Z", "le2027-05-10T00:00:00Z"]),
    (["lt2027-10-30T23:00"], ["ge2027-10-23T23:00", "lt2027-10-30T23:00"]),
    (
        ["ge2027-03-25T23:00:00+01:00"],
        ["ge2027-03-25T23:00:00+01:00", "le2027-04-01T23:00:00+01:00"],
    ),
]


def _query(param: str, values: list[str]) -> str:
    return "&".join(f"{param}={v.replace('+', '%2B')}" for v in values)


@pytest.mark.parametrize(("alone", "pair"), EQUIVALENCES)
def test_derive_window_reads_a_lone_bound_as_the_written_pair(
    alone: list[str], pair: list[str]
) -> None:
    assert derive_window(alone, tz=AMS) == derive_window(pair, tz=AMS)


def _written_pair(value: str) -> list[str]:
    """``value`` (a lone bound) with its missing bound written out as a client would."""
    prefix, rest = value[:2], value[2:]
    days = 7 if prefix in ("ge", "gt") else -7
    other = "le" if prefix in ("ge", "gt") else "ge"
    if len(rest) <= 7:  # a year or a month: 7 days do not make a year or a month
        derived = rest
    else:
        moved = date.fromisoformat(rest[:10]) + timedelta(days=days)
        derived = moved.isoformat() + rest[10:]
    return [value, other + derived]


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.sampled_from(["ge", "gt", "le", "lt"]),
    day=st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31)),
    precision=st.sampled_from(["year", "month", "day", "minute", "second", "fraction"]),
    clock=st.times(),
    offset=st.sampled_from(["", "Z", "+02:00", "-05:30", "+13:45"]),
    tzid=st.sampled_from(["Europe/Amsterdam", "Pacific/Chatham", "America/New_York", "UTC"]),
)
def test_any_lone_bound_is_its_written_pair(
    prefix: str, day: date, precision: str, clock: time, offset: str, tzid: str
) -> None:
    text = {
        "year": f"{day:%Y}",
        "month": f"{day:%Y-%m}",
        "day": day.isoformat(),
        "minute": f"{day}T{clock:%H:%M}{offset}",
        "second": f"{day}T{clock:%H:%M:%S}{offset}",
        "fraction": f"{day}T{clock:%H:%M:%S}.{clock.microsecond // 1000:03d}{offset}",
    }[precision]
    tz = ZoneInfo(tzid)
    outcomes = []
    for values in ([prefix + text], _written_pair(prefix + text)):
        try:
            outcomes.append(derive_window(values, tz=tz))
        except (InvalidSearchValue, WindowTooLarge) as exc:
            outcomes.append(type(exc))  # type: ignore[arg-type]
    assert outcomes[0] == outcomes[1]


@pytest.fixture
def recurring(org: Any, monkeypatch: Any) -> None:
    """A schedule open 23:00-01:00 every night (hourly slots) and a patient's nightly visits."""
    monkeypatch.setattr("scheduling.selectors.utc_now", lambda: datetime(2026, 1, 1, tzinfo=UTC))
    first = datetime(2026, 1, 1, 23, 0, tzinfo=AMS)
    ScheduleFactory(
        organization=org,
        fhir_id="nightly",
        planning_start=first,
        planning_end=first + timedelta(hours=2),
        rrule="FREQ=DAILY",
        slot_minutes=60,
    )
    patient = PatientFactory(organization=org, fhir_id="pat-1")
    AppointmentFactory(
        organization=org,
        patient=patient,
        fhir_id="visits",
        start=first,
        end=first + timedelta(minutes=30),
        rrule="FREQ=DAILY;BYHOUR=0,23",
    )


SEARCHES = [
    ("Schedule?", "date"),
    ("Patient/pat-1/Appointment?", "date"),
    ("Slot?", "start"),
]


@pytest.mark.parametrize(("path", "param"), SEARCHES)
@pytest.mark.parametrize(("alone", "pair"), EQUIVALENCES)
def test_lone_bound_returns_what_the_written_pair_returns(
    api: Any, recurring: None, path: str, param: str, alone: list[str], pair: list[str]
) -> None:
    got = assert_bundle(api.get(url(f"{path}{_query(param, alone)}&_count=500")))
    want = assert_bundle(api.get(url(f"{path}{_query(param, pair)}&_count=500")))
    assert got["total"] == want["total"] > 0
    assert ids(got) == ids(want)


@pytest.mark.parametrize(("path", "param"), SEARCHES)
def test_ge_day_alone_includes_the_whole_eighth_day(
    api: Any, recurring: None, path: str, param: str
) -> None:
    # The case: ge2027-05-10 alone used to stop at the start of 17 May.
    bundle = assert_bundle(api.get(url(f"{path}{param}=ge2027-05-10&_count=500")))
    starts = [
        datetime.fromisoformat(
            e["resource"].get("start") or e["resource"]["planningHorizon"]["start"]
        ).astimezone(AMS)
        for e in bundle["entry"]
    ]
    assert max(starts).date().isoformat() == "2027-05-17"
    assert max(starts).hour == 23
