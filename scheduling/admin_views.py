"""Week calendar and "block time" pages of the admin (server-side templates, no JS).

The views are reached through ``ScheduleAdmin.get_urls``/``PractitionerAdmin.get_urls`` and
look objects up through the ModelAdmin's own ``get_queryset``, so they are scoped to the
user's organisations exactly like the changelists: another organisation's schedule is a 404.
Times are shown in the organisation's zone.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from scheduling.errors import BlockHitsBookings, DomainError
from scheduling.forms import BlockTimeForm
from scheduling.models import (
    Appointment,
    Organization,
    Practitioner,
    Schedule,
    SlotStatus,
)
from scheduling.recurrence import Period, expand
from scheduling.selectors import schedule_availability, slot_search
from scheduling.selectors.occupancy import active_appointments_q
from scheduling.services.blocks import time_block, time_block_hits

_WEEK_RE = re.compile(r"^(\d{4})-W(\d{2})$")
_DEFAULT_HOURS = (8, 18)


def iso_week(day: date) -> str:
    """``day``'s ISO week as ``2026-W48`` (the calendar's ``?week=`` value)."""
    year, week, _weekday = day.isocalendar()
    return f"{year}-W{week:02d}"


class BadWeek(ValueError):
    """The ``week``/``start`` query value cannot be read."""


def parse_week(params: Any, *, today: date) -> date:
    """The Monday of the requested week: ``?week=2026-W48``, ``?start=2026-11-25`` or today's."""
    week = (params.get("week") or "").strip()
    start = (params.get("start") or "").strip()
    try:
        if week:
            match = _WEEK_RE.match(week)
            if not match:
                raise BadWeek(week)
            return date.fromisocalendar(int(match[1]), int(match[2]), 1)
        if start:
            day = date.fromisoformat(start)
            return day - timedelta(days=day.weekday())
    except ValueError:
        raise BadWeek(week or start) from None
    return today - timedelta(days=today.weekday())


_DRAW_ORDER = ["window", "past", "free", "busy", "held", "blocked", "buffer", "booking"]


@dataclass
class Block:
    """One coloured box in a day column."""

    kind: str  # window | free | busy | held | blocked | buffer | booking
    start: datetime
    end: datetime
    label: str
    url: str = ""
    #: Shown in the box of a slot beside its time: a group slot's "3 places free" when
    #: empty, "2 of 3 booked" when partly or fully booked.
    detail: str = ""
    top: float = 0.0
    height: float = 0.0
    #: For the front desk's day view: what the box stands for (an appointment's or a
    #: stored slot's pk, the schedule of a generated slot), the status and the reason.
    obj_pk: int | None = None
    schedule_pk: int | None = None
    status: str = ""
    note: str = ""
    #: Horizontal place in percent (side-by-side bookings of a group slot).
    left: float = 0.0
    width: float = 0.0


@dataclass
class Day:
    day: date
    blocks: list[Block] = field(default_factory=list)


def _clip_to_days(block: Block, days: list[Day], tz: zoneinfo.ZoneInfo) -> None:
    """Put ``block`` into every day column it touches (a block may cross midnight)."""
    for column in days:
        day_start = datetime.combine(column.day, time(0), tzinfo=tz)
        day_end = datetime.combine(column.day + timedelta(days=1), time(0), tzinfo=tz)
        start, end = max(block.start, day_start), min(block.end, day_end)
        if start < end:
            column.blocks.append(
                Block(
                    block.kind,
                    start.astimezone(tz),
                    end.astimezone(tz),
                    block.label,
                    block.url,
                    block.detail,
                    obj_pk=block.obj_pk,
                    schedule_pk=block.schedule_pk,
                    status=block.status,
                    note=block.note,
                )
            )


def _hours_shown(days: list[Day]) -> tuple[int, int]:
    lo, hi = _DEFAULT_HOURS
    for column in days:
        for block in column.blocks:
            lo = min(lo, block.start.hour)
            end_hour = (
                24
                if block.end.date() > column.day
                else block.end.hour + (1 if block.end.minute or block.end.second else 0)
            )
            hi = max(hi, end_hour)
    return lo, hi


