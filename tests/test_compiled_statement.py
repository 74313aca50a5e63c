"""CompiledStatement: querysets compiled once with sentinel arguments, run with real ones,
answer exactly what the querysets would (issue 19: the booking's one check statement)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL
from django.test.utils import CaptureQueriesContext

from scheduling.db.compiled_query import CompiledStatement, _native_placeholders, rows_of_each
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


def _booked(org: Organization, count: int) -> tuple[list[Any], list[Appointment]]:
    """Two patients, and ``count`` appointments 15 minutes apart, theirs in turn."""
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
        for i in range(count)
    ]
    return patients, rows


@pytest.mark.django_db
def test_a_compiled_statement_answers_what_its_querysets_do(org: Organization) -> None:
    patients, rows = _booked(org, 6)
    start, end = rows[1].start, rows[4].start
    for patient in patients:
        # Compiled once (the first call), then run again with other values.
        got = STATEMENT.rows(org.pk, start, end, patient.pk)
        expected = [r for qs in _make(org.pk, start, end, patient.pk) for r in qs]
        assert sorted(got) == sorted(expected)
        assert len(got) == 3 + sum(1 for r in rows[1:4] if r.patient_id == patient.pk)
    with pytest.raises(TypeError):
        STATEMENT.rows(org.pk, start, end)


#: The organisation's patients' ids: a second statement of another shape.
PATIENTS = CompiledStatement(
    lambda organization_id: [
        Appointment.objects.filter(organization_id=organization_id)
        .order_by()
        .values_list("patient_id", "patient_id")
    ],
    kinds="s",
)


@pytest.mark.django_db
def test_rows_of_each_answers_each_statement_in_order(org: Organization) -> None:
    """On PostgreSQL the statements go in one pipeline, elsewhere one after another: either
    way each answers what it answers alone, in the order given, and each is logged."""
    patients, rows = _booked(org, 5)
    start, end = rows[0].start, rows[3].start
    calls = [
        STATEMENT.with_values(org.pk, start, end, patients[1].pk),
        PATIENTS.with_values(org.pk),
        STATEMENT.with_values(org.pk, start, end, patients[0].pk),
    ]
    with CaptureQueriesContext(connection) as queries:
        together = rows_of_each(calls)
    assert len(queries.captured_queries) == len(calls)
    alone = [statement.rows(*values) for statement, values in calls]
    assert [sorted(r) for r in together] == [sorted(r) for r in alone]
    # (the three answers differ, so an answer in the wrong place would show)
    assert len({tuple(sorted(r)) for r in alone}) == 3
    with pytest.raises(TypeError):
        STATEMENT.with_values(org.pk)


@pytest.mark.django_db
def test_a_failing_statement_in_rows_of_each_raises_and_the_connection_goes_on(
    org: Organization,
) -> None:
    """An error in one statement is raised as Django's database error (not psycopg's), and
    the connection answers the next statements once its transaction is rolled back."""
    schedule = ScheduleFactory(organization=org, slot_minutes=15)
    AppointmentFactory(
        organization=org,
        patient=PatientFactory(organization=org),
        schedule=schedule,
        practitioner_role=schedule.practitioner_role,
        start=schedule.planning_start,
    )
    failing = CompiledStatement(
        lambda organization_id: [
            Appointment.objects.filter(organization_id=organization_id)
            .order_by()
            .values_list(RawSQL("no_such_function(id)", []), "patient_id")
        ],
        kinds="s",
    )
    with pytest.raises(DatabaseError), transaction.atomic():
        rows_of_each([PATIENTS.with_values(org.pk), failing.with_values(org.pk)])
    assert (
        rows_of_each([PATIENTS.with_values(org.pk), PATIENTS.with_values(org.pk)])
        == [PATIENTS.rows(org.pk)] * 2
    )


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
