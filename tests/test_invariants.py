"""FHIR R4 invariants on what the server writes: sample responses, exports, metadata.

fhir.resources checks the element model, not the invariants (FHIRPath constraints), so
those that apply are written here as small predicates from the R4 specification. Each test
first shows its predicate rejects a counter-example (so it is not vacuous), then applies it
to every sample. Slot and Schedule have no invariants of their own in R4; the global ele-1
("every element has a value or children") covers them with everything else.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from tests.api_helpers import url
from tests.factories import (
    AppointmentFactory,
    PatientFactory,
    ScheduleFactory,
    SlotFactory,
)

AMS = ZoneInfo("Europe/Amsterdam")
Resource = dict[str, Any]


def _entries(b: Resource) -> list[Resource]:
    return list(b.get("entry", []))


def _first(b: Resource) -> Resource:
    entries = _entries(b)
    return entries[0].get("resource", {}) if entries else {}


BUNDLE_RULES: dict[str, Callable[[Resource], bool]] = {
    # total only when a search or history
    "bdl-1": lambda b: "total" not in b or b["type"] in ("searchset", "history"),
    # entry.search only when a search
    "bdl-2": lambda b: all("search" not in e for e in _entries(b)) or b["type"] == "searchset",
    # entry.request mandatory for batch/transaction/history, otherwise prohibited
    "bdl-3": lambda b: all(
        ("request" in e) == (b["type"] in ("batch", "transaction", "history")) for e in _entries(b)
    ),
    # entry.response mandatory for batch-response/transaction-response/history, else prohibited
    "bdl-4": lambda b: all(
        ("response" in e) == (b["type"] in ("batch-response", "transaction-response", "history"))
        for e in _entries(b)
    ),
    # an entry must have a resource or a request or a response
    "bdl-5": lambda b: all(
        "resource" in e or "request" in e or "response" in e for e in _entries(b)
    ),
    # fullUrl + versionId unique (history bundles excepted)
    "bdl-7": lambda b: (
        b["type"] == "history"
        or len(
            keys := [
                (e["fullUrl"], e.get("resource", {}).get("meta", {}).get("versionId"))
                for e in _entries(b)
                if "fullUrl" in e
            ]
        )
        == len(set(keys))
    ),
    # fullUrl cannot be a version-specific reference
    "bdl-8": lambda b: all("/_history/" not in e.get("fullUrl", "") for e in _entries(b)),
    # a document has an identifier with system and value
    "bdl-9": lambda b: (
        b["type"] != "document"
        or bool(b.get("identifier", {}).get("system") and b.get("identifier", {}).get("value"))
    ),
    # a document has a date
    "bdl-10": lambda b: b["type"] != "document" or "timestamp" in b,
    # a document has a Composition as first resource
    "bdl-11": lambda b: b["type"] != "document" or _first(b).get("resourceType") == "Composition",
    # a message has a MessageHeader as first resource
    "bdl-12": lambda b: b["type"] != "message" or _first(b).get("resourceType") == "MessageHeader",
}
BUNDLE_COUNTER_EXAMPLES: dict[str, Resource] = {
    "bdl-1": {"type": "collection", "total": 1},
    "bdl-2": {"type": "collection", "entry": [{"resource": {}, "search": {"mode": "match"}}]},
    "bdl-3": {"type": "searchset", "entry": [{"resource": {}, "request": {}}]},
    "bdl-4": {"type": "collection", "entry": [{"resource": {}, "response": {}}]},
    "bdl-5": {"type": "collection", "entry": [{"fullUrl": "http://x/Slot/1"}]},
    "bdl-7": {
        "type": "searchset",
        "entry": [{"fullUrl": "http://x/Slot/1", "resource": {}}] * 2,
    },
    "bdl-8": {"type": "searchset", "entry": [{"fullUrl": "http://x/Slot/1/_history/2"}]},
    "bdl-9": {"type": "document", "identifier": {"value": "x"}},
    "bdl-10": {"type": "document"},
    "bdl-11": {"type": "document", "entry": [{"resource": {"resourceType": "Patient"}}]},
    "bdl-12": {"type": "message", "entry": [{"resource": {"resourceType": "Patient"}}]},
}

RESOURCE_RULES: dict[str, tuple[str, Callable[[Resource], bool], Resource]] = {
    # name: (resource type, predicate, counter-example)
    "app-1": (
        "Appointment",
        lambda a: all("type" in p or "actor" in p for p in a.get("participant", [])),
        {"participant": [{"status": "accepted"}]},
    ),
    "app-2": (
        "Appointment",
        lambda a: ("start" in a) == ("end" in a),
        {"status": "booked", "start": "2026-06-01T07:00:00+00:00"},
    ),
    "app-3": (
        "Appointment",
        lambda a: (
            ("start" in a and "end" in a)
            or a.get("status") in ("proposed", "cancelled", "waitlist")
        ),
        {"status": "booked"},
    ),
    "app-4": (
        "Appointment",
        lambda a: "cancelationReason" not in a or a.get("status") in ("noshow", "cancelled"),
        {"status": "booked", "cancelationReason": {"text": "x"}},
    ),
    "apr-1": (
        "AppointmentResponse",
        lambda r: "participantType" in r or "actor" in r,
        {"participantStatus": "accepted"},
    ),
    # rest, messaging or document
    "cpb-1": (
        "CapabilityStatement",
        lambda c: any(k in c for k in ("rest", "messaging", "document")),
        {"kind": "instance"},
    ),
    # description, software or implementation
    "cpb-2": (
        "CapabilityStatement",
        lambda c: any(k in c for k in ("description", "software", "implementation")),
        {"rest": []},
    ),
    # a resource is described once per RESTful mode
    "cpb-9": (
        "CapabilityStatement",
        lambda c: all(
            len(types := [r["type"] for r in rest.get("resource", [])]) == len(set(types))
            for rest in c.get("rest", [])
        ),
        {"rest": [{"resource": [{"type": "Slot"}, {"type": "Slot"}]}]},
    ),
    # search parameter names unique per resource
    "cpb-12": (
        "CapabilityStatement",
        lambda c: all(
            len(names := [p["name"] for p in r.get("searchParam", [])]) == len(set(names))
            for rest in c.get("rest", [])
            for r in rest.get("resource", [])
        ),
        {"rest": [{"resource": [{"searchParam": [{"name": "_id"}, {"name": "_id"}]}]}]},
    ),
    # kind = instance: implementation present
    "cpb-14": (
        "CapabilityStatement",
        lambda c: c.get("kind") != "instance" or "implementation" in c,
        {"kind": "instance"},
    ),
}


def _ele_1(value: Any) -> bool:
    """Every element has a value or children: no empty object, list or string anywhere."""
    if isinstance(value, dict):
        return bool(value) and all(_ele_1(v) for v in value.values())
    if isinstance(value, list):
        return bool(value) and all(_ele_1(v) for v in value)
    if isinstance(value, str):
        return value != ""
    return value is not None


def _resources(document: Resource) -> Iterator[Resource]:
    """The document and, for a Bundle, every resource in it."""
    yield document
    for entry in document.get("entry", []):
        if "resource" in entry:
            yield from _resources(entry["resource"])


@pytest.fixture
def samples(org: Any, api: APIClient) -> list[Resource]:
    """What the server writes: searches (with includes), reads, writes, metadata, export."""
    schedule = ScheduleFactory(
        organization=org,
        fhir_id="weekly",
        planning_start=datetime(2030, 6, 3, 9, tzinfo=AMS),
        planning_end=datetime(2030, 6, 3, 12, tzinfo=AMS),
        rrule="FREQ=WEEKLY;BYDAY=MO",
    )
    SlotFactory(
        organization=org, fhir_id="stored-slot", schedule=schedule, status="busy-unavailable"
    )
    patient = PatientFactory(organization=org, fhir_id="pat-i", email="a@example.org")
    AppointmentFactory(
        organization=org,
        fhir_id="cancelled-i",
        patient=patient,
        schedule=schedule,
        practitioner_role=schedule.practitioner_role,
        status="cancelled",
        cancelation_reason="patient ill",
        start=datetime(2030, 6, 3, 11, tzinfo=AMS),
    )
    booked = api.post(
        url("Patient/pat-i/Appointment/$book-slot"),
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "start", "valueDateTime": "2030-06-10T09:30:00+02:00"},
                {"name": "schedule", "valueString": "Schedule/weekly"},
                {
                    "name": "practitionerRole",
                    "valueString": f"PractitionerRole/{schedule.practitioner_role.fhir_id}",
                },
                {"name": "status", "valueString": "booked"},
            ],
        },
        format="json",
    )
    assert booked.status_code == 201, booked.content
    answered = api.post(
        url("Patient/pat-i/AppointmentResponse"),
        {
            "resourceType": "AppointmentResponse",
            "appointment": {"reference": f"Appointment/{booked.json()['id']}"},
            "actor": {"reference": "Patient/pat-i"},
            "participantStatus": "accepted",
        },
        format="json",
    )
    assert answered.status_code == 201, answered.content
    paths = [
        "metadata",
        "Slot?start=ge2030-06-03&_include=Slot:schedule&_include:iterate=Schedule:actor",
        "Slot?start=ge2030-06-03&_summary=count",
        "Schedule?date=ge2030-06-03&_include=Schedule:actor",
        "Schedule?_include=Schedule:actor",
        "Schedule/weekly",
        "Slot/stored-slot",
        "Patient/pat-i/Appointment?date=ge2030-06-01&date=le2030-06-30&_include=Appointment:actor",
        "Patient/pat-i/Appointment/cancelled-i",
    ]
    out = [booked.json(), answered.json()]
    for path in paths:
        response = api.get(url(path))
        assert response.status_code == 200, (path, response.content[:300])
        out.append(response.json())
    exported = io.StringIO()
    call_command("export_fhir", organization=org.pk, stdout=exported)
    out.append(json.loads(exported.getvalue()))
    return out


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(BUNDLE_RULES))
def test_bundle_invariant(name: str, samples: list[Resource]) -> None:
    rule = BUNDLE_RULES[name]
    assert not rule(BUNDLE_COUNTER_EXAMPLES[name])
    bundles = [s for s in samples if s["resourceType"] == "Bundle"]
    assert {b["type"] for b in bundles} == {"searchset", "collection"}
    for bundle in bundles:
        assert rule(bundle), (name, {k: v for k, v in bundle.items() if k != "entry"})


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(RESOURCE_RULES))
def test_resource_invariant(name: str, samples: list[Resource]) -> None:
    resource_type, rule, counter_example = RESOURCE_RULES[name]
    assert not rule(counter_example)
    found = [r for s in samples for r in _resources(s) if r["resourceType"] == resource_type]
    assert found, f"no {resource_type} among the samples"
    for resource in found:
        assert rule(resource), (name, resource)


@pytest.mark.django_db
def test_ele_1_everywhere(samples: list[Resource]) -> None:
    assert not _ele_1({"resourceType": "Slot", "comment": ""})
    assert not _ele_1({"resourceType": "Schedule", "actor": [{}]})
    kinds = set()
    for sample in samples:
        for resource in _resources(sample):
            kinds.add(resource["resourceType"])
            assert _ele_1(resource), resource
    assert {"Slot", "Schedule", "Appointment", "Practitioner", "PractitionerRole"} <= kinds
    assert {"Patient", "AppointmentResponse", "CapabilityStatement"} <= kinds


@pytest.mark.django_db
def test_the_export_is_a_collection_without_total(samples: list[Resource]) -> None:
    export = samples[-1]
    assert export["type"] == "collection" and "total" not in export
    assert all("search" not in e and "request" not in e for e in export["entry"])
