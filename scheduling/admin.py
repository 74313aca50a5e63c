"""The Django admin for clinic staff, scoped to their organisations.

Every admin inherits :class:`~scheduling.tenancy_admin.OrganizationScopedAdmin`, the one
place where rows, choices and writes are limited to the user's organisations.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import flatten_fieldsets
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from scheduling import admin_views, front_desk
from scheduling.appointment_forms import AppointmentBookForm, AppointmentChangeForm
from scheduling.errors import DomainError
from scheduling.forms import (
    PractitionerRoleAdminForm,
    ScheduleAdminForm,
    describe_recurrence,
    upcoming_occurrences,
)
from scheduling.models import (
    Appointment,
    AppointmentResponse,
    AuditEvent,
    Organization,
    Patient,
    Practitioner,
    PractitionerRole,
    Schedule,
    Slot,
    SlotStatus,
    StaffMembership,
)
from scheduling.selectors.schedules import schedules_overlapping
from scheduling.services import appointment_cancel, appointment_mark_noshow
from scheduling.services.blocks import time_unblock
from scheduling.services.common import new_fhir_id
from scheduling.services.reassign import occupants_rekey
from scheduling.tenancy_admin import OrganizationScopedAdmin, user_single_organization

admin.site.site_header = gettext_lazy("MediKIT scheduling")
admin.site.site_title = gettext_lazy("MediKIT scheduling")
admin.site.index_title = gettext_lazy("Clinic administration")


def _staff_actor(request: HttpRequest) -> str:
    return f"staff:{request.user.get_username()}"


def _bookings_follow(
    request: HttpRequest,
    model_admin: admin.ModelAdmin[Any],
    *,
    schedules: list[Schedule] | None = None,
    roles: list[PractitionerRole] | None = None,
) -> None:
    """After a schedule or role is saved: its bookings take the time of the practitioner
    it now names (services.reassign). The form already refused a clash; one that appeared
    since (another desk booking meanwhile) undoes the whole save, in plain words."""
    organization = (schedules or roles or [None])[0].organization  # type: ignore[union-attr]
    try:
        moved = occupants_rekey(
            organization=organization,
            schedules=schedules or (),
            roles=roles or (),
            actor=_staff_actor(request),
        )
    except DomainError as exc:
        transaction.set_rollback(True)
        model_admin.message_user(request, exc.translated(), messages.ERROR)
        return
    if moved:
        model_admin.message_user(
            request,
            ngettext(
                "%(count)d booking now takes the new practitioner's time.",
                "%(count)d bookings now take the new practitioner's time.",
                len(moved),
            )
            % {"count": len(moved)},
            messages.INFO,
        )


class CalendarAdminMixin:
    """Adds the week-calendar and block-time pages (and a list link) to an admin."""

    calendar_name: str
    calendar_view: Any
    block_view: Any

    @admin.display(description=gettext_lazy("Calendar"))
    def calendar_link(self, obj: Any) -> str:
        url = reverse(f"admin:{self.calendar_name}_calendar", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, _("Week calendar"))

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view  # type: ignore[attr-defined]
        return [
            path(
                "<path:object_id>/calendar/",
                wrap(partial(self.calendar_view, model_admin=self)),
                name=f"{self.calendar_name}_calendar",
            ),
            path(
                "<path:object_id>/block/",
                wrap(partial(self.block_view, model_admin=self)),
                name=f"{self.calendar_name}_block",
            ),
            *super().get_urls(),  # type: ignore[misc]
        ]


class FrontDeskMixin:
    """The front desk (scheduling/front_desk.py): the day across practitioners, and
    booking, moving, cancelling and unblocking from it."""

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view  # type: ignore[attr-defined]
        me: Any = self  # a ModelAdmin once mixed in
        return [
            path(
                "day/",
                wrap(partial(front_desk.day_view, model_admin=me)),
                name="scheduling_frontdesk_day",
            ),
            path(
                "day/book/",
                wrap(partial(front_desk.book_view, model_admin=me)),
                name="scheduling_frontdesk_book",
            ),
            path(
                "day/appointment/<path:object_id>/",
                wrap(partial(front_desk.appointment_view, model_admin=me)),
                name="scheduling_frontdesk_appointment",
            ),
            path(
                "day/blocked/<path:object_id>/",
                wrap(partial(front_desk.slot_view, model_admin=me)),
                name="scheduling_frontdesk_slot",
            ),
            *super().get_urls(),  # type: ignore[misc]
        ]


class GeneratedIdMixin:
    """A new row's FHIR id is generated and shown (it may be kept or replaced); once saved
    it is read-only, since every API URL and integration names it."""

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)  # type: ignore[misc]
        initial.setdefault("fhir_id", new_fhir_id())
        return initial  # type: ignore[no-any-return]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = tuple(super().get_readonly_fields(request, obj))  # type: ignore[misc]
        return fields if obj is None else (*fields, "fhir_id")


class PatientAppointmentsInline(admin.TabularInline):  # type: ignore[type-arg]
    """The patient's appointments on the patient page, read-only (changes go through the
    appointment page and its services)."""

    model = Appointment
    fk_name = "patient"
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ("-start",)
    fields = ("start", "end", "status", "practitioner_role", "schedule", "comment")
    readonly_fields = fields
    verbose_name = gettext_lazy("appointment")
    verbose_name_plural = gettext_lazy("appointments")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PractitionerListFilter(admin.SimpleListFilter):
    """Appointments by practitioner (whatever role or schedule they were booked on)."""

    title = gettext_lazy("practitioner")
    parameter_name = "practitioner"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        practitioners = admin.site._registry[Practitioner].get_queryset(request)
        return [(str(p.pk), str(p)) for p in practitioners.order_by("family", "given")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if not self.value():
            return queryset
        return queryset.filter(
            Q(practitioner_role__practitioner_id=self.value())
            | Q(schedule__practitioner_id=self.value())
        ).distinct()


class ReadOnlyAdminMixin:
    """For records written by the API or services only (responses, audit trail)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Organization)
