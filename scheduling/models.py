"""Scheduling domain models.

Every row belongs to exactly one organisation, and every index leads with it, so the
data can be distributed by organisation later (see docs/deployment.md). FHIR logical ids
are stored in ``fhir_id`` and are unique per organisation. Instants are stored in UTC
(USE_TZ); recurrence rules keep their own IANA zone because they run on wall-clock time.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

FHIR_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
FORBIDDEN_FREQS = ("SECONDLY", "MINUTELY", "HOURLY")


def validate_fhir_id(value: str) -> None:
    if not FHIR_ID_RE.match(value or ""):
        raise ValidationError(
            _("'%(value)s' is not a FHIR id: use 1-64 of A-Z, a-z, 0-9, '-' and '.'."),
            params={"value": value},
        )


def validate_timezone_name(value: str) -> None:
    if not value:
        return
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            _("'%(value)s' is not an IANA time zone (for example Europe/Amsterdam)."),
            params={"value": value},
        ) from None


def validate_rrule_value(value: str) -> None:
    if not value:
        return
    from scheduling import recurrence
    from scheduling.errors import InvalidRecurrence

    try:
        recurrence.validate_rrule(value)
    except InvalidRecurrence as exc:
        raise ValidationError(exc.message) from None


def validate_exdates(value: Any) -> None:
    if value in (None, ""):
        return
    if not isinstance(value, list):
        raise ValidationError(_("Exception dates must be a list of date-times."))
    for item in value:
        if not isinstance(item, str):
            raise ValidationError(_("Exception dates must be ISO 8601 strings."))
        try:
            parsed = datetime.fromisoformat(item)
        except ValueError:
            raise ValidationError(
                _("'%(value)s' is not an ISO 8601 date-time."), params={"value": item}
            ) from None
        if parsed.tzinfo is None:
            raise ValidationError(
                _("Exception date '%(value)s' needs a UTC offset."), params={"value": item}
            )


# --- FHIR code systems (fhir.resources does not check codes: these choices must) ---------


class SlotStatus(models.TextChoices):
    BUSY = "busy", _("Busy")
    FREE = "free", _("Free")
    BUSY_UNAVAILABLE = "busy-unavailable", _("Busy (unavailable)")
    BUSY_TENTATIVE = "busy-tentative", _("Busy (tentative)")
    ENTERED_IN_ERROR = "entered-in-error", _("Entered in error")


class AppointmentStatus(models.TextChoices):
    PROPOSED = "proposed", _("Proposed")
    PENDING = "pending", _("Pending")
    BOOKED = "booked", _("Booked")
    ARRIVED = "arrived", _("Arrived")
    FULFILLED = "fulfilled", _("Fulfilled")
    CANCELLED = "cancelled", _("Cancelled")
    NOSHOW = "noshow", _("No-show")
    ENTERED_IN_ERROR = "entered-in-error", _("Entered in error")
    CHECKED_IN = "checked-in", _("Checked in")
    WAITLIST = "waitlist", _("Waitlist")


#: Statuses that no longer hold a slot (docs/api.md section 6).
INACTIVE_APPOINTMENT_STATUSES = (
    AppointmentStatus.CANCELLED,
    AppointmentStatus.NOSHOW,
    AppointmentStatus.ENTERED_IN_ERROR,
)
#: What `$book-slot` may create.
BOOKABLE_STATUSES = (
    AppointmentStatus.PROPOSED,
    AppointmentStatus.PENDING,
    AppointmentStatus.BOOKED,
)


class ParticipationStatus(models.TextChoices):
    ACCEPTED = "accepted", _("Accepted")
    DECLINED = "declined", _("Declined")
    TENTATIVE = "tentative", _("Tentative")
    NEEDS_ACTION = "needs-action", _("Needs action")


class AdministrativeGender(models.TextChoices):
    MALE = "male", _("Male")
    FEMALE = "female", _("Female")
    OTHER = "other", _("Other")
    UNKNOWN = "unknown", _("Unknown")


# --- Tenancy ---------------------------------------------------------------------------


class Organization(models.Model):
    """A tenant: a clinic. Its id is the FHIR logical id used in every API URL."""

    id = models.CharField(
        primary_key=True, max_length=64, validators=[validate_fhir_id], verbose_name=_("id")
    )
    name = models.CharField(max_length=200, verbose_name=_("name"))
    timezone = models.CharField(
        max_length=64,
        default="Europe/Amsterdam",
        validators=[validate_timezone_name],
        verbose_name=_("timezone"),
    )
    staff = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        through="StaffMembership",
        related_name="organizations",
        blank=True,
        verbose_name=_("staff"),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        ordering = ["id"]
        verbose_name = _("organisation")
        verbose_name_plural = _("organisations")

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


class StaffMembership(models.Model):
    """A staff user works for an organisation and may manage its data in the admin."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, verbose_name=_("organization")
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, verbose_name=_("user")
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "user"], name="uniq_staff_membership")
        ]
        verbose_name = _("staff membership")
        verbose_name_plural = _("staff memberships")

    def __str__(self) -> str:
        return f"{self.user} @ {self.organization_id}"


