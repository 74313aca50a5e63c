"""RFC 5545 is the reference: its own examples, the issue's cases, and expand() == reference.

The reference (tests/rfc5545_reference.py) is a brute force written from the RFC's text and
shares no code with the engine; it is first checked against every example of RFC 5545 3.8.5.3
that this server accepts (the SECONDLY/MINUTELY/HOURLY ones are rejected by the contract).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st

from scheduling.errors import InvalidRecurrence
from scheduling.recurrence import expand, upcoming, validate_rrule
from tests.rfc5545_reference import reference_expand

NY = "America/New_York"


def _walls(spec: str) -> list[datetime]:
    """'19970902,19970904T1000' -> wall-clock datetimes; a bare date means 09:00."""
    out = []
    for item in spec.split(","):
        item = item.strip()
        fmt = "%Y%m%dT%H%M" if "T" in item else "%Y%m%d"
        value = datetime.strptime(item, fmt)
        out.append(value if "T" in item else value.replace(hour=9))
    return out


def _range(first: str, last: str, step: int = 1) -> str:
    """Every ``step``-th day from first to last, as a _walls spec."""
    day = datetime.strptime(first, "%Y%m%d")
    end = datetime.strptime(last, "%Y%m%d")
    out = []
    while day <= end:
        out.append(f"{day:%Y%m%d}")
        day += timedelta(days=step)
    return ",".join(out)


# (title, DTSTART wall clock in New York, RRULE, EXDATEs, expected wall clocks). Rules without
# an end are compared up to their last listed instance.
RFC_EXAMPLES: list[tuple[str, str, str, str, str]] = [
    ("daily for 10", "19970902", "FREQ=DAILY;COUNT=10", "", _range("19970902", "19970911")),
    (
        "daily until 24 Dec 1997",
        "19970902",
        "FREQ=DAILY;UNTIL=19971224T000000Z",
        "",
        _range("19970902", "19971223"),
    ),
    ("every other day", "19970902", "FREQ=DAILY;INTERVAL=2", "", _range("19970902", "19971202", 2)),
    (
        "every 10 days, 5 times",
        "19970902",
        "FREQ=DAILY;INTERVAL=10;COUNT=5",
        "",
        "19970902,19970912,19970922,19971002,19971012",
    ),
    (
        "every day in January for 3 years (yearly form)",
        "19980101",
        "FREQ=YEARLY;UNTIL=20000131T140000Z;BYMONTH=1;BYDAY=SU,MO,TU,WE,TH,FR,SA",
        "",
        ",".join(_range(f"{y}0101", f"{y}0131") for y in (1998, 1999, 2000)),
    ),
    (
        "every day in January for 3 years (daily form)",
        "19980101",
        "FREQ=DAILY;UNTIL=20000131T140000Z;BYMONTH=1",
        "",
        ",".join(_range(f"{y}0101", f"{y}0131") for y in (1998, 1999, 2000)),
    ),
    ("weekly for 10", "19970902", "FREQ=WEEKLY;COUNT=10", "", _range("19970902", "19971104", 7)),
    (
        "weekly until 24 Dec 1997",
        "19970902",
        "FREQ=WEEKLY;UNTIL=19971224T000000Z",
        "",
        _range("19970902", "19971223", 7),
    ),
    (
        "every other week",
        "19970902",
        "FREQ=WEEKLY;INTERVAL=2;WKST=SU",
        "",
        _range("19970902", "19980217", 14),
    ),
    (
        "Tuesday and Thursday for five weeks (until)",
        "19970902",
        "FREQ=WEEKLY;UNTIL=19971007T000000Z;WKST=SU;BYDAY=TU,TH",
        "",
        "19970902,19970904,19970909,19970911,19970916,19970918,19970923,19970925,19970930,19971002",
    ),
    (
        "Tuesday and Thursday for five weeks (count)",
        "19970902",
        "FREQ=WEEKLY;COUNT=10;WKST=SU;BYDAY=TU,TH",
        "",
        "19970902,19970904,19970909,19970911,19970916,19970918,19970923,19970925,19970930,19971002",
    ),
    (
        "every other week on MO, WE, FR until 24 Dec 1997",
        "19970901",
        "FREQ=WEEKLY;INTERVAL=2;UNTIL=19971224T000000Z;WKST=SU;BYDAY=MO,WE,FR",
        "",
        "19970901,19970903,19970905,19970915,19970917,19970919,19970929,19971001,19971003,"
        "19971013,19971015,19971017,19971027,19971029,19971031,19971110,19971112,19971114,"
        "19971124,19971126,19971128,19971208,19971210,19971212,19971222",
    ),
    (
        "every other week on TU and TH, 8 times",
        "19970902",
        "FREQ=WEEKLY;INTERVAL=2;COUNT=8;WKST=SU;BYDAY=TU,TH",
        "",
        "19970902,19970904,19970916,19970918,19970930,19971002,19971014,19971016",
    ),
    (
        "monthly on the first Friday, 10 times",
        "19970905",
        "FREQ=MONTHLY;COUNT=10;BYDAY=1FR",
        "",
        "19970905,19971003,19971107,19971205,19980102,19980206,19980306,19980403,19980501,19980605",
    ),
    (
        "monthly on the first Friday until 24 Dec 1997",
        "19970905",
        "FREQ=MONTHLY;UNTIL=19971224T000000Z;BYDAY=1FR",
        "",
        "19970905,19971003,19971107,19971205",
    ),
    (
        "every other month on the first and last Sunday, 10 times",
        "19970907",
        "FREQ=MONTHLY;INTERVAL=2;COUNT=10;BYDAY=1SU,-1SU",
        "",
        "19970907,19970928,19971102,19971130,19980104,19980125,19980301,19980329,19980503,19980531",
    ),
    (
        "monthly on the second-to-last Monday, 6 times",
        "19970922",
        "FREQ=MONTHLY;COUNT=6;BYDAY=-2MO",
        "",
        "19970922,19971020,19971117,19971222,19980119,19980216",
    ),
    (
        "monthly on the third-to-last day",
        "19970928",
        "FREQ=MONTHLY;BYMONTHDAY=-3",
        "",
        "19970928,19971029,19971128,19971229,19980129,19980226",
    ),
    (
        "monthly on the 2nd and 15th, 10 times",
        "19970902",
        "FREQ=MONTHLY;COUNT=10;BYMONTHDAY=2,15",
        "",
        "19970902,19970915,19971002,19971015,19971102,19971115,19971202,19971215,19980102,19980115",
    ),
    (
        "monthly on the first and last day, 10 times",
        "19970930",
        "FREQ=MONTHLY;COUNT=10;BYMONTHDAY=1,-1",
        "",
        "19970930,19971001,19971031,19971101,19971130,19971201,19971231,19980101,19980131,19980201",
    ),
    (
        "every 18 months on the 10th to 15th, 10 times",
        "19970910",
        "FREQ=MONTHLY;INTERVAL=18;COUNT=10;BYMONTHDAY=10,11,12,13,14,15",
        "",
        "19970910,19970911,19970912,19970913,19970914,19970915,19990310,19990311,19990312,19990313",
    ),
    (
        "every Tuesday, every other month",
        "19970902",
        "FREQ=MONTHLY;INTERVAL=2;BYDAY=TU",
        "",
        "19970902,19970909,19970916,19970923,19970930,19971104,19971111,19971118,19971125,"
        "19980106,19980113,19980120,19980127,19980303,19980310,19980317,19980324,19980331",
    ),
    (
        "yearly in June and July, 10 times",
        "19970610",
        "FREQ=YEARLY;COUNT=10;BYMONTH=6,7",
        "",
        "19970610,19970710,19980610,19980710,19990610,19990710,20000610,20000710,20010610,20010710",
    ),
    (
        "every other year in January to March, 10 times",
        "19970310",
        "FREQ=YEARLY;INTERVAL=2;COUNT=10;BYMONTH=1,2,3",
        "",
        "19970310,19990110,19990210,19990310,20010110,20010210,20010310,20030110,20030210,20030310",
    ),
    (
        "every third year on days 1, 100 and 200, 10 times",
        "19970101",
        "FREQ=YEARLY;INTERVAL=3;COUNT=10;BYYEARDAY=1,100,200",
        "",
        "19970101,19970410,19970719,20000101,20000409,20000718,20030101,20030410,20030719,20060101",
    ),
    (
        "every 20th Monday of the year",
        "19970519",
        "FREQ=YEARLY;BYDAY=20MO",
        "",
        "19970519,19980518,19990517",
    ),
    (
        "Monday of week 20",
        "19970512",
        "FREQ=YEARLY;BYWEEKNO=20;BYDAY=MO",
        "",
        "19970512,19980511,19990517",
    ),
    (
        "every Thursday in March",
        "19970313",
        "FREQ=YEARLY;BYMONTH=3;BYDAY=TH",
        "",
        "19970313,19970320,19970327,19980305,19980312,19980319,19980326,"
        "19990304,19990311,19990318,19990325",
    ),
    (
        "every Thursday in June, July and August",
        "19970605",
        "FREQ=YEARLY;BYDAY=TH;BYMONTH=6,7,8",
        "",
        "19970605,19970612,19970619,19970626,19970703,19970710,19970717,19970724,19970731,"
        "19970807,19970814,19970821,19970828,19980604,19980611,19980618,19980625,19980702,"
        "19980709,19980716,19980723,19980730,19980806,19980813,19980820,19980827,19990603,"
        "19990610,19990617,19990624,19990701,19990708,19990715,19990722,19990729,19990805,"
        "19990812,19990819,19990826",
    ),
    (
        "every Friday the 13th (DTSTART excluded)",
        "19970902",
        "FREQ=MONTHLY;BYDAY=FR;BYMONTHDAY=13",
        "19970902",
        "19980213,19980313,19981113,19990813,20001013",
    ),
    (
        "first Saturday after the first Sunday",
        "19970913",
        "FREQ=MONTHLY;BYDAY=SA;BYMONTHDAY=7,8,9,10,11,12,13",
        "",
        "19970913,19971011,19971108,19971213,19980110,19980207,19980307,19980411,19980509,19980613",
    ),
    (
        "US presidential election day",
        "19961105",
        "FREQ=YEARLY;INTERVAL=4;BYMONTH=11;BYDAY=TU;BYMONTHDAY=2,3,4,5,6,7,8",
        "",
        "19961105,20001107,20041102",
    ),
    (
        "third of TU/WE/TH for 3 months",
        "19970904",
        "FREQ=MONTHLY;COUNT=3;BYDAY=TU,WE,TH;BYSETPOS=3",
        "",
        "19970904,19971007,19971106",
    ),
    (
        "second-to-last weekday of the month",
        "19970929",
        "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-2",
        "",
        "19970929,19971030,19971127,19971230,19980129,19980226,19980330",
    ),
    (
        "every 20 minutes from 9:00 to 16:40 (daily form)",
        "19970902",
        "FREQ=DAILY;BYHOUR=9,10,11,12,13,14,15,16;BYMINUTE=0,20,40",
        "",
        ",".join(
            f"{d}T{h:02d}{m:02d}"
            for d in ("19970902", "19970903")
            for h in range(9, 17)
            for m in (0, 20, 40)
        ),
    ),
    (
        "WKST changes the result: MO",
        "19970805",
        "FREQ=WEEKLY;INTERVAL=2;COUNT=4;BYDAY=TU,SU;WKST=MO",
        "",
        "19970805,19970810,19970819,19970824",
    ),
    (
        "WKST changes the result: SU",
        "19970805",
        "FREQ=WEEKLY;INTERVAL=2;COUNT=4;BYDAY=TU,SU;WKST=SU",
        "",
        "19970805,19970817,19970819,19970831",
    ),
    (
        "an invalid date (30 February) is ignored",
        "20070115",
        "FREQ=MONTHLY;BYMONTHDAY=15,30;COUNT=5",
        "",
        "20070115,20070130,20070215,20070315,20070330",
    ),
]


def _run(engine, dtstart: str, rule: str, exdates: str, last: datetime, tzid: str = NY):  # type: ignore[no-untyped-def]
    tz = ZoneInfo(tzid)
    first = _walls(dtstart)[0].replace(tzinfo=tz)
    exs = [w.replace(tzinfo=tz) for w in _walls(exdates)] if exdates else []
    periods = engine(
        rrule=rule,
        first_start=first,
        first_end=first + timedelta(hours=1),
        tzid=tzid,
        exdates=exs,
        window_start=first - timedelta(days=1),
        window_end=last.replace(tzinfo=tz) + timedelta(seconds=1),
    )
    return [p.start.astimezone(tz).replace(tzinfo=None) for p in periods]


@pytest.mark.parametrize(
    ("dtstart", "rule", "exdates", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in RFC_EXAMPLES],
)
def test_reference_and_engine_give_the_rfc_examples(
    dtstart: str, rule: str, exdates: str, expected: str
) -> None:
    want = _walls(expected)
    assert _run(reference_expand, dtstart, rule, exdates, want[-1]) == want
    assert _run(expand, dtstart, rule, exdates, want[-1]) == want


# --------------------------------------------------------------------------- the cases


def _starts(rule: str, tzid: str, first: datetime, ws: datetime, we: datetime) -> list[datetime]:
    kwargs = {
        "rrule": rule,
        "first_start": first,
        "first_end": first + timedelta(minutes=30),
        "tzid": tzid,
        "window_start": ws,
        "window_end": we,
    }
    got = expand(**kwargs)  # type: ignore[arg-type]
    assert got == reference_expand(**kwargs)  # type: ignore[arg-type]
    return [p.start.astimezone(ZoneInfo(tzid)).replace(tzinfo=None) for p in got]


def test_mixed_plain_and_ordinal_byday_monthly_in_chatham() -> None:
    # dateutil gave nothing in these months; the RFC gives every Monday and the third Tuesday.
    tz = ZoneInfo("Pacific/Chatham")
    first = datetime(2019, 12, 9, 2, 45, tzinfo=tz)
    for month, days in [
        (3, [1, 8, 15, 16, 22, 29]),
        (4, [5, 12, 19, 20, 26]),
        (10, [4, 11, 18, 19, 25]),
    ]:
        ws = datetime(2027, month, 1, tzinfo=tz)
        we = datetime(2027, month + 1, 1, tzinfo=tz)
        got = _starts("FREQ=MONTHLY;BYDAY=MO,3TU", "Pacific/Chatham", first, ws, we)
        assert [d.day for d in got] == days
        assert all(d.time() == time(2, 45) for d in got)


def test_mixed_byday_with_negative_ordinal_and_until() -> None:
    first = datetime(2026, 1, 3, 17, 45, tzinfo=UTC)
    got = _starts(
        "FREQ=MONTHLY;BYDAY=SA,-3TH;UNTIL=20270219T174500Z",
        "UTC",
        first,
        datetime(2027, 2, 1, tzinfo=UTC),
        datetime(2027, 3, 1, tzinfo=UTC),
    )
    assert [d.day for d in got] == [6, 11, 13]


def test_count_with_mixed_byday_counts_every_instance() -> None:
    # COUNT is turned into a last instance; it used to be counted with dateutil's fault.
    rule = "FREQ=MONTHLY;COUNT=85;INTERVAL=3;BYDAY=FR,1WE,-3FR"
    first = datetime(2020, 1, 3, 9, 0, tzinfo=UTC)
    everything = _starts(rule, "UTC", first, first, datetime(2030, 1, 1, tzinfo=UTC))
    assert len(everything) == 85
    assert everything[1:6] == [datetime(2020, 1, 1 + d, 9, 0) for d in (9, 16, 23, 30)] + [
        datetime(2020, 4, 1, 9, 0)
    ]  # January's Fridays, then 1WE of April (every 3 months)
    # A window late in the rule sees the same instances as the whole expansion.
    tail = _starts(
        rule, "UTC", first, datetime(2026, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC)
    )
    assert tail == [d for d in everything if d >= datetime(2026, 1, 1)]


def test_weekly_bysetpos_with_dtstart_mid_week() -> None:
    # dateutil #1398: BYSETPOS applies to the whole WKST week, not what is left of DTSTART's.
    first = datetime(2026, 6, 3, 9, 0, tzinfo=UTC)  # a Wednesday
    got = _starts(
        "FREQ=WEEKLY;BYDAY=MO,WE,FR;BYSETPOS=1;COUNT=3",
        "UTC",
        first,
        first,
        datetime(2026, 7, 1, tzinfo=UTC),
    )
    # The first week's first instance is Monday 1 June, before DTSTART: dropped, not replaced.
    assert got == [datetime(2026, 6, 3, 9), datetime(2026, 6, 8, 9), datetime(2026, 6, 15, 9)]


def test_bysetpos_does_not_count_a_time_that_does_not_exist() -> None:
    # 29 March 2026 02:30 does not exist in Amsterdam: it is no instance, so the last
    # instance of that week is Saturday's, not a skipped Sunday.
    tzid = "Europe/Amsterdam"
    first = datetime(2026, 3, 2, 2, 30, tzinfo=ZoneInfo(tzid))
    got = _starts(
        "FREQ=WEEKLY;BYDAY=SA,SU;BYSETPOS=-1",
        tzid,
        first,
        datetime(2026, 3, 23, tzinfo=UTC),
        datetime(2026, 4, 6, tzinfo=UTC),
    )
    assert got == [datetime(2026, 3, 28, 2, 30), datetime(2026, 4, 5, 2, 30)]


# --------------------------------------------------------------------------- expand() == reference

# Six zones: both European DST changes, a northern American one, two southern ones (Chatham's
# 45-minute offset changes at 02:45), Chile (its clocks jump at midnight) and UTC.
PROPERTY_ZONES = [
    "Europe/Amsterdam",
    "America/New_York",
    "Pacific/Chatham",
    "Australia/Sydney",
    "America/Santiago",
    "UTC",
]
# Each zone gets this many valid rules per run: 6 x 350 = 2,100 rules compared.
EXAMPLES_PER_ZONE = 350
DAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]
# How far after DTSTART the window may lie: the reference walks every day from DTSTART.
HORIZON_DAYS = {"DAILY": 400, "WEEKLY": 1500, "MONTHLY": 4000, "YEARLY": 12000}
# Window lengths in days: long enough that sparse rules (a few days a year) show up in most.
WINDOW_DAYS = {"DAILY": (3, 60), "WEEKLY": (7, 120), "MONTHLY": (20, 400), "YEARLY": (200, 1500)}


def _some(draw: st.DrawFn, values: st.SearchStrategy[int], most: int) -> str:
    return ",".join(map(str, draw(st.lists(values, min_size=1, max_size=most, unique=True))))


@st.composite
def rfc_rules(draw: st.DrawFn, first: datetime) -> str:
    """Rules across the contract's BYxxx combinations, mixed plain/ordinal BYDAY included.

    UNTIL falls within the horizon after ``first`` (DTSTART), so most rules are still live there.
    """
    freq = draw(st.sampled_from(["DAILY", "WEEKLY", "MONTHLY", "MONTHLY", "YEARLY", "YEARLY"]))
    parts = [f"FREQ={freq}"]
    if draw(st.booleans()):
        parts.append(f"INTERVAL={draw(st.integers(1, 5))}")
    byweekno = freq == "YEARLY" and draw(st.integers(0, 5)) == 0
    if draw(st.integers(0, 3)) > 0:
        items = []
        for day in draw(st.lists(st.sampled_from(DAYS), min_size=1, max_size=4, unique=True)):
            ordinal = freq in ("MONTHLY", "YEARLY") and not byweekno and draw(st.booleans())
            if ordinal:
                n = draw(
                    st.sampled_from(
                        [1, 2, 3, 4, 5, -1, -2, -3, -5] + [20, -20, 53] * (freq == "YEARLY")
                    )
                )
                items.append(f"{n}{day}")
            else:
                items.append(day)
        parts.append("BYDAY=" + ",".join(items))
    if freq != "WEEKLY" and draw(st.integers(0, 3)) == 0:
        parts.append("BYMONTHDAY=" + _some(draw, st.integers(-31, 31).filter(bool), 4))
    if draw(st.integers(0, 3)) == 0:
        parts.append("BYMONTH=" + _some(draw, st.integers(1, 12), 7))
    if freq == "YEARLY" and draw(st.integers(0, 6)) == 0:
        parts.append("BYYEARDAY=" + _some(draw, st.integers(-366, 366).filter(bool), 3))
    if byweekno:
        parts.append("BYWEEKNO=" + _some(draw, st.integers(-53, 53).filter(bool), 3))
    if draw(st.integers(0, 4)) == 0:
        parts.append("BYHOUR=" + _some(draw, st.sampled_from([0, 1, 2, 3, 9, 23]), 2))
    if draw(st.integers(0, 5)) == 0:
        parts.append("BYMINUTE=" + _some(draw, st.sampled_from([0, 15, 30, 45]), 2))
    if len(parts) > 1 and draw(st.integers(0, 3)) == 0:
        parts.append("BYSETPOS=" + _some(draw, st.sampled_from([1, 2, 3, -1, -2, 5, -7]), 2))
    if draw(st.booleans()):
        parts.append(f"WKST={draw(st.sampled_from(DAYS))}")
    end = draw(
        st.sampled_from(["none", "count", "count", "until_z", "until_floating", "until_date"])
    )
    if end == "count":
        parts.append(f"COUNT={draw(st.integers(1, 120))}")
    elif end != "none":
        when = first.replace(tzinfo=None) + timedelta(
            days=draw(st.integers(0, HORIZON_DAYS[freq])), minutes=draw(st.integers(-720, 720))
        )
        if end == "until_z":
            parts.append(f"UNTIL={when:%Y%m%dT%H%M%S}Z")
        elif end == "until_floating":
            parts.append(f"UNTIL={when:%Y%m%dT%H%M%S}")
        else:
            parts.append(f"UNTIL={when:%Y%m%d}")
    return ";".join(draw(st.permutations(parts)))


# Times near the DST changes of the zones above, and any time at all.
_TIMES = st.one_of(
    st.sampled_from(
        [(0, 0), (0, 30), (1, 30), (2, 0), (2, 30), (2, 45), (3, 15), (9, 0), (23, 30)]
    ).map(lambda hm: time(*hm)),
    st.times().map(lambda t: t.replace(microsecond=0)),
)


def _valid(rule: str) -> bool:
    try:
        validate_rrule(rule)
    except InvalidRecurrence:
        return False
    return True


@settings(
    max_examples=EXAMPLES_PER_ZONE,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@pytest.mark.nodb
@pytest.mark.parametrize("tzid", PROPERTY_ZONES)
@given(data=st.data())
def test_expand_equals_the_rfc_reference(tzid: str, data: st.DataObject) -> None:
    tz = ZoneInfo(tzid)
    day = data.draw(st.dates(min_value=date(2000, 1, 1), max_value=date(2030, 12, 31)))
    first = datetime.combine(day, data.draw(_TIMES), tzinfo=tz).replace(
        fold=data.draw(st.integers(0, 1))
    )
    rule = data.draw(rfc_rules(first).filter(_valid))
    duration = timedelta(minutes=data.draw(st.sampled_from([0, 30, 60, 480, 1440, 2000])))
    freq = rule.split("FREQ=")[1].split(";")[0]
    horizon = HORIZON_DAYS[freq]
    # Half the windows lie near DTSTART, where COUNT rules are still live.
    days = data.draw(st.one_of(st.integers(-10, 120), st.integers(-10, horizon)))
    ws = first + timedelta(days=days, minutes=data.draw(st.integers(0, 1439)))
    we = ws + timedelta(days=data.draw(st.integers(*WINDOW_DAYS[freq])))
    exdates: list[datetime | date] = []
    for _ in range(data.draw(st.integers(0, 3))):
        ex = (ws + timedelta(days=data.draw(st.integers(0, 60)))).astimezone(tz)
        exdates.append(
            ex.date() if data.draw(st.booleans()) else datetime.combine(ex.date(), first.timetz())
        )
    kwargs = {
        "rrule": rule,
        "first_start": first,
        "first_end": first + duration,
        "tzid": tzid,
        "exdates": exdates,
        "window_start": ws,
        "window_end": we,
    }
    got = expand(**kwargs)  # type: ignore[arg-type]
    assert got == reference_expand(**kwargs)  # type: ignore[arg-type]
    # Steer the search towards rules and windows that hold occurrences.
    target(float(min(len(got), 20)))


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@pytest.mark.nodb
@given(data=st.data())
def test_upcoming_equals_the_start_of_the_rfc_reference(data: st.DataObject) -> None:
    # upcoming() feeds the admin preview: the next occurrences after a moment.
    tzid = data.draw(st.sampled_from(PROPERTY_ZONES))
    tz = ZoneInfo(tzid)
    day = data.draw(st.dates(min_value=date(2000, 1, 1), max_value=date(2030, 12, 31)))
    first = datetime.combine(day, data.draw(_TIMES), tzinfo=tz)
    rule = data.draw(rfc_rules(first).filter(_valid))
    freq = rule.split("FREQ=")[1].split(";")[0]
    after = first + timedelta(days=data.draw(st.integers(-10, HORIZON_DAYS[freq] // 2)))
    limit = data.draw(st.integers(1, 10))
    common = {"rrule": rule, "first_start": first, "first_end": first, "tzid": tzid}
    got = upcoming(after=after, limit=limit, **common)  # type: ignore[arg-type]
    horizon = after + timedelta(days=HORIZON_DAYS[freq] // 2)
    # A zero-length occurrence at `after` is upcoming; the window starts just before it.
    ref = reference_expand(
        window_start=after - timedelta(seconds=1),
        window_end=horizon,
        **common,  # type: ignore[arg-type]
    )
    expected = [p for p in ref if p.start >= after][:limit]
    assert got[: len(expected)] == expected
    # Whatever upcoming() found beyond the reference's horizon lies beyond it.
    assert all(p.start >= horizon for p in got[len(expected) :])


# --------------------------------------------------------------------------- the admin's views


ADMIN_RULES = [
    "FREQ=MONTHLY;BYDAY=MO,3TU",
    "FREQ=MONTHLY;BYDAY=SA,-3TH;UNTIL=20300219T174500Z",
    "FREQ=MONTHLY;COUNT=12;INTERVAL=3;BYDAY=FR,1WE,-3FR",
    "FREQ=WEEKLY;BYDAY=MO,WE,FR;BYSETPOS=1",
    "FREQ=YEARLY;BYMONTH=3,10;BYDAY=-1SU,1SA",
    "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,TH;COUNT=7",
]


@pytest.mark.django_db
@pytest.mark.parametrize("tzid", ["Pacific/Chatham", "Europe/Amsterdam"])
@pytest.mark.parametrize("rule", ADMIN_RULES)
def test_admin_preview_is_the_reference(org: object, rule: str, tzid: str) -> None:
    from scheduling.forms import PREVIEW_COUNT, upcoming_occurrences
    from tests.factories import ScheduleFactory

    tz = ZoneInfo(tzid)
    first = datetime(2026, 3, 4, 2, 45, tzinfo=tz)
    exdate = datetime(2026, 4, 6, 2, 45, tzinfo=tz)
    schedule = ScheduleFactory(
        organization=org,
        planning_start=first,
        planning_end=first + timedelta(hours=2),
        rrule=rule,
        recurrence_timezone=tzid,
        exdates=[exdate.isoformat()],
    )
    after = datetime(2026, 3, 20, tzinfo=tz)
    ref = reference_expand(
        rrule=rule,
        first_start=first,
        first_end=first + timedelta(hours=2),
        tzid=tzid,
        exdates=[exdate],
        window_start=after,
        window_end=after + timedelta(days=10 * 366),  # ten previews' worth of every rule here
    )
    expected = [p for p in ref if p.start >= after][:PREVIEW_COUNT]
    assert expected  # every rule here has occurrences after `after`
    assert upcoming_occurrences(schedule, after=after) == expected


@pytest.mark.parametrize(
    ("rrule", "until", "count", "weekdays"),
    [
        ("FREQ=WEEKLY;BYDAY=MO,WE;UNTIL=20271231T225959Z", date(2027, 12, 31), None, {0, 2}),
        ("FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,SA;COUNT=9", None, 9, {1, 5}),
        ("FREQ=DAILY;INTERVAL=3;COUNT=5", None, 5, set(range(7))),
        # DTSTART's day of the month, whatever the weekday
        ("FREQ=MONTHLY;UNTIL=20270630T215959Z", date(2027, 6, 30), None, set(range(7))),
    ],
)
def test_admin_summary_says_what_the_reference_expands(
    rrule: str, until: date | None, count: int | None, weekdays: set[int]
) -> None:
    from django.utils import translation

    from scheduling.forms import describe_recurrence

    tzid = "Europe/Amsterdam"
    first = datetime(2026, 12, 7, 9, 0, tzinfo=ZoneInfo(tzid))  # a Monday
    kwargs = {"rrule": rrule, "first_start": first, "first_end": first + timedelta(hours=3)}
    with translation.override("en"):
        text = describe_recurrence(tzid=tzid, **kwargs)  # type: ignore[arg-type]
    ref = reference_expand(
        tzid=tzid,
        window_start=first,
        window_end=first + timedelta(days=3 * 366),
        **kwargs,  # type: ignore[arg-type]
    )
    local = [p.start.astimezone(ZoneInfo(tzid)) for p in ref]
    # The summary's times, weekdays, end date and count are those of the expanded occurrences.
    assert "09:00\u201312:00 Europe/Amsterdam" in text
    assert all(d.time() == time(9, 0) for d in local)
    assert {d.weekday() for d in local[1:]} <= weekdays  # DTSTART is the first, on any day
    if "MONTHLY" in rrule:
        assert {d.day for d in local} == {first.day}
    if until is not None:
        assert f"until {until.day} {until:%b %Y}" in text
        assert local[-1].date() <= until < local[-1].date() + timedelta(days=31)
    if count is not None:
        assert f"{count} times" in text
        assert len(local) == count


def test_byweekno_expands_into_whole_weeks_of_the_year() -> None:
    # Week 1 of 2030 begins on Monday 31 December 2029 (1 January 2030 is a Tuesday), and
    # Monday 30 December 2030 begins week 1 of 2031: every other year from 2026 takes the
    # first week, not the second. (dateutil cuts each year's weeks at 1 January and
    # 31 December, which gives 1 January 2030, 30 and 31 December 2030.)
    first = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # Monday of week 2 of 2026
    got = _starts(
        "FREQ=YEARLY;INTERVAL=2;BYWEEKNO=1;BYDAY=MO,TU",
        "UTC",
        first,
        datetime(2029, 6, 1, tzinfo=UTC),
        datetime(2031, 6, 1, tzinfo=UTC),
    )
    assert got == [datetime(2029, 12, 31, 9), datetime(2030, 1, 1, 9)]
