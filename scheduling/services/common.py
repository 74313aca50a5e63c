"""What every booking service shares: new ids, the audit trail, instants as text."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

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
