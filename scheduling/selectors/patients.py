"""Reads of the patient a request's path names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from django.db.models import Subquery

from scheduling.models import Patient


class PatientKey(NamedTuple):
    """A patient's primary key and trigger-kept ``version``: enough to key a cached read
    that shows the patient, without loading its row."""

    pk: int
    version: int


def patient_columns(organization_id: Any, fhir_id: Any) -> list[Subquery]:
    """(pk, version) of one patient of one organisation as scalar subqueries, both None
    when there is no such patient: to ride along in another query (the request's token
    lookup) and save a round trip. See :func:`patient_key_from_row`."""
    patient = Patient.objects.filter(organization_id=organization_id, fhir_id=fhir_id).order_by()
    return [Subquery(patient.values(name)[:1]) for name in ("pk", "version")]


def patient_key_from_row(row: Sequence[Any]) -> PatientKey | None:
    """The patient of :func:`patient_columns`' values, or None when it does not exist."""
    pk, version = row
    return None if pk is None else PatientKey(pk, version)
