"""The front desk in the admin: a day across practitioners, and booking, moving,
cancelling, no-shows and unblocking from it.

Server-rendered HTML with real links and forms: it works under the admin's CSP
(``script-src 'self'``), with a keyboard and a screen reader, and needs no vendored
calendar library; one optional static script makes the patient search follow the typing.
Which slot is free is the engine's answer (the calendar's ``week_blocks``, which reads
Slot search); every write goes through the services, which lock, check again
and write the AuditEvent. Every object is looked up through its ModelAdmin's queryset, the
organisation fence: another organisation's id is a 404.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.http import urlencode
from django.utils.translation import gettext as _

from scheduling.admin_views import Block, Day, _clip_to_days, held_label, week_blocks
from scheduling.errors import DomainError
from scheduling.models import (
    Appointment,
    AppointmentStatus,
    Organization,
    Patient,
    Practitioner,
    Schedule,
    Slot,
    SlotStatus,
)
from scheduling.recurrence import Period
from scheduling.selectors import slot_search
from scheduling.selectors.occupancy import active_appointments_q
from scheduling.services.blocks import time_unblock
from scheduling.services.booking import appointment_book, appointment_reschedule
from scheduling.services.holds import appointment_confirm, appointment_hold
from scheduling.services.lifecycle import appointment_cancel, appointment_mark_noshow
from scheduling.tenancy_admin import user_organizations

#: Pixels per minute: a 15-minute slot is 45 px, room for a name and a reason.
PX_PER_MINUTE = 3
#: How long a hold placed at the desk keeps a slot (the API's $hold default is 5 min).
FRONT_DESK_HOLD = timedelta(minutes=10)
_DEFAULT_HOURS = (8, 18)


def _actor(request: HttpRequest) -> str:
    return f"staff:{request.user.get_username()}"


def _model_admin(model: type[Any]) -> admin.ModelAdmin[Any]:
    return admin.site._registry[model]


def scoped(model: type[Any], request: HttpRequest, pk: Any) -> Any:
    """``model``'s row ``pk`` through its admin's queryset (the organisation fence)."""
    model_admin = _model_admin(model)
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    try:
        return model_admin.get_queryset(request).get(pk=pk)
    except (model.DoesNotExist, ValueError, TypeError):
        raise Http404(_("No such object in your organisation.")) from None


def _require(request: HttpRequest, perm: str) -> None:
    if not request.user.has_perm(f"scheduling.{perm}"):
        raise PermissionDenied


def chosen_organization(request: HttpRequest) -> Organization:
    """The organisation of the page: ``?org=`` among the user's, else their first."""
    organizations = user_organizations(request.user).order_by("name", "pk")
    wanted = request.GET.get("org") or request.POST.get("org")
    if wanted:
        organization = organizations.filter(pk=wanted).first()
        if organization is None:
            raise Http404(_("No such object in your organisation."))
        return organization
    first = organizations.first()
    if first is None:
        raise PermissionDenied
    return first


def practitioner_schedules(practitioner: Practitioner) -> QuerySet[Schedule]:
    return (
        Schedule.objects.filter(organization_id=practitioner.organization_id, active=True)
        .filter(Q(practitioner=practitioner) | Q(practitioner_role__practitioner=practitioner))
        .select_related("practitioner_role", "organization")
        .distinct()
    )


def practitioner_appointments(
    practitioner: Practitioner, schedules: list[Schedule]
) -> QuerySet[Appointment]:
    return (
        Appointment.objects.filter(organization_id=practitioner.organization_id)
        .filter(Q(schedule__in=schedules) | Q(practitioner_role__practitioner=practitioner))
        .distinct()
    )


class BadDay(ValueError):
    """A ``?date=`` that is not a date."""


def parse_day(value: str | None, *, today: date) -> date:
    if not value:
        return today
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise BadDay(value) from None