class TenantModel(models.Model):
    """Base of every row that belongs to an organisation and has a FHIR logical id."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, verbose_name=_("organization")
    )
    fhir_id = models.CharField(
        _("FHIR id"),
        max_length=64,
        validators=[validate_fhir_id],
        db_index=False,
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))
    #: FHIR ``meta.versionId``. A database trigger (migration 0005) adds one on every UPDATE,
    #: whatever the path (services, admin, import, a raw SQL fix), so the ETag of a read
    #: can never outlive a change. Django never decides it: inserts take the database
    #: default, updates are overruled by the trigger.
    version = models.IntegerField(db_default=1, editable=False, verbose_name=_("version"))

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Validation on save as well as in forms: imports and services go through here.
        self.full_clean(validate_unique=False, validate_constraints=False, exclude=["version"])
        updating = not self._state.adding and not kwargs.get("force_insert")
        super().save(*args, **kwargs)
        if updating:
            # The trigger moved the version (and maybe lastUpdated) on in the database; the
            # response mapped from this instance must show the stored values, not the old.
            self.refresh_from_db(fields=["version", "updated_at"])

    def clean_tenant(self, **related: Any) -> None:
        """Refuse links to rows of another organisation."""
        errors = {}
        for field, obj in related.items():
            if obj is not None and obj.organization_id != self.organization_id:
                errors[field] = _("Belongs to another organisation.")
        if errors:
            raise ValidationError(errors)


class Patient(TenantModel):
    family = models.CharField(_("family name"), max_length=200, blank=True)
    given = models.CharField(_("given names"), max_length=200, blank=True)
    gender = models.CharField(
        max_length=16, choices=AdministrativeGender.choices, blank=True, verbose_name=_("gender")
    )
    birth_date = models.DateField(null=True, blank=True, verbose_name=_("birth date"))
    email = models.EmailField(blank=True, verbose_name=_("email"))
    phone = models.CharField(max_length=64, blank=True, verbose_name=_("phone"))
    active = models.BooleanField(default=True, verbose_name=_("active"))

    class Meta:
        ordering = ["organization", "fhir_id"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "fhir_id"], name="uniq_patient_id")
        ]
        verbose_name = _("patient")
        verbose_name_plural = _("patients")

    def __str__(self) -> str:
        return self.display or self.fhir_id

    @property
    def display(self) -> str:
        return " ".join(part for part in (self.given, self.family) if part)


class Practitioner(TenantModel):
    family = models.CharField(_("family name"), max_length=200, blank=True)
    given = models.CharField(_("given names"), max_length=200, blank=True)
    prefix = models.CharField(max_length=50, blank=True, verbose_name=_("prefix"))
    active = models.BooleanField(default=True, verbose_name=_("active"))

    class Meta:
        ordering = ["organization", "fhir_id"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "fhir_id"], name="uniq_practitioner_id")
        ]
        verbose_name = _("practitioner")
        verbose_name_plural = _("practitioners")

    def __str__(self) -> str:
        return self.display or self.fhir_id

    @property
    def display(self) -> str:
        return " ".join(part for part in (self.prefix, self.given, self.family) if part)


class PractitionerRole(TenantModel):
    practitioner = models.ForeignKey(
        Practitioner,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="roles",
        verbose_name=_("practitioner"),
    )
    # The role as a coded concept, e.g. {"system": "...", "code": "...", "display": "GP"}.
    code = models.JSONField(default=list, blank=True, verbose_name=_("code"))
    specialty = models.JSONField(default=list, blank=True, verbose_name=_("specialty"))
    active = models.BooleanField(default=True, verbose_name=_("active"))

    class Meta:
        ordering = ["organization", "fhir_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "fhir_id"], name="uniq_practitionerrole_id"
            )
        ]
        verbose_name = _("practitioner role")
        verbose_name_plural = _("practitioner roles")

    def __str__(self) -> str:
        name = self.practitioner.display if self.practitioner else ""
        label = ""
        for concept in self.code or []:
            label = concept.get("display") or concept.get("code") or ""
            if label:
                break
        return " - ".join(p for p in (name, label) if p) or self.fhir_id

    def clean(self) -> None:
        self.clean_tenant(practitioner=self.practitioner)


class RecurrenceFields(models.Model):
    """Optional recurrence: an RRULE in an IANA zone, repeating the first period."""

    rrule = models.CharField(
        _("RRULE"),
        max_length=500,
        blank=True,
        validators=[validate_rrule_value],
        help_text=_("RFC 5545 RRULE without the 'RRULE:' prefix, e.g. FREQ=WEEKLY;BYDAY=MO"),
    )
    recurrence_timezone = models.CharField(
        _("recurrence time zone"),
        max_length=64,
        blank=True,
        validators=[validate_timezone_name],
        help_text=_("IANA zone the rule runs in; empty means the organisation's zone."),
    )
    exdates = models.JSONField(
        _("exception dates"),
        default=list,
        blank=True,
        validators=[validate_exdates],
        help_text=_("Occurrence starts left out (ISO 8601 with offset)."),
    )

    class Meta:
        abstract = True

    @property
    def is_recurring(self) -> bool:
        return bool(self.rrule)

    def rule_timezone(self, organization: Organization) -> str:
        return self.recurrence_timezone or organization.timezone

    def exdate_values(self) -> list[datetime]:
        return [datetime.fromisoformat(value) for value in self.exdates or []]


ZERO = timedelta(0)

#: Sane maxima of the booking rules: beyond these a value is a typo, not a policy.
MAX_NOTICE_MINUTES = 60 * 24 * 365
MAX_ADVANCE_DAYS = 365 * 5
#: Buffers are cleaning or preparation time; more than four hours is a typo. Reads of an
#: occupant's time widen their window by this much to see neighbours' buffers.
MAX_BUFFER_MINUTES = 60 * 4
MAX_CUTOFF_HOURS = 24 * 365
MAX_CAPACITY = 1000


class Schedule(TenantModel, RecurrenceFields):
    """A practitioner's availability; with a recurrence its period is the first window."""

    active = models.BooleanField(default=True, verbose_name=_("active"))
    practitioner_role = models.ForeignKey(
        PractitionerRole,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="schedules",
        help_text=_("The actor whose availability this is."),
        verbose_name=_("practitioner role"),
    )
    practitioner = models.ForeignKey(
        Practitioner,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="schedules",
        verbose_name=_("practitioner"),
    )
    # Coded concepts: [{"system": ..., "code": ..., "display": ...}].
    service_category = models.JSONField(
        default=list, blank=True, verbose_name=_("service category")
    )
    service_type = models.JSONField(default=list, blank=True, verbose_name=_("service type"))
    specialty = models.JSONField(default=list, blank=True, verbose_name=_("specialty"))
    planning_start = models.DateTimeField(_("start of (first) window"))
    planning_end = models.DateTimeField(_("end of (first) window"))
    slot_minutes = models.PositiveIntegerField(
        _("slot duration (minutes)"),
        null=True,
        blank=True,
        help_text=_("Cut each availability window into slots of this many minutes."),
    )
    comment = models.TextField(blank=True, verbose_name=_("comment"))

    # Booking rules (urn:extension:booking-rules); empty means "no such rule". The engine
    # applies them, so search never offers what a booking would refuse.
    minimum_notice_minutes = models.PositiveIntegerField(
        _("book at least … minutes ahead"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_NOTICE_MINUTES)],
    )
    maximum_advance_days = models.PositiveIntegerField(
        _("book at most … days ahead"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_ADVANCE_DAYS)],
    )
    buffer_before_minutes = models.PositiveIntegerField(
        _("keep … minutes free before each booking"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_BUFFER_MINUTES)],
    )
    buffer_after_minutes = models.PositiveIntegerField(
        _("keep … minutes free after each booking"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_BUFFER_MINUTES)],
    )
    capacity = models.PositiveIntegerField(
        _("patients per slot"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_CAPACITY)],
        help_text=_("For group sessions; empty means one patient per slot."),
    )
    cancellation_cutoff_hours = models.PositiveIntegerField(
        _("patients may cancel or move up to … hours before"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_CUTOFF_HOURS)],
    )
    max_active_per_patient = models.PositiveIntegerField(
        _("at most … upcoming bookings per patient"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_CAPACITY)],
    )

    class Meta:
        ordering = ["organization", "planning_start", "fhir_id"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "fhir_id"], name="uniq_schedule_id"),
            models.CheckConstraint(
                condition=Q(planning_end__gt=models.F("planning_start")),
                name="schedule_end_after_start",
            ),
        ]
        indexes = [
            models.Index(
                fields=["organization", "active", "planning_start"], name="schedule_org_start"
            ),
        ]
        verbose_name = _("schedule")
        verbose_name_plural = _("schedules")

    def __str__(self) -> str:
        return self.fhir_id

    def clean(self) -> None:
        self.clean_tenant(practitioner_role=self.practitioner_role, practitioner=self.practitioner)
        if self.planning_start and self.planning_end and self.planning_end <= self.planning_start:
            raise ValidationError({"planning_end": _("The end must be after the start.")})
        if self.slot_minutes is not None and self.slot_minutes < 1:
            raise ValidationError({"slot_minutes": _("A slot lasts at least one minute.")})

    @property
    def slot_duration(self) -> timedelta | None:
        return timedelta(minutes=self.slot_minutes) if self.slot_minutes else None

    @property
    def seats(self) -> int:
        """How many patients one slot takes (``capacity``, default one)."""
        return self.capacity or 1

    @property
    def buffers(self) -> tuple[timedelta, timedelta]:
        """(before, after): how long each booking also occupies its occupant."""
        return (
            timedelta(minutes=self.buffer_before_minutes or 0),
            timedelta(minutes=self.buffer_after_minutes or 0),
        )

    @property
    def occupant(self) -> str:
        """Whose time this schedule's bookings take (:func:`occupant_key`)."""
        role = self.practitioner_role if self.practitioner_role_id else None
        return occupant_key(
            practitioner_id=self.practitioner_id or (role.practitioner_id if role else None),
            role_id=self.practitioner_role_id,
            schedule_id=self.pk,
        )


