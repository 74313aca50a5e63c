"""_include and _summary=count (docs/api.md section 15): raw HTTP, fhirpy and fhirclient."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.patient import Patient as R4BPatient
from fhir.resources.R4B.practitioner import Practitioner as R4BPractitioner
from fhir.resources.R4B.practitionerrole import PractitionerRole as R4BPractitionerRole
from fhir.resources.R4B.schedule import Schedule as R4BSchedule
from fhirclient.models.bundle import Bundle as FCBundle
from fhirclient.models.fhirsearch import FHIRSearch
from fhirclient.models.slot import Slot as FCSlot
from fhirpy import SyncFHIRClient
from rest_framework.test import APIClient

from scheduling.models import Schedule
from tests.api_helpers import assert_bundle, assert_outcome, url
from tests.factories import (
    AppointmentFactory,
    PatientFactory,
    PractitionerRoleFactory,
    ScheduleFactory,
)

AMS = ZoneInfo("Europe/Amsterdam")
R4B = {
    "Schedule": R4BSchedule,
    "PractitionerRole": R4BPractitionerRole,
    "Practitioner": R4BPractitioner,
    "Patient": R4BPatient,
}
WEEK = "start=ge2030-06-03&start=lt2030-06-10"


@pytest.fixture
def clinic(org: Any, outsider_org: Any) -> dict[str, Any]:
    """Two schedules of two roles in June 2030, and a foreign tenant's role."""
    gp = ScheduleFactory(
        organization=org,
        fhir_id="gp",
        planning_start=datetime(2030, 6, 3, 9, tzinfo=AMS),
        planning_end=datetime(2030, 6, 3, 10, tzinfo=AMS),
    )
    nurse = ScheduleFactory(
        organization=org,
        fhir_id="nurse",
        planning_start=datetime(2030, 6, 3, 9, tzinfo=AMS),
        planning_end=datetime(2030, 6, 3, 9, 30, tzinfo=AMS),
    )
    foreign_role = PractitionerRoleFactory(organization=outsider_org, fhir_id="foreign-role")
    return {"gp": gp, "nurse": nurse, "foreign_role": foreign_role}


