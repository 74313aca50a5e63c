"""The admin's appointment forms: every write goes through the booking services.

Staff book, move, cancel and edit appointments with the same services as the API, so the
same engine decides what is free, the same locks and database constraints hold, and every
change writes its AuditEvent. A refusal becomes a plain-words form error (never a raw
constraint name). The write runs in ``_post_clean``, after every other check passed, inside
the admin view's transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.db import transaction
from django.utils.translation import gettext as _

from scheduling.errors import DomainError
from scheduling.models import (
    BOOKABLE_STATUSES,
    Appointment,
    AppointmentStatus,
    AuditEvent,
)
from scheduling.services.booking import appointment_book, appointment_reschedule
from scheduling.services.lifecycle import appointment_cancel, appointment_mark_noshow
from scheduling.services.records import appointment_store

__all__ = ["AppointmentBookForm", "AppointmentChangeForm"]


if TYPE_CHECKING:
    _AppointmentModelForm = forms.ModelForm[Appointment]
else:  # django-stubs' generics are not subscriptable at runtime
    _AppointmentModelForm = forms.ModelForm


class _ServiceForm(_AppointmentModelForm):
    #: Who acts, for the AuditEvent (``staff:{username}``); set by the admin per request.
    actor = "staff"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.written = False

    def validate_unique(self) -> None:
        # The services decide, under their locks, and the database guarantees; Django's own
        # constraint check would only show a raw constraint name, and race besides.
        return

    def write(self) -> Appointment:
        raise NotImplementedError

    def _post_clean(self) -> None:
        super()._post_clean()  # type: ignore[misc]
        if self.errors:
            return
        try:
            self.instance = self.write()
        except DomainError as exc:
            self.add_error(self._field_of(exc), exc.translated())
        else:
            self.written = True

    def _field_of(self, exc: DomainError) -> str | None:
        for expression in exc.expression:
            for name in self.fields:
                if expression == name or expression.endswith(f"[{name}]"):
                    return name
        return None


class AppointmentBookForm(_ServiceForm):
    """Book a slot for a patient: what ``$book-slot`` does, for staff."""

    status = forms.ChoiceField(
        choices=[(s.value, s.label) for s in BOOKABLE_STATUSES],
        initial=AppointmentStatus.BOOKED,
    )

    class Meta:
        model = Appointment
        fields = ("patient", "schedule", "start", "status", "comment")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        schedule = cleaned.get("schedule")
        if schedule is None:
            self.add_error("schedule", _("Choose the schedule to book on."))
        else:
            # The schedule decides the organisation; the patient must belong to it too.
            self.instance.organization = schedule.organization
            if schedule.practitioner_role is None:
                self.add_error(
                    "schedule", _("This schedule has no practitioner role to book with.")
                )
        return cleaned

    def write(self) -> Appointment:
        data = self.cleaned_data
        schedule = data["schedule"]
        return appointment_book(
            organization=schedule.organization,
            patient=data["patient"],
            schedule_id=schedule.fhir_id,
            start=data["start"],
            practitioner_role_id=schedule.practitioner_role.fhir_id,
            status=data["status"],
            comment=data.get("comment") or "",
            actor=self.actor,
        ).appointment


class AppointmentChangeForm(_ServiceForm):
    """Move, cancel, mark a no-show, change the status or the notes of an appointment."""

    class Meta:
        model = Appointment
        fields = ("status", "schedule", "start", "comment", "description", "cancelation_reason")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        start = cleaned.get("start")
        if start is not None and self.instance.pk is not None:
            # The end is not typed: it moves with the start until the service finds the slot.
            self.instance.end = start + (self.instance.end - self.instance.start)
        return cleaned

    def write(self) -> Appointment:
        data = self.cleaned_data
        original = Appointment.objects.select_related("patient", "schedule").get(
            pk=self.instance.pk
        )
        organization = original.organization
        with transaction.atomic():
            current = original
            schedule = data.get("schedule")
            moved = data.get("start") != original.start or schedule != original.schedule
            if moved and schedule is not None:
                current = appointment_reschedule(
                    organization=organization,
                    appointment=original,
                    start=data["start"],
                    schedule_id=schedule.fhir_id,
                    practitioner_role_id=(
                        schedule.practitioner_role.fhir_id if schedule.practitioner_role else ""
                    ),
                    actor=self.actor,
                    staff=True,
                )
            status = data.get("status")
            reason = data.get("cancelation_reason") or ""
            if status != current.status and status == AppointmentStatus.CANCELLED:
                # Staff may cancel what the API refuses (an appointment that has started).
                current = appointment_cancel(
                    organization=organization,
                    appointment=current,
                    actor=self.actor,
                    reason=reason,
                    by_staff=True,
                )
            elif status != current.status and status == AppointmentStatus.NOSHOW:
                current = appointment_mark_noshow(
                    organization=organization, appointment=current, actor=self.actor
                )
            elif status != current.status:
                old = current.status
                current.status = status
                current = appointment_store(
                    organization=organization,
                    appointment=current,
                    actor=self.actor,
                    action=AuditEvent.Action.STATUS_CHANGED,
                    detail={"status": [old, status]},
                )
            notes = {
                name: data.get(name) or ""
                for name in ("comment", "description", "cancelation_reason")
                if (data.get(name) or "") != getattr(current, name)
            }
            if notes:
                for name, value in notes.items():
                    setattr(current, name, value)
                current = appointment_store(
                    organization=organization,
                    appointment=current,
                    actor=self.actor,
                    action=AuditEvent.Action.UPDATED,
                    detail={"changed": sorted(notes)},
                )
        return current