def _layout(days: list[Day], lo: int, hi: int, tz: zoneinfo.ZoneInfo) -> None:
    span = (hi - lo) * 60
    for column in days:
        base = datetime.combine(column.day, time(lo), tzinfo=tz)
        for block in column.blocks:
            top = (block.start - base).total_seconds() / 60
            length = (block.end - block.start).total_seconds() / 60
            block.top = round(100 * top / span, 3)
            block.height = round(100 * length / span, 3)
        # Later boxes are drawn on top: bookings last, so a block never hides a booking.
        column.blocks.sort(key=lambda b: (_DRAW_ORDER.index(b.kind), b.start))


def _appointment_periods(
    appt: Appointment, organization: Organization, window: Period
) -> list[Period]:
    if not appt.rrule:
        return [Period(appt.start, appt.end)]
    return expand(
        rrule=appt.rrule,
        first_start=appt.start,
        first_end=appt.end,
        tzid=appt.rule_timezone(organization),
        exdates=appt.exdate_values(),
        window_start=window.start,
        window_end=window.end,
    )


_SLOT_KINDS = {
    SlotStatus.FREE: "free",
    SlotStatus.BUSY_TENTATIVE: "held",
    SlotStatus.BUSY_UNAVAILABLE: "blocked",
}


def held_label(appointment: Appointment, tz: tzinfo) -> str:
    """A hold's status with its expiry in the organisation's time ("held until 10:25")."""
    if appointment.held_until is None:
        return _("held")
    until = f"{appointment.held_until.astimezone(tz):%H:%M}"
    if appointment.hold_lapsed(timezone.now()):
        return _("hold lapsed at %(time)s") % {"time": until}
    return _("held until %(time)s") % {"time": until}


def week_blocks(
    *,
    organization: Organization,
    schedules: list[Schedule],
    appointments: QuerySet[Appointment],
    window: Period,
    now: datetime,
) -> list[Block]:
    """Availability windows, their slots, blocked time and bookings in ``window``.

    Which slot is free is the engine's answer, exactly as Slot search gives it (the same
    selector): the calendar never shows free what a booking would refuse.
    """
    blocks: list[Block] = []
    for schedule in schedules:
        url = reverse("admin:scheduling_schedule_change", args=[schedule.pk])
        for available in schedule_availability(
            schedule=schedule,
            organization=organization,
            window_start=window.start,
            window_end=window.end,
        ):
            blocks.append(Block("window", available.start, available.end, str(schedule), url))
    rows = list(
        appointments.filter(
            Q(start__lt=window.end, end__gt=window.start) | (~Q(rrule="") & Q(start__lt=window.end))
        )
        .filter(active_appointments_q(now))
        .select_related("patient")
    )
    # Group slots say how full they are ("2 of 3 booked").
    seats_taken: dict[tuple[int | None, datetime], int] = {}
    for appt in rows:
        if not appt.rrule:
            key = (appt.schedule_id, appt.start)
            seats_taken[key] = seats_taken.get(key, 0) + 1
    capacity = {s.pk: s.seats for s in schedules}
    if schedules:
        results = slot_search(
            organization=organization,
            window=window,
            schedule_ids=[s.fhir_id for s in schedules],
            now=now,
        )
        for result in results[: len(results)]:
            status = result.status
            if status == SlotStatus.ENTERED_IN_ERROR:
                continue
            kind = _SLOT_KINDS.get(SlotStatus(status), "busy")
            if result.slot is not None:
                slot = result.slot
                url = reverse("admin:scheduling_slot_change", args=[slot.pk])
                label = slot.comment or _("Blocked") if kind == "blocked" else _(status)
                blocks.append(
                    Block(kind, slot.start, slot.end, label, url, obj_pk=slot.pk, status=status)
                )
            else:
                generated = result.generated
                assert generated is not None
                label = {"free": _("free"), "held": _("held")}.get(kind, _("busy"))
                if (
                    kind == "busy"
                    and generated.start < now
                    and not seats_taken.get((result.schedule.pk, generated.start))
                ):
                    # Started, not taken: past time, drawn apart from taken time.
                    kind, label = "past", _("past")
                seats = capacity.get(result.schedule.pk, 1)
                detail = ""
                if seats > 1 and kind != "past":
                    taken = seats_taken.get((result.schedule.pk, generated.start), 0)
                    if taken:
                        detail = _("%(taken)d of %(seats)d booked") % {
                            "taken": taken,
                            "seats": seats,
                        }
                        label = f"{label}, {detail}"
                    else:
                        # An empty group slot: how many can still come, not "0 of 3 booked".
                        detail = ngettext("%(free)d place free", "%(free)d places free", seats) % {
                            "free": seats
                        }
                        label = detail
                blocks.append(
                    Block(
                        kind,
                        generated.start,
                        generated.end,
                        label,
                        detail=detail,
                        schedule_pk=result.schedule.pk,
                        status=status,
                    )
                )
    for appt in rows:
        # A booking's buffers are its practitioner's time too: shown beside it.
        for lo, hi in ((appt.occupied_start, appt.start), (appt.end, appt.occupied_end)):
            if not appt.rrule and lo is not None and hi is not None and lo < hi:
                blocks.append(Block("buffer", lo, hi, _("buffer")))
    for appt in rows:
        url = reverse("admin:scheduling_appointment_change", args=[appt.pk])
        status = held_label(appt, organization.zone) if appt.is_held else appt.get_status_display()
        for period in _appointment_periods(appt, organization, window):
            label = f"{appt.patient} ({status})"
            blocks.append(
                Block(
                    "booking",
                    period.start,
                    period.end,
                    label,
                    url,
                    obj_pk=appt.pk,
                    schedule_pk=appt.schedule_id,
                    status="held" if appt.is_held else appt.status,
                    note=appt.description or appt.comment,
                )
            )
    return blocks


