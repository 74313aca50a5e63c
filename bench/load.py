"""Production serving under load, measured against the framework's own floor (`make bench-load`).

1. creates a dedicated PostgreSQL database (``medikit_load``, dropped again at the end),
   migrates it and fills it with one realistic clinic (bench/load_data.py);
2. starts the production server exactly as deployed (scripts/serve.sh: gunicorn,
   ``2 x cores`` workers) on a free loopback port;
3. drives it from a separate process (bench/load_client.py: asyncio + aiohttp, keep-alive,
   N concurrent connections) through timed phases: the ``/healthz`` ceiling, a one-week
   free-slot search, reads by id (``Slot/{id}``, ``Schedule/{id}``,
   ``Patient/{pid}/Appointment/{id}``) and ``metadata``, two searches of a second clinic
   of STORED slots (issue 19: 50 schedules without a slot duration x 720 stored 15-minute
   Slots, 30% busy; a week of free slots and one schedule's day, ``--stored-seconds``
   each, 0 skips them, ``--stored-only`` runs only these), and a mix of searches and
   bookings, while sampling worker memory;
4. prints throughput, latency percentiles, errors, memory and EXPLAIN plans against the
   targets, then stops the server and drops the database (also on Ctrl-C or errors).

    .venv/bin/python bench/load.py            # ~7 minutes (5-minute mixed run)
    .venv/bin/python bench/load.py --quick    # ~1 minute
    .venv/bin/python bench/load.py --reads-only   # /healthz and the reads by id only
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CORES = os.cpu_count() or 1

# Targets (issue 8): the API must keep a sizeable share of what the bare framework does.
TARGET_SLOT_RPS_PER_CORE = 300.0
TARGET_SLOT_SHARE_OF_CEILING = 0.30
#: Issue 12: the cached Slot search at 600 requests per second per core of the server.
TARGET_SLOT_RPS_PER_SERVER_CORE = 600.0
TARGET_MIX_TAIL_RATIO = 10.0
#: Issue 19: searches of a clinic of stored slots, per second per core of the server (the
#: issue's "requests per second of server CPU": see :func:`per_cpu_second`).
TARGET_STORED_RPS_PER_CORE = 600.0
STORED_PHASES = ("stored-week", "stored-day")
# Issue 19: reads by id and metadata as cheap as the generated-slot search.
TARGET_READ_RPS_PER_CORE = 600.0
#: The reads-by-id phases, in order (bench/load_client.READ_KINDS).
READ_PHASES = ("read-slot", "read-schedule", "read-appointment", "metadata")
#: Memory is "flat" when the last sample is within this share of the first (warm) one.
FLAT_MEMORY_TOLERANCE = 0.10
MEMORY_SAMPLE_SECONDS = 10.0
#: Share of the mixed run (at most a minute) after which the memory is taken as "warm".
MEMORY_WARM_SHARE = 0.2


@dataclass
class Options:
    database_url: str
    database_name: str
    ceiling_seconds: float
    slot_seconds: float
    mix_seconds: float
    warmup_seconds: float
    concurrency: int
    workers: int
    threads: int
    max_requests: int
    keep_database: bool
    json_path: Path | None
    check: bool
    # Phases added later default to "off", so other benches reusing Options keep working.
    read_seconds: float = 0.0
    reads_only: bool = False
    stored_seconds: float = 0.0
    stored_only: bool = False


@dataclass
class MemorySeries:
    """RSS samples (MiB) of one gunicorn worker during the mixed run."""

    pid: int
    samples: list[float] = field(default_factory=list)
    #: Index of the first sample taken after the warm-up share of the run.
    warm_index: int = 0

    @property
    def start(self) -> float:
        return self.samples[0]

    @property
    def warm(self) -> float:
        return self.samples[min(self.warm_index, len(self.samples) - 1)]

    @property
    def end(self) -> float:
        return self.samples[-1]

    @property
    def peak(self) -> float:
        return max(self.samples)

    @property
    def flat(self) -> bool:
        # Against the warm value, not the first sample: the first minutes fill lazily
        # built caches (URL resolvers, zoneinfo, prepared plans) that are not leaks.
        return self.end <= self.warm * (1 + FLAT_MEMORY_TOLERANCE)


# --- Database ----------------------------------------------------------------------------


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def recreate_database(url: str, name: str, *, drop_only: bool = False) -> None:
    """Drop (and create) ``name`` through the server's maintenance database."""
    import psycopg
    from psycopg import sql

    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise SystemExit(f"refusing database name {name!r}: use lowercase letters, digits, _")
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        # FORCE: a server left over from an interrupted run must not block the drop.
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        if not drop_only:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def setup_django(url: str, secret_key: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ["SECRET_KEY"] = secret_key
    os.environ["DEBUG"] = "0"
    # testserver: the EXPLAIN step replays one request of each kind in-process.
    os.environ["ALLOWED_HOSTS"] = "127.0.0.1,testserver"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medikit.settings")
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    import django

    django.setup()


# --- Server ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    options: Options, url: str, secret_key: str, port: int, log: Any
) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=url,
        SECRET_KEY=secret_key,
        DEBUG="0",
        ALLOWED_HOSTS="127.0.0.1",
        HOST="127.0.0.1",
        PORT=str(port),
        WEB_CONCURRENCY=str(options.workers),
        GUNICORN_THREADS=str(options.threads),
        # Recycling would hide a leak from the memory samples (and cost latency spikes).
        GUNICORN_MAX_REQUESTS=str(options.max_requests),
        MEDIKIT_SKIP_MIGRATE="1",  # migrated above, before the dataset was loaded
        PYTHON=PYTHON,
        GUNICORN=str(Path(PYTHON).parent / "gunicorn"),
    )
    env.pop("ACCESS_LOG", None)
    return subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "serve.sh")],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopped as one, never orphaned
    )