def _bad_day(request: HttpRequest, model_admin: admin.ModelAdmin[Any], value: str) -> HttpResponse:
    message = _("'%(value)s' is not a date: use YYYY-MM-DD.") % {"value": value}
    context = {
        **model_admin.admin_site.each_context(request),
        "title": _("Day view"),
        "message": message,
    }
    return render(request, "scheduling/calendar_error.html", context, status=400)


def day_url(organization: Organization, day: date) -> str:
    query = urlencode({"date": day.isoformat(), "org": organization.pk})
    return f"{reverse('admin:scheduling_frontdesk_day')}?{query}"


@dataclass
class Column:
    practitioner: Practitioner
    blocks: list[Block] = field(default_factory=list)
    week_url: str = ""
    block_url: str = ""
    bookable: bool = True


def _lanes(blocks: list[Block]) -> dict[int, tuple[int, int]]:
    """Side-by-side lanes for bookings that overlap (a group slot's patients)."""
    bookings = sorted(
        (b for b in blocks if b.kind == "booking"), key=lambda b: (b.start, b.obj_pk or 0)
    )
    lanes: dict[int, tuple[int, int]] = {}
    group: list[Block] = []
    group_end: datetime | None = None

    def close() -> None:
        ends: list[datetime] = []
        index: dict[int, int] = {}
        for b in group:
            lane = next((i for i, end in enumerate(ends) if end <= b.start), None)
            if lane is None:
                ends.append(b.end)
                lane = len(ends) - 1
            else:
                ends[lane] = b.end
            index[id(b)] = lane
        for b in group:
            lanes[id(b)] = (index[id(b)], len(ends))

    for b in bookings:
        if group_end is not None and b.start >= group_end:
            close()
            group, group_end = [], None
        group.append(b)
        group_end = b.end if group_end is None else max(group_end, b.end)
    if group:
        close()
    return lanes


def _hours(columns: list[Column], day: date) -> tuple[int, int]:
    lo, hi = _DEFAULT_HOURS
    for column in columns:
        for b in column.blocks:
            lo = min(lo, b.start.hour)
            end_hour = 24 if b.end.date() > day else b.end.hour + (1 if b.end.minute else 0)
            hi = max(hi, end_hour)
    return lo, hi


