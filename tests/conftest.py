"""Shared fixtures: tenants, an outsider tenant, and authenticated API clients."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from fhir_api.models import ApiClient, ApiClientOrganization
from fhir_api.tokens import issue_access_token
from scheduling.models import Organization
from tests.factories import OrganizationFactory

ALL_SYSTEM_SCOPES = (
    "system/Schedule.rs system/Slot.rs system/Appointment.rs system/Appointment.c "
    "system/AppointmentResponse.c"
)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    """SQLite tests use a per-process file, not shared-cache memory: live-server threads then
    get their own connections and real SQLite locking (IMMEDIATE transactions, busy timeout),
    as in production; shared-cache memory fails concurrent writers with "table is locked"."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3" and not db.get("TEST", {}).get("NAME"):
        name = os.path.join(tempfile.gettempdir(), f"medikit-test-{os.getpid()}.sqlite3")
        db.setdefault("TEST", {})["NAME"] = name


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """On PostgreSQL, fail the run if another session (a thread's connection, a helper's
    own connection, a server a test started) is still connected to the test database when
    pytest-django is about to drop it: the drop would fail, and pytest-django reports that
    only as a warning, after whichever test happened to run last."""
    yield
    with django_db_blocker.unblock():
        if connection.vendor != "postgresql":
            return
        # A connection closed a moment ago leaves pg_stat_activity once its backend has
        # exited; DROP DATABASE waits 5 seconds for that too.
        deadline = time.monotonic() + 5
        while True:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pid, application_name, backend_start, state, left(query, 200) "
                    "FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                )
                others = cursor.fetchall()
            if not others or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    if others:
        lines = "\n".join(
            f"  pid {pid} {name!r}, connected {started:%H:%M:%S}, {state}: {query}"
            for pid, name, started, state, query in others
        )
        pytest.fail(
            f"{len(others)} other session(s) still connected to the test database, so it "
            f"cannot be dropped; close the connections of threads and helpers:\n{lines}",
            pytrace=False,
        )


@pytest.fixture
def org(db: Any) -> Organization:
    return OrganizationFactory(id="clinic-a", name="Clinic A")


@pytest.fixture
def outsider_org(db: Any) -> Organization:
    return OrganizationFactory(id="clinic-b", name="Clinic B")


@pytest.fixture
def make_api_client(db: Any) -> Callable[..., tuple[ApiClient, str]]:
    """Create an API client bound to organisations (and optionally a patient), with a token."""

    def make(
        *organizations: Organization,
        scopes: str = ALL_SYSTEM_SCOPES,
        patient_id: str = "",
        name: str = "test client",
    ) -> tuple[ApiClient, str]:
        client = ApiClient.objects.create(
            name=name,
            client_id=ApiClient.new_client_id(),
            scopes=scopes,
            patient_fhir_id=patient_id,
        )
        client.set_secret("s3cret-for-tests")
        client.save()
        for organization in organizations:
            ApiClientOrganization.objects.create(organization=organization, client=client)
        raw, _ = issue_access_token(client=client)
        return client, raw

    return make


@pytest.fixture
def api(org: Organization, make_api_client: Callable[..., tuple[ApiClient, str]]) -> APIClient:
    """A DRF test client authenticated as a system client of ``org`` with every scope."""
    _, token = make_api_client(org)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test marked ``nodb`` must not be a database test: CI runs it once, in the SQLite
    pass (its PostgreSQL pass deselects ``nodb``), so it must not depend on the database.
    (Without ``django_db`` pytest-django refuses any database access anyway.)"""
    for item in items:
        if item.get_closest_marker("nodb") and item.get_closest_marker("django_db"):
            raise pytest.UsageError(f"{item.nodeid} is marked both nodb and django_db")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    """In CI (MEDIKIT_FORBID_SKIPS=1) a skipped test is a failed test.

    The one allowed skip: a PostgreSQL-only test during the SQLite run; the PostgreSQL
    run of .ci/run then executes it.
    """
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or os.environ.get("MEDIKIT_FORBID_SKIPS") != "1":
        return
    if item.get_closest_marker("postgres") is not None and connection.vendor != "postgresql":
        return
    report.outcome = "failed"
    report.longrepr = f"skipped in CI, which is not allowed: {report.longrepr}"


@pytest.fixture(autouse=True)
def _forget_token_blocks() -> None:
    """The token endpoint remembers blocked keys per process (fhir_api.throttle); a test's
    database is rolled back, so its blocks must go with it."""
    from fhir_api import throttle

    throttle._BLOCKED.clear()