def wait_until_ready(base_url: str, server: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with status {server.returncode}")
        with (
            contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
            urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"the server did not answer /healthz within {seconds:.0f} s")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)  # gunicorn: graceful shutdown
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)


def worker_pids(master: int) -> list[int]:
    """The gunicorn workers: the master's child processes (serve.sh execs into it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name: state, ppid, ...
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == master:
            pids.append(int(entry.name))
    return sorted(pids)


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# --- Load phases -------------------------------------------------------------------------


def run_phase(
    plan_path: Path,
    phase: str,
    seconds: float,
    options: Options,
    *,
    master: int | None = None,
    memory: dict[int, MemorySeries] | None = None,
) -> dict[str, Any]:
    """Run one phase in a separate client process; sample worker memory meanwhile."""
    command = [
        PYTHON,
        str(ROOT / "bench" / "load_client.py"),
        str(plan_path),
        phase,
        "--duration",
        str(seconds),
        "--warmup",
        str(options.warmup_seconds),
        "--concurrency",
        str(options.concurrency),
    ]
    print(f"  {phase}: {seconds:.0f} s (+{options.warmup_seconds:.0f} s warm-up) ...", flush=True)
    client = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        if master is not None and memory is not None:
            measure_start = time.monotonic() + options.warmup_seconds
            warm_at = measure_start + min(60.0, seconds * MEMORY_WARM_SHARE)
            next_sample = measure_start
            while client.poll() is None:
                now = time.monotonic()
                if now >= next_sample:
                    for pid in worker_pids(master):
                        value = rss_mib(pid)
                        if value is None:
                            continue
                        series = memory.setdefault(pid, MemorySeries(pid))
                        if now < warm_at:
                            series.warm_index = len(series.samples) + 1
                        series.samples.append(value)
                    next_sample += MEMORY_SAMPLE_SECONDS
                time.sleep(0.2)
        out, _ = client.communicate(timeout=seconds + options.warmup_seconds + 120)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    if client.returncode != 0:
        raise RuntimeError(f"the load client failed in phase {phase!r}")
    result: dict[str, Any] = json.loads(out)
    return result


# --- Reads by id (issue 19) -------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far (Linux /proc), None if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the parenthesised command name: state, ppid, ... utime and stime are the
    # 12th and 13th fields (14 and 15 of the whole line), in clock ticks.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backend_pids(options: Options) -> list[int]:
    """PostgreSQL's processes serving the benchmark database (the workers' connections)."""
    import psycopg

    with psycopg.connect(with_database(options.database_url, "postgres"), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", [options.database_name]
        ).fetchall()
    return [int(row[0]) for row in rows]


def server_cpu(master: int, options: Options) -> dict[int, float]:
    """CPU seconds so far of each gunicorn worker and each PostgreSQL backend they use."""
    found = {}
    for pid in worker_pids(master) + backend_pids(options):
        value = cpu_seconds(pid)
        if value is not None:
            found[pid] = value
    return found


def run_measured_phase(
    plan_path: Path, phase: str, seconds: float, options: Options, master: int
) -> dict[str, Any]:
    """:func:`run_phase`, with the server CPU it cost (``server_cpu_seconds``): the
    gunicorn workers and their PostgreSQL backends, from the end of the warm-up on."""
    before: dict[int, float] = {}
    timer = threading.Timer(
        options.warmup_seconds, lambda: before.update(server_cpu(master, options))
    )
    timer.start()
    try:
        result = run_phase(plan_path, phase, seconds, options)
    finally:
        timer.cancel()
    after = server_cpu(master, options)
    result["server_cpu_seconds"] = sum(
        max(0.0, value - before.get(pid, 0.0)) for pid, value in after.items()
    )
    return result


def run_read_phases(plan_path: Path, options: Options, master: int) -> dict[str, dict[str, Any]]:
    """One phase per kind of read by id, and ``metadata``, each with the server CPU it cost.

    The machine is shared (the load client, PostgreSQL, other work), so besides requests
    per second per core the phases report requests per CPU-second of the server itself.
    """
    return {
        phase: run_measured_phase(plan_path, phase, options.read_seconds, options, master)
        for phase in READ_PHASES
    }


def print_read_report(results: dict[str, dict[str, Any]]) -> bool:
    """The reads-by-id table and its targets; True when every target is met."""
    print(
        f"Reads by id (target >= {TARGET_READ_RPS_PER_CORE:.0f} requests per second per core "
        "of the server, i.e. req/CPU-s: requests per CPU-second of the gunicorn workers and "
        "their PostgreSQL backends, the load client left out):"
    )
    header = (
        f"{'phase':<20}{'req/s':>9}{'req/s/core':>12}{'req/CPU-s':>11}{'p50 ms':>9}"
        f"{'p99 ms':>9}  statuses"
    )
    print(header)
    print("-" * len(header))
    ok = True
    for phase in ("healthz", *READ_PHASES):
        result = results.get(phase)
        if result is None:
            continue
        s = result["all"]
        per_cpu = per_cpu_second(result)
        statuses = " ".join(f"{k}:{v}" for k, v in s["statuses"].items())
        met = phase == "healthz" or (
            per_cpu >= TARGET_READ_RPS_PER_CORE
            and error_count(result) == 0
            and not result["transport_errors"]
        )
        ok = ok and met
        print(
            f"{phase:<20}{s['rps']:>9.0f}{s['rps'] / CORES:>12.0f}{per_cpu:>11.0f}"
            f"{s['p50_ms']:>9.1f}{s['p99_ms']:>9.1f}  {statuses}  "
            + ("(ceiling)" if phase == "healthz" else "PASS" if met else "FAIL")
        )
    print()
    return ok


# --- EXPLAIN -----------------------------------------------------------------------------

_INDEX_RE = re.compile(
    r"(?:Index Scan|Index Only Scan|Bitmap Index Scan)(?: Backward)? (?:using|on) (\S+)"
)
_TABLE_RE = re.compile(r'FROM "(scheduling_(?:appointment|slot|schedule))"')


def _plan_row(label: str, sql: str) -> dict[str, str]:
    """EXPLAIN one statement; for a sequential scan, also ask with seqscan disabled.

    A sequential scan is not always wrong (with one organisation every schedule row
    matches), so the second plan shows whether an index exists that the planner can use
    once the table grows.
    """
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        indexes = _INDEX_RE.findall(plan)
        forced = ""
        if not indexes:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN " + sql)
            forced_plan = "\n".join(row[0] for row in cursor.fetchall())
            forced = ", ".join(dict.fromkeys(_INDEX_RE.findall(forced_plan))) or "none"
    return {
        "query": label,
        "index": ", ".join(dict.fromkeys(indexes)) or "-",
        "plan": plan.splitlines()[0].strip(),
        "with_seqscan_off": forced,
        "sql": sql,
    }


def explain_searches(plan: dict[str, Any]) -> list[dict[str, str]]:
    """EXPLAIN the queries the API itself runs for the main searches.

    One request of each kind goes through Django's test client; every captured SELECT on
    the appointment, slot and schedule tables is explained, so the plans follow the
    selectors as they change. Representative ORM queries stand in while a route is not
    answering yet.
    """
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from scheduling import models as m

    client = Client(HTTP_AUTHORIZATION=f"Bearer {plan['token']}")
    today = datetime.now(UTC).date()
    base = f"/v2/{plan['organization']}/fhir/R4"
    patient_id = plan["patients"][123]
    requests = {
        "Slot search": f"{base}/Slot?status=free&start=ge{today}"
        f"&start=lt{today + timedelta(days=7)}&_count=20",
        "Schedule search": f"{base}/Schedule?date=ge{today}&_count=20",
        "Appointment search": f"{base}/Patient/{patient_id}/Appointment"
        f"?date=ge{today - timedelta(days=90)}&date=le{today}&_count=20",
    }
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    for label, url in requests.items():
        with CaptureQueriesContext(connection) as captured:
            status = client.get(url).status_code
        for query in captured.captured_queries:
            sql = query["sql"]
            table = _TABLE_RE.search(sql)
            if status != 200 or not sql.startswith("SELECT") or table is None or sql in seen:
                continue
            if "$1" in sql:
                # A compiled query bound on the server: its text has no values to EXPLAIN
                # with (PostgreSQL 16's GENERIC_PLAN could; 15 cannot).
                continue
            seen.add(sql)
            rows.append(_plan_row(f"{label}: {table.group(1).removeprefix('scheduling_')}", sql))
    if rows:
        return rows

    org = m.Organization.objects.get(pk=plan["organization"])
    patient = m.Patient.objects.get(organization=org, fhir_id=patient_id)
    now = datetime.now(UTC)
    week_end = now + timedelta(days=7)
    fallback = {
        "appointments by org+patient+start": m.Appointment.objects.filter(
            organization=org, patient=patient, start__lt=week_end, end__gt=now
        ).order_by("start", "fhir_id"),
        "appointments by org+schedule+start range": m.Appointment.objects.filter(
            organization=org, schedule_id=1, start__gte=now, start__lt=week_end
        ),
        "slots by org+start range": m.Slot.objects.filter(
            organization=org, start__gte=now, start__lt=week_end
        ),
        "schedules by org": m.Schedule.objects.filter(organization=org, active=True),
    }
    for label, queryset in fallback.items():
        sql, params = queryset.query.sql_with_params()
        with connection.cursor() as cursor:
            rows.append(_plan_row(label + " (ORM stand-in)", cursor.mogrify(sql, params)))
    return rows


# --- Report ------------------------------------------------------------------------------


def error_count(result: dict[str, Any]) -> int:
    """Responses other than 2xx and the 409s a booking race is expected to produce."""
    bad = 0
    for kind, summary in result["kinds"].items():
        for status, count in summary["statuses"].items():
            code = int(status)
            if 200 <= code < 300 or (code == 409 and kind == "book"):
                continue
            bad += count
    return bad


def print_report(
    results: dict[str, dict[str, Any]],
    memory: dict[int, MemorySeries],
    explains: list[dict[str, str]],
    counts: dict[str, int],
    options: Options,
) -> bool:
    print()
    print(
        f"Machine: {CORES} cores; server: {options.workers} gunicorn workers x "
        f"{options.threads} threads; client: {options.concurrency} keep-alive connections"
    )
    print("Dataset: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print()
    header = (
        f"{'phase':<22}{'req/s':>9}{'req/s/core':>12}{'req/CPU-s':>11}{'p50 ms':>9}"
        f"{'p95 ms':>9}{'p99 ms':>9}  statuses"
    )
    print(header)
    print("-" * len(header))

    def line(label: str, s: dict[str, Any], per_cpu: float = 0.0) -> None:
        statuses = " ".join(f"{k}:{v}" for k, v in s["statuses"].items())
        cpu_column = f"{per_cpu:>11.0f}" if per_cpu else f"{'':>11}"
        print(
            f"{label:<22}{s['rps']:>9.0f}{s['rps'] / CORES:>12.0f}{cpu_column}"
            f"{s['p50_ms']:>9.1f}{s['p95_ms']:>9.1f}{s['p99_ms']:>9.1f}  {statuses}"
        )

    for phase, result in results.items():
        line(phase, result["all"], per_cpu_second(result))
        if phase == "mix":
            for kind, summary in result["kinds"].items():
                line(f"  mix: {kind}", summary)
    print()

    ceiling = results["healthz"]["all"]["rps"]
    slot = results["slot"]["all"]["rps"]
    slot_per_cpu = per_cpu_second(results["slot"])
    mix = results["mix"]["all"]
    share = slot / ceiling if ceiling else 0.0
    tail = mix["p99_ms"] / mix["p50_ms"] if mix["p50_ms"] else float("inf")
    errors = {phase: error_count(result) for phase, result in results.items()}
    transport = sum(sum(r["transport_errors"].values()) for r in results.values())
    flat = all(series.flat for series in memory.values()) if memory else False
    checks = [
        (
            f"slot search >= {TARGET_SLOT_RPS_PER_CORE:.0f} req/s/core",
            f"{slot / CORES:.0f}",
            slot / CORES >= TARGET_SLOT_RPS_PER_CORE,
        ),
        (
            f"slot search >= {TARGET_SLOT_RPS_PER_SERVER_CORE:.0f} req per server CPU-second",
            f"{slot_per_cpu:.0f}",
            slot_per_cpu >= TARGET_SLOT_RPS_PER_SERVER_CORE,
        ),
        (
            f"slot search >= {TARGET_SLOT_SHARE_OF_CEILING:.0%} of /healthz ceiling",
            f"{share:.1%} ({slot:.0f} of {ceiling:.0f} req/s)",
            share >= TARGET_SLOT_SHARE_OF_CEILING,
        ),
        (
            f"mix p99 <= {TARGET_MIX_TAIL_RATIO:.0f} x p50",
            f"{tail:.1f}x ({mix['p99_ms']:.1f} / {mix['p50_ms']:.1f} ms)",
            tail <= TARGET_MIX_TAIL_RATIO,
        ),
        (
            "no errors except booking 409s",
            ", ".join(f"{p}: {n}" for p, n in errors.items()) + f"; transport: {transport}",
            sum(errors.values()) == 0 and transport == 0,
        ),
        (
            f"worker memory flat (end within {FLAT_MEMORY_TOLERANCE:.0%} of warm value)",
            "yes" if flat else "no",
            flat,
        ),
    ]
    print(f"{'target':<52}{'measured':<44}result")
    for label, measured, ok in checks:
        print(f"{label:<52}{measured:<44}{'PASS' if ok else 'FAIL'}")
    print()

    print(f"Worker RSS during the mix (MiB, sampled every {MEMORY_SAMPLE_SECONDS:.0f} s):")
    print(f"{'pid':>8}{'start':>9}{'warm':>9}{'end':>9}{'max':>9}{'samples':>9}  flat")
    for series in memory.values():
        print(
            f"{series.pid:>8}{series.start:>9.1f}{series.warm:>9.1f}{series.end:>9.1f}"
            f"{series.peak:>9.1f}"
            f"{len(series.samples):>9}  {'yes' if series.flat else 'NO'}"
        )
    print()

    print("EXPLAIN of the main search queries (PostgreSQL):")
    for row in explains:
        extra = f"; with seqscan off: {row['with_seqscan_off']}" if row["with_seqscan_off"] else ""
        print(f"  {row['query']:<36} index: {row['index']:<40} top: {row['plan']}{extra}")
    print()
    return all(ok for _, _, ok in checks)


# --- The stored-slot clinic (issue 19) ---------------------------------------------------


def build_stored_plan(plan: dict[str, Any], workdir: Path) -> tuple[Path, dict[str, int]]:
    """Load the stored-slot clinic (its own organisation) and write its plan file: the
    main plan with the clinic's organisation, token and schedules."""
    import load_data

    stored = load_data.build_stored(sizes=load_data.StoredSizes())
    stored_plan = plan | {
        "organization": stored.organization,
        "token": stored.token,
        "schedules": stored.schedules,
    }
    path = workdir / "stored-plan.json"
    path.write_text(json.dumps(stored_plan))
    return path, stored.counts


