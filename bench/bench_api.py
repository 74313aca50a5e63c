"""API latency vs the floor (raw SQL + orjson), in-process.

Run:  DATABASE_URL=postgres://postgres@127.0.0.1:5432/medikit_api SECRET_KEY=x \
      .venv/bin/python bench/bench_api.py [--rounds 30] [--driver wsgi|client]

It creates a fresh test database (django.test.utils.create_test_db), loads its own data,
measures the p50 (rounds of the API and of its floor interleaved; each API response is
checked, outside the timing, since the floor's output is not read back either) of
  1. a 100-entry Slot search page (one week, 20 schedules with 15-minute slots, 100 booked
     appointments), served from the search cache and uncached (caches cleared each time),
  2. a one-week Schedule search over 20 daily recurring schedules (160 occurrences), from
     the search cache and uncached,
  3. reads by id and ``metadata`` (the read cache cleared before each round),
through the WSGI application as gunicorn calls it (``medikit.wsgi.application``: an environ
in, the response's bytes out, Django's request signals connected; ``--driver client``
drives Django's test Client instead, as this bench did until the eighth session: its own
bookkeeping per request, signals, cookies and the response's test attributes, is no part
of serving), against the "floor": the same rows fetched with a raw SQL cursor and encoded
with orjson. The Slot floor runs the same per-occupant busy query the engine needs (every
active appointment of the week, by occupant). The process's garbage
collector is set as a gunicorn worker's (``medikit.worker_gc``), for both. Prints ratios
(target <= 1.5 on PostgreSQL), then drops the test database.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import io
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medikit.settings")
os.environ.setdefault("SECRET_KEY", "bench-only")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")

import django

django.setup()

import orjson  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402

from medikit import worker_gc  # noqa: E402
from medikit.wsgi import application  # noqa: E402

AMS = ZoneInfo("Europe/Amsterdam")
METADATA: dict[str, object] = {}


def p50s(
    api: Callable[[], Any],
    floor: Callable[[], object],
    rounds: int,
    check: Callable[[Any], None],
) -> tuple[float, float]:
    """The p50 of ``api`` and of ``floor``, their rounds interleaved: on a machine shared with
    other work, a quiet or busy spell then falls on both alike, not on one of the two.
    ``check`` asserts each API response, outside the timing: reading the body back is the
    client's work, as the floor's bytes are never read back either."""
    check(api())  # warm caches (rrule parsing, connection)
    floor()
    samples: tuple[list[float], list[float]] = ([], [])
    for n in range(rounds):
        # Each goes first in every other round: neither always follows the other.
        for which in (0, 1) if n % 2 == 0 else (1, 0):
            fn = (api, floor)[which]
            t0 = time.perf_counter()
            out = fn()
            samples[which].append(time.perf_counter() - t0)
            if which == 0:
                check(out)
    return statistics.median(samples[0]), statistics.median(samples[1])


def load_data() -> tuple[str, str]:
    from fhir_api.models import ApiClient, ApiClientOrganization
    from fhir_api.tokens import issue_access_token
    from tests.factories import OrganizationFactory, ScheduleFactory

    org = OrganizationFactory(id="bench", name="Bench")
    start = datetime(2030, 6, 3, 8, tzinfo=AMS)
    for i in range(20):
        ScheduleFactory(
            organization=org,
            fhir_id=f"bench-{i:02d}",
            planning_start=start,
            planning_end=start + timedelta(hours=8),
            rrule="FREQ=DAILY",
            slot_minutes=15,
        )
    # Five bookings per schedule on the first day: the busy query has rows to read.
    from tests.factories import AppointmentFactory, PatientFactory

    patient_rows = [PatientFactory(organization=org) for _ in range(100)]
    for n, schedule in enumerate(org.schedule_set.order_by("fhir_id")):
        for k in range(5):
            at = start + timedelta(minutes=15 * (2 * k + 1))
            AppointmentFactory(
                organization=org,
                patient=patient_rows[5 * n + k],
                schedule=schedule,
                practitioner_role=schedule.practitioner_role,
                start=at,
                end=at + timedelta(minutes=15),
            )
    client = ApiClient.objects.create(
        name="bench", client_id="bench", scopes="system/Schedule.rs system/Slot.rs"
    )
    ApiClientOrganization.objects.create(organization=org, client=client)
    token, _ = issue_access_token(client=client)
    # Reads by id: one stored slot, and a patient-bound client reading its appointment.
    from scheduling.models import Slot

    first = org.schedule_set.order_by("fhir_id").first()
    Slot.objects.create(
        organization=org,
        fhir_id="bench-slot",
        schedule=first,
        status="free",
        start=start + timedelta(days=1),
        end=start + timedelta(days=1, minutes=15),
    )
    reader = ApiClient.objects.create(
        name="reader",
        client_id="reader",
        scopes="patient/Appointment.rs",
        patient_fhir_id=patient_rows[0].fhir_id,
    )
    ApiClientOrganization.objects.create(organization=org, client=reader)
    global READER_TOKEN
    READER_TOKEN, _ = issue_access_token(client=reader)
    return org.pk, token


READER_TOKEN = ""


class WsgiClient:
    """GET requests through the WSGI application as gunicorn makes them: the environ of a
    keep-alive HTTP/1.1 request from a proxy, the body iterated and closed (which sends
    Django's ``request_finished``). Answers what the bench reads of a test Client's
    response: ``status_code`` and ``content``."""

    def __init__(self, token: str) -> None:
        self._authorization = f"Bearer {token}"

    def get(self, path: str, query: dict[str, object] | None = None) -> SimpleNamespace:
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": path,
            "QUERY_STRING": urlencode(query or {}),
            "SERVER_NAME": "testserver",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "testserver",
            "HTTP_ACCEPT": "application/fhir+json",
            "HTTP_AUTHORIZATION": self._authorization,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        status: list[str] = []
        result = application(environ, lambda s, headers, exc_info=None: status.append(s))
        try:
            content = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return SimpleNamespace(status_code=int(status[0].split(" ", 1)[0]), content=content)


WEEK = (datetime(2030, 6, 3, tzinfo=AMS), datetime(2030, 6, 10, tzinfo=AMS))


def floor_slots() -> bytes:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT fhir_id, planning_start, planning_end, slot_minutes, service_category "
            "FROM scheduling_schedule WHERE organization_id = %s AND active "
            "ORDER BY planning_start, fhir_id",
            ["bench"],
        )
        rows = cur.fetchall()
        # What the engine must know to mark slots busy: the week's active appointments of
        # every occupant (the same rows the per-occupant busy query reads).
        cur.execute(
            'SELECT occupant, start, "end" FROM scheduling_appointment '
            "WHERE organization_id = %s AND \"end\" > %s AND start < %s AND rrule = '' "
            "AND status NOT IN ('cancelled', 'noshow', 'entered-in-error')",
            ["bench", *WEEK],
        )
        cur.fetchall()
    # The floor: 100 slot dicts straight from the rows, no rule expansion.
    out = []
    for fhir_id, start, _end, minutes, cat in rows:
        for k in range(5):
            s = start + timedelta(minutes=minutes * k)
            out.append(
                {
                    "resourceType": "Slot",
                    "id": f"{fhir_id}-{k}",
                    "start": s.isoformat(),
                    "end": (s + timedelta(minutes=minutes)).isoformat(),
                    "status": "free",
                    "schedule": {"reference": f"Schedule/{fhir_id}"},
                    "serviceCategory": cat,
                }
            )
    return orjson.dumps({"resourceType": "Bundle", "entry": out[:100]})


def floor_schedules() -> bytes:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT s.fhir_id, s.planning_start, s.planning_end, s.service_category, "
            "r.fhir_id, p.fhir_id FROM scheduling_schedule s "
            "LEFT JOIN scheduling_practitionerrole r ON r.id = s.practitioner_role_id "
            "LEFT JOIN scheduling_practitioner p ON p.id = s.practitioner_id "
            "WHERE s.organization_id = %s ORDER BY s.planning_start, s.fhir_id",
            ["bench"],
        )
        rows = cur.fetchall()
    out = []
    for fhir_id, start, end, cat, role, prac in rows:
        for day in range(7):
            out.append(
                {
                    "resourceType": "Schedule",
                    "id": f"{fhir_id}-{day}",
                    "planningHorizon": {
                        "start": (start + timedelta(days=day)).isoformat(),
                        "end": (end + timedelta(days=day)).isoformat(),
                    },
                    "serviceCategory": cat,
                    "actor": [
                        {"reference": f"PractitionerRole/{role}"},
                        {"reference": f"Practitioner/{prac}"},
                    ],
                }
            )
    return orjson.dumps({"resourceType": "Bundle", "entry": out})


def floor_read(table: str, fhir_id: str) -> Callable[[], bytes]:
    """One row by id with a raw cursor, encoded with orjson: the floor of a read."""

    def run() -> bytes:
        with connection.cursor() as cur:
            cur.execute(
                f"SELECT * FROM {table} WHERE organization_id = %s AND fhir_id = %s",
                ["bench", fhir_id],
            )
            columns = [c[0] for c in cur.description]
            row = dict(zip(columns, cur.fetchone(), strict=True))
        return orjson.dumps(row, default=str)

    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    parser.add_argument(
        "--driver",
        choices=("wsgi", "client"),
        default="wsgi",
        help="call the WSGI application as gunicorn does (default), or Django's test Client",
    )
    args = parser.parse_args()
    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        # The caches the slot selector itself uses (its module's own reference: a run of
        # an older checkout beside an installed newer one must clear the right ones).
        try:
            search_cache = importlib.import_module("scheduling.selectors.slots").search_cache
        except ModuleNotFoundError:  # before selectors became a package
            search_cache = importlib.import_module("scheduling.selectors").search_cache
        caches = (search_cache.slot_cache, search_cache.slot_grid_cache)
        # (the schedule and read caches: below)
        org_id, token = load_data()
        # The garbage collector as a gunicorn worker sets it (gunicorn.conf.py post_fork):
        # the API is measured as it is served. The data load's garbage goes first, as a
        # worker forks before it has served anything.
        gc.collect()
        worker_gc.tune(worker_gc.configured_threshold())

        def client_for(token: str) -> Any:
            if args.driver == "client":
                return Client(HTTP_AUTHORIZATION=f"Bearer {token}")
            return WsgiClient(token)

        http = client_for(token)
        base = f"/v2/{org_id}/fhir/R4"

        def slots() -> Any:
            return http.get(f"{base}/Slot", {"start": "ge2030-06-03", "_count": 100})

        def slots_uncached() -> Any:
            # (inside the timing: an uncached search also frees the snapshot it replaces)
            for cache in caches:
                cache.clear()
            return slots()

        def check_slots(r: Any) -> None:
            assert r.status_code == 200 and len(orjson.loads(r.content)["entry"]) == 100

        def schedules() -> Any:
            return http.get(f"{base}/Schedule", {"date": "ge2030-06-03", "_count": 500})

        def schedules_uncached() -> Any:
            search_cache.schedule_cache.clear()
            return schedules()

        def check_schedules(r: Any) -> None:
            # 20 schedules x the days the default window reaches (8 since the window's end
            # day is included): whatever it is, the same every round.
            assert r.status_code == 200 and orjson.loads(r.content)["total"] in (140, 160)

        patient_http = client_for(READER_TOKEN)
        from scheduling.models import Appointment

        booked = Appointment.objects.filter(organization_id=org_id).order_by("start").first()
        assert booked is not None
        reader_path = f"{base}/Patient/{booked.patient.fhir_id}/Appointment/{booked.fhir_id}"

        read_cache = getattr(search_cache, "read_cache", None)  # older checkouts have none

        def getter(client: Any, path: str, *, uncached: bool = False) -> Callable[[], Any]:
            def run() -> Any:
                if uncached and read_cache is not None:
                    read_cache.clear()
                return client.get(path)

            return run

        def check_ok(r: Any) -> None:
            assert r.status_code == 200, (r.status_code, r.content[:300])

        def metadata_floor() -> bytes:
            return orjson.dumps(METADATA)

        METADATA.update(orjson.loads(http.get(f"{base}/metadata").content))
        cases: list[tuple[str, Callable[[], Any], Callable[[], object], Callable[[Any], None]]] = [
            ("Slot search, 100-entry page, cached", slots, floor_slots, check_slots),
            ("Slot search, 100-entry page, uncached", slots_uncached, floor_slots, check_slots),
            ("Schedule search, 20 schedules x 1 week", schedules, floor_schedules, check_schedules),
            (
                "Schedule search, 20 schedules x 1 week, uncached",
                schedules_uncached,
                floor_schedules,
                check_schedules,
            ),
            *(
                (f"{name} read{label}", getter(client, path, uncached=uncached), floor, check_ok)
                for name, client, path, floor in (
                    (
                        "Slot/{id}",
                        http,
                        f"{base}/Slot/bench-slot",
                        floor_read("scheduling_slot", "bench-slot"),
                    ),
                    (
                        "Schedule/{id}",
                        http,
                        f"{base}/Schedule/bench-00",
                        floor_read("scheduling_schedule", "bench-00"),
                    ),
                    (
                        "Patient/{pid}/Appointment/{id}",
                        patient_http,
                        reader_path,
                        floor_read("scheduling_appointment", booked.fhir_id),
                    ),
                )
                for label, uncached in ((", uncached", True), ("", False))
            ),
            ("metadata", getter(http, f"{base}/metadata"), metadata_floor, check_ok),
        ]
        print(f"database: {connection.vendor}; rounds: {args.rounds}; driver: {args.driver}")
        for name, api_fn, floor_fn, check in cases:
            if args.only and args.only not in name:
                continue
            api_t, floor_t = p50s(api_fn, floor_fn, args.rounds, check)
            with CaptureQueriesContext(connection) as queries:
                check(api_fn())
            print(
                f"{name:42s} api p50 {api_t * 1000:7.2f} ms  floor p50 "
                f"{floor_t * 1000:7.2f} ms  ratio {api_t / floor_t:5.2f}  "
                f"queries {len(queries)}"
            )
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
