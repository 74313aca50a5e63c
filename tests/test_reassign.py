"""Bookings follow their person when a role or schedule is given to another practitioner.

An appointment's occupant key is derived from its schedule or role. Before the re-key,
giving a role to another practitioner left its bookings on the old person's key, so the
new person could be booked a second time at those very hours.
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from scheduling.errors import SlotTaken
from scheduling.models import Appointment, AuditEvent, Organization, StaffMembership
from scheduling.services import appointment_book
from scheduling.services.reassign import occupants_rekey
from tests.factories import (
    PatientFactory,
    PractitionerFactory,
    PractitionerRoleFactory,
    ScheduleFactory,
)

pytestmark = pytest.mark.django_db


def _book(org: Organization, schedule: Any, start: datetime, patient: Any = None) -> Appointment:
    return appointment_book(
        organization=org,
        patient=patient or PatientFactory(organization=org),
        schedule_id=schedule.fhir_id,
        start=start,
        practitioner_role_id=schedule.practitioner_role.fhir_id,
        status="booked",
        comment="",
        actor="test",
    ).appointment


@pytest.fixture
def clinic(org: Organization) -> dict[str, Any]:
    """Dr A's role with a schedule (no practitioner of its own: it is the role's), and Dr B
    with a schedule of her own, both booked at the first slot."""
    role_a = PractitionerRoleFactory(organization=org)
    schedule_a = ScheduleFactory(organization=org, practitioner_role=role_a, practitioner=None)
    schedule_b = ScheduleFactory(organization=org)
    start = schedule_a.planning_start
    return {
        "role_a": role_a,
        "schedule_a": schedule_a,
        "schedule_b": schedule_b,
        "dr_b": schedule_b.practitioner,
        "booked_a": _book(org, schedule_a, start),
        "booked_b": _book(org, schedule_b, start + timedelta(minutes=15)),
        "start": start,
    }


def test_bookings_take_the_new_practitioners_time_and_are_audited(
    org: Organization, clinic: dict[str, Any]
) -> None:
    dr_c = PractitionerFactory(organization=org)
    role = clinic["role_a"]
    role.practitioner = dr_c
    role.save()
    moved = occupants_rekey(organization=org, roles=[role], actor="staff:test")
    assert [a.pk for a in moved] == [clinic["booked_a"].pk]
    booked = Appointment.objects.get(pk=clinic["booked_a"].pk)
    assert booked.occupant == f"practitioner:{dr_c.pk}"
    event = AuditEvent.objects.filter(appointment=booked, actor="staff:test").get()
    assert event.detail["occupant"]["to"] == f"practitioner:{dr_c.pk}"
    # The point of it: Dr C is now busy at that hour on any of her schedules.
    own = ScheduleFactory(organization=org, practitioner=dr_c)
    with pytest.raises(SlotTaken):
        _book(org, own, clinic["start"])
    # Nothing to do the second time.
    assert occupants_rekey(organization=org, roles=[role], actor="staff:test") == []


def test_a_role_is_not_given_to_a_practitioner_busy_at_its_bookings(
    org: Organization, clinic: dict[str, Any]
) -> None:
    # Dr B is booked 15 minutes later; make her busy at Dr A's booking too.
    _book(org, clinic["schedule_b"], clinic["start"])
    role = clinic["role_a"]
    role.practitioner = clinic["dr_b"]
    role.save()
    with pytest.raises(SlotTaken) as refused:
        occupants_rekey(organization=org, roles=[role], actor="staff:test")
    assert clinic["booked_a"].fhir_id in refused.value.message
    stored = Appointment.objects.get(pk=clinic["booked_a"].pk)
    assert stored.occupant != f"practitioner:{clinic['dr_b'].pk}"
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.UPDATED).exists()


def test_a_schedule_given_to_another_practitioner_moves_its_bookings(
    org: Organization, clinic: dict[str, Any]
) -> None:
    dr_c = PractitionerFactory(organization=org)
    schedule = clinic["schedule_a"]
    schedule.practitioner = dr_c
    schedule.save()
    occupants_rekey(organization=org, schedules=[schedule], actor="staff:test")
    assert Appointment.objects.get(pk=clinic["booked_a"].pk).occupant == (f"practitioner:{dr_c.pk}")


def _staff_client(org: Organization) -> Client:
    user = User.objects.create_user("desk", password="pw-for-tests-123", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="scheduling"))
    StaffMembership.objects.create(organization=org, user=user)
    client = Client()
    client.force_login(user)
    return client


def _role_post(role: Any, practitioner: Any) -> dict[str, Any]:
    return {
        "organization": role.organization_id,
        "fhir_id": role.fhir_id,
        "practitioner": practitioner.pk,
        "code": "[]",
        "specialty": "[]",
        "active": "on",
    }


def test_admin_refuses_in_plain_words_and_changes_nothing(
    org: Organization, clinic: dict[str, Any]
) -> None:
    _book(org, clinic["schedule_b"], clinic["start"])
    role = clinic["role_a"]
    old = role.practitioner_id
    client = _staff_client(org)
    url = reverse("admin:scheduling_practitionerrole_change", args=[role.pk])
    response = client.post(url, _role_post(role, clinic["dr_b"]))
    assert response.status_code == 200  # the form again, with the error
    page = response.content.decode()
    assert "double-book the new practitioner" in page
    assert clinic["booked_a"].fhir_id in page
    assert "excl_" not in page  # never a constraint's name
    role.refresh_from_db()
    assert role.practitioner_id == old


def test_admin_hands_a_role_over_and_its_bookings_follow(
    org: Organization, clinic: dict[str, Any]
) -> None:
    dr_c = PractitionerFactory(organization=org)
    role = clinic["role_a"]
    client = _staff_client(org)
    url = reverse("admin:scheduling_practitionerrole_change", args=[role.pk])
    response = client.post(url, _role_post(role, dr_c), follow=True)
    assert response.status_code == 200
    infos = [str(m) for m in response.context["messages"]]
    assert any("1 booking now takes the new practitioner's time" in m for m in infos), infos
    assert Appointment.objects.get(pk=clinic["booked_a"].pk).occupant == (f"practitioner:{dr_c.pk}")
    event = AuditEvent.objects.get(appointment=clinic["booked_a"], action="updated")
    assert event.actor == "staff:desk"


def _import_role(org: Organization, tmp_path: Any, role: Any, practitioner: Any) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "resource": {
                    "resourceType": "PractitionerRole",
                    "id": role.fhir_id,
                    "active": True,
                    "practitioner": {"reference": f"Practitioner/{practitioner.fhir_id}"},
                }
            }
        ],
    }
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    call_command("import_fhir", str(path), organization=org.id, stdout=io.StringIO())


def test_import_hands_a_role_over_or_refuses_naming_the_entry(
    org: Organization, clinic: dict[str, Any], tmp_path: Any
) -> None:
    role = clinic["role_a"]
    _book(org, clinic["schedule_b"], clinic["start"])
    with pytest.raises(CommandError) as refused:
        _import_role(org, tmp_path, role, clinic["dr_b"])
    assert f"PractitionerRole/{role.fhir_id}" in str(refused.value)
    assert "double-book the new practitioner" in str(refused.value)
    role.refresh_from_db()
    assert role.practitioner_id != clinic["dr_b"].pk  # nothing written
    dr_c = PractitionerFactory(organization=org)
    _import_role(org, tmp_path, role, dr_c)
    assert Appointment.objects.get(pk=clinic["booked_a"].pk).occupant == (f"practitioner:{dr_c.pk}")
    assert AuditEvent.objects.filter(appointment=clinic["booked_a"], actor="import_fhir").exists()