def run_stored_phases(plan_path: Path, options: Options, master: int) -> dict[str, dict[str, Any]]:
    """A week of free stored slots (``_count=20``) and one schedule's day, one phase each,
    each with the server CPU it cost."""
    return {
        phase: run_measured_phase(plan_path, phase, options.stored_seconds, options, master)
        for phase in STORED_PHASES
    }


def per_cpu_second(result: dict[str, Any]) -> float:
    """Requests per CPU-second of the server (gunicorn workers and their PostgreSQL
    backends): issue 19's "requests per second per core", which leaves out the load client
    that shares this machine's cores. 0 when the phase was not measured."""
    cpu = result.get("server_cpu_seconds") or 0.0
    return result["all"]["count"] / cpu if cpu else 0.0


def print_stored_report(results: dict[str, dict[str, Any]], counts: dict[str, int]) -> bool:
    """The stored phases against their target; True when every one meets it."""
    print("Stored-slot clinic: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    ok = True
    for phase, result in results.items():
        s = result["all"]
        per_core = s["rps"] / CORES
        per_cpu = per_cpu_second(result)
        errors = error_count(result) + sum(result["transport_errors"].values())
        met = per_cpu >= TARGET_STORED_RPS_PER_CORE and errors == 0
        ok = ok and met
        statuses = " ".join(f"{k}:{v}" for k, v in s["statuses"].items())
        print(
            f"  {phase:<14}{s['rps']:>8.0f} req/s {per_core:>6.0f}/core {per_cpu:>6.0f}/CPU-s"
            f"  p50 {s['p50_ms']:.1f} p95 {s['p95_ms']:.1f} p99 {s['p99_ms']:.1f} ms  {statuses}"
            f"  >= {TARGET_STORED_RPS_PER_CORE:.0f}/CPU-s: {'PASS' if met else 'FAIL'}"
        )
    print()
    return ok


# --- Main --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about one minute in total")
    parser.add_argument("--database-name", default="medikit_load")
    parser.add_argument("--ceiling-seconds", type=float)
    parser.add_argument("--slot-seconds", type=float)
    parser.add_argument("--mix-seconds", type=float)
    parser.add_argument("--read-seconds", type=float, help="each read-by-id phase")
    parser.add_argument(
        "--reads-only",
        action="store_true",
        help="only /healthz and the reads by id (and metadata); no Slot search, no mix",
    )
    parser.add_argument("--warmup-seconds", type=float)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2 * CORES)
    parser.add_argument("--threads", type=int, default=2)  # gunicorn.conf.py's default
    parser.add_argument(
        "--max-requests", type=int, default=0, help="gunicorn recycling; 0 (off) by default"
    )
    parser.add_argument(
        "--stored-seconds",
        type=float,
        help="each stored-slot clinic phase (issue 19); 0 skips them",
    )
    parser.add_argument(
        "--stored-only", action="store_true", help="only the stored-slot clinic's phases"
    )
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    quick = args.quick
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/medikit")
    if not url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("bench/load.py needs PostgreSQL: set DATABASE_URL=postgres://...")
    options = Options(
        database_url=url,
        database_name=args.database_name,
        ceiling_seconds=args.ceiling_seconds or (10 if quick else 30),
        slot_seconds=args.slot_seconds or (10 if quick else 45),
        mix_seconds=args.mix_seconds or (30 if quick else 300),
        read_seconds=args.read_seconds or (5 if quick else 20),
        reads_only=args.reads_only,
        warmup_seconds=args.warmup_seconds
        if args.warmup_seconds is not None
        else (2 if quick else 5),
        concurrency=args.concurrency,
        workers=args.workers,
        threads=args.threads,
        max_requests=args.max_requests,
        keep_database=args.keep_database,
        json_path=args.json,
        check=args.check,
        stored_seconds=args.stored_seconds
        if args.stored_seconds is not None
        else (10 if quick else 30),
        stored_only=args.stored_only,
    )
    return options


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    # SIGTERM (e.g. from CI) takes the same clean-up path as Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    url = with_database(options.database_url, options.database_name)
    secret_key = secrets.token_urlsafe(50)
    server: subprocess.Popen[bytes] | None = None
    workdir = Path(tempfile.mkdtemp(prefix="medikit-load-"))
    log_path = workdir / "gunicorn.log"
    ok = False
    try:
        t0 = time.monotonic()
        print(f"Database {options.database_name}: recreate, migrate, load ...", flush=True)
        recreate_database(options.database_url, options.database_name)
        setup_django(url, secret_key)
        import load_data
        from django.core.management import call_command
        from django.db import connection, connections

        call_command("migrate", verbosity=0, interactive=False)
        dataset = load_data.build(
            sizes=load_data.Sizes()
            if not options.stored_only
            else load_data.Sizes(practitioners=1, schedules=0, patients=1, appointments=0)
        )
        reads = load_data.read_targets(dataset.organization)
        stored_path: Path | None = None
        stored_counts: dict[str, int] = {}
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        plan = asdict(dataset) | {
            "base_url": base_url,
            "today": datetime.now(UTC).date().isoformat(),
            "reads": reads,
        }
        if (options.stored_seconds > 0 and not options.reads_only) or options.stored_only:
            stored_path, stored_counts = build_stored_plan(plan, workdir)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")  # fresh statistics, as autovacuum would provide
        explains = explain_searches(plan) if not options.stored_only else []
        connections.close_all()
        print(f"  done in {time.monotonic() - t0:.0f} s: {dataset.counts}", flush=True)
        plan_path = workdir / "plan.json"
        plan_path.write_text(json.dumps(plan))

        print(f"Server: scripts/serve.sh on {base_url} (log: {log_path}) ...", flush=True)
        with log_path.open("wb") as log:
            server = start_server(options, url, secret_key, port, log)
            wait_until_ready(base_url, server, 120)
            master = server.pid

            results: dict[str, dict[str, Any]] = {}
            stored_results: dict[str, dict[str, Any]] = {}
            memory: dict[int, MemorySeries] = {}
            print("Load:", flush=True)
            if not options.stored_only:
                results["healthz"] = run_measured_phase(
                    plan_path, "healthz", options.ceiling_seconds, options, master
                )
                if not options.reads_only:
                    results["slot"] = run_measured_phase(
                        plan_path, "slot", options.slot_seconds, options, master
                    )
                results.update(run_read_phases(plan_path, options, master))
            if stored_path is not None:
                stored_results = run_stored_phases(stored_path, options, master)
            if not options.stored_only and not options.reads_only:
                results["mix"] = run_phase(
                    plan_path, "mix", options.mix_seconds, options, master=master, memory=memory
                )
        ok = True
        if results and not options.reads_only:
            ok = print_report(results, memory, explains, dataset.counts, options)
        if results:
            ok = print_read_report(results) and ok
        if stored_results:
            ok = print_stored_report(stored_results, stored_counts) and ok
        if options.json_path:
            options.json_path.write_text(
                json.dumps(
                    {
                        "cores": CORES,
                        "options": {k: str(v) for k, v in asdict(options).items()},
                        "results": results,
                        "stored_results": stored_results,
                        "memory": {str(s.pid): s.samples for s in memory.values()},
                        "explain": explains,
                        "dataset": dataset.counts,
                    },
                    indent=2,
                )
            )
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up", file=sys.stderr)
        return 130
    finally:
        if server is not None:
            stop_server(server)
            if server.returncode not in (0, -signal.SIGTERM) and log_path.exists():
                print(log_path.read_text(errors="replace")[-3000:], file=sys.stderr)
        if not options.keep_database:
            with contextlib.suppress(Exception):
                from django.db import connections

                connections.close_all()
            recreate_database(options.database_url, options.database_name, drop_only=True)
    if options.check and not ok:
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
