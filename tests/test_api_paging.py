"""Paging walked to the end by a real FHIR client (fhirpy) against a live server."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from fhir.resources.R4B.bundle import Bundle
from fhirclient.models.bundle import Bundle as FCBundle
from fhirpy import SyncFHIRClient

from tests.factories import AppointmentFactory, PatientFactory, ScheduleFactory

AMS = ZoneInfo("Europe/Amsterdam")


@pytest.fixture
def live(live_server: Any, org: Any, make_api_client: Callable[..., Any]) -> tuple[str, str]:
    _, token = make_api_client(org)
    return f"{live_server.url}/v2/clinic-a/fhir/R4", token


@pytest.mark.django_db(transaction=True)
def test_fhirpy_walks_slot_pages_to_the_end(
    live: tuple[str, str], org: Any, monkeypatch: Any
) -> None:
    base, token = live
    for hour in (9, 13):
        ScheduleFactory(
            organization=org,
            planning_start=datetime(2026, 6, 1, hour, tzinfo=AMS),
            planning_end=datetime(2026, 6, 1, hour + 2, tzinfo=AMS),
            rrule="FREQ=DAILY",
            slot_minutes=20,
        )
    client = SyncFHIRClient(base, authorization=f"Bearer {token}")
    search = client.resources("Slot").search(start="ge2026-06-01").limit(7)
    first_page = requests.get(
        f"{base}/Slot",
        params={"start": "ge2026-06-01", "_count": 7},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ).json()
    total = first_page["total"]
    # ge2026-06-01 alone is ge2026-06-01&le2026-06-08: eight days, six slots a day, two schedules
    assert total == 2 * 6 * 8
    resources = search.fetch_all()
    got = [r["id"] for r in resources]
    assert len(got) == total == len(set(got))
    starts = [r["start"] for r in resources]
    assert starts == sorted(starts)


@pytest.mark.django_db(transaction=True)
def test_links_are_absolute_and_followable(live: tuple[str, str], org: Any) -> None:
    base, token = live
    for _ in range(5):
        ScheduleFactory(
            organization=org,
            rrule="FREQ=DAILY",
            planning_start=datetime(2026, 6, 1, 9, tzinfo=AMS),
            planning_end=datetime(2026, 6, 1, 10, tzinfo=AMS),
        )
    headers = {"Authorization": f"Bearer {token}"}
    url: str | None = f"{base}/Schedule?date=ge2026-06-01&service-category=gp&_count=4"
    seen: list[str] = []
    pages = 0
    while url:
        bundle = requests.get(url, headers=headers, timeout=10).json()
        Bundle.model_validate(bundle)
        FCBundle(bundle)
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        assert links["self"].startswith("http://") and "service-category=gp" in links["self"]
        if pages:
            assert "previous" in links
        seen.extend(e["resource"]["id"] for e in bundle.get("entry", []))
        url = links.get("next")
        pages += 1
    # five schedules over the eight days of ge2026-06-01 (alone: up to and including 8 June)
    assert len(seen) == len(set(seen)) == 40
    assert pages == 10


@pytest.mark.django_db(transaction=True)
def test_fhirpy_patient_appointments(live: tuple[str, str], org: Any) -> None:
    base, token = live
    patient = PatientFactory(organization=org, fhir_id="pat-live")
    AppointmentFactory(
        organization=org,
        patient=patient,
        rrule="FREQ=DAILY;COUNT=12",
        start=datetime(2026, 6, 1, 7, tzinfo=UTC),
        end=datetime(2026, 6, 1, 7, 30, tzinfo=UTC),
    )
    client = SyncFHIRClient(f"{base}/Patient/pat-live", authorization=f"Bearer {token}")
    got = client.resources("Appointment").search(date="ge2026-06-01").limit(3).fetch_all()
    # ge2026-06-01 alone is ge2026-06-01&le2026-06-08: the first eight of the twelve
    assert [r["start"][:10] for r in got] == [f"2026-06-0{d}" for d in range(1, 9)]