def day_view(request: HttpRequest, *, model_admin: admin.ModelAdmin[Any]) -> HttpResponse:
    """Every practitioner of the organisation side by side for one day."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    organization = chosen_organization(request)
    tz = organization.zone
    now = timezone.now()
    today = now.astimezone(tz).date()
    try:
        day = parse_day(request.GET.get("date"), today=today)
    except BadDay as exc:
        return _bad_day(request, model_admin, exc.args[0])
    window = Period(
        datetime.combine(day, time(0), tzinfo=tz),
        datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz),
    )
    practitioners = list(
        model_admin.get_queryset(request)
        .filter(organization=organization, active=True)
        .order_by("family", "given", "pk")
    )
    can_book = request.user.has_perm("scheduling.add_appointment")
    columns: list[Column] = []
    with timezone.override(tz):
        for practitioner in practitioners:
            schedules = list(practitioner_schedules(practitioner))
            column = Column(
                practitioner,
                week_url=reverse("admin:scheduling_practitioner_calendar", args=[practitioner.pk])
                + f"?start={day.isoformat()}",
                block_url=reverse("admin:scheduling_practitioner_block", args=[practitioner.pk])
                + "?"
                + urlencode(
                    {
                        "start": f"{day.isoformat()}T08:00",
                        "end": f"{day.isoformat()}T18:00",
                        "next": day_url(organization, day),
                    }
                ),
            )
            holder = [Day(day)]
            for b in week_blocks(
                organization=organization,
                schedules=schedules,
                appointments=practitioner_appointments(practitioner, schedules),
                window=window,
                now=now,
            ):
                _clip_to_days(b, holder, tz)
            for b in holder[0].blocks:
                if b.kind == "free":
                    b.url = _book_url(organization, b) if can_book else ""
                elif b.kind == "booking" and b.obj_pk is not None:
                    b.url = reverse("admin:scheduling_frontdesk_appointment", args=[b.obj_pk])
                elif b.kind == "blocked" and b.obj_pk is not None:
                    b.url = reverse("admin:scheduling_frontdesk_slot", args=[b.obj_pk])
            # A slot taken by a booking shown beside it needs no grey "busy" box as well.
            taken = {(b.start, b.end) for b in holder[0].blocks if b.kind == "booking"}
            column.blocks = [
                b
                for b in holder[0].blocks
                if not (b.kind == "busy" and b.obj_pk is None and (b.start, b.end) in taken)
            ]
            columns.append(column)
        lo, hi = _hours(columns, day)
        base = datetime.combine(day, time(lo), tzinfo=tz)
        for column in columns:
            lanes = _lanes(column.blocks)
            for b in column.blocks:
                b.top = (b.start - base).total_seconds() / 60 * PX_PER_MINUTE
                b.height = max((b.end - b.start).total_seconds() / 60 * PX_PER_MINUTE, 14)
                lane, count = lanes.get(id(b), (0, 1))
                b.left = round(40 + 59 * lane / count, 2)
                b.width = round(59 / count, 2)
            order = ["window", "past", "free", "busy", "held", "blocked", "buffer", "booking"]
            column.blocks.sort(key=lambda b: (order.index(b.kind), b.start))
        now_top = None
        if day == today:
            now_local = now.astimezone(tz)
            minutes = (now_local - base).total_seconds() / 60
            if 0 <= minutes <= (hi - lo) * 60:
                now_top = minutes * PX_PER_MINUTE
        past_height: float = 0
        if day < today:
            past_height = (hi - lo) * 60 * PX_PER_MINUTE
        elif now_top is not None:
            past_height = now_top
        context = {
            **model_admin.admin_site.each_context(request),
            "opts": model_admin.model._meta,
            "title": _("Day view"),
            "organization": organization,
            "organizations": user_organizations(request.user).order_by("name"),
            "zone": tz.key,
            "day": day,
            "is_today": day == today,
            "columns": columns,
            "hours": [(f"{h:02d}:00", (h - lo) * 60 * PX_PER_MINUTE) for h in range(lo, hi)],
            "quarters": [q * 15 * PX_PER_MINUTE for q in range((hi - lo) * 4)],
            "height": (hi - lo) * 60 * PX_PER_MINUTE,
            "now_top": now_top,
            "now_label": formats.time_format(now.astimezone(tz), "H:i"),
            "past_height": past_height,
            "prev_day": (day - timedelta(days=1)).isoformat(),
            "next_day": (day + timedelta(days=1)).isoformat(),
            "today": today.isoformat(),
            "can_block": request.user.has_perm("scheduling.add_slot"),
            "legend": [
                ("free", _("Free slot: click to book")),
                ("past", _("Past")),
                ("busy", _("Busy slot")),
                ("held", _("Held (pending confirmation)")),
                ("booking st-booked", _("Booked")),
                ("booking st-arrived", _("Arrived")),
                ("booking st-fulfilled", _("Fulfilled")),
                ("booking st-held", _("Held")),
                ("blocked", _("Blocked")),
            ],
        }
        return render(request, "scheduling/day.html", context)


def _book_url(organization: Organization, b: Block) -> str:
    query = urlencode(
        {"schedule": str(b.schedule_pk), "start": b.start.isoformat(), "org": organization.pk}
    )
    return f"{reverse('admin:scheduling_frontdesk_book')}?{query}"


_DMY = re.compile(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})$")


def patient_matches(patients: QuerySet[Patient], text: str) -> QuerySet[Patient]:
    """Patients whose name contains every word of ``text``, or born on a date in it
    (``1980-04-02`` or ``2-4-1980``)."""
    text = text.strip()
    if not text:
        return patients.none()
    query = Q()
    for word in text.split():
        match = _DMY.match(word)
        born: date | None = None
        try:
            born = (
                date(int(match[3]), int(match[2]), int(match[1]))
                if match
                else date.fromisoformat(word)
            )
        except ValueError:
            born = None
        if born is not None:
            query &= Q(birth_date=born)
        else:
            query &= Q(family__icontains=word) | Q(given__icontains=word) | Q(fhir_id=word)
    return patients.filter(query).order_by("family", "given", "pk")


def book_view(request: HttpRequest, *, model_admin: admin.ModelAdmin[Any]) -> HttpResponse:
    """Book a free slot (reached from the day view) for a patient found by name or birth
    date, through ``appointment_book``."""
    _require(request, "add_appointment")
    params = request.POST if request.method == "POST" else request.GET
    schedule: Schedule = scoped(Schedule, request, params.get("schedule"))
    organization = schedule.organization
    tz = organization.zone
    try:
        start = datetime.fromisoformat(params.get("start") or "")
    except ValueError:
        raise Http404(_("That slot does not exist.")) from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=tz)
    patients = _model_admin(Patient).get_queryset(request).filter(organization=organization)
    query = (params.get("q") or "").strip()
    error = ""
    if request.method == "POST":
        patient = patients.filter(pk=request.POST.get("patient") or None).first()
        if patient is None:
            error = _("Choose a patient.")
        elif schedule.practitioner_role is None:
            error = _("This schedule has no practitioner role to book with.")
        else:
            booking = {
                "organization": organization,
                "patient": patient,
                "schedule_id": schedule.fhir_id,
                "start": start,
                "practitioner_role_id": schedule.practitioner_role.fhir_id,
                "comment": (request.POST.get("comment") or "").strip(),
                "actor": _actor(request),
            }
            done = {
                "patient": patient,
                "when": formats.date_format(start.astimezone(tz), "DATETIME_FORMAT"),
                "who": schedule.practitioner_role.practitioner,
            }
            try:
                if "_hold" in request.POST:
                    # The same service as $hold: the slot is the patient's for a while
                    # (a caller who must check their diary), then frees itself.
                    held = appointment_hold(**booking, hold_duration=FRONT_DESK_HOLD).appointment
                    assert held.held_until is not None
                    until = held.held_until.astimezone(tz)
                    message = _(
                        "Held %(when)s with %(who)s for %(patient)s until %(until)s; "
                        "confirm it from the calendar."
                    ) % {**done, "until": formats.time_format(until, "H:i")}
                else:
                    appointment_book(**booking, status=AppointmentStatus.BOOKED)
                    message = _("Booked %(patient)s on %(when)s with %(who)s.") % done
            except DomainError as exc:
                error = exc.translated()
            else:
                messages.success(request, message)
                return HttpResponseRedirect(day_url(organization, start.astimezone(tz).date()))
    found = list(patient_matches(patients, query)[:25]) if query else []
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": _("Book an appointment"),
        "schedule": schedule,
        "who": schedule.practitioner_role.practitioner if schedule.practitioner_role else "",
        "start": start.astimezone(tz),
        "start_value": params.get("start"),
        "organization": organization,
        "query": query,
        "found": found,
        "error": error,
        "comment": request.POST.get("comment", ""),
        "chosen": request.POST.get("patient", ""),
        "back_url": day_url(organization, start.astimezone(tz).date()),
    }
    return render(request, "scheduling/book.html", context, status=400 if error else 200)


def _free_slots(
    appointment: Appointment, day: date, now: datetime
) -> tuple[list[tuple[Schedule, datetime]], Practitioner | None]:
    """Free slots of the appointment's practitioner (any of their schedules) on ``day``."""
    schedule = appointment.schedule
    role = appointment.practitioner_role
    practitioner = (
        schedule.practitioner
        if schedule is not None and schedule.practitioner_id
        else (role.practitioner if role is not None else None)
    )
    if practitioner is None:
        schedules = [schedule] if schedule is not None else []
    else:
        schedules = list(practitioner_schedules(practitioner))
    schedules = [s for s in schedules if s.practitioner_role_id is not None]
    if not schedules:
        return [], practitioner
    organization = appointment.organization
    tz = organization.zone
    window = Period(
        datetime.combine(day, time(0), tzinfo=tz),
        datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz),
    )
    by_pk = {s.pk: s for s in schedules}
    results = slot_search(
        organization=organization,
        window=window,
        schedule_ids=[s.fhir_id for s in schedules],
        statuses=[SlotStatus.FREE],
        now=now,
    )
    free = []
    for result in results[: len(results)]:
        if result.generated is not None and result.schedule.pk in by_pk:
            free.append((by_pk[result.schedule.pk], result.generated.start.astimezone(tz)))
    return free, practitioner


