"""Benchmark ``import_fhir`` (issue 19): resources per second and peak memory.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/medikit_bench_import \\
        .venv/bin/python bench/bench_import.py [--sizes 5000,50000] [--rounds 3]
    .venv/bin/python bench/bench_import.py --sqlite [--sizes 5000] [--rounds 3]

Generates its own Bundle per size: 50 practitioners, one role and one schedule each, then
stored Slots (15 minutes each, spread over the schedules) up to the size, plus
``--appointments`` appointments of as many patients (booked into the generated slots, so
the set-wise clash check runs). With PostgreSQL the named database is recreated, migrated
and dropped at the end; ``--sqlite`` uses a temporary file. Every round imports into a
fresh organisation (all inserts), timed around ``bundle_import`` alone (the JSON is
already parsed, as the command has it after reading the file). Peak memory is the
process's peak resident set (``ru_maxrss``) after the import, and with ``--tracemalloc``
the peak of Python allocations during one extra, untimed import.

Target (issue 19): >= 3,000 resources/s on PostgreSQL for the 5k bundle.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/medikit_bench_import"
PRACTITIONERS = 50
TARGET = 3000.0


def make_bundle(size: int, appointments: int, tag: str) -> dict[str, Any]:
    """A collection of ``size`` resources (+ 2 x ``appointments``: patients, appointments)."""
    base = datetime(2030, 1, 7, 8, 0, tzinfo=UTC)
    entries: list[dict[str, Any]] = []

    def add(resource: dict[str, Any]) -> None:
        entries.append(
            {"fullUrl": f"{resource['resourceType']}/{resource['id']}", "resource": resource}
        )

    for p in range(PRACTITIONERS):
        add({"resourceType": "Practitioner", "id": f"p{p}", "name": [{"family": f"Doc{p}"}]})
        add(
            {
                "resourceType": "PractitionerRole",
                "id": f"r{p}",
                "practitioner": {"reference": f"Practitioner/p{p}"},
            }
        )
        add(
            {
                "resourceType": "Schedule",
                "id": f"s{p}",
                "actor": [{"reference": f"PractitionerRole/r{p}"}],
                "planningHorizon": {
                    "start": base.isoformat(),
                    "end": (base + timedelta(days=3650)).isoformat(),
                },
            }
        )
    slots = size - 3 * PRACTITIONERS
    slot_starts: list[tuple[int, datetime]] = []
    for i in range(slots):
        p = i % PRACTITIONERS
        start = base + timedelta(minutes=15 * (i // PRACTITIONERS))
        slot_starts.append((p, start))
        add(
            {
                "resourceType": "Slot",
                "id": f"slot{i}",
                "schedule": {"reference": f"Schedule/s{p}"},
                "status": "free",
                "start": start.isoformat(),
                "end": (start + timedelta(minutes=15)).isoformat(),
            }
        )
    for a in range(appointments):
        p, start = slot_starts[a]
        add({"resourceType": "Patient", "id": f"pt{a}", "name": [{"family": f"P{a}"}]})
        add(
            {
                "resourceType": "Appointment",
                "id": f"a{a}",
                "status": "booked",
                "start": start.isoformat(),
                "end": (start + timedelta(minutes=15)).isoformat(),
                "slot": [{"reference": f"Slot/slot{a}"}],
                "participant": [
                    {"actor": {"reference": f"Patient/pt{a}"}, "status": "accepted"},
                    {"actor": {"reference": f"PractitionerRole/r{p}"}, "status": "accepted"},
                ],
            }
        )
    return {"resourceType": "Bundle", "type": "collection", "id": tag, "entry": entries}


def _db_name(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path.lstrip("/")


def setup(options: argparse.Namespace) -> str:
    os.environ.setdefault("SECRET_KEY", "bench-only")
    os.environ["DEBUG"] = "0"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medikit.settings")
    if options.sqlite:
        path = Path(tempfile.mkdtemp(prefix="bench_import_")) / "db.sqlite3"
        url = f"sqlite:///{path}"
    else:
        import load

        url = os.environ.get("DATABASE_URL", DEFAULT_URL)
        if not url.startswith("postgres"):
            raise SystemExit("set DATABASE_URL=postgres://... or pass --sqlite")
        load.recreate_database(url, _db_name(url))
    os.environ["DATABASE_URL"] = url
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    return url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="5000,50000", help="bundle sizes, comma separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--appointments", type=int, default=0)
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL database")
    options = parser.parse_args()
    url = setup(options)
    from django.db import connection

    from fhir_api.ingest import bundle_import
    from scheduling.models import Organization

    print(f"database: {connection.vendor}; rounds: {options.rounds}", flush=True)
    met = True
    try:
        for size in (int(s) for s in options.sizes.split(",")):
            rates: list[float] = []
            total = size + 2 * options.appointments
            for r in range(options.rounds):
                org = Organization.objects.create(id=f"imp-{size}-{r}", name="bench")
                bundle = make_bundle(size, options.appointments, f"b{size}-{r}")
                t0 = time.perf_counter()
                summary = bundle_import(organization=org, data=bundle)
                elapsed = time.perf_counter() - t0
                assert summary.total == total, summary
                rates.append(total / elapsed)
                print(f"  {total} resources: {elapsed:.2f} s, {total / elapsed:,.0f}/s", flush=True)
                del bundle
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            line = (
                f"{total} resources: {min(rates):,.0f}-{max(rates):,.0f}/s "
                f"(median {statistics.median(rates):,.0f}/s), peak RSS {rss:.0f} MB"
            )
            if options.tracemalloc:
                org = Organization.objects.create(id=f"imp-{size}-mem", name="bench")
                bundle = make_bundle(size, options.appointments, f"b{size}-mem")
                tracemalloc.start()
                bundle_import(organization=org, data=bundle)
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                line += f", traced peak {peak / 2**20:.0f} MB"
            print(line, flush=True)
            if connection.vendor == "postgresql" and size <= 5000:
                met = met and statistics.median(rates) >= TARGET
    finally:
        if not options.sqlite and not options.keep:
            import load

            connection.close()
            load.recreate_database(url, _db_name(url), drop_only=True)
    if connection.vendor == "postgresql":
        print(f"target >= {TARGET:,.0f}/s (5k bundle, PostgreSQL): {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