def _split(bundle: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    entries = bundle.get("entry", [])
    matches = [e["resource"] for e in entries if e["search"]["mode"] == "match"]
    included = [e["resource"] for e in entries if e["search"]["mode"] == "include"]
    for resource in included:
        R4B[resource["resourceType"]].model_validate(resource)
    keys = [(r["resourceType"], r["id"]) for r in included]
    assert len(keys) == len(set(keys)), "an included resource appears more than once"
    return matches, included


def _keys(resources: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(r["resourceType"], r["id"]) for r in resources}


@pytest.mark.django_db
def test_slot_schedule_include_once_each_and_not_counted(
    api: APIClient, clinic: dict[str, Any]
) -> None:
    plain = assert_bundle(api.get(url(f"Slot?{WEEK}")))
    data = assert_bundle(api.get(url(f"Slot?{WEEK}&_include=Slot:schedule")), includes=True)
    matches, included = _split(data)
    assert data["total"] == plain["total"] == 6  # 4 gp + 2 nurse slots; includes not counted
    assert len(matches) == 6
    assert _keys(included) == {("Schedule", "gp"), ("Schedule", "nurse")}
    # The included schedule is the stored one, as a read returns it.
    read = api.get(url("Schedule/gp")).json()
    assert next(r for r in included if r["id"] == "gp") == read


@pytest.mark.django_db
def test_includes_follow_the_page_only(api: APIClient, clinic: dict[str, Any]) -> None:
    # The first two slots (09:00 of both schedules) are on page one; 09:15 gp is on page 2.
    first = assert_bundle(
        api.get(url(f"Slot?{WEEK}&_include=Slot:schedule&_count=1")), includes=True
    )
    matches, included = _split(first)
    assert len(matches) == 1
    schedule_id = matches[0]["schedule"]["reference"].split("/")[1]
    assert _keys(included) == {("Schedule", schedule_id)}


@pytest.mark.django_db
def test_iterate_schedule_actor_reaches_roles_and_practitioners(
    api: APIClient, clinic: dict[str, Any]
) -> None:
    data = assert_bundle(
        api.get(url(f"Slot?{WEEK}&_include=Slot:schedule&_include:iterate=Schedule:actor")),
        includes=True,
    )
    _, included = _split(data)
    gp, nurse = clinic["gp"], clinic["nurse"]
    assert _keys(included) == {
        ("Schedule", "gp"),
        ("Schedule", "nurse"),
        ("PractitionerRole", gp.practitioner_role.fhir_id),
        ("PractitionerRole", nurse.practitioner_role.fhir_id),
        ("Practitioner", gp.practitioner.fhir_id),
        ("Practitioner", nurse.practitioner.fhir_id),
    }
    # A target type narrows the iteration to that type.
    narrowed = assert_bundle(
        api.get(
            url(
                f"Slot?{WEEK}&_include=Slot:schedule"
                "&_include:iterate=Schedule:actor:PractitionerRole"
            )
        ),
        includes=True,
    )
    assert {t for t, _ in _keys(_split(narrowed)[1])} == {"Schedule", "PractitionerRole"}


@pytest.mark.django_db
def test_schedule_actor_include(api: APIClient, clinic: dict[str, Any]) -> None:
    data = assert_bundle(api.get(url("Schedule?_id=gp&_include=Schedule:actor")), includes=True)
    matches, included = _split(data)
    assert [r["id"] for r in matches] == ["gp"] and data["total"] == 1
    gp = clinic["gp"]
    assert _keys(included) == {
        ("PractitionerRole", gp.practitioner_role.fhir_id),
        ("Practitioner", gp.practitioner.fhir_id),
    }
    # Every actor reference of the matches resolves to an included resource.
    refs = {a["reference"] for a in matches[0]["actor"]}
    assert refs == {f"{t}/{i}" for t, i in _keys(included)}


@pytest.mark.django_db
def test_appointment_actor_include(
    api: APIClient, org: Any, clinic: dict[str, Any], outsider_org: Any
) -> None:
    patient = PatientFactory(organization=org, fhir_id="pat-inc")
    gp = clinic["gp"]
    for minute in (0, 15):
        AppointmentFactory(
            organization=org,
            patient=patient,
            schedule=gp,
            practitioner_role=gp.practitioner_role,
            start=datetime(2030, 6, 3, 9, minute, tzinfo=AMS),
        )
    data = assert_bundle(
        api.get(url("Patient/pat-inc/Appointment?date=2030-06-03&_include=Appointment:actor")),
        includes=True,
    )
    matches, included = _split(data)
    assert len(matches) == data["total"] == 2
    assert _keys(included) == {
        ("Patient", "pat-inc"),
        ("PractitionerRole", gp.practitioner_role.fhir_id),
    }


@pytest.mark.django_db
def test_a_foreign_tenants_resource_is_never_included(
    api: APIClient, clinic: dict[str, Any]
) -> None:
    # A row pointing into another tenant (the form refuses this; raw SQL would not).
    Schedule.objects.filter(pk=clinic["gp"].pk).update(practitioner_role=clinic["foreign_role"])
    data = assert_bundle(
        api.get(url(f"Slot?{WEEK}&_include=Slot:schedule&_include:iterate=Schedule:actor")),
        includes=True,
    )
    _, included = _split(data)
    assert ("PractitionerRole", "foreign-role") not in _keys(included)
    schedule_data = assert_bundle(api.get(url("Schedule?_include=Schedule:actor")), includes=True)
    assert ("PractitionerRole", "foreign-role") not in _keys(_split(schedule_data)[1])


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("Slot?_include=Slot:practitioner", "_include"),
        ("Slot?_include=Schedule:actor", "_include"),
        ("Slot?_include:iterate=Schedule:actor", "_include:iterate"),  # without Slot:schedule
        ("Slot?_include=Slot:schedule:Patient", "_include"),
        ("Slot?_include=*", "_include"),
        ("Schedule?_include=Slot:schedule", "_include"),
        ("Schedule?_include:iterate=Schedule:actor", "_include:iterate"),
        ("Patient/p-x/Appointment?_id=a&_include=Appointment:slot", "_include"),
        ("Slot?_summary=true", "_summary"),
    ],
)
def test_unlisted_include_or_summary_is_400_and_ignored_when_lenient(
    api: APIClient, org: Any, path: str, name: str
) -> None:
    PatientFactory(organization=org, fhir_id="p-x")
    outcome = assert_outcome(api.get(url(path)), 400)
    assert outcome["issue"][0]["expression"] == [name]
    lenient = api.get(url(path), HTTP_PREFER="handling=lenient")
    data = assert_bundle(lenient)
    assert all(e["search"]["mode"] == "match" for e in data.get("entry", []))


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        f"Slot?{WEEK}",
        f"Slot?{WEEK}&status=free",
        "Schedule",
        "Schedule?date=2030-06-03",
        "Patient/pat-sum/Appointment?date=2030-06-03",
    ],
)
def test_summary_count_is_the_total_without_entries(
    api: APIClient, org: Any, clinic: dict[str, Any], path: str
) -> None:
    patient = PatientFactory(organization=org, fhir_id="pat-sum")
    AppointmentFactory(
        organization=org, patient=patient, start=datetime(2030, 6, 3, 11, tzinfo=AMS)
    )
    full = assert_bundle(api.get(url(path)))
    sep = "&" if "?" in path else "?"
    count = assert_bundle(api.get(url(f"{path}{sep}_summary=count")))
    assert count["total"] == full["total"] > 0
    assert "entry" not in count
    Bundle.model_validate(count)


