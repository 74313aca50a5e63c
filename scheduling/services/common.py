"""What every booking service shares: new ids, the audit trail, instants as text."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from scheduling.models import (
    Appointment,
    AuditEvent,
    Organization,
)


def new_fhir_id() -> str:
    """A fresh logical id (32 hex characters: valid FHIR id syntax)."""
    return uuid.uuid4().hex


def audit(
    *,
    organization: Organization,
    actor: str,
    action: str,
    appointment: Appointment,
    detail: dict[str, Any],
) -> None:
    AuditEvent.objects.create(
        organization=organization,
        actor=actor[:200],
        action=action,
        appointment=appointment,
        appointment_fhir_id=appointment.fhir_id,
        detail=detail,
    )


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def clinic_time(
    value: datetime | int, zone: ZoneInfo, *, until: datetime | int | None = None
) -> str:
    """An instant (or epoch seconds) as the clinic reads it, for messages: the wall time in
    the organisation's zone with its offset, "2026-12-08 09:15 (+01:00)"; with ``until``,
    "2026-12-08 09:15-09:30 (+01:00)". The same for the admin and the API: the offset keeps
    it one exact instant for a program, the wall time is what the receptionist sees."""
    local = _aware(value).astimezone(zone)
    text = f"{local:%Y-%m-%d %H:%M}"
    if until is not None:
        text += f"-{_aware(until).astimezone(zone):%H:%M}"
    return f"{text} ({local.isoformat()[-6:]})"


def _aware(value: datetime | int) -> datetime:
    return datetime.fromtimestamp(value, UTC) if isinstance(value, int) else value