class OrganizationAdmin(OrganizationScopedAdmin):
    organization_lookup = "pk"
    list_display = ("id", "name", "timezone")
    search_fields = ("id", "name")
    list_filter = ("timezone",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A new tenant is an operator's decision (create_organization), not a clinic's.
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # The id is in every API URL: renaming it would break every integration.
        return ("id",) if obj is not None else ()


@admin.register(StaffMembership)
class StaffMembershipAdmin(OrganizationScopedAdmin):
    list_display = ("user", "organization")
    list_filter = ("organization",)
    search_fields = ("user__username", "user__email", "organization__id", "organization__name")
    autocomplete_fields = ("organization",)

    # Who works for which clinic decides what everyone sees: superusers only.
    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser


@admin.register(Patient)
class PatientAdmin(GeneratedIdMixin, OrganizationScopedAdmin):
    list_display = ("family", "given", "birth_date", "gender", "active", "fhir_id")
    inlines = (PatientAppointmentsInline,)
    list_filter = ("active", "gender", ("organization", admin.RelatedOnlyFieldListFilter))
    search_fields = ("fhir_id", "family", "given", "email", "phone")


@admin.register(Practitioner)
class PractitionerAdmin(FrontDeskMixin, CalendarAdminMixin, OrganizationScopedAdmin):
    list_display = (
        "fhir_id",
        "prefix",
        "given",
        "family",
        "active",
        "organization",
        "calendar_link",
    )
    list_filter = ("active", ("organization", admin.RelatedOnlyFieldListFilter))
    search_fields = ("fhir_id", "family", "given")

    calendar_name = "scheduling_practitioner"
    calendar_view = staticmethod(admin_views.practitioner_calendar_view)
    block_view = staticmethod(admin_views.practitioner_block_view)


@admin.register(PractitionerRole)
class PractitionerRoleAdmin(OrganizationScopedAdmin):
    form = PractitionerRoleAdminForm
    list_display = ("fhir_id", "__str__", "practitioner", "active", "organization")
    list_filter = ("active", ("organization", admin.RelatedOnlyFieldListFilter))
    search_fields = (
        "fhir_id",
        "practitioner__family",
        "practitioner__given",
        "practitioner__fhir_id",
    )

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        _bookings_follow(request, self, roles=[obj])


@admin.register(Schedule)
class ScheduleAdmin(GeneratedIdMixin, CalendarAdminMixin, OrganizationScopedAdmin):
    form = ScheduleAdminForm
    change_form_template = "admin/scheduling/schedule/change_form.html"
    list_display = (
        "fhir_id",
        "practitioner_role",
        "summary",
        "slot_minutes",
        "active",
        "organization",
        "calendar_link",
    )
    list_filter = (
        "active",
        ("practitioner_role", admin.RelatedOnlyFieldListFilter),
        ("organization", admin.RelatedOnlyFieldListFilter),
    )
    search_fields = ("fhir_id", "practitioner__family", "practitioner_role__fhir_id", "comment")
    list_select_related = ("organization", "practitioner_role__practitioner")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "organization",
                    "fhir_id",
                    "active",
                    "practitioner_role",
                    "practitioner",
                    "comment",
                )
            },
        ),
        (
            gettext_lazy("First availability window"),
            {
                "fields": (
                    "first_date",
                    ("start_time", "end_time"),
                    "ends_next_day",
                    "slot_minutes",
                    "recurrence_timezone",
                )
            },
        ),
        (
            gettext_lazy("Repeats"),
            {"fields": ("frequency", "interval", "weekdays", "until", "count", "exceptions")},
        ),
        (
            gettext_lazy("Booking rules"),
            {
                "fields": (
                    "minimum_notice_minutes",
                    "maximum_advance_days",
                    "buffer_before_minutes",
                    "buffer_after_minutes",
                    "capacity",
                    "cancellation_cutoff_hours",
                    "max_active_per_patient",
                ),
                "description": gettext_lazy(
                    "Leave a rule empty for none. Patients booking online are held to all "
                    "of them; staff booking here are held to the same slots, but may cancel "
                    "and move at any time."
                ),
            },
        ),
        (
            gettext_lazy("Expert"),
            {
                "fields": (
                    "rrule",
                    "window_start",
                    "window_end",
                    "service_category",
                    "service_type",
                    "specialty",
                ),
                "classes": ("collapse",),
            },
        ),
    )

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form_class = super().get_form(request, obj, change=change, **kwargs)
        # The default zone of a new schedule is the (single) organisation's.
        return type(
            form_class.__name__,
            (form_class,),
            {"default_organization": user_single_organization(request.user)},
        )

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        _bookings_follow(request, self, schedules=[obj])
        # Overlapping schedules of one person are allowed (a GP hour and a vaccination
        # hour), but they share that person's time: say so, naming them.
        for other, first in schedules_overlapping(
            organization=obj.organization, schedule=obj, now=timezone.now()
        ):
            self.message_user(
                request,
                _(
                    "This schedule overlaps %(other)s of the same practitioner (first on "
                    "%(when)s). Both offer the same person's time: a booking on one makes "
                    "the overlapping slots of the other busy."
                )
                % {
                    "other": other,
                    "when": formats.date_format(
                        first.astimezone(obj.organization.zone), "j M Y H:i"
                    ),
                },
                messages.WARNING,
            )

    @admin.display(description=gettext_lazy("Availability"))
    def summary(self, obj: Schedule) -> str:
        return describe_recurrence(
            rrule=obj.rrule,
            first_start=obj.planning_start,
            first_end=obj.planning_end,
            tzid=obj.rule_timezone(obj.organization),
            exdate_count=len(obj.exdates or []),
            slot_minutes=obj.slot_minutes,
        )

    calendar_name = "scheduling_schedule"
    calendar_view = staticmethod(admin_views.schedule_calendar_view)
    block_view = staticmethod(admin_views.schedule_block_view)

    def _preview_context(self, schedule: Schedule) -> dict[str, Any]:
        """The summary and next occurrences of ``schedule`` (saved or not), in its zone."""
        context: dict[str, Any] = {}
        rule_tz = schedule.rule_timezone(schedule.organization)
        tz = schedule.organization.zone
        try:
            preview = upcoming_occurrences(schedule, after=timezone.now())
        except DomainError as exc:
            preview, context["preview_error"] = [], exc.translated()
        context.update(
            summary=self.summary(schedule),
            preview=[(p.start.astimezone(tz), p.end.astimezone(tz)) for p in preview],
            preview_zone=rule_tz,
        )
        return context

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = dict(extra_context or {})
        obj = self.get_object(request, object_id)
        if obj is not None:
            context.update(
                calendar_url=reverse("admin:scheduling_schedule_calendar", args=[obj.pk]),
                block_url=reverse("admin:scheduling_schedule_block", args=[obj.pk]),
            )
            if request.method == "POST" and "_preview" in request.POST:
                if not self.has_change_permission(request, obj):
                    raise PermissionDenied
                return self._preview_view(request, obj, form_url, context)
            context.update(self._preview_context(obj))
        return super().change_view(request, object_id, form_url, context)

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if request.method == "POST" and "_preview" in request.POST:
            if not self.has_add_permission(request):
                raise PermissionDenied
            return self._preview_view(request, None, form_url, dict(extra_context or {}))
        return super().add_view(request, form_url, extra_context)

    def _preview_view(
        self, request: HttpRequest, obj: Schedule | None, form_url: str, context: dict[str, Any]
    ) -> HttpResponse:
        """Validate the posted form and show it again with what it would do: never saves.

        The same form and validation as saving (Django's change form), so "Preview" then
        "Save" cannot disagree; only the last step (save, log, redirect) is left out.
        """
        add = obj is None
        fieldsets = self.get_fieldsets(request, obj)
        form_class = self.get_form(
            request, obj, change=not add, fields=flatten_fieldsets(fieldsets)
        )
        form = form_class(request.POST, request.FILES, instance=obj)
        if form.is_valid():
            # form.instance carries the posted values (unsaved): preview exactly that.
            context.update(self._preview_context(form.instance), previewed=True)
        admin_form = helpers.AdminForm(
            form,
            list(fieldsets),  # type: ignore[arg-type]
            self.get_prepopulated_fields(request, obj),
            self.get_readonly_fields(request, obj),
            model_admin=self,
        )
        context.update(
            {
                **self.admin_site.each_context(request),
                "title": (_("Add %s") if add else _("Change %s")) % self.opts.verbose_name,
                "subtitle": str(obj) if obj else None,
                "adminform": admin_form,
                "object_id": obj.pk if obj is not None else None,
                "original": obj,
                "is_popup": False,
                "to_field": None,
                "media": self.media + admin_form.media,
                "inline_admin_formsets": [],
                "errors": helpers.AdminErrorList(form, []),
                "preserved_filters": self.get_preserved_filters(request),
            }
        )
        return self.render_change_form(
            request, context, add=add, change=not add, obj=obj, form_url=form_url
        )


