"""The API documentation ships with the code and its worked journey runs as printed.

docs/api.md section 16 is a set of ```sh blocks, each after a ``<!-- journey: NAME -->``
marker. The ``setup`` blocks are run before each journey, in one bash process per journey,
against a live server holding ``seed_demo``'s data; only the host of ``make run``
(127.0.0.1:8000) is replaced by the live server's. Each journey's printed lines are asserted.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.urls import resolve

from scheduling.management.commands.seed_demo import seed_demo
from scheduling.models import Appointment

ROOT = Path(__file__).resolve().parent.parent
API_DOC = ROOT / "docs" / "api.md"
MAKE_RUN_BASE = "http://127.0.0.1:8000"
_BLOCK = re.compile(r"<!-- journey: ([a-z-]+) -->\n```sh\n(.*?)```", re.S)


def journeys() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, code in _BLOCK.findall(API_DOC.read_text(encoding="utf-8")):
        out.setdefault(name, []).append(code)
    return out


def _database_url() -> str:
    """The test database as a DATABASE_URL, for the manage.py the journey runs."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    host = db.get("HOST") or "127.0.0.1"
    return f"postgres://{db['USER']}@{host}:{db.get('PORT') or 5432}/{db['NAME']}"


def run_journey(name: str, base_url: str) -> subprocess.CompletedProcess[str]:
    blocks = journeys()
    script = "\n".join(["set -eo pipefail", *blocks["setup"], *blocks[name]])
    script = script.replace(MAKE_RUN_BASE, base_url)
    # A user's shell: none of the test settings (SECRET_KEY, DEBUG=0, ...) leak into it;
    # only the database is the test's, where make run's would be the default file.
    test_only = {"SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "STATIC_MANIFEST"}
    env = {k: v for k, v in os.environ.items() if k not in test_only and "COOKIE" not in k}
    env["DATABASE_URL"] = _database_url()
    # ...and the server's client-secret pepper: under make run the shell and the server share
    # one configuration (DEBUG=1), so a client the shell creates can get a token. The test
    # server runs with the test SECRET_KEY, from which the pepper would otherwise differ.
    from django.conf import settings

    env["CLIENT_SECRET_PEPPER"] = settings.CLIENT_SECRET_PEPPER
    return subprocess.run(
        ["bash", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _served(path: str) -> bool:
    """Whether a FHIR path has a route of its own (not the catch-all 404 routes)."""
    return resolve(path).url_name not in ("fhir-unknown-type", "fhir-not-found")


def test_the_journey_has_its_blocks_and_curl_is_there() -> None:
    assert shutil.which("curl"), "the journey test needs curl"
    blocks = journeys()
    assert set(blocks) == {"setup", "book-slot", "hold", "patient-app"}
    text = "\n".join(code for codes in blocks.values() for code in codes)
    # Nothing to hand-edit: no <placeholders> and no ellipses in the commands.
    assert not re.search(r"<[a-z][a-z ]*>", text)
    assert "..." not in text


@pytest.fixture
def demo(transactional_db: Any, live_server: Any) -> str:
    seed_demo()
    return str(live_server.url)


@pytest.mark.django_db(transaction=True)
def test_book_slot_journey_runs_as_printed(demo: str) -> None:
    result = run_journey("book-slot", demo)
    assert result.returncode == 0, result.stderr + result.stdout
    lines = result.stdout.splitlines()
    start, schedule, role = lines[0].split()
    assert start.endswith("+00:00")
    assert schedule == "Schedule/schedule-2-am" and role.startswith("PractitionerRole/")
    appointment_id = lines[1].removeprefix("booked ")
    assert lines[2] == "304"
    assert lines[3] == "AppointmentResponse declined"
    final_id, status, version = lines[4].split()
    assert (final_id, status) == (appointment_id, "cancelled") and int(version) > 1
    appointment = Appointment.objects.get(fhir_id=appointment_id)
    assert appointment.status == "cancelled" and appointment.patient.fhir_id == "patient-1"


@pytest.mark.django_db(transaction=True)
def test_patient_app_journey_runs_as_printed(demo: str) -> None:
    result = run_journey("patient-app", demo)
    assert result.returncode == 0, result.stderr + result.stdout
    lines = result.stdout.splitlines()
    appointment_id, status = lines[1].split()
    assert status == "booked"
    assert Appointment.objects.get(fhir_id=appointment_id).patient.fhir_id == "patient-1"
    assert lines[2] == "404"


@pytest.mark.django_db(transaction=True)
def test_hold_journey_runs_as_printed_once_the_operations_are_served(demo: str) -> None:
    result = run_journey("hold", demo)
    if not _served("/v2/demo-clinic/fhir/R4/Patient/patient-1/Appointment/$hold"):
        # $hold/$confirm/$reschedule/$cancel are written to docs/api.md section 13 ahead of
        # their routes: until those are served, the journey must stop at its first $hold.
        assert result.returncode != 0
        assert "KeyError: 'id'" in result.stderr, result.stderr
        return
    assert result.returncode == 0, result.stderr + result.stdout
    lines = result.stdout.splitlines()
    held_id, status = lines[1].split()
    assert status == "booked"
    assert lines[2].split()[:2] == [held_id, "booked"]
    moved = lines[3].split()
    assert moved[:2] == [held_id, "booked"] and moved[2] != lines[2].split()[2]
    assert lines[4].split()[:2] == [held_id, "cancelled"]