class Slot(TenantModel):
    # Indexed by ``slot_schedule_end`` (its first column), not an index of its own.
    schedule = models.ForeignKey(
        Schedule,
        on_delete=models.CASCADE,
        related_name="slots",
        verbose_name=_("schedule"),
        db_index=False,
    )
    status = models.CharField(max_length=20, choices=SlotStatus.choices, verbose_name=_("status"))
    start = models.DateTimeField(verbose_name=_("start"))
    end = models.DateTimeField(verbose_name=_("end"))
    service_category = models.JSONField(
        default=list, blank=True, verbose_name=_("service category")
    )
    overbooked = models.BooleanField(default=False, verbose_name=_("overbooked"))
    comment = models.TextField(blank=True, verbose_name=_("comment"))

    class Meta:
        ordering = ["organization", "start", "fhir_id"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "fhir_id"], name="uniq_slot_id"),
            models.CheckConstraint(
                condition=Q(end__gt=models.F("start")), name="slot_end_after_start"
            ),
        ]
        indexes = [
            models.Index(
                fields=["organization", "schedule", "start"], name="slot_org_schedule_start"
            ),
            models.Index(fields=["organization", "start"], name="slot_org_start"),
            # Overlap searches bound ``end`` from below: only rows not yet over are read.
            models.Index(fields=["organization", "end"], name="slot_org_end"),
            # The same for one schedule's slots (a search with ``schedule=``): with only
            # (schedule) or (schedule, start) PostgreSQL read every slot of the schedule's
            # history before the window (a year of an imported schedule: 2.6 ms for one
            # day, 0.43 with this). It also serves the foreign key (deleting a schedule).
            models.Index(fields=["schedule", "end"], name="slot_schedule_end"),
            # Blocked time (``busy-unavailable``) is read org-wide by every Slot search that
            # is not cached and by every booking check; it is a few rows among all the
            # stored slots, which without the status in the key were all read and filtered
            # (2.9 ms of a 6 ms one-schedule day search in a clinic of 36,000 stored slots).
            models.Index(fields=["organization", "status", "end"], name="slot_org_status_end"),
        ]
        verbose_name = _("slot")
        verbose_name_plural = _("slots")

    def __str__(self) -> str:
        return self.fhir_id

    def clean(self) -> None:
        self.clean_tenant(schedule=self.schedule if self.schedule_id else None)
        if self.start and self.end and self.end <= self.start:
            raise ValidationError({"end": _("The end must be after the start.")})