# ------------------------------------------------------------------ real clients, live server


@pytest.fixture
def live(
    live_server: Any, org: Any, clinic: dict[str, Any], make_api_client: Callable[..., Any]
) -> tuple[str, str]:
    _, token = make_api_client(org)
    return f"{live_server.url}/v2/clinic-a/fhir/R4", token


@pytest.mark.django_db(transaction=True)
def test_fhirpy_include_iterate_and_summary(live: tuple[str, str]) -> None:
    base, token = live
    client = SyncFHIRClient(base, authorization=f"Bearer {token}")
    search = (
        client.resources("Slot")
        .search(start=["ge2030-06-03", "lt2030-06-10"])
        .include("Slot", "schedule")
        .include("Schedule", "actor", iterate=True)
    )
    bundle = search.fetch_raw()
    entries = bundle["entry"]
    modes = [e["search"]["mode"] for e in entries]
    assert modes.count("match") == bundle["total"] == 6
    included = [e["resource"] for e in entries if e["search"]["mode"] == "include"]
    assert {r["resourceType"] for r in included} == {"Schedule", "PractitionerRole", "Practitioner"}
    # fetch() keeps the matches only: fhirpy tells them apart by search.mode.
    assert {r["resourceType"] for r in search.fetch()} == {"Slot"}
    count = client.resources("Slot").search(start="ge2030-06-03", _summary="count").fetch_raw()
    assert count["total"] == 6 and not count.get("entry")


@pytest.mark.django_db(transaction=True)
def test_fhirclient_include_query_and_bundle(live: tuple[str, str]) -> None:
    base, token = live
    query = FHIRSearch(FCSlot, {"start": "ge2030-06-03"}).include("schedule").construct()
    assert "_include=Slot:schedule" in query
    raw = requests.get(
        f"{base}/{query}", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()
    bundle = FCBundle(raw)
    included = [e.resource for e in bundle.entry if e.search.mode == "include"]
    assert sorted(r.id for r in included) == ["gp", "nurse"]
    assert all(r.resource_type == "Schedule" for r in included)


@pytest.mark.django_db
def test_summary_count_leaves_out_includes_too(api: APIClient, clinic: dict[str, Any]) -> None:
    data = assert_bundle(api.get(url(f"Slot?{WEEK}&_include=Slot:schedule&_summary=count")))
    assert data["total"] == 6 and "entry" not in data


@pytest.mark.django_db
def test_capability_statement_lists_exactly_the_includes_summary_and_versioning(
    api: APIClient, clinic: dict[str, Any]
) -> None:
    from fhir.resources.R4B.capabilitystatement import CapabilityStatement

    statement = api.get(url("metadata")).json()
    CapabilityStatement.model_validate(statement)
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert resources["Slot"]["searchInclude"] == ["Slot:schedule", "Schedule:actor"]
    assert resources["Schedule"]["searchInclude"] == ["Schedule:actor"]
    assert resources["Appointment"]["searchInclude"] == ["Appointment:actor"]
    assert "searchInclude" not in resources["AppointmentResponse"]
    for name in ("Schedule", "Slot", "Appointment"):
        assert resources[name]["versioning"] == "versioned"
        assert resources[name]["conditionalRead"] == "not-match"
        assert "_summary" in {p["name"] for p in resources[name]["searchParam"]}
    # Each advertised include is accepted by its search.
    assert api.get(url("Schedule?_include=Schedule:actor")).status_code == 200
    slot = "Slot?_include=Slot:schedule&_include:iterate=Schedule:actor"
    assert api.get(url(slot)).status_code == 200


@pytest.mark.django_db
def test_including_schedules_needs_a_schedule_scope(
    org: Any, clinic: dict[str, Any], make_api_client: Callable[..., Any]
) -> None:
    _, token = make_api_client(org, scopes="system/Slot.rs")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.get(url(f"Slot?{WEEK}")).status_code == 200
    assert_outcome(client.get(url(f"Slot?{WEEK}&_include=Slot:schedule")), 403)
