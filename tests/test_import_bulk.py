"""The set-wise import (issue 19): queries per bundle, not per entry; the engine still
decides every appointment, against what is stored and against the rest of the bundle."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_api.ingest import bundle_import
from scheduling import models as m
from scheduling.errors import InvalidInput
from tests.factories import OrganizationFactory
from tests.test_import_export import collection, entry, patient, row_counts

BASE = datetime(2027, 3, 1, 8, 0, tzinfo=UTC)


def _clinic() -> list[dict[str, Any]]:
    return [
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
                "resourceType": "Schedule",
                "id": "s",
                "actor": [{"reference": "PractitionerRole/gp"}],
                "planningHorizon": {
                    "start": BASE.isoformat(),
                    "end": (BASE + timedelta(days=30)).isoformat(),
                },
            }
        ),
    ]


def _booked(n: int, *, prefix: str = "a", offset: int = 0) -> list[dict[str, Any]]:
    """``n`` patients, each with one stored slot and a 15-minute appointment in it."""
    out = []
    for i in range(offset, offset + n):
        start = BASE + timedelta(minutes=15 * i)
        end = start + timedelta(minutes=15)
        out.append(entry(patient(f"{prefix}p{i}")))
        out.append(
            entry(
                {
                    "resourceType": "Slot",
                    "id": f"{prefix}slot{i}",
                    "schedule": {"reference": "Schedule/s"},
                    "status": "busy",
                    "start": start.isoformat(),
                    "end": end.isoformat(),
                }
            )
        )
        out.append(entry(_appointment(f"{prefix}{i}", f"{prefix}p{i}", start, end, slot=i)))
    return out


def _appointment(
    aid: str, pid: str, start: datetime, end: datetime, *, slot: int | None = None
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": aid,
        "status": "booked",
        "start": start.isoformat(),
        "end": end.isoformat(),
        "participant": [
            {"actor": {"reference": f"Patient/{pid}"}, "status": "accepted"},
            {"actor": {"reference": "PractitionerRole/gp"}, "status": "accepted"},
        ],
    }
    if slot is not None:
        resource["slot"] = [{"reference": f"Slot/{aid.rstrip('0123456789')}slot{slot}"}]
    return resource


def _queries(data: dict[str, Any]) -> int:
    organization = OrganizationFactory()
    with CaptureQueriesContext(connection) as queries:
        bundle_import(organization=organization, data=data)
    return len(queries)


@pytest.mark.django_db
def test_queries_do_not_grow_with_the_bundle() -> None:
    small = _queries(collection(*_clinic(), *_booked(4)))
    large = _queries(collection(*_clinic(), *_booked(24)))
    assert large == small, (small, large)


@pytest.mark.django_db
def test_one_audit_event_per_appointment_naming_its_entry(org: m.Organization) -> None:
    bundle_import(organization=org, data=collection(*_clinic(), *_booked(5)))
    events = m.AuditEvent.objects.filter(organization=org, action="imported")
    assert events.count() == 5
    for event in events.select_related("appointment"):
        assert event.appointment is not None
        assert event.appointment.fhir_id == event.appointment_fhir_id
        assert event.actor == "import_fhir"
        # Entries: 3 of the clinic, then (patient, slot, appointment) per booking.
        number = int(event.appointment_fhir_id[1:])
        assert event.detail["entry"] == 3 + 3 * number + 2
    doctor = m.Practitioner.objects.get(organization=org, fhir_id="doc")
    appointments = m.Appointment.objects.filter(organization=org)
    assert {a.occupant for a in appointments} == {f"practitioner:{doctor.pk}"}
    assert all(a.occupied_start == a.start and a.occupied_end == a.end for a in appointments)
    assert all(a.slot is not None and a.schedule is not None for a in appointments)


@pytest.mark.django_db
def test_a_clash_with_a_stored_appointment_is_named_and_nothing_is_written(
    org: m.Organization,
) -> None:
    bundle_import(organization=org, data=collection(*_clinic(), *_booked(1, prefix="old")))
    before = row_counts(org)
    audits = m.AuditEvent.objects.filter(organization=org).count()
    clash = _appointment("late", "bp3", BASE + timedelta(minutes=5), BASE + timedelta(minutes=20))
    fresh = _booked(6, prefix="b", offset=2)
    bundle = collection(*fresh[:9], entry(clash), *fresh[9:])

    with pytest.raises(InvalidInput) as excinfo:
        bundle_import(organization=org, data=bundle)

    message = excinfo.value.message
    assert message.startswith("entry 10 (Appointment/late): Appointment/late would double-book:")
    # 08:05 UTC, written as the clinic (Europe/Amsterdam) reads it, with the offset.
    assert "the practitioner already has Appointment/old0 at 2027-03-01 09:05 (+01:00)" in message
    assert row_counts(org) == before
    assert m.AuditEvent.objects.filter(organization=org).count() == audits


@pytest.mark.django_db
def test_buffers_count_between_appointments_of_one_bundle(org: m.Organization) -> None:
    clinic = _clinic()
    clinic[2]["resource"]["extension"] = [
        {
            "url": "urn:extension:booking-rules",
            "extension": [
                {
                    "url": "bufferAfter",
                    "valueDuration": {
                        "value": 10,
                        "unit": "min",
                        "system": "http://unitsofmeasure.org",
                        "code": "min",
                    },
                }
            ],
        }
    ]
    # Back to back is fine without buffers; with ten minutes after each it double-books.
    with pytest.raises(InvalidInput) as excinfo:
        bundle_import(organization=org, data=collection(*clinic, *_booked(3)))
    assert excinfo.value.message.startswith("entry 9 (Appointment/a1):"), excinfo.value.message
    assert "the practitioner already has" in excinfo.value.message
    assert row_counts(org) == dict.fromkeys(row_counts(org), 0)


@pytest.mark.django_db
def test_export_streams_the_same_text_as_one_dump(org: m.Organization) -> None:
    import json

    from fhir_api.management.commands.export_fhir import organization_bundle, write_bundle
    from tests.test_import_export import demo_bundle

    empty = OrganizationFactory()
    bundle_import(organization=org, data=demo_bundle())
    for organization in (org, empty):
        parts: list[str] = []
        count = write_bundle(parts.append, organization=organization)
        whole = organization_bundle(organization=organization)
        assert "".join(parts) == json.dumps(whole, indent=2, ensure_ascii=False) + "\n"
        assert count == len(whole["entry"])


@pytest.mark.django_db
def test_importing_again_updates_in_batches_and_moves_versions(org: m.Organization) -> None:
    bundle_import(organization=org, data=collection(*_clinic(), *_booked(3)))
    before = {s.fhir_id: (s.version, s.updated_at) for s in m.Slot.objects.filter(organization=org)}
    again = collection(*_clinic(), *_booked(3))
    again["entry"][4]["resource"]["comment"] = "moved on"  # aslot0
    summary = bundle_import(organization=org, data=again)
    assert (summary.created, summary.updated) == (0, 12)
    slots = {s.fhir_id: s for s in m.Slot.objects.filter(organization=org)}
    assert slots["aslot0"].comment == "moved on"
    for fhir_id, (version, updated_at) in before.items():
        assert slots[fhir_id].version == version + 1
        assert slots[fhir_id].updated_at > updated_at
    # Still one appointment each, each audited once per import.
    assert m.Appointment.objects.filter(organization=org).count() == 3
    assert m.AuditEvent.objects.filter(organization=org, action="imported").count() == 6


_ZONES = [UTC, ZoneInfo("Europe/Amsterdam"), ZoneInfo("Australia/Sydney")]


@pytest.mark.postgres
@pytest.mark.django_db
@settings(max_examples=200, deadline=None)
@given(
    value=st.one_of(
        st.none(),
        st.text(max_size=12),
        st.integers(min_value=-(2**40), max_value=2**40),
        st.booleans(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.datetimes(timezones=st.sampled_from(_ZONES)),
        st.datetimes(),  # naive: the field makes it aware, with a warning
        st.dates(),
        st.lists(st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2), max_size=2),
    )
)
def test_copy_writes_every_value_as_the_field_itself_would(value: Any) -> None:
    """COPY skips a field's own preparation only where it would change nothing COPY
    writes: for every field of every imported model and any value the field accepts, the
    text COPY sends for the value is the text it sends for ``get_db_prep_save``'s."""
    from psycopg.adapt import PyFormat, Transformer

    from fhir_api.ingest import _MODELS, _copy_preparer

    if connection.vendor != "postgresql":
        pytest.skip("COPY is PostgreSQL's (run with DATABASE_URL=postgres://...)")
    connection.ensure_connection()
    written = Transformer(connection.connection)  # the connection's own adapters

    def text(prepared: Any) -> Any:
        """The text COPY sends, or the kind of error that refuses it."""
        try:
            (dumped,) = written.dump_sequence([prepared], [PyFormat.TEXT])
        except (TypeError, ValueError) as exc:
            return type(exc)
        return None if dumped is None else bytes(dumped)

    for model in [*_MODELS.values(), m.AuditEvent]:
        for field in model._meta.concrete_fields:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a naive instant
                try:
                    expected = field.get_db_prep_save(value, connection)
                except (TypeError, ValueError, ValidationError, OverflowError):
                    continue  # the field refuses it (full_clean would have, before COPY)
                copied = _copy_preparer(field)(value)
            assert text(copied) == text(expected), (model.__name__, field.name, value)