def appointment_view(
    request: HttpRequest, object_id: str, *, model_admin: admin.ModelAdmin[Any]
) -> HttpResponse:
    """One booking at the front desk: cancel (with a reason), move, mark a no-show."""
    appointment: Appointment = scoped(Appointment, request, object_id)
    organization = appointment.organization
    tz = organization.zone
    now = timezone.now()
    local_start = appointment.start.astimezone(tz)
    error = ""
    if request.method == "POST":
        _require(request, "change_appointment")
        action = request.POST.get("action", "")
        actor = _actor(request)
        try:
            if action == "cancel":
                appointment_cancel(
                    organization=organization,
                    appointment=appointment,
                    actor=actor,
                    reason=(request.POST.get("reason") or "").strip(),
                )
                done = _("Appointment cancelled; the slot is free again.")
            elif action == "confirm":
                appointment_confirm(organization=organization, appointment=appointment, actor=actor)
                done = _("Hold confirmed: the appointment is booked.")
            elif action == "noshow":
                appointment_mark_noshow(
                    organization=organization, appointment=appointment, actor=actor
                )
                done = _("Marked as no-show.")
            elif action == "move":
                schedule_pk, _sep, start_text = (request.POST.get("slot") or "").partition("|")
                target: Schedule = scoped(Schedule, request, schedule_pk)
                if target.organization_id != organization.pk or target.practitioner_role is None:
                    raise Http404(_("That slot does not exist."))
                try:
                    new_start = datetime.fromisoformat(start_text)
                except ValueError:
                    raise Http404(_("That slot does not exist.")) from None
                moved = appointment_reschedule(
                    organization=organization,
                    appointment=appointment,
                    start=new_start,
                    schedule_id=target.fhir_id,
                    practitioner_role_id=target.practitioner_role.fhir_id,
                    actor=actor,
                    staff=True,
                )
                local_start = moved.start.astimezone(tz)
                done = _("Moved to %(when)s.") % {
                    "when": formats.date_format(local_start, "DATETIME_FORMAT")
                }
            else:
                raise Http404(_("Unknown action."))
        except DomainError as exc:
            error = exc.translated()
        else:
            messages.success(request, done)
            return HttpResponseRedirect(day_url(organization, local_start.date()))
    try:
        move_day = parse_day(request.GET.get("move_date"), today=local_start.date())
    except BadDay as exc:
        return _bad_day(request, model_admin, exc.args[0])
    free, practitioner = (
        _free_slots(appointment, move_day, now) if appointment.is_active else ([], None)
    )
    with timezone.override(tz):
        context = {
            **model_admin.admin_site.each_context(request),
            "opts": model_admin.model._meta,
            "title": _("Appointment of %(patient)s") % {"patient": appointment.patient},
            "appointment": appointment,
            "practitioner": practitioner,
            "status_label": held_label(appointment, tz)
            if appointment.is_held
            else appointment.get_status_display(),
            "live_hold": appointment.is_held and not appointment.hold_lapsed(now),
            "status_class": "held" if appointment.is_held else appointment.status,
            "start": local_start,
            "end": appointment.end.astimezone(tz),
            "move_day": move_day,
            "free": [(f"{s.pk}|{start.isoformat()}", s, start) for s, start in free],
            "can_change": request.user.has_perm("scheduling.change_appointment")
            and appointment.is_active,
            "started": appointment.start <= now,
            "error": error,
            "back_url": day_url(organization, local_start.date()),
            "change_url": reverse("admin:scheduling_appointment_change", args=[appointment.pk]),
        }
        return render(
            request, "scheduling/appointment_desk.html", context, status=400 if error else 200
        )