def _render_week(
    request: HttpRequest,
    *,
    model_admin: admin.ModelAdmin[Any],
    title: str,
    subject: Any,
    organization: Organization,
    schedules: list[Schedule],
    appointments: QuerySet[Appointment],
    block_url: str,
) -> HttpResponse:
    tz = organization.zone
    try:
        monday = parse_week(request.GET, today=timezone.now().astimezone(tz).date())
    except BadWeek as exc:
        message = _("'%(value)s' is not a week: use ?week=2026-W48 or ?start=2026-11-23.") % {
            "value": exc.args[0]
        }
        response = render(
            request,
            "scheduling/calendar_error.html",
            {**model_admin.admin_site.each_context(request), "title": title, "message": message},
            status=400,
        )
        return response
    window = Period(
        datetime.combine(monday, time(0), tzinfo=tz),
        datetime.combine(monday + timedelta(days=7), time(0), tzinfo=tz),
    )
    days = [Day(monday + timedelta(days=i)) for i in range(7)]
    can_book = request.user.has_perm("scheduling.add_appointment")
    with timezone.override(tz):
        for block in week_blocks(
            organization=organization,
            schedules=schedules,
            appointments=appointments,
            window=window,
            now=timezone.now(),
        ):
            if block.kind == "free" and can_book and block.schedule_pk is not None:
                # A free slot is a link to book it (the front desk's booking page).
                query = urlencode(
                    {
                        "schedule": str(block.schedule_pk),
                        "start": block.start.astimezone(tz).isoformat(),
                        "org": organization.pk,
                    }
                )
                block.url = f"{reverse('admin:scheduling_frontdesk_book')}?{query}"
            _clip_to_days(block, days, tz)
        lo, hi = _hours_shown(days)
        _layout(days, lo, hi, tz)
        iso = monday.isocalendar()
        prev_monday, next_monday = monday - timedelta(days=7), monday + timedelta(days=7)
        context = {
            **model_admin.admin_site.each_context(request),
            "opts": model_admin.model._meta,
            "title": title,
            "subject": subject,
            "organization": organization,
            "zone": tz.key,
            "days": days,
            "hours": [f"{h:02d}:00" for h in range(lo, hi)],
            "hour_count": hi - lo,
            "week_label": _("Week %(week)d, %(year)d") % {"week": iso.week, "year": iso.year},
            "range_label": (
                f"{formats.date_format(monday, 'j M')} \u2013 "
                f"{formats.date_format(monday + timedelta(days=6), 'j M Y')}"
            ),
            "prev_week": iso_week(prev_monday),
            "next_week": iso_week(next_monday),
            "block_url": block_url,
            "can_block": request.user.has_perm("scheduling.add_slot"),
            "legend": [
                ("window", _("Availability")),
                ("free", _("Free slot")),
                ("busy", _("Busy slot")),
                ("past", _("Past")),
                ("held", _("Held (pending confirmation)")),
                ("booking", _("Booking")),
                ("buffer", _("Buffer (before or after a booking)")),
                ("blocked", _("Blocked")),
            ],
        }
        response = render(request, "scheduling/calendar.html", context)
    return response


