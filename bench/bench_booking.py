"""Benchmark ``$book-slot`` on PostgreSQL: latency without and with contention.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/medikit_bench \\
        .venv/bin/python bench/bench_booking.py [--uncontended 200] [--rounds 20] [--clients 32]

It migrates the database named in DATABASE_URL (created if missing), adds a throw-away
organisation, serves the app from an in-process threaded WSGI server on a free port, and
measures over real HTTP:

- uncontended: one client books distinct slots one after another (p50/p95);
- contended: ``--clients`` clients fire at ONE slot together, round after round (p50/p95,
  status counts; anything but 201/409 is an error), and the same clients booking distinct
  slots at once (bookings per second).

Target: contended p95 <= 3x uncontended p95 and no errors other than 409. The process, not
the database, is the bottleneck on small machines: client threads and server threads share
one interpreter, so read the contended figures as an upper bound.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/medikit_bench")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medikit.settings")
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
os.environ.setdefault("LOG_LEVEL", "WARNING")

SLOT = timedelta(minutes=15)


def ensure_database(url: str) -> None:
    from urllib.parse import urlparse

    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--uncontended", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()

    url = os.environ["DATABASE_URL"]
    if not url.startswith(("postgres://", "postgresql://")):
        print("bench_booking needs PostgreSQL: set DATABASE_URL=postgres://...", file=sys.stderr)
        return 2
    ensure_database(url)

    import django

    django.setup()
    import requests
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.management import call_command
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

    from fhir_api.models import ApiClient, ApiClientOrganization
    from fhir_api.tokens import issue_access_token
    from scheduling.models import Organization, Patient, Practitioner, PractitionerRole, Schedule

    call_command("migrate", verbosity=0)

    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    org = Organization.objects.create(id=f"bench-{stamp}", name="Bench clinic")
    practitioner = Practitioner.objects.create(organization=org, fhir_id="p", family="Bench")
    role = PractitionerRole.objects.create(organization=org, fhir_id="r", practitioner=practitioner)
    total_slots = args.uncontended + args.rounds + args.clients * 4 + 10
    first = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    Schedule.objects.create(
        organization=org,
        fhir_id="s",
        practitioner_role=role,
        practitioner=practitioner,
        planning_start=first,
        planning_end=first + SLOT * total_slots,
        slot_minutes=15,
    )
    patients = [
        Patient.objects.create(organization=org, fhir_id=f"pat-{i}").fhir_id
        for i in range(args.clients)
    ]
    client = ApiClient.objects.create(
        name="bench", client_id=ApiClient.new_client_id(), scopes="system/Appointment.c"
    )
    ApiClientOrganization.objects.create(organization=org, client=client)
    token, _ = issue_access_token(client=client)

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadedWSGIServer):
        # The default listen backlog (5) resets connections when 32 clients arrive at once.
        request_queue_size = 256

    server = Server(("127.0.0.1", 0), QuietHandler)
    server.set_app(WSGIHandler())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/v2/{org.id}/fhir/R4"
    local = threading.local()

    def book(pid: str, start: datetime) -> tuple[int, float]:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            session.headers.update(
                {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
            )
        body = {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "start", "valueDateTime": start.isoformat()},
                {"name": "schedule", "valueString": "s"},
                {"name": "practitionerRole", "valueString": "r"},
                {"name": "status", "valueString": "booked"},
            ],
        }
        began = time.perf_counter()
        response = session.post(f"{base}/Patient/{pid}/Appointment/$book-slot", json=body)
        return response.status_code, (time.perf_counter() - began) * 1000

    slot_index = 0

    def next_slot() -> datetime:
        nonlocal slot_index
        slot_index += 1
        return first + SLOT * (slot_index - 1)

    try:
        book(patients[0], next_slot())  # warm-up: imports, connection
        quiet: list[float] = []
        quiet_status: Counter[int] = Counter()
        for _ in range(args.uncontended):
            status, ms = book(patients[0], next_slot())
            quiet.append(ms)
            quiet_status[status] += 1

        pool = ThreadPoolExecutor(max_workers=args.clients)
        contended: list[float] = []
        contended_status: Counter[int] = Counter()
        for _ in range(args.rounds):
            start = next_slot()
            barrier = threading.Barrier(args.clients)

            def racer(pid: str, start: datetime = start, barrier: Any = barrier) -> Any:
                barrier.wait()
                return book(pid, start)

            for status, ms in pool.map(racer, patients):
                contended.append(ms)
                contended_status[status] += 1

        spread_slots = [next_slot() for _ in range(args.clients * 3)]
        began = time.perf_counter()
        spread = list(
            pool.map(
                lambda item: book(patients[item[0] % args.clients], item[1]),
                enumerate(spread_slots),
            )
        )
        elapsed = time.perf_counter() - began
        pool.shutdown()
    finally:
        server.shutdown()
        server.server_close()

    spread_status = Counter(status for status, _ in spread)
    q50, q95 = percentile(quiet, 0.50), percentile(quiet, 0.95)
    c50, c95 = percentile(contended, 0.50), percentile(contended, 0.95)
    errors = {
        s: n
        for s, n in (contended_status + spread_status + quiet_status).items()
        if s not in (201, 409)
    }
    print(f"organisation {org.id} on {url.rsplit('@', 1)[-1]}")
    print(
        f"uncontended  n={len(quiet):4d}  p50={q50:7.1f} ms  p95={q95:7.1f} ms  "
        f"mean={statistics.mean(quiet):.1f} ms  statuses={dict(quiet_status)}"
    )
    print(
        f"contended    n={len(contended):4d}  p50={c50:7.1f} ms  p95={c95:7.1f} ms  "
        f"({args.clients} clients on one slot, {args.rounds} rounds)  "
        f"statuses={dict(contended_status)}"
    )
    print(
        f"throughput   {spread_status.get(201, 0) / elapsed:.1f} bookings/s  "
        f"({args.clients} clients, distinct slots)  statuses={dict(spread_status)}"
    )
    ratio = c95 / q95 if q95 else float("inf")
    wins = contended_status.get(201, 0)
    print(
        f"contended p95 / uncontended p95 = {ratio:.1f}x (target <= 3x)  "
        f"winners per round = {wins / max(args.rounds, 1):.2f} (must be 1.00)  "
        f"errors other than 409: {errors or 'none'}"
    )
    return 0 if not errors and wins == args.rounds else 1


if __name__ == "__main__":
    sys.exit(main())
