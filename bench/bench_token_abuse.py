"""Does a token-endpoint brute force slow everyone else down? (issue #18)

Run:  DATABASE_URL=postgres://postgres@127.0.0.1:5432/medikit .venv/bin/python \
      bench/bench_token_abuse.py [--searches 400] [--attackers 20] [--no-limits]

Creates a throwaway database next to DATABASE_URL's (``<name>_token_abuse``), migrates it,
loads one organisation with a recurring schedule and an API client, and starts gunicorn
(gunicorn.conf.py) on a free port. Then it measures the p99 of a Slot search (one
client, sequential requests over a keep-alive connection):

1. idle;
2. while ``--attackers`` threads (in a process of their own) send anonymous token
   requests with random client ids
   and secrets as fast as the server answers them.

Target: p99 under attack within 2x of idle. ``--no-limits`` raises the brute-force limits
out of reach, to measure the secret check alone (HMAC instead of PBKDF2). The database is
dropped at the end.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def bench_database(url: str) -> tuple[str, str]:
    parts = urlparse(url)
    name = f"{parts.path.lstrip('/') or 'medikit'}_token_abuse"
    admin = urlunparse(parts._replace(path="/postgres"))
    return urlunparse(parts._replace(path=f"/{name}")), admin


def psql(admin_url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql)


LOAD = """
import django
django.setup()
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo
from fhir_api.models import ApiClient, ApiClientOrganization
from fhir_api.tokens import issue_access_token
from tests.factories import OrganizationFactory, ScheduleFactory
org = OrganizationFactory(id="bench", name="Bench")
now = datetime.now(ZoneInfo("Europe/Amsterdam"))
start = now.replace(hour=8, minute=0, second=0, microsecond=0)
for n in range(5):
    ScheduleFactory(organization=org, fhir_id=f"s{n}", rrule="FREQ=DAILY",
                    planning_start=start, planning_end=start + timedelta(hours=8))
client = ApiClient.objects.create(name="bench", client_id="bench-client",
                                  scopes="system/Slot.rs system/Schedule.rs")
ApiClientOrganization.objects.create(organization=org, client=client)
raw, _ = issue_access_token(client=client, lifetime=3600)
print(raw)
"""


def measure(session: requests.Session, url: str, token: str, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        response = session.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        samples.append(time.perf_counter() - started)
        assert response.status_code == 200, response.content[:300]
    return samples


def attack(root: str, flood: str, attackers: int, stop, results) -> None:
    """Run in a separate process: ``attackers`` threads flooding the server until ``stop``."""
    answers: Counter[int] = Counter()
    lock = threading.Lock()

    def one() -> None:
        session = requests.Session()
        while not stop.is_set():
            form = {
                "grant_type": "client_credentials",
                "client_id": secrets.token_hex(8),
                "client_secret": secrets.token_urlsafe(32),
            }
            try:
                if flood == "healthz":
                    status = session.get(f"{root}/healthz", timeout=30).status_code
                else:
                    status = session.post(f"{root}/oauth/token", data=form, timeout=30).status_code
            except requests.RequestException:
                status = -1
            with lock:
                answers[status] += 1

    threads = [threading.Thread(target=one, daemon=True) for _ in range(attackers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(answers)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--searches", type=int, default=400)
    parser.add_argument("--attackers", type=int, default=20)
    parser.add_argument("--no-limits", action="store_true")
    parser.add_argument(
        "--flood",
        choices=["token", "healthz"],
        default="token",
        help="what the attackers send: anonymous token requests, or GET /healthz (the "
        "cheapest request there is: what any flood of that many connections costs)",
    )
    args = parser.parse_args()

    base_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/medikit")
    db_url, admin_url = bench_database(base_url)
    name = urlparse(db_url).path.lstrip("/")
    psql(admin_url, f'DROP DATABASE IF EXISTS "{name}"')
    psql(admin_url, f'CREATE DATABASE "{name}"')
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only"),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "0",
        "STATIC_MANIFEST": "0",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "medikit.settings",
    }
    if args.no_limits:
        env.update(
            OAUTH_CLIENT_FAILURE_LIMIT="1000000000",
            OAUTH_ADDRESS_FAILURE_LIMIT="1000000000",
            OAUTH_CLIENT_ID_FAILURE_LIMIT="1000000000",
        )
    server = None
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
            cwd=ROOT,
            env=env,
            check=True,
        )
        token = (
            subprocess.run(
                [sys.executable, "-c", LOAD],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "medikit.wsgi"],
            cwd=ROOT,
            env={**env, "PORT": str(port), "GUNICORN_MAX_REQUESTS": "0"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        root = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if requests.get(f"{root}/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        search = f"{root}/v2/bench/fhir/R4/Slot?_count=50"
        session = requests.Session()
        measure(session, search, token, 50)  # warm every worker's caches
        idle = measure(session, search, token, args.searches)

        # The attackers run in a process of their own: as threads of this process they
        # would hold this process's GIL and the measured search would wait for it here,
        # in the client, which says nothing about the server.
        context = multiprocessing.get_context("spawn")
        stop = context.Event()
        results = context.Queue()
        attacker = context.Process(
            target=attack, args=(root, args.flood, args.attackers, stop, results), daemon=True
        )
        attacker.start()
        time.sleep(2.0)  # let the attack reach full speed
        attack_started = time.perf_counter()
        busy = measure(session, search, token, args.searches)
        attack_seconds = time.perf_counter() - attack_started
        stop.set()
        answers: Counter[int] = results.get(timeout=60)
        attacker.join(timeout=30)

        idle_p99, busy_p99 = p99(idle), p99(busy)
        print(
            f"flood: {args.flood}; limits: {'raised out of reach' if args.no_limits else 'default'}"
        )
        print(
            f"Slot search idle:         p50 {statistics.median(idle) * 1000:6.1f} ms, "
            f"p99 {idle_p99 * 1000:6.1f} ms ({len(idle)} requests)"
        )
        print(
            f"Slot search under attack: p50 {statistics.median(busy) * 1000:6.1f} ms, "
            f"p99 {busy_p99 * 1000:6.1f} ms ({len(busy)} requests)"
        )
        total = sum(answers.values())
        print(
            f"token requests by {args.attackers} attackers: {total} "
            f"({total / max(attack_seconds, 1e-9):.0f}/s) {dict(sorted(answers.items()))}"
        )
        ratio = busy_p99 / idle_p99
        verdict = "PASS" if ratio <= 2 else "FAIL"
        print(f"p99 under attack / idle: {ratio:.2f} (target <= 2.0): {verdict}")
        return 0
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        psql(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    raise SystemExit(main())
