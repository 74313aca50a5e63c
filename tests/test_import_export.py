"""import_fhir / export_fhir and fhir_api.ingest (docs/api.md section 9)."""

from __future__ import annotations

import copy
import io
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from fhir.resources.R4B.bundle import Bundle

from fhir_api.ingest import bundle_import
from scheduling import models as m
from scheduling.errors import InvalidInput
from tests.factories import OrganizationFactory, PatientFactory

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "demo-bundle.json"
ROW_MODELS = (
    m.Patient,
    m.Practitioner,
    m.PractitionerRole,
    m.Schedule,
    m.Slot,
    m.Appointment,
    m.AppointmentResponse,
)


def demo_bundle() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text())


def run_import(organization: m.Organization, path: str | Path) -> str:
    out = io.StringIO()
    call_command(
        "import_fhir", str(path), organization=organization.id, stdout=out, stderr=io.StringIO()
    )
    return out.getvalue()


def write(tmp_path: Path, bundle: dict[str, Any], name: str = "bundle.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(bundle))
    return path


def export(organization: m.Organization) -> dict[str, Any]:
    out = io.StringIO()
    call_command("export_fhir", organization=organization.id, stdout=out)
    return json.loads(out.getvalue())


def without_last_updated(bundle: dict[str, Any]) -> dict[str, Any]:
    clean = copy.deepcopy(bundle)
    for entry in clean["entry"]:
        meta = entry["resource"].get("meta", {})
        meta.pop("lastUpdated", None)
        if not meta:
            entry["resource"].pop("meta", None)
    return clean


def row_counts(organization: m.Organization) -> dict[str, int]:
    return {
        model.__name__: model.objects.filter(organization=organization).count()
        for model in ROW_MODELS
    }


def entry(resource: dict[str, Any], full_url: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"resource": resource}
    if full_url:
        out["fullUrl"] = full_url
    return out


def patient(pid: str, family: str = "Jansen") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": family}]}


def schedule(sid: str, **extra: Any) -> dict[str, Any]:
    resource = {
        "resourceType": "Schedule",
        "id": sid,
        "actor": [{"reference": "PractitionerRole/role-gp"}],
        "planningHorizon": {
            "start": "2026-06-01T09:00:00+02:00",
            "end": "2026-06-01T12:00:00+02:00",
        },
    }
    resource.update(extra)
    return resource


def recurrence_ext(rrule: str, **parts: str) -> dict[str, Any]:
    inner: list[dict[str, Any]] = [{"url": "rrule", "valueString": rrule}]
    if "timezone" in parts:
        inner.append({"url": "timezone", "valueCode": parts["timezone"]})
    return {"url": "urn:extension:recurrence", "extension": inner}


def collection(*entries: dict[str, Any], kind: str = "collection") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


# --------------------------------------------------------------------------- import


@pytest.mark.django_db
def test_import_contract_bundle_maps_every_element(org: m.Organization, tmp_path: Path) -> None:
    output = run_import(org, FIXTURE)

    assert "Imported 6 resources: 1 Patient, 1 Practitioner, 1 PractitionerRole" in output
    anna = m.Patient.objects.get(organization=org, fhir_id="pat-anna")
    assert (anna.family, anna.given, anna.gender) == ("Jansen", "Anna", "female")
    assert anna.birth_date.isoformat() == "1984-03-12"
    assert anna.email == "anna.jansen@example.org"
    prac = m.Practitioner.objects.get(organization=org, fhir_id="prac-devries")
    assert prac.display == "Dr. Pieter de Vries"
    role = m.PractitionerRole.objects.get(organization=org, fhir_id="role-gp")
    assert role.practitioner == prac
    assert role.code == [
        {"system": "http://snomed.info/sct", "code": "62247001", "display": "General practitioner"}
    ]
    sched = m.Schedule.objects.get(organization=org, fhir_id="sched-gp")
    assert sched.practitioner_role == role and sched.practitioner == prac
    assert sched.rrule == "FREQ=WEEKLY;BYDAY=MO,WE;UNTIL=20271231T230000Z"
    assert sched.recurrence_timezone == "Europe/Amsterdam"
    assert sched.exdates == ["2026-12-28T09:00:00+01:00"]
    assert sched.slot_minutes == 15
    assert sched.planning_start == datetime(2026, 6, 1, 7, 0, tzinfo=UTC)
    assert sched.service_category == [
        {
            "system": "http://terminology.hl7.org/CodeSystem/service-category",
            "code": "17",
            "display": "General Practice",
        }
    ]
    slot = m.Slot.objects.get(organization=org, fhir_id="slot-lunch-meeting")
    assert slot.status == m.SlotStatus.BUSY_UNAVAILABLE and slot.schedule == sched
    appt = m.Appointment.objects.get(organization=org, fhir_id="appt-anna-1")
    assert appt.patient == anna and appt.practitioner_role == role
    assert appt.practitioner_status == m.ParticipationStatus.ACCEPTED
    # The appointment references a generated slot: its schedule is linked, no stored slot.
    assert appt.schedule == sched and appt.slot is None
    assert appt.start == datetime(2026, 6, 1, 7, 15, tzinfo=UTC)


@pytest.mark.django_db
def test_import_is_scoped_to_the_organisation(
    org: m.Organization, outsider_org: m.Organization
) -> None:
    run_import(org, FIXTURE)
    assert row_counts(outsider_org) == dict.fromkeys(row_counts(outsider_org), 0)
    # The same ids may exist in another organisation independently.
    run_import(outsider_org, FIXTURE)
    assert m.Patient.objects.filter(fhir_id="pat-anna").count() == 2


@pytest.mark.django_db
def test_import_resolves_references_regardless_of_entry_order(org: m.Organization) -> None:
    bundle = demo_bundle()
    bundle["entry"].reverse()
    summary = bundle_import(organization=org, data=bundle)
    assert summary.total == 6
    assert m.Appointment.objects.get(organization=org).patient.fhir_id == "pat-anna"


@pytest.mark.django_db
def test_import_again_updates_existing_ids(org: m.Organization) -> None:
    bundle_import(organization=org, data=demo_bundle())
    bundle = demo_bundle()
    bundle["entry"][0]["resource"]["name"] = [{"family": "Bakker", "given": ["Anna", "Maria"]}]
    summary = bundle_import(organization=org, data=bundle)
    assert (summary.created, summary.updated) == (0, 6)
    anna = m.Patient.objects.get(organization=org, fhir_id="pat-anna")
    assert (anna.family, anna.given) == ("Bakker", "Anna Maria")
    assert m.Patient.objects.filter(organization=org).count() == 1


@pytest.mark.django_db
def test_bad_third_entry_changes_nothing_and_names_the_entry(
    org: m.Organization, tmp_path: Path
) -> None:
    PatientFactory(organization=org, fhir_id="pat-1", family="Original")
    bundle = collection(
        entry(patient("pat-1", family="Changed")),
        entry(patient("pat-2")),
        entry(schedule("bad-sched", extension=[recurrence_ext("FREQ=HOURLY")])),
        entry(patient("pat-3")),
    )
    before = row_counts(org)

    with pytest.raises(CommandError) as excinfo:
        run_import(org, write(tmp_path, bundle))

    message = str(excinfo.value)
    assert "entry 3 (Schedule/bad-sched)" in message
    assert "rrule" in message and "HOURLY" in message
    assert row_counts(org) == before
    assert m.Patient.objects.get(organization=org, fhir_id="pat-1").family == "Original"


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        (
            schedule("s1", extension=[recurrence_ext("FREQ=DAILY;JUNK=1")]),
            "entry 2 (Schedule/s1): rrule:",
        ),
        (
            schedule("s1", extension=[recurrence_ext("FREQ=DAILY", timezone="Mars/Base")]),
            "entry 2 (Schedule/s1): timezone:",
        ),
        (
            schedule(
                "s1",
                planningHorizon={"start": "2026-06-01", "end": "2026-06-02"},
            ),
            "entry 2 (Schedule/s1): planningHorizon.start: 2026-06-01 needs a date, a time and "
            "a timezone offset",
        ),
        (
            schedule(
                "s1",
                planningHorizon={
                    "start": "2026-06-01T12:00:00+02:00",
                    "end": "2026-06-01T09:00:00+02:00",
                },
            ),
            "planning_end: The end must be after the start.",
        ),
        (
            schedule("s1", actor=[{"reference": "Location/room-1"}]),
            "entry 2 (Schedule/s1): actor[0]: 'Location/room-1' is not allowed",
        ),
        (
            schedule(
                "s1",
                actor=[
                    {"reference": "PractitionerRole/role-gp"},
                    {"reference": "PractitionerRole/role-gp"},
                ],
            ),
            "entry 2 (Schedule/s1): actor[1]:",
        ),
        (
            schedule("s1", actor=[{"reference": "PractitionerRole/nobody"}]),
            "PractitionerRole/nobody is neither in this bundle nor stored",
        ),
        (
            {
                "resourceType": "Slot",
                "id": "slot-1",
                "schedule": {"reference": "Schedule/s0"},
                "status": "free",
                "start": "2026-06-01T09:00:00",
                "end": "2026-06-01T09:15:00+02:00",
            },
            "entry 2 (Slot/slot-1): start:",
        ),
        (
            {
                "resourceType": "Slot",
                "id": "slot-1",
                "schedule": {"reference": "Schedule/s0"},
                "status": "open",
                "start": "2026-06-01T09:00:00+02:00",
                "end": "2026-06-01T09:15:00+02:00",
            },
            "entry 2 (Slot/slot-1): status:",
        ),
        (
            {"resourceType": "Patient", "id": "has space"},
            "entry 2 (Patient/has space):",
        ),
        (
            {"resourceType": "Location", "id": "room-1"},
            "entry 2 (Location/room-1): resource type 'Location' cannot be imported",
        ),
        (
            {
                "resourceType": "Appointment",
                "id": "a1",
                "status": "booked",
                "start": "2026-06-01T09:00:00+02:00",
                "end": "2026-06-01T09:15:00+02:00",
                "participant": [{"actor": {"reference": "Patient/ghost"}, "status": "accepted"}],
            },
            "entry 2 (Appointment/a1): participant[0].actor: Patient/ghost",
        ),
        (
            schedule(
                "s1",
                extension=[
                    {
                        "url": "urn:extension:slot-duration",
                        "valueDuration": {"value": 1, "code": "d"},
                    }
                ],
            ),
            "unit 'd' is not supported",
        ),
    ],
    ids=[
        "junk-rrule",
        "unknown-zone",
        "date-only-horizon",
        "end-before-start",
        "location-actor",
        "two-roles",
        "unknown-reference",
        "naive-instant",
        "bad-code",
        "bad-id",
        "unsupported-type",
        "unknown-patient",
        "bad-duration-unit",
    ],
)
@pytest.mark.django_db
def test_bad_entries_are_refused_with_a_message_naming_them(
    org: m.Organization, resource: dict[str, Any], expected: str
) -> None:
    base = demo_bundle()
    role_entries = [
        e
        for e in base["entry"]
        if e["resource"]["resourceType"] in ("Practitioner", "PractitionerRole")
    ]
    bundle_import(organization=org, data=collection(*role_entries))
    bundle_import(organization=org, data=collection(entry(schedule("s0"))))
    before = row_counts(org)

    with pytest.raises(InvalidInput) as excinfo:
        bundle_import(organization=org, data=collection(entry(patient("fine")), entry(resource)))

    assert expected in excinfo.value.message
    assert excinfo.value.expression[0].startswith("Bundle.entry[1]")
    assert row_counts(org) == before


