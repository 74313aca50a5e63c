"""Idempotency-Key for the operations on an existing appointment ($cancel, ...).

A key is remembered per (organisation, client, patient, key) together with a hash of the
request it answered, in the same table and under the same unique constraint as the keys
of ``$book-slot``. The operation's name is part of the hash, so a key can never answer a
different operation, nor the same operation on another appointment.
"""

from __future__ import annotations

import hashlib
import json

from django.db import IntegrityError

from scheduling.errors import BusinessRuleViolation, gettext_noop
from scheduling.models import Appointment, IdempotencyKey, Organization

IDEMPOTENCY_EXPRESSION = "Idempotency-Key"
KEY_CONSTRAINT = "uniq_idempotency_key"


def request_hash(operation: str, *parts: str) -> str:
    """A stable hash of one request: the operation and its (canonical) arguments."""
    canonical = json.dumps([operation, *parts], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotent_replay(
    *, organization: Organization, patient_id: int, actor: str, key: str, request_hash: str
) -> Appointment | None:
    """The appointment an earlier request with this key answered, or None if the key is new.

    BusinessRuleViolation when the key answered a different request.
    """
    row = (
        IdempotencyKey.objects.select_related("appointment")
        .filter(organization=organization, client_id=actor[:100], patient_id=patient_id, key=key)
        .first()
    )
    if row is None:
        return None
    if row.request_hash != request_hash:
        raise BusinessRuleViolation(
            gettext_noop(
                "This Idempotency-Key was already used for a different request; "
                "use a new key for a new request."
            ),
            expression=[IDEMPOTENCY_EXPRESSION],
        )
    return row.appointment


def idempotent_remember(
    *,
    organization: Organization,
    appointment: Appointment,
    actor: str,
    key: str,
    request_hash: str,
) -> None:
    """Remember that ``key`` answered this request with ``appointment`` (same transaction as
    the change it answers, so a rolled-back change never consumes the key)."""
    IdempotencyKey.objects.create(
        organization=organization,
        client_id=actor[:100],
        patient_id=appointment.patient_id,
        key=key,
        appointment=appointment,
        request_hash=request_hash,
    )


def is_key_clash(exc: IntegrityError) -> bool:
    """Whether ``exc`` is a concurrent request inserting the same key (see booking)."""
    diag = getattr(exc.__cause__, "diag", None)
    name = getattr(diag, "constraint_name", None)
    if name:
        return bool(name == KEY_CONSTRAINT)
    text = str(exc)
    return KEY_CONSTRAINT in text or (
        "UNIQUE constraint failed" in text and "scheduling_idempotencykey.key" in text
    )
