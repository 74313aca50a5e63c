"""Operator commands: create_organization and seed_demo (docs/api.md section 9)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.utils import timezone

from fhir_api.models import ApiClient, ApiClientOrganization
from scheduling import models as m
from scheduling import recurrence

BASE_DIR = Path(__file__).resolve().parent.parent
SEEDED_MODELS = (
    m.Organization,
    m.StaffMembership,
    m.Patient,
    m.Practitioner,
    m.PractitionerRole,
    m.Schedule,
    m.Slot,
    m.Appointment,
    m.AppointmentResponse,
    ApiClient,
    ApiClientOrganization,
    Group,
)


def run(*args: Any, **options: Any) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


def snapshot() -> dict[str, Any]:
    counts = {model.__name__: model.objects.count() for model in SEEDED_MODELS}
    counts["User"] = get_user_model().objects.count()
    counts["updated"] = sorted(
        (type(row).__name__, row.fhir_id, row.updated_at)
        for model in (m.Patient, m.Practitioner, m.PractitionerRole, m.Schedule, m.Appointment)
        for row in model.objects.all()
    )
    user = get_user_model().objects.get(username="staff")
    counts["password"] = user.password
    counts["secret"] = ApiClient.objects.get(client_id="demo-client").secret_hash
    counts["group_permissions"] = sorted(
        Group.objects.get(name="Clinic staff").permissions.values_list("codename", flat=True)
    )
    return counts


# --------------------------------------------------------------------------- create_organization


@pytest.mark.django_db
def test_create_organization_creates_then_updates() -> None:
    output = run("create_organization", "clinic-x", name="Clinic X")
    assert "Created organisation clinic-x" in output
    organization = m.Organization.objects.get(id="clinic-x")
    assert (organization.name, organization.timezone) == ("Clinic X", "Europe/Amsterdam")

    output = run("create_organization", "clinic-x", name="Clinic X2", timezone="Australia/Sydney")
    assert "Updated organisation clinic-x" in output
    organization.refresh_from_db()
    assert (organization.name, organization.timezone) == ("Clinic X2", "Australia/Sydney")
    assert m.Organization.objects.count() == 1


@pytest.mark.parametrize(
    ("org_id", "zone", "message"),
    [
        ("bad id", "Europe/Amsterdam", "'bad id' is not a FHIR id"),
        ("x" * 65, "Europe/Amsterdam", "is not a FHIR id"),
        ("clinic-y", "Mars/Olympus", "'Mars/Olympus' is not an IANA time zone"),
        ("clinic-y", "", "timezone"),
    ],
)
@pytest.mark.django_db
def test_create_organization_refuses_bad_input(org_id: str, zone: str, message: str) -> None:
    with pytest.raises(CommandError) as excinfo:
        run("create_organization", org_id, name="Y", timezone=zone)
    assert message in str(excinfo.value)
    assert not m.Organization.objects.exists()


@pytest.mark.django_db
def test_create_organization_needs_a_name() -> None:
    with pytest.raises(CommandError, match="--name"):
        call_command("create_organization", "clinic-z")


# --------------------------------------------------------------------------- seed_demo


@pytest.mark.django_db
def test_seed_demo_is_idempotent() -> None:
    output = run("seed_demo", "--allow-demo-credentials")
    assert "demo-clinic" in output
    first = snapshot()

    output = run("seed_demo", "--allow-demo-credentials")

    assert "0 rows created" in output
    assert snapshot() == first


@pytest.mark.django_db
def test_seed_demo_content() -> None:
    run("seed_demo", "--allow-demo-credentials")
    demo = m.Organization.objects.get(id="demo-clinic")
    assert (demo.name, demo.timezone) == ("Demo Clinic", "Europe/Amsterdam")
    assert sorted(
        m.Patient.objects.filter(organization=demo).values_list("fhir_id", flat=True)
    ) == [f"patient-{n}" for n in range(1, 6)]
    assert m.Practitioner.objects.filter(organization=demo).count() == 3
    for practitioner in m.Practitioner.objects.filter(organization=demo):
        assert practitioner.roles.count() == 1

    now = timezone.now()
    for schedule in m.Schedule.objects.filter(organization=demo):
        assert schedule.slot_minutes == 15
        assert schedule.service_category and schedule.service_category[0]["code"]
        assert "UNTIL" not in schedule.rrule and "COUNT" not in schedule.rrule
        # The first window is at most a week old: recent enough to be read as the start.
        assert schedule.planning_start <= now + timedelta(days=7)
        assert schedule.planning_start >= now - timedelta(days=8)
        windows = recurrence.expand(
            rrule=schedule.rrule,
            first_start=schedule.planning_start,
            first_end=schedule.planning_end,
            tzid=schedule.rule_timezone(demo),
            window_start=now,
            window_end=now + timedelta(days=7),
        )
        assert windows, f"{schedule.fhir_id} has no availability in the next 7 days"
        local = windows[0].start.astimezone(demo.zone)
        assert local.strftime("%H:%M") in ("09:00", "13:00")

    appointments = m.Appointment.objects.filter(organization=demo)
    assert appointments.count() >= 3
    for appointment in appointments:
        assert now <= appointment.start <= now + timedelta(days=8)
        assert appointment.schedule is not None
        # Booked on a slot boundary of its schedule.
        offset = appointment.start - appointment.schedule.planning_start
        assert offset % timedelta(minutes=15) == timedelta(0)
    recurring = appointments.exclude(rrule="")
    assert recurring.count() == 1
    assert recurring.get().patient.fhir_id == "patient-1"


@pytest.mark.django_db
def test_seed_demo_staff_user_and_group() -> None:
    run("seed_demo", "--allow-demo-credentials")
    user = get_user_model().objects.get(username="staff")
    assert user.is_staff and not user.is_superuser
    assert user.check_password("medikit-demo")
    assert m.StaffMembership.objects.filter(user=user, organization_id="demo-clinic").exists()
    group = Group.objects.get(name="Clinic staff")
    assert user.groups.filter(pk=group.pk).exists()
    codenames = set(group.permissions.values_list("codename", flat=True))
    for model in ("appointment", "schedule", "slot", "patient", "practitioner"):
        for action in ("view", "add", "change", "delete"):
            assert f"{action}_{model}" in codenames
    assert "view_auditevent" in codenames and "view_appointmentresponse" in codenames
    for action in ("add", "change", "delete"):
        assert f"{action}_auditevent" not in codenames
        assert f"{action}_appointmentresponse" not in codenames
    assert user.has_perm("scheduling.change_schedule")
    assert not user.has_perm("scheduling.delete_auditevent")
    assert not user.has_perm("fhir_api.add_apiclient")


@pytest.mark.django_db
def test_seed_demo_api_client() -> None:
    run("seed_demo", "--allow-demo-credentials")
    client = ApiClient.objects.get(client_id="demo-client")
    assert client.check_secret("demo-secret")
    assert not client.check_secret("wrong")
    assert list(client.organizations.values_list("id", flat=True)) == ["demo-clinic"]
    assert client.scope_set == {
        "system/Schedule.rs",
        "system/Slot.rs",
        "system/Appointment.rs",
        "system/Appointment.c",
        "system/AppointmentResponse.c",
    }
    assert client.patient_fhir_id == ""


def test_command_line_import_failure_exits_non_zero_and_changes_nothing(tmp_path: Path) -> None:
    # A real process: the exit status is what scripts and CI see.
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DEBUG": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}",
    }

    def manage(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(BASE_DIR / "manage.py"), *args],
            cwd=BASE_DIR,
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert manage("migrate", "--noinput", "-v0").returncode == 0
    assert manage("create_organization", "clinic-cli", "--name", "CLI").returncode == 0
    bad = json.loads((BASE_DIR / "fixtures" / "demo-bundle.json").read_text())
    bad["entry"][2]["resource"]["practitioner"] = {"reference": "Practitioner/ghost"}

    result = manage("import_fhir", "-", "--organization", "clinic-cli", stdin=json.dumps(bad))

    assert result.returncode != 0
    assert "entry 3 (PractitionerRole/role-gp): practitioner: Practitioner/ghost" in result.stderr
    assert "Traceback" not in result.stderr
    exported = manage("export_fhir", "--organization", "clinic-cli")
    assert exported.returncode == 0
    assert json.loads(exported.stdout)["entry"] == []


@pytest.mark.django_db
def test_seed_demo_refuses_to_run_without_debug(settings: Any) -> None:
    settings.DEBUG = False
    with pytest.raises(CommandError, match="--allow-demo-credentials"):
        call_command("seed_demo", stdout=io.StringIO(), stderr=io.StringIO())
    assert not m.Organization.objects.filter(id="demo-clinic").exists()
    assert not ApiClient.objects.filter(client_id="demo-client").exists()


@pytest.mark.django_db
def test_seed_demo_warns_when_allowed_without_debug(settings: Any) -> None:
    settings.DEBUG = False
    err = io.StringIO()
    call_command("seed_demo", "--allow-demo-credentials", stdout=io.StringIO(), stderr=err)
    assert "WARNING" in err.getvalue() and "publicly known" in err.getvalue()
    assert ApiClient.objects.filter(client_id="demo-client").exists()


@pytest.mark.django_db
def test_seed_demo_runs_quietly_with_debug(settings: Any) -> None:
    settings.DEBUG = True
    err = io.StringIO()
    call_command("seed_demo", stdout=io.StringIO(), stderr=err)
    assert err.getvalue() == ""


def test_scheduling_does_not_import_fhir_api() -> None:
    # fhir_api depends on scheduling, never the reverse (architecture rule).
    offenders = [
        str(path.relative_to(BASE_DIR))
        for path in (BASE_DIR / "scheduling").rglob("*.py")
        if "fhir_api"
        in "".join(
            line
            for line in path.read_text().splitlines()
            if line.lstrip().startswith(("import ", "from "))
        )
    ]
    assert offenders == []