class Appointment(TenantModel, RecurrenceFields):
    patient = models.ForeignKey(
        Patient, on_delete=models.PROTECT, related_name="appointments", verbose_name=_("patient")
    )
    status = models.CharField(
        max_length=20, choices=AppointmentStatus.choices, verbose_name=_("status")
    )
    start = models.DateTimeField(verbose_name=_("start"))
    end = models.DateTimeField(verbose_name=_("end"))
    schedule = models.ForeignKey(
        Schedule,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="appointments",
        verbose_name=_("schedule"),
    )
    practitioner_role = models.ForeignKey(
        PractitionerRole,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="appointments",
        verbose_name=_("practitioner role"),
    )
    slot = models.ForeignKey(
        Slot,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="appointments",
        verbose_name=_("slot"),
    )
    patient_status = models.CharField(
        max_length=20,
        choices=ParticipationStatus.choices,
        default=ParticipationStatus.ACCEPTED,
        verbose_name=_("patient status"),
    )
    practitioner_status = models.CharField(
        max_length=20,
        choices=ParticipationStatus.choices,
        default=ParticipationStatus.NEEDS_ACTION,
        verbose_name=_("practitioner status"),
    )
    service_category = models.JSONField(
        default=list, blank=True, verbose_name=_("service category")
    )
    description = models.CharField(max_length=500, blank=True, verbose_name=_("description"))
    comment = models.TextField(blank=True, verbose_name=_("comment"))
    cancelation_reason = models.CharField(
        max_length=200, blank=True, verbose_name=_("cancelation reason")
    )
    #: Who this appointment occupies (``occupant_key``): the practitioner, or the role when
    #: it has none. Denormalised so the database can refuse overlaps per person.
    occupant = models.CharField(
        max_length=40, blank=True, editable=False, verbose_name=_("occupant")
    )
    #: Which of the slot's places it takes (0 unless the schedule has a capacity above 1):
    #: the exclusion constraint refuses two overlapping appointments of one occupant in the
    #: same seat, so at most ``capacity`` can overlap whatever the concurrency.
    seat = models.PositiveSmallIntegerField(default=0, editable=False, verbose_name=_("seat"))
    #: A hold (status pending) lapses by itself at this instant: from then on it reads as
    #: cancelled ("hold expired") and occupies nothing, with no job needed to make it so.
    held_until = models.DateTimeField(null=True, blank=True, verbose_name=_("held until"))
    #: What it occupies of its occupant's time: start and end widened by its schedule's
    #: buffers (equal to start and end without buffers). Derived in ``clean``.
    occupied_start = models.DateTimeField(
        null=True, blank=True, editable=False, verbose_name=_("occupied start")
    )
    occupied_end = models.DateTimeField(
        null=True, blank=True, editable=False, verbose_name=_("occupied end")
    )

    class Meta:
        ordering = ["organization", "start", "fhir_id"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "fhir_id"], name="uniq_appointment_id"),
            models.CheckConstraint(
                condition=Q(end__gt=models.F("start")), name="appointment_end_after_start"
            ),
            # A last line on every database: one active plain appointment per occupant, start
            # and seat. On PostgreSQL the exclusion constraints of migration 0004 go further
            # (no two overlapping intervals per occupant and seat, nor per patient).
            models.UniqueConstraint(
                fields=["organization", "occupant", "start", "seat"],
                condition=~Q(occupant="")
                & Q(rrule="")
                & ~Q(status__in=["cancelled", "noshow", "entered-in-error"]),
                name="uniq_active_appointment_per_occupant_start",
            ),
        ]
        indexes = [
            models.Index(
                fields=["organization", "patient", "start"], name="appt_org_patient_start"
            ),
            models.Index(
                fields=["organization", "schedule", "start"], name="appt_org_schedule_start"
            ),
            # Overlap searches bound ``end`` from below (plain rows) and read the few
            # recurring rows separately: neither grows with the history.
            models.Index(fields=["organization", "end"], name="appt_org_end"),
            # A booking (and a search of a few schedules) reads one occupant's time.
            models.Index(fields=["organization", "occupant", "end"], name="appt_org_occupant_end"),
            models.Index(
                fields=["organization", "start"],
                condition=~Q(rrule=""),
                name="appt_org_recurring_start",
            ),
        ]
        verbose_name = _("appointment")
        verbose_name_plural = _("appointments")

    def __str__(self) -> str:
        return self.fhir_id

    @property
    def is_active(self) -> bool:
        return self.status not in INACTIVE_APPOINTMENT_STATUSES

    def clean(self) -> None:
        self.clean_tenant(
            patient=self.patient if self.patient_id else None,
            schedule=self.schedule if self.schedule_id else None,
            practitioner_role=self.practitioner_role if self.practitioner_role_id else None,
            slot=self.slot if self.slot_id else None,
        )
        if self.start and self.end and self.end <= self.start:
            raise ValidationError({"end": _("The end must be after the start.")})
        # Derived, never typed: kept in step here because every save validates.
        self.occupant = self.resolve_occupant()
        before, after = self.schedule.buffers if self.schedule is not None else (ZERO, ZERO)
        if self.start and self.end:
            self.occupied_start, self.occupied_end = self.start - before, self.end + after

    def resolve_occupant(self) -> str:
        """Whose time this appointment takes: its schedule's occupant, else its role's."""
        if self.schedule is not None:
            return self.schedule.occupant
        role = self.practitioner_role if self.practitioner_role_id else None
        return occupant_key(
            practitioner_id=role.practitioner_id if role else None,
            role_id=self.practitioner_role_id,
        )

    @property
    def is_held(self) -> bool:
        """A hold: pending with an expiry (live or lapsed)."""
        return self.held_until is not None and self.status == AppointmentStatus.PENDING

    def hold_lapsed(self, now: datetime) -> bool:
        """Whether this is a hold whose time ran out: it then reads as cancelled."""
        return self.is_held and self.held_until is not None and self.held_until <= now


