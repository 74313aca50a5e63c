"""The CapabilityStatement names every operation, and each OperationDefinition it names can
be read at that URL below the tenant's base."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationdefinition import OperationDefinition
from fhirclient.models.operationdefinition import OperationDefinition as FCOperationDefinition
from rest_framework.test import APIClient

from scheduling.models import Organization
from tests.api_helpers import assert_outcome, body

pytestmark = pytest.mark.django_db

NAMES = ["book-slot", "hold", "confirm", "cancel", "reschedule"]
BASE = "http://testserver/v2/clinic-a/fhir/R4"


def test_capability_statement_lists_every_operation(org: Organization) -> None:
    data = body(APIClient().get("/v2/clinic-a/fhir/R4/metadata"))
    CapabilityStatement.model_validate(data)
    appointment = next(r for r in data["rest"][0]["resource"] if r["type"] == "Appointment")
    operations = {op["name"]: op["definition"] for op in appointment["operation"]}
    assert operations == {name: f"{BASE}/OperationDefinition/{name}" for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_each_named_definition_is_served_and_valid(org: Organization, name: str) -> None:
    capability = body(APIClient().get("/v2/clinic-a/fhir/R4/metadata"))
    appointment = next(r for r in capability["rest"][0]["resource"] if r["type"] == "Appointment")
    definition_url = next(op["definition"] for op in appointment["operation"] if op["name"] == name)
    response = Client().get(definition_url.removeprefix("http://testserver"))
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/fhir+json")
    data = body(response)
    OperationDefinition.model_validate(data)
    FCOperationDefinition(data)
    assert (data["id"], data["code"], data["url"]) == (name, name, definition_url)
    assert data["resource"] == ["Appointment"] and data["kind"] == "operation"
    assert data["instance"] is (name in ("confirm", "cancel", "reschedule"))
    assert data["type"] is (name in ("book-slot", "hold"))
    inputs = {p["name"]: (p["min"], p["type"]) for p in data["parameter"] if p["use"] == "in"}
    outputs = [p for p in data["parameter"] if p["use"] == "out"]
    assert outputs == [
        {
            "name": "return",
            "use": "out",
            "min": 1,
            "max": "1",
            "documentation": "The Appointment.",
            "type": "Appointment",
        }
    ]
    expected: dict[str, dict[str, tuple[int, str]]] = {
        "book-slot": {
            "start": (1, "dateTime"),
            "schedule": (1, "string"),
            "practitionerRole": (1, "string"),
            "status": (1, "string"),
            "comment": (0, "string"),
        },
        "hold": {
            "start": (1, "dateTime"),
            "schedule": (1, "string"),
            "practitionerRole": (1, "string"),
            "comment": (0, "string"),
            "holdDuration": (0, "Duration"),
        },
        "confirm": {},
        "cancel": {"reason": (0, "string")},
        "reschedule": {
            "start": (1, "dateTime"),
            "schedule": (0, "string"),
            "practitionerRole": (0, "string"),
        },
    }
    assert inputs == expected[name]


def test_unknown_definition_and_organisation_are_404(
    org: Organization, outsider_org: Organization, make_api_client: Any
) -> None:
    data = assert_outcome(Client().get("/v2/clinic-a/fhir/R4/OperationDefinition/nope"), 404)
    assert "hold" in data["issue"][0]["diagnostics"]
    # Anonymous callers get the same tenant-neutral answer for any organisation id, as for
    # the CapabilityStatement, so it tells nothing about which organisations exist.
    unknown = body(Client().get("/v2/no-such/fhir/R4/OperationDefinition/hold"))
    known = body(Client().get("/v2/clinic-a/fhir/R4/OperationDefinition/hold"))
    assert unknown == {**known, "url": unknown["url"]}
    assert unknown["url"].endswith("/v2/no-such/fhir/R4/OperationDefinition/hold")
    # Like the CapabilityStatement: a caller with another organisation's token is told 404.
    _, token = make_api_client(outsider_org)
    foreign = Client().get(
        "/v2/clinic-a/fhir/R4/OperationDefinition/hold",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert_outcome(foreign, 404)
    assert_outcome(Client().post("/v2/clinic-a/fhir/R4/OperationDefinition/hold", {}), 405)