def _scoped_object(model_admin: admin.ModelAdmin[Any], request: HttpRequest, object_id: str) -> Any:
    # The ModelAdmin's queryset is the organisation fence: foreign ids look missing.
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    try:
        return model_admin.get_queryset(request).get(pk=object_id)
    except (model_admin.model.DoesNotExist, ValueError, TypeError):
        raise Http404(_("No such object in your organisation.")) from None


def schedule_calendar_view(
    request: HttpRequest, object_id: str, *, model_admin: admin.ModelAdmin[Any]
) -> HttpResponse:
    """One schedule's week: availability, slots, bookings and blocked time."""
    schedule: Schedule = _scoped_object(model_admin, request, object_id)
    organization = schedule.organization
    appointments = Appointment.objects.filter(organization=organization, schedule=schedule)
    block_url = reverse("admin:scheduling_schedule_block", args=[schedule.pk])
    return _render_week(
        request,
        model_admin=model_admin,
        title=_("Calendar of schedule %(name)s") % {"name": schedule},
        subject=schedule,
        organization=organization,
        schedules=[schedule],
        appointments=appointments,
        block_url=block_url,
    )


def practitioner_calendar_view(
    request: HttpRequest, object_id: str, *, model_admin: admin.ModelAdmin[Any]
) -> HttpResponse:
    """All of a practitioner's schedules and bookings in one week."""
    practitioner: Practitioner = _scoped_object(model_admin, request, object_id)
    organization = practitioner.organization
    schedules = list(
        Schedule.objects.filter(organization=organization, active=True)
        .filter(Q(practitioner=practitioner) | Q(practitioner_role__practitioner=practitioner))
        .distinct()
    )
    appointments = (
        Appointment.objects.filter(organization=organization)
        .filter(Q(schedule__in=schedules) | Q(practitioner_role__practitioner=practitioner))
        .distinct()
    )
    block_url = reverse("admin:scheduling_practitioner_block", args=[practitioner.pk])
    return _render_week(
        request,
        model_admin=model_admin,
        title=_("Calendar of %(name)s") % {"name": practitioner},
        subject=practitioner,
        organization=organization,
        schedules=schedules,
        appointments=appointments,
        block_url=block_url,
    )