def slot_view(
    request: HttpRequest, object_id: str, *, model_admin: admin.ModelAdmin[Any]
) -> HttpResponse:
    """Blocked time: what it is, and a button to unblock it (``time_unblock``)."""
    slot: Slot = scoped(Slot, request, object_id)
    organization = slot.organization
    tz = organization.zone
    error = ""
    if request.method == "POST":
        _require(request, "delete_slot")
        try:
            time_unblock(organization=organization, slot=slot, actor=_actor(request))
        except DomainError as exc:
            error = exc.translated()
        else:
            messages.success(request, _("Unblocked; the time is free again."))
            return HttpResponseRedirect(day_url(organization, slot.start.astimezone(tz).date()))
    with timezone.override(tz):
        context = {
            **model_admin.admin_site.each_context(request),
            "opts": model_admin.model._meta,
            "title": _("Blocked time"),
            "slot": slot,
            "start": slot.start.astimezone(tz),
            "end": slot.end.astimezone(tz),
            "is_block": slot.status == SlotStatus.BUSY_UNAVAILABLE,
            "can_unblock": request.user.has_perm("scheduling.delete_slot"),
            "error": error,
            "back_url": day_url(organization, slot.start.astimezone(tz).date()),
        }
        return render(request, "scheduling/slot_desk.html", context, status=400 if error else 200)