@pytest.mark.django_db
def test_references_into_another_organisation_are_not_resolved(
    org: m.Organization, outsider_org: m.Organization
) -> None:
    PatientFactory(organization=outsider_org, fhir_id="foreign")
    appointment = {
        "resourceType": "Appointment",
        "id": "a1",
        "status": "booked",
        "start": "2026-06-01T09:00:00+02:00",
        "end": "2026-06-01T09:15:00+02:00",
        "participant": [{"actor": {"reference": "Patient/foreign"}, "status": "accepted"}],
    }
    with pytest.raises(InvalidInput, match=r"Patient/foreign is neither .* 'clinic-a'"):
        bundle_import(organization=org, data=collection(entry(appointment)))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"resourceType": "Patient"}, "not a FHIR Bundle"),
        ([], "not a FHIR Bundle"),
        ({"resourceType": "Bundle", "type": "searchset", "entry": []}, "'searchset' cannot"),
        (
            collection(entry(patient("p1")), entry(patient("p1"))),
            "entry 2 (Patient/p1): the same resource is also entry 1",
        ),
        (
            {"resourceType": "Bundle", "type": "collection", "entry": [{"fullUrl": "x"}]},
            "entry 1: has no resource",
        ),
        (
            collection(entry(patient("p1")), kind="transaction"),
            "needs a request",
        ),
    ],
)
@pytest.mark.django_db
def test_malformed_bundles_are_refused(org: m.Organization, data: Any, expected: str) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        bundle_import(organization=org, data=data)
    assert expected in excinfo.value.message
    assert m.Patient.objects.filter(organization=org).count() == 0