def _block_view(
    request: HttpRequest,
    *,
    model_admin: admin.ModelAdmin[Any],
    organization: Organization,
    schedules: QuerySet[Schedule],
    calendar_url: str,
    title: str,
    initial_schedule: Schedule | None,
    note: str = "",
) -> HttpResponse:
    if not request.user.has_perm("scheduling.add_slot"):
        raise PermissionDenied
    # Back where the block was asked for (the front desk's day), else the week calendar.
    back = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        back = ""
    with timezone.override(organization.zone):
        initial: dict[str, Any] = {"schedule": initial_schedule}
        for name in ("start", "end"):
            if request.GET.get(name):
                initial[name] = request.GET[name]
        hits: list[str] = []
        if request.method == "POST":
            form = BlockTimeForm(request.POST, schedules=schedules)
            slot = None
            if form.is_valid():
                data = form.cleaned_data
                try:
                    slot = time_block(
                        organization=organization,
                        schedule=data["schedule"],
                        start=data["start"],
                        end=data["end"],
                        comment=data.get("comment", ""),
                        actor=f"staff:{request.user.get_username()}",
                        confirm=data.get("confirm", False),
                    )
                except BlockHitsBookings:
                    # The same bookings the service found, at the reader's local time (the
                    # error's own list carries the offset, for the API).
                    hits = [
                        _("%(patient)s, %(when)s (%(appointment)s)")
                        % {
                            "appointment": hit.label,
                            "patient": hit.patient or _("a patient"),
                            "when": formats.date_format(
                                datetime.fromtimestamp(hit.start, organization.zone),
                                "DATETIME_FORMAT",
                            ),
                        }
                        for hit in time_block_hits(
                            organization=organization,
                            schedule=data["schedule"],
                            start=data["start"],
                            end=data["end"],
                            now=timezone.now(),
                        )
                    ]
                    # Ask again, now with the box to tick.
                    form.fields["confirm"].widget = forms.CheckboxInput()
                    form.add_error(
                        "confirm",
                        _(
                            "This time covers bookings. Tick the box to block it anyway; "
                            "the bookings stay and still show in the calendar."
                        ),
                    )
                except DomainError as exc:
                    form.add_error(None, exc.translated())
            if slot is not None:
                messages.success(
                    request,
                    _("Blocked %(start)s to %(end)s.")
                    % {
                        "start": formats.date_format(
                            slot.start.astimezone(organization.zone), "j M Y H:i"
                        ),
                        "end": formats.date_format(
                            slot.end.astimezone(organization.zone), "j M Y H:i"
                        ),
                    },
                )
                week = iso_week(slot.start.astimezone(organization.zone).date())
                return HttpResponseRedirect(back or f"{calendar_url}?week={week}")
            status = 400
        else:
            form = BlockTimeForm(initial=initial, schedules=schedules)
            status = 200
        context = {
            **model_admin.admin_site.each_context(request),
            "opts": model_admin.model._meta,
            "title": title,
            "form": form,
            "zone": organization.zone.key,
            "calendar_url": calendar_url,
            "hits": hits,
            "next": back,
            "note": note,
        }
        return render(request, "scheduling/block_time.html", context, status=status)


def schedule_block_view(
    request: HttpRequest, object_id: str, *, model_admin: admin.ModelAdmin[Any]
) -> HttpResponse:
    """Block time on one schedule (the schedule is preselected)."""
    schedule: Schedule = _scoped_object(model_admin, request, object_id)
    return _block_view(
        request,
        model_admin=model_admin,
        organization=schedule.organization,
        schedules=Schedule.objects.filter(organization=schedule.organization),
        calendar_url=reverse("admin:scheduling_schedule_calendar", args=[schedule.pk]),
        title=_("Block time on %(name)s") % {"name": schedule},
        initial_schedule=schedule,
    )


def practitioner_block_view(
    request: HttpRequest, object_id: str, *, model_admin: admin.ModelAdmin[Any]
) -> HttpResponse:
    """Block time on one of a practitioner's schedules."""
    practitioner: Practitioner = _scoped_object(model_admin, request, object_id)
    schedules = (
        Schedule.objects.filter(organization=practitioner.organization)
        .filter(Q(practitioner=practitioner) | Q(practitioner_role__practitioner=practitioner))
        .distinct()
    )
    return _block_view(
        request,
        model_admin=model_admin,
        organization=practitioner.organization,
        schedules=schedules,
        calendar_url=reverse("admin:scheduling_practitioner_calendar", args=[practitioner.pk]),
        title=_("Block time for %(name)s") % {"name": practitioner},
        initial_schedule=schedules.first(),
        note=_(
            "A block on any one of their schedules blocks %(name)s on all of them: "
            "one block covers the whole day, whichever schedule you pick."
        )
        % {"name": practitioner},
    )