@admin.register(Slot)
class SlotAdmin(OrganizationScopedAdmin):
    list_display = ("fhir_id", "schedule", "status", "start", "end", "comment", "organization")
    list_filter = (
        "status",
        ("start", admin.DateFieldListFilter),
        ("schedule", admin.RelatedOnlyFieldListFilter),
        ("organization", admin.RelatedOnlyFieldListFilter),
    )
    search_fields = ("fhir_id", "schedule__fhir_id", "comment")
    date_hierarchy = "start"
    #: A stored slot changes what is free. Made here it would skip what Block time does
    #: (list the bookings it hits and ask to confirm, audit it), so only its comment is
    #: edited here; blocking is Block time, unblocking is the front desk's Unblock (or
    #: Delete here, which unblocks through the same service).
    _FIXED = ("fhir_id", "organization", "schedule", "status", "start", "end")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return self._FIXED

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        description = ""
        if obj is not None:
            description = format_html(
                '{} <a href="{}" id="slot-block-time">{}</a> · '
                '<a href="{}" id="slot-unblock">{}</a>',
                _(
                    "Time is blocked and unblocked from the calendar, which lists the "
                    "bookings a block would hit and asks to confirm:"
                ),
                reverse("admin:scheduling_schedule_block", args=[obj.schedule_id]),
                _("Block time"),
                reverse("admin:scheduling_frontdesk_slot", args=[obj.pk]),
                _("Unblock"),
            )
        return [(None, {"fields": (*self._FIXED, "comment"), "description": description})]

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        if not self.get_queryset(request).filter(pk=obj.pk).exists():
            raise PermissionDenied
        self._delete(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for slot in queryset:  # the changelist's queryset: already this user's organisations
            self._delete(request, slot)

    def _delete(self, request: HttpRequest, slot: Slot) -> None:
        # Removing a block frees time: the block service's unblock, audited.
        if slot.status == SlotStatus.BUSY_UNAVAILABLE:
            time_unblock(
                organization=slot.organization,
                slot=slot,
                actor=f"staff:{request.user.get_username()}",
            )
        else:
            slot.delete()


@admin.register(Appointment)
class AppointmentAdmin(OrganizationScopedAdmin):
    change_list_template = "admin/scheduling/appointment/change_list.html"
    # People first: when, who, with whom, how it stands; the long id last.
    list_display = (
        "when",
        "patient",
        "practitioner",
        "status_badge",
        "schedule",
        "fhir_id",
    )
    list_display_links = ("when",)
    list_filter = (
        ("start", admin.DateFieldListFilter),
        PractitionerListFilter,
        "status",
        ("organization", admin.RelatedOnlyFieldListFilter),
    )
    ordering = ("-start",)
    search_fields = ("fhir_id", "patient__fhir_id", "patient__family", "patient__given")
    list_select_related = ("patient", "practitioner_role__practitioner", "schedule", "organization")
    date_hierarchy = "start"
    actions = ("cancel_appointments", "mark_noshow")
    change_form_template = "admin/scheduling/appointment/change_form.html"

    def get_list_display(self, request: HttpRequest) -> tuple[str, ...]:
        return (*super().get_list_display(request), "hold")

    @admin.display(description=gettext_lazy("Hold"))
    def hold(self, obj: Appointment) -> str:
        """When a pending hold lapses (or lapsed), in the organisation's zone."""
        if not obj.is_held or obj.held_until is None:
            return "-"
        at = timezone.localtime(obj.held_until, obj.organization.zone)
        if obj.hold_lapsed(timezone.now()):
            return _("lapsed at %(at)s (reads as cancelled)") % {"at": f"{at:%Y-%m-%d %H:%M:%S}"}
        return _("held until %(at)s") % {"at": f"{at:%Y-%m-%d %H:%M:%S}"}

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/cancel/",
                self.admin_site.admin_view(self.cancel_view),
                name="scheduling_appointment_cancel",
            ),
            *super().get_urls(),
        ]

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST from the change page's Cancel button: cancel with the reason typed there.

        Staff may cancel what the API would refuse (an appointment that has started)."""
        obj = self.get_object(request, object_id)  # scoped to the user's organisations
        if obj is None or request.method != "POST" or not self.has_change_permission(request, obj):
            raise PermissionDenied
        try:
            appointment_cancel(
                organization=obj.organization,
                appointment=obj,
                actor=_staff_actor(request),
                reason=request.POST.get("reason", "").strip(),
                by_staff=True,
            )
        except DomainError as exc:
            self.message_user(request, exc.translated(), messages.ERROR)
        else:
            self.message_user(
                request, _("Appointment %(id)s cancelled.") % {"id": obj.fhir_id}, messages.SUCCESS
            )
        return HttpResponseRedirect(reverse("admin:scheduling_appointment_change", args=[obj.pk]))

    @admin.display(description=gettext_lazy("time"), ordering="start")
    def when(self, obj: Appointment) -> str:
        start = timezone.localtime(obj.start)
        end = timezone.localtime(obj.end)
        day = f"{formats.date_format(start, 'D')} {formats.date_format(start, 'DATE_FORMAT')}"
        return f"{day}, {start:%H:%M}\u2013{end:%H:%M}"

    @admin.display(description=gettext_lazy("practitioner"))
    def practitioner(self, obj: Appointment) -> str:
        role = obj.practitioner_role
        return str(role.practitioner) if role is not None else "\u2014"

    @admin.display(description=gettext_lazy("status"), ordering="status")
    def status_badge(self, obj: Appointment) -> str:
        css = "held" if obj.is_held else obj.status
        label = _("held") if obj.is_held else obj.get_status_display()
        return format_html('<span class="status-pill st-{}">{}</span>', css, label)

    # Every write goes through the booking services (scheduling/appointment_forms.py): the
    # same engine as the API decides, and each change writes its AuditEvent.
    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        kwargs["form"] = AppointmentChangeForm if obj is not None else AppointmentBookForm
        form_class = super().get_form(request, obj, change=change, **kwargs)
        return type(form_class.__name__, (form_class,), {"actor": _staff_actor(request)})

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        # ``hold``: a hold's expiry (set by $hold, cleared by $confirm), in the clinic's zone.
        return ("fhir_id", "patient", "end", "practitioner_role", "slot", "hold", "rrule")

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if getattr(form, "written", False):
            return  # the service wrote it, with its AuditEvent
        super().save_model(request, obj, form, change)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A booking is cancelled, never deleted: the audit trail and the patient's history
        # keep it.
        return False

    def _run_service(
        self, request: HttpRequest, queryset: QuerySet[Appointment], service: Any, done: str
    ) -> None:
        ok, failed = 0, []
        # queryset is already limited to the user's organisations (get_queryset).
        for appointment in queryset.select_related("organization"):
            try:
                service(
                    organization=appointment.organization,
                    appointment=appointment,
                    actor=_staff_actor(request),
                )
            except DomainError as exc:
                failed.append(exc.translated())
            else:
                ok += 1
        if ok:
            self.message_user(request, done % {"count": ok}, messages.SUCCESS)
        for message in failed:
            self.message_user(request, message, messages.ERROR)

    @admin.action(description=gettext_lazy("Cancel (frees the slot)"), permissions=["change"])
    def cancel_appointments(self, request: HttpRequest, queryset: QuerySet[Appointment]) -> None:
        self._run_service(
            request,
            queryset,
            partial(appointment_cancel, by_staff=True),
            _("%(count)d appointment(s) cancelled."),
        )

    @admin.action(description=gettext_lazy("Mark no-show"), permissions=["change"])
    def mark_noshow(self, request: HttpRequest, queryset: QuerySet[Appointment]) -> None:
        self._run_service(
            request,
            queryset,
            appointment_mark_noshow,
            _("%(count)d appointment(s) marked as no-show."),
        )


@admin.register(AppointmentResponse)
class AppointmentResponseAdmin(ReadOnlyAdminMixin, OrganizationScopedAdmin):
    list_display = (
        "fhir_id",
        "appointment",
        "patient",
        "participant_status",
        "created_at",
        "organization",
    )
    list_filter = ("participant_status", ("organization", admin.RelatedOnlyFieldListFilter))
    search_fields = ("fhir_id", "appointment__fhir_id", "patient__fhir_id", "patient__family")


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdminMixin, OrganizationScopedAdmin):
    list_display = ("at", "actor", "action", "appointment_fhir_id", "organization")
    list_filter = (
        "action",
        ("at", admin.DateFieldListFilter),
        ("organization", admin.RelatedOnlyFieldListFilter),
    )
    search_fields = ("actor", "appointment_fhir_id")
    date_hierarchy = "at"