@pytest.mark.django_db
def test_transaction_bundle_with_urn_uuid_references(org: m.Organization) -> None:
    pat_url = "urn:uuid:7f1c8a52-0000-4000-8000-000000000001"
    prac_url = "urn:uuid:7f1c8a52-0000-4000-8000-000000000002"
    role_url = "urn:uuid:7f1c8a52-0000-4000-8000-000000000003"
    sched_url = "urn:uuid:7f1c8a52-0000-4000-8000-000000000004"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            # Dependants first: references must resolve whatever the order.
            {
                "fullUrl": "urn:uuid:7f1c8a52-0000-4000-8000-000000000005",
                "resource": {
                    "resourceType": "Appointment",
                    "status": "booked",
                    "start": "2026-06-01T09:00:00+02:00",
                    "end": "2026-06-01T09:15:00+02:00",
                    "participant": [
                        {"actor": {"reference": pat_url}, "status": "accepted"},
                        {"actor": {"reference": role_url}, "status": "needs-action"},
                    ],
                },
                "request": {"method": "POST", "url": "Appointment"},
            },
            {
                "fullUrl": sched_url,
                "resource": {
                    "resourceType": "Schedule",
                    "actor": [{"reference": role_url}],
                    "planningHorizon": {
                        "start": "2026-06-01T09:00:00+02:00",
                        "end": "2026-06-01T12:00:00+02:00",
                    },
                    "extension": [
                        {
                            "url": "urn:extension:slot-duration",
                            "valueDuration": {"value": 0.5, "unit": "h"},
                        }
                    ],
                },
                "request": {"method": "PUT", "url": "Schedule/sched-put"},
            },
            {
                "fullUrl": role_url,
                "resource": {
                    "resourceType": "PractitionerRole",
                    "practitioner": {"reference": prac_url},
                },
                "request": {"method": "POST", "url": "PractitionerRole"},
            },
            {
                "fullUrl": prac_url,
                "resource": {"resourceType": "Practitioner", "name": [{"family": "Smit"}]},
                "request": {"method": "POST", "url": "Practitioner"},
            },
            {
                "fullUrl": pat_url,
                "resource": {"resourceType": "Patient", "id": "pat-kept"},
                "request": {"method": "PUT", "url": "Patient/pat-kept"},
            },
        ],
    }

    summary = bundle_import(organization=org, data=bundle)

    assert summary.total == 5
    sched = m.Schedule.objects.get(organization=org)
    assert sched.fhir_id == "sched-put"
    assert sched.slot_minutes == 30  # 0.5 h
    role = m.PractitionerRole.objects.get(organization=org)
    assert role.practitioner.family == "Smit"
    assert sched.practitioner_role == role
    appt = m.Appointment.objects.get(organization=org)
    assert appt.patient.fhir_id == "pat-kept"
    assert appt.practitioner_role == role
    assert appt.practitioner_status == m.ParticipationStatus.NEEDS_ACTION
    # The role has a single schedule, so the booking holds that schedule's slot.
    assert appt.schedule == sched
    assert m.FHIR_ID_RE.match(appt.fhir_id) and appt.fhir_id != ""


