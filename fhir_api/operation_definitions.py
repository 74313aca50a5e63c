"""The OperationDefinitions the CapabilityStatement names, served at
``OperationDefinition/{name}`` below each tenant's base.

One table describes every operation; the CapabilityStatement's ``operation`` list and the
served definitions are both built from it, so neither can name what the other lacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_UCUM_DURATION = "valueDuration (UCUM 's' or 'min'), 10 s to 60 min; default 5 min"


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: str
    min: int
    documentation: str


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    title: str
    instance: bool
    description: str
    parameters: tuple[Param, ...]

    @property
    def path(self) -> str:
        target = "Appointment/{id}" if self.instance else "Appointment"
        return f"POST Patient/{{pid}}/{target}/${self.name}"


_START = Param("start", "dateTime", 1, "Exact slot start, with a timezone offset.")
_SCHEDULE = Param(
    "schedule",
    "string",
    1,
    "Schedule logical id (a generated occurrence id too); 'Schedule/{id}' is accepted.",
)
_ROLE = Param(
    "practitionerRole",
    "string",
    1,
    "An actor of that schedule; 'PractitionerRole/{id}' is accepted.",
)
_COMMENT = Param("comment", "string", 0, "The patient's comment (Appointment.comment).")

OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation(
            "book-slot",
            "Book a slot",
            False,
            "Books the slot of a schedule that starts at 'start' for the patient of the path. "
            "201 with the Appointment; 409 when the slot is no longer free; 422 when no slot "
            "of that schedule starts then or the role is not its actor. Honours "
            "Idempotency-Key.",
            (
                _START,
                _SCHEDULE,
                _ROLE,
                Param("status", "string", 1, "proposed, pending or booked."),
                _COMMENT,
            ),
        ),
        Operation(
            "hold",
            "Hold a slot",
            False,
            "Keeps a slot for the patient for holdDuration: 201 with an Appointment 'pending' "
            "carrying urn:extension:held-until. The hold lapses by itself at that instant (the "
            "slot is free again and the appointment reads as cancelled, 'hold expired') "
            "unless confirmed with $confirm. Errors as $book-slot. Honours Idempotency-Key.",
            (
                _START,
                _SCHEDULE,
                _ROLE,
                _COMMENT,
                Param("holdDuration", "Duration", 0, _UCUM_DURATION + "."),
            ),
        ),
        Operation(
            "confirm",
            "Confirm a hold",
            True,
            "Turns a live hold into a booking: 200 with the Appointment 'booked', without "
            "held-until. 409 for a lapsed hold and for anything but a live hold.",
            (),
        ),
        Operation(
            "cancel",
            "Cancel an appointment",
            True,
            "Cancels the appointment and frees its slot at once: 200 with the Appointment "
            "'cancelled'. Cancelling a cancelled appointment answers 200 unchanged; one that "
            "has started answers 422. Honours Idempotency-Key.",
            (Param("reason", "string", 0, "Why; becomes cancelationReason.text."),),
        ),
        Operation(
            "reschedule",
            "Move an appointment to another slot",
            True,
            "Moves the appointment (same id) to the slot starting at 'start', atomically: the "
            "new slot is taken and the old one freed together. 409 when the new slot is not "
            "free, and then nothing changes. Honours Idempotency-Key.",
            (
                _START,
                Param("schedule", "string", 0, "Default: the appointment's current schedule."),
                Param(
                    "practitionerRole",
                    "string",
                    0,
                    "Default: the appointment's current practitioner role.",
                ),
            ),
        ),
    )
}


def operation_definition(name: str, *, base_url: str) -> dict[str, Any] | None:
    """The OperationDefinition resource of ``name``, or None if there is no such operation."""
    op = OPERATIONS.get(name)
    if op is None:
        return None
    parameters: list[dict[str, Any]] = [
        {
            "name": p.name,
            "use": "in",
            "min": p.min,
            "max": "1",
            "documentation": p.documentation,
            "type": p.type,
        }
        for p in op.parameters
    ]
    parameters.append(
        {
            "name": "return",
            "use": "out",
            "min": 1,
            "max": "1",
            "documentation": "The Appointment.",
            "type": "Appointment",
        }
    )
    return {
        "resourceType": "OperationDefinition",
        "id": op.name,
        "url": f"{base_url}/OperationDefinition/{op.name}",
        "name": "".join(part.capitalize() for part in op.name.split("-")),
        "title": op.title,
        "status": "active",
        "kind": "operation",
        "publisher": "MediKIT",
        "description": f"{op.path}. {op.description}",
        "affectsState": True,
        "code": op.name,
        "resource": ["Appointment"],
        "system": False,
        "type": not op.instance,
        "instance": op.instance,
        "parameter": parameters,
    }


def capability_operations(*, base_url: str) -> list[dict[str, str]]:
    """The CapabilityStatement's ``rest.resource[Appointment].operation`` list."""
    return [
        {
            "name": op.name,
            "definition": f"{base_url}/OperationDefinition/{op.name}",
            "documentation": f"{op.path}. {op.description}",
        }
        for op in OPERATIONS.values()
    ]
