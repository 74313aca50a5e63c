"""CompiledStatement: querysets compiled once with sentinel arguments, run with real ones,
answer exactly what the querysets would (issue 19: the booking's one check statement)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.db.models import QuerySet

from scheduling.db.compiled_query import CompiledStatement, _native_placeholders
from scheduling.models import Appointment, Organization
from tests.factories import AppointmentFactory, PatientFactory, ScheduleFactory


def test_native_placeholders_number_the_parameters_and_unescape_percent() -> None:
    sql = "SELECT '%%s', a FROM t WHERE a = %s AND b LIKE 'x%%' AND c IN (%s, %s)"
    assert _native_placeholders(sql) == (
        "SELECT '%s', a FROM t WHERE a = $1 AND b LIKE 'x%' AND c IN ($2, $3)"
    )


def _make(
    organization_id: str, start: datetime, end: datetime, patient_pk: int
) -> list[QuerySet[Appointment, tuple[int, int]]]:
    """Two parts: the organisation's appointments starting in [start, end), then the
    patient's among them (so the patient's rows come twice)."""
    window = (
        Appointment.objects.filter(organization_id=organization_id, start__gte=start, start__lt=end)
        .order_by()
        .values_list("id", "patient_id")
    )
    return [window, window.filter(patient_id=patient_pk)]


STATEMENT = CompiledStatement(_make, kinds="sddi")


@pytest.mark.django_db
def test_a_compiled_statement_answers_what_its_querysets_do(org: Organization) -> None:
    schedule = ScheduleFactory(organization=org, slot_minutes=15)
    patients = [PatientFactory(organization=org) for _ in range(2)]
    rows = [
        AppointmentFactory(
            organization=org,
            patient=patients[i % 2],
            schedule=schedule,
            practitioner_role=schedule.practitioner_role,
            start=schedule.planning_start + timedelta(minutes=15 * i),
        )
        for i in range(6)
    ]
    start, end = rows[1].start, rows[4].start
    for patient in patients:
        # Compiled once (the first call), then run again with other values.
        got = STATEMENT.rows(org.pk, start, end, patient.pk)
        expected = [r for qs in _make(org.pk, start, end, patient.pk) for r in qs]
        assert sorted(got) == sorted(expected)
        assert len(got) == 3 + sum(1 for r in rows[1:4] if r.patient_id == patient.pk)
    with pytest.raises(TypeError):
        STATEMENT.rows(org.pk, start, end)


def test_every_argument_must_be_used() -> None:
    unused = CompiledStatement(
        lambda organization_id, start: [
            Appointment.objects.filter(organization_id=organization_id).values_list("id")
        ],
        kinds="sd",
    )
    with pytest.raises(ValueError, match="each of its arguments"):
        unused.sql()


def test_constants_become_literals_and_arguments_stay_parameters() -> None:
    """On PostgreSQL a statement's constants are written into its text (so a generic plan
    can prove a partial index's condition); quotes and percent signs in them survive."""
    from scheduling.db.compiled_query import _constants_inlined

    sql = "SELECT a FROM t WHERE a = %s AND b = %s AND c LIKE 'x%%' AND d IN (%s, %s) AND e = %s"
    plan = ((True, 0), (False, "it's 5%"), (False, 3), (False, None), (True, 1))
    inlined, kept = _constants_inlined(sql, plan)
    assert kept == ((True, 0), (True, 1))
    assert inlined == (
        "SELECT a FROM t WHERE a = %s AND b = 'it''s 5%%' AND c LIKE 'x%%' "
        "AND d IN (3, NULL) AND e = %s"
    )
    assert _native_placeholders(inlined) == (
        "SELECT a FROM t WHERE a = $1 AND b = 'it''s 5%' AND c LIKE 'x%' "
        "AND d IN (3, NULL) AND e = $2"
    )
    with pytest.raises(ValueError):
        _constants_inlined("SELECT %s", ((True, 0), (False, 1)))