@dataclass
class TodayRow:
    practitioner: Practitioner
    appointments: list[tuple[datetime, Appointment, str]]
    next_free: list[tuple[datetime, str]]


def today_overview(request: HttpRequest) -> dict[str, Any] | None:
    """What the admin's index opens on: today's appointments per practitioner and each
    one's next free slots (the engine's answer), for the user's first organisation."""
    if not request.user.has_perm("scheduling.view_practitioner"):
        return None
    try:
        organization = chosen_organization(request)
    except (PermissionDenied, Http404):
        return None
    tz = organization.zone
    now = timezone.now()
    today = now.astimezone(tz).date()
    day_window = Period(
        datetime.combine(today, time(0), tzinfo=tz),
        datetime.combine(today + timedelta(days=1), time(0), tzinfo=tz),
    )
    ahead = Period(now, now + timedelta(days=14))
    practitioners = (
        _model_admin(Practitioner)
        .get_queryset(request)
        .filter(organization=organization, active=True)
        .order_by("family", "given", "pk")
    )
    rows = []
    for practitioner in practitioners:
        schedules = list(practitioner_schedules(practitioner))
        appointments = [
            (a.start.astimezone(tz), a, "held" if a.is_held else a.status)
            for a in practitioner_appointments(practitioner, schedules)
            .filter(start__lt=day_window.end, end__gt=day_window.start)
            .filter(active_appointments_q(now))
            .select_related("patient")
            .order_by("start")
        ]
        next_free: list[tuple[datetime, str]] = []
        bookable = [s for s in schedules if s.practitioner_role_id is not None]
        if bookable:
            results = slot_search(
                organization=organization,
                window=ahead,
                schedule_ids=[s.fhir_id for s in bookable],
                statuses=[SlotStatus.FREE],
                now=now,
            )
            for result in results[:3]:
                if result.generated is not None:
                    query = urlencode(
                        {
                            "schedule": str(result.schedule.pk),
                            "start": result.start.astimezone(tz).isoformat(),
                            "org": organization.pk,
                        }
                    )
                    url = f"{reverse('admin:scheduling_frontdesk_book')}?{query}"
                    next_free.append((result.start.astimezone(tz), url))
        rows.append(TodayRow(practitioner, appointments, next_free))
    return {
        "organization": organization,
        "today": today,
        "rows": rows,
        "day_url": day_url(organization, today),
        "tomorrow_url": day_url(organization, today + timedelta(days=1)),
        "zone": tz,
    }