class AppointmentResponse(TenantModel):
    appointment = models.ForeignKey(
        Appointment,
        on_delete=models.CASCADE,
        related_name="responses",
        verbose_name=_("appointment"),
    )
    patient = models.ForeignKey(
        Patient, on_delete=models.CASCADE, related_name="responses", verbose_name=_("patient")
    )
    participant_status = models.CharField(
        max_length=20, choices=ParticipationStatus.choices, verbose_name=_("participant status")
    )
    comment = models.TextField(blank=True, verbose_name=_("comment"))
    start = models.DateTimeField(null=True, blank=True, verbose_name=_("start"))
    end = models.DateTimeField(null=True, blank=True, verbose_name=_("end"))
    client_id = models.CharField(max_length=100, blank=True, verbose_name=_("client id"))

    class Meta:
        ordering = ["organization", "created_at", "fhir_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "fhir_id"], name="uniq_appointmentresponse_id"
            )
        ]
        verbose_name = _("appointment response")
        verbose_name_plural = _("appointment responses")

    def __str__(self) -> str:
        return self.fhir_id

    def clean(self) -> None:
        self.clean_tenant(
            appointment=self.appointment if self.appointment_id else None,
            patient=self.patient if self.patient_id else None,
        )


class IdempotencyKey(models.Model):
    """A booking's Idempotency-Key, kept in the database so it holds across processes."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE)
    client_id = models.CharField(max_length=100)
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE)
    key = models.CharField(max_length=200)
    appointment = models.ForeignKey(Appointment, on_delete=models.CASCADE)
    request_hash = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "client_id", "patient", "key"], name="uniq_idempotency_key"
            )
        ]
        verbose_name = _("idempotency key")
        verbose_name_plural = _("idempotency keys")


class AuditEvent(models.Model):
    """Who changed which booking, when, and how (append-only)."""

    class Action(models.TextChoices):
        CREATED = "created", _("Created")
        HELD = "held", _("Held")
        CONFIRMED = "confirmed", _("Confirmed")
        CANCELLED = "cancelled", _("Cancelled")
        HOLD_EXPIRED = "hold-expired", _("Hold expired")
        RESCHEDULED = "rescheduled", _("Rescheduled")
        STATUS_CHANGED = "status-changed", _("Status changed")
        PARTICIPANT_STATUS = "participant-status", _("Participant status")
        NOSHOW = "noshow", _("No-show")
        UPDATED = "updated", _("Updated")
        IMPORTED = "imported", _("Imported")
        BLOCKED = "blocked", _("Time blocked")
        UNBLOCKED = "unblocked", _("Time unblocked")

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, verbose_name=_("organization")
    )
    at = models.DateTimeField(auto_now_add=True, verbose_name=_("at"))
    actor = models.CharField(
        max_length=200, help_text=_("API client id or staff user"), verbose_name=_("actor")
    )
    action = models.CharField(max_length=32, choices=Action.choices, verbose_name=_("action"))
    appointment = models.ForeignKey(
        Appointment,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="audit_events",
        verbose_name=_("appointment"),
    )
    appointment_fhir_id = models.CharField(max_length=64, verbose_name=_("appointment fhir id"))
    detail = models.JSONField(default=dict, blank=True, verbose_name=_("detail"))

    class Meta:
        ordering = ["organization", "-at"]
        indexes = [
            models.Index(fields=["organization", "appointment_fhir_id"], name="audit_org_appt"),
        ]
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor} {self.action} {self.appointment_fhir_id}"


def occupant_key(
    *, practitioner_id: int | None, role_id: int | None, schedule_id: int | None = None
) -> str:
    """Whose time a booking takes: ``practitioner:{pk}``, else ``role:{pk}`` (a role with no
    practitioner), else ``schedule:{pk}`` (a schedule with no actor at all), else "".

    Clinics book people, not schedules: every schedule and appointment of one practitioner
    shares this key, whichever role or schedule it goes through.
    """
    if practitioner_id:
        return f"practitioner:{practitioner_id}"
    if role_id:
        return f"role:{role_id}"
    if schedule_id:
        return f"schedule:{schedule_id}"
    return ""


class OccupantLock(models.Model):
    """One row per occupant, locked (``SELECT ... FOR UPDATE``) by every write that changes
    what occupies that occupant, so such writes queue per person. It guards what no
    constraint can see: occurrences of recurring appointments, blocked time, capacity.
    ``organization`` is part of the key so the lock lives with the tenant's rows when the
    tables are distributed by organisation.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE)
    key = models.CharField(max_length=40)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "key"], name="uniq_occupant_lock")
        ]
        verbose_name = _("occupant lock")
        verbose_name_plural = _("occupant locks")

    def __str__(self) -> str:
        return f"{self.organization_id}: {self.key}"


class DataStamp(models.Model):
    """Random stamps per organisation, renewed whenever its scheduling data changes.

    Written only by database triggers (migration 0003) on every insert, update and delete,
    whatever the path (ORM, bulk operations, admin, imports, raw SQL): ``schedules`` for
    practitioners, roles and schedules, ``bookings`` for slots and appointments. Searches
    key their per-process caches on them (``scheduling.db.search_cache``): a worker that
    reads the stamps it cached a result under knows nothing changed, so the caches stay
    correct across workers and machines. Random rather than counters, so a flushed or
    restored database can never bring an old stamp back. No foreign key: the stamps
    outlive a deleted organisation and keep a recreated one from reusing them.
    """

    organization_id = models.CharField(primary_key=True, max_length=64)
    schedules = models.BigIntegerField()
    bookings = models.BigIntegerField()
    #: PostgreSQL: the transaction that last renewed each stamp (once per transaction).
    schedules_txid = models.BigIntegerField(null=True)
    bookings_txid = models.BigIntegerField(null=True)

    class Meta:
        verbose_name = _("data stamp")
        verbose_name_plural = _("data stamps")

    def __str__(self) -> str:
        return f"{self.organization_id}: {self.schedules}/{self.bookings}"