@pytest.mark.django_db
def test_unresolvable_urn_uuid_is_refused(org: m.Organization) -> None:
    role = {
        "resourceType": "PractitionerRole",
        "id": "r1",
        "practitioner": {"reference": "urn:uuid:7f1c8a52-0000-4000-8000-00000000000f"},
    }
    with pytest.raises(InvalidInput, match=r"entry 1 \(PractitionerRole/r1\): practitioner:"):
        bundle_import(
            organization=org,
            data=collection(
                {"resource": role, "request": {"method": "POST", "url": "x"}}, kind="batch"
            ),
        )


@pytest.mark.django_db
def test_import_from_stdin(org: m.Organization, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(FIXTURE.read_text()))
    output = run_import(org, "-")
    assert "Imported 6 resources" in output
    assert m.Schedule.objects.filter(organization=org, fhir_id="sched-gp").exists()


@pytest.mark.django_db
def test_import_command_errors(org: m.Organization, tmp_path: Path) -> None:
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    with pytest.raises(CommandError, match="is not JSON"):
        run_import(org, bad_json)
    with pytest.raises(CommandError, match="Cannot read"):
        run_import(org, tmp_path / "missing.json")
    with pytest.raises(CommandError, match="'nowhere' does not exist"):
        call_command("import_fhir", str(FIXTURE), organization="nowhere")


