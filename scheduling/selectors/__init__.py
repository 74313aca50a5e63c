"""Reads of the scheduling domain, one module per resource (HackSoft style).

Keyword-only arguments, ``organization`` always required. No HTTP and no FHIR JSON: selectors
return model instances and periods, and the API maps them. Every search runs a fixed number
of queries, independent of the number of results.
"""

from scheduling.selectors.appointments import (
    HOLD_EXPIRED_REASON,
    AppointmentResult,
    appointment_get,
    appointment_read,
    patient_appointment_search,
)
from scheduling.selectors.common import Token, token_matches, utc_now
from scheduling.selectors.organizations import (
    organization_columns,
    organization_from_row,
    organization_get,
)
from scheduling.selectors.patients import PatientKey, patient_columns, patient_key_from_row
from scheduling.selectors.references import (
    patients_by_pk,
    practitioner_roles_by_pk,
    practitioners_by_pk,
    schedules_by_pk,
)
from scheduling.selectors.schedules import (
    ScheduleResult,
    ScheduleResults,
    ScheduleRow,
    schedule_availability,
    schedule_get,
    schedule_rows_load,
    schedule_search,
)
from scheduling.selectors.slots import (
    GeneratedSlot,
    PageSlot,
    SlotResult,
    SlotResults,
    slot_get,
    slot_search,
)

__all__ = [
    "HOLD_EXPIRED_REASON",
    "AppointmentResult",
    "GeneratedSlot",
    "PageSlot",
    "PatientKey",
    "ScheduleResult",
    "ScheduleResults",
    "ScheduleRow",
    "SlotResult",
    "SlotResults",
    "Token",
    "appointment_get",
    "appointment_read",
    "organization_columns",
    "organization_from_row",
    "organization_get",
    "patient_appointment_search",
    "patient_columns",
    "patient_key_from_row",
    "patients_by_pk",
    "practitioner_roles_by_pk",
    "practitioners_by_pk",
    "schedule_availability",
    "schedule_get",
    "schedule_rows_load",
    "schedule_search",
    "schedules_by_pk",
    "slot_get",
    "slot_search",
    "token_matches",
    "utc_now",
]
