"""A real FHIR client (fhirpy, and fhirclient's models) against a live server: search, hold,
confirm, read, reschedule, cancel, the OperationDefinitions, and one hold that lapses on
the wall clock (the only test that waits for time to pass: about ten seconds)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from fhir.resources.R4B.appointment import Appointment as R4BAppointment
from fhir.resources.R4B.operationdefinition import OperationDefinition as R4BOperationDefinition
from fhirclient.models.appointment import Appointment as FCAppointment
from fhirclient.models.operationdefinition import OperationDefinition as FCOperationDefinition
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome

from scheduling.models import Organization
from tests.factories import PatientFactory, ScheduleFactory

HELD_UNTIL = "urn:extension:held-until"


def _parameters(*items: tuple[str, str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": name, kind: value} for name, kind, value in items],
    }


def _checked(client: SyncFHIRClient, data: dict[str, Any]) -> Any:
    """The Appointment as fhirpy, fhirclient and fhir.resources R4B read it."""
    assert data["resourceType"] == "Appointment", data
    R4BAppointment.model_validate(data)
    FCAppointment(data)
    resource = client.resource("Appointment", **data)
    assert resource.id == data["id"]
    return resource


@pytest.mark.django_db(transaction=True)
def test_hold_confirm_reschedule_cancel_and_a_hold_that_lapses(
    live_server: Any, org: Organization, make_api_client: Callable[..., Any]
) -> None:
    schedule = ScheduleFactory(organization=org, fhir_id="live-sched")
    PatientFactory(organization=org, fhir_id="pat-live")
    _, token = make_api_client(org)
    base = f"{live_server.url}/v2/{org.id}/fhir/R4"
    patient_base = f"{base}/Patient/pat-live"
    client = SyncFHIRClient(patient_base, authorization=f"Bearer {token}")
    tenant = SyncFHIRClient(base, authorization=f"Bearer {token}")
    role = schedule.practitioner_role.fhir_id
    first, second, third = (schedule.planning_start + timedelta(minutes=15 * i) for i in range(3))

    def slot_status(start: datetime) -> str:
        slots = tenant.resources("Slot").search(
            schedule=schedule.fhir_id, start=f"ge{start.date()}"
        )
        found = [s for s in slots.fetch_all() if datetime.fromisoformat(s["start"]) == start]
        assert len(found) == 1
        return str(found[0]["status"])

    def hold(start: datetime, *extra: tuple[str, str, Any]) -> Any:
        body = _parameters(
            ("start", "valueDateTime", start.isoformat()),
            ("schedule", "valueString", schedule.fhir_id),
            ("practitionerRole", "valueString", role),
            *extra,
        )
        return _checked(client, client.execute("Appointment/$hold", data=body))

    # A ten-second hold, left to lapse while the rest of the flow runs.
    ten_seconds = {"value": 10, "unit": "s", "system": "http://unitsofmeasure.org", "code": "s"}
    short = hold(first, ("holdDuration", "valueDuration", ten_seconds))
    lapses_at = datetime.fromisoformat(
        next(e["valueInstant"] for e in short["extension"] if e["url"] == HELD_UNTIL)
    )
    assert short["status"] == "pending"
    assert slot_status(first) == "busy-tentative"

    # search -> hold -> confirm -> read -> reschedule -> cancel, each answer parsed.
    held = hold(second)
    assert held["status"] == "pending" and slot_status(second) == "busy-tentative"
    confirmed = _checked(client, client.execute(f"Appointment/{held.id}/$confirm", data={}))
    assert confirmed["status"] == "booked" and "extension" not in confirmed
    read = client.reference("Appointment", held.id).to_resource()
    assert read["status"] == "booked"
    assert slot_status(second) == "busy"
    moved = _checked(
        client,
        client.execute(
            f"Appointment/{held.id}/$reschedule",
            data=_parameters(("start", "valueDateTime", third.isoformat())),
        ),
    )
    assert moved.id == held.id
    assert datetime.fromisoformat(moved["start"]) == third
    assert (slot_status(second), slot_status(third)) == ("free", "busy")
    cancelled = _checked(
        client,
        client.execute(
            f"Appointment/{held.id}/$cancel",
            data=_parameters(("reason", "valueString", "no longer needed")),
        ),
    )
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancelationReason"]["text"] == "no longer needed"
    assert slot_status(third) == "free"

    for name in ("book-slot", "hold", "confirm", "cancel", "reschedule"):
        definition = tenant.reference("OperationDefinition", name).to_resource()
        R4BOperationDefinition.model_validate(definition.serialize())
        FCOperationDefinition(definition.serialize())
        assert definition["code"] == name

    # Wait out the short hold on the wall clock: no job runs, yet it has lapsed.
    time.sleep(max(0.0, (lapses_at - datetime.now(UTC)).total_seconds()) + 0.5)
    lapsed = client.reference("Appointment", short.id).to_resource()
    assert lapsed["status"] == "cancelled"
    assert lapsed["cancelationReason"]["text"] == "hold expired"
    assert slot_status(first) == "free"
    with pytest.raises(OperationOutcome) as refused:
        client.execute(f"Appointment/{short.id}/$confirm", data={})
    assert "expired" in str(refused.value)
    raw = requests.post(
        f"{patient_base}/Appointment/{short.id}/$confirm",
        json={},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert raw.status_code == 409
    # The time is anyone's again.
    again = hold(first)
    assert again["status"] == "pending" and again.id != short.id