@pytest.mark.django_db
def test_progress_bar_on_large_files_only(
    org: m.Organization, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = write(tmp_path, collection(*(entry(patient(f"p{i}")) for i in range(3))), "s.json")
    call_command("import_fhir", str(small), organization=org.id)
    assert "Importing" not in capsys.readouterr().err

    large = write(tmp_path, collection(*(entry(patient(f"p{i}")) for i in range(201))), "l.json")
    call_command("import_fhir", str(large), organization=org.id)
    captured = capsys.readouterr()
    assert "Importing" in captured.err and "201/201" in captured.err
    assert "Imported 201 resources: 201 Patient" in captured.out


# --------------------------------------------------------------------------- export


@pytest.mark.django_db
def test_export_is_a_valid_deterministic_collection(org: m.Organization) -> None:
    bundle_import(organization=org, data=demo_bundle())
    exported = export(org)

    Bundle.model_validate(exported)
    assert exported["type"] == "collection"
    keys = [(e["resource"]["resourceType"], e["resource"]["id"]) for e in exported["entry"]]
    assert keys == [
        ("Patient", "pat-anna"),
        ("Practitioner", "prac-devries"),
        ("PractitionerRole", "role-gp"),
        ("Schedule", "sched-gp"),
        ("Slot", "slot-lunch-meeting"),
        ("Appointment", "appt-anna-1"),
    ]
    assert all(e["fullUrl"].startswith("urn:uuid:") for e in exported["entry"])
    assert export(org) == exported


@pytest.mark.django_db
def test_export_then_import_round_trips_to_an_equal_bundle(org: m.Organization) -> None:
    bundle_import(organization=org, data=demo_bundle())
    response = {
        "resourceType": "AppointmentResponse",
        "id": "resp-1",
        "appointment": {"reference": "Appointment/appt-anna-1"},
        "actor": {"reference": "Patient/pat-anna"},
        "participantStatus": "accepted",
        "comment": "See you then",
    }
    bundle_import(organization=org, data=collection(entry(response)))
    first = export(org)
    assert len(first["entry"]) == 7

    empty = OrganizationFactory(id="clinic-empty")
    bundle_import(organization=empty, data=first)
    second = export(empty)

    assert without_last_updated(second) == without_last_updated(first)


@pytest.mark.django_db
def test_seed_demo_round_trips(tmp_path: Path) -> None:
    call_command("seed_demo", "--allow-demo-credentials", stdout=io.StringIO())
    demo = m.Organization.objects.get(id="demo-clinic")
    output = tmp_path / "demo.json"
    call_command("export_fhir", organization=demo.id, output=str(output), stderr=io.StringIO())
    first = json.loads(output.read_text())
    Bundle.model_validate(first)

    empty = OrganizationFactory(id="demo-copy")
    run_import(empty, output)

    assert without_last_updated(export(empty)) == without_last_updated(first)
    assert m.Appointment.objects.get(
        organization=empty, fhir_id="appointment-physio-weekly"
    ).rrule.startswith("FREQ=WEEKLY")
    # FHIR has no Appointment.schedule; the import finds it again from the role's windows.
    original = dict(
        m.Appointment.objects.filter(organization=demo).values_list("fhir_id", "schedule__fhir_id")
    )
    copied = dict(
        m.Appointment.objects.filter(organization=empty).values_list("fhir_id", "schedule__fhir_id")
    )
    assert copied == original
    assert None not in copied.values()


@pytest.mark.django_db
def test_export_with_base_url_and_unknown_organisation(org: m.Organization) -> None:
    bundle_import(organization=org, data=collection(entry(patient("p1"))))
    out = io.StringIO()
    call_command(
        "export_fhir", organization=org.id, base_url="https://fhir.example.org/", stdout=out
    )
    assert json.loads(out.getvalue())["entry"][0]["fullUrl"] == (
        "https://fhir.example.org/v2/clinic-a/fhir/R4/Patient/p1"
    )
    with pytest.raises(CommandError, match="'nowhere' does not exist"):
        call_command("export_fhir", organization="nowhere", stdout=io.StringIO())


@pytest.mark.django_db
def test_double_booking_in_a_bundle_is_refused_by_the_database(org: m.Organization) -> None:
    bundle = demo_bundle()
    twin = copy.deepcopy(bundle["entry"][-1])
    twin["resource"]["id"] = "appt-anna-2"
    twin["fullUrl"] = "urn:uuid:7f1c8a52-0000-4000-8000-0000000000aa"
    bundle["entry"].append(twin)

    with pytest.raises(InvalidInput) as excinfo:
        bundle_import(organization=org, data=bundle)

    assert excinfo.value.message.startswith("entry 7 (Appointment/appt-anna-2):")
    # The clash is named: both appointments, for the practitioner and for the patient.
    assert "would double-book" in excinfo.value.message
    assert "the practitioner already has Appointment/appt-anna-1" in excinfo.value.message
    assert "the patient already has Appointment/appt-anna-1" in excinfo.value.message
    assert row_counts(org) == dict.fromkeys(row_counts(org), 0)


@pytest.mark.django_db
def test_export_order_is_the_same_on_every_database(org: m.Organization) -> None:
    ids = ["b", "B", "a.1", "a-1", "A", "a1"]
    bundle_import(organization=org, data=collection(*(entry(patient(i)) for i in ids)))
    exported = [e["resource"]["id"] for e in export(org)["entry"]]
    # Code-point order, not the database collation's.
    assert exported == ["A", "B", "a-1", "a.1", "a1", "b"]


def _appointment(aid: str, pid: str, role: str, start: str, end: str, **extra: Any) -> Any:
    resource = {
        "resourceType": "Appointment",
        "id": aid,
        "status": "booked",
        "start": start,
        "end": end,
        "participant": [
            {"actor": {"reference": f"Patient/{pid}"}, "status": "accepted"},
            {"actor": {"reference": f"PractitionerRole/{role}"}, "status": "accepted"},
        ],
    }
    resource.update(extra)
    return resource


def _two_roles_of_one_doctor() -> list[dict[str, Any]]:
    return [
        entry(patient("p1")),
        entry(patient("p2")),
        entry({"resourceType": "Practitioner", "id": "doc"}),
        entry(
            {
                "resourceType": "PractitionerRole",
                "id": "gp",
                "practitioner": {"reference": "Practitioner/doc"},
            }
        ),
        entry(
            {
                "resourceType": "PractitionerRole",
                "id": "travel",
                "practitioner": {"reference": "Practitioner/doc"},
            }
        ),
    ]


@pytest.mark.django_db
def test_import_refuses_overlap_of_one_practitioner_across_roles(org: m.Organization) -> None:
    bundle = collection(
        *_two_roles_of_one_doctor(),
        entry(_appointment("a1", "p1", "gp", "2027-03-01T09:00:00Z", "2027-03-01T09:30:00Z")),
        # Another role of the same practitioner, starting inside the first: same person.
        entry(_appointment("a2", "p2", "travel", "2027-03-01T09:15:00Z", "2027-03-01T09:45:00Z")),
    )
    with pytest.raises(InvalidInput) as excinfo:
        bundle_import(organization=org, data=bundle)
    message = excinfo.value.message
    assert message.startswith("entry 7 (Appointment/a2):"), message
    assert "the practitioner already has Appointment/a1" in message
    assert row_counts(org) == dict.fromkeys(row_counts(org), 0)
    assert not m.AuditEvent.objects.filter(organization=org).exists()


@pytest.mark.django_db
def test_import_refuses_an_occurrence_clash_naming_the_parent(org: m.Organization) -> None:
    weekly = _appointment(
        "weekly",
        "p1",
        "gp",
        "2027-03-01T09:00:00Z",
        "2027-03-01T09:30:00Z",
        extension=[recurrence_ext("FREQ=WEEKLY;COUNT=10", timezone="UTC")],
    )
    clash = _appointment("later", "p2", "travel", "2027-03-15T09:20:00Z", "2027-03-15T09:40:00Z")
    with pytest.raises(InvalidInput) as excinfo:
        bundle_import(
            organization=org,
            data=collection(*_two_roles_of_one_doctor(), entry(weekly), entry(clash)),
        )
    assert (
        "Appointment/weekly-20270315T090000Z (an occurrence of Appointment/weekly)"
        in excinfo.value.message
    )
    assert row_counts(org) == dict.fromkeys(row_counts(org), 0)


@pytest.mark.django_db
def test_import_refuses_a_patient_in_two_places(org: m.Organization) -> None:
    bundle = collection(
        *_two_roles_of_one_doctor(),
        entry({"resourceType": "PractitionerRole", "id": "nurse"}),
        entry(_appointment("a1", "p1", "gp", "2027-03-01T09:00:00Z", "2027-03-01T09:30:00Z")),
        entry(_appointment("a2", "p1", "nurse", "2027-03-01T09:10:00Z", "2027-03-01T09:20:00Z")),
    )
    with pytest.raises(InvalidInput) as excinfo:
        bundle_import(organization=org, data=bundle)
    assert "the patient already has Appointment/a1" in excinfo.value.message
    assert "the practitioner" not in excinfo.value.message


@pytest.mark.django_db
def test_import_audits_every_appointment_and_keeps_touching_ones(org: m.Organization) -> None:
    bundle = collection(
        *_two_roles_of_one_doctor(),
        entry(_appointment("a1", "p1", "gp", "2027-03-01T09:00:00Z", "2027-03-01T09:30:00Z")),
        entry(_appointment("a2", "p2", "travel", "2027-03-01T09:30:00Z", "2027-03-01T10:00:00Z")),
        # A cancelled one may overlap anything: it occupies nobody.
        entry(
            _appointment(
                "a3", "p2", "gp", "2027-03-01T09:00:00Z", "2027-03-01T09:30:00Z", status="cancelled"
            )
        ),
    )
    bundle_import(organization=org, data=bundle)
    audited = set(
        m.AuditEvent.objects.filter(organization=org, action="imported").values_list(
            "appointment_fhir_id", flat=True
        )
    )
    assert audited == {"a1", "a2", "a3"}
    occupants = set(
        m.Appointment.objects.filter(organization=org).values_list("occupant", flat=True)
    )
    doctor = m.Practitioner.objects.get(organization=org, fhir_id="doc")
    assert occupants == {f"practitioner:{doctor.pk}"}
