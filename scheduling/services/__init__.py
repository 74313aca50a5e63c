"""Writes of the scheduling domain, one module per workflow (HackSoft style).

Keyword-only arguments, ``organization`` always first; one transaction each; an AuditEvent
for every booking change. The admin, imports and commands call these too, never the ORM
directly for bookings.
"""

from scheduling.services.attendance import appointment_respond
from scheduling.services.booking import BookingResult, appointment_book, appointment_reschedule
from scheduling.services.common import new_fhir_id
from scheduling.services.holds import (
    DEFAULT_HOLD_DURATION,
    appointment_confirm,
    appointment_hold,
    appointment_holds_expire,
)
from scheduling.services.lifecycle import appointment_cancel, appointment_mark_noshow

__all__ = [
    "DEFAULT_HOLD_DURATION",
    "BookingResult",
    "appointment_book",
    "appointment_cancel",
    "appointment_confirm",
    "appointment_hold",
    "appointment_holds_expire",
    "appointment_mark_noshow",
    "appointment_reschedule",
    "appointment_respond",
    "new_fhir_id",
]
