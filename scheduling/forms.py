"""Admin forms: availability without hand-written RRULEs, and blocking time.

Clinic staff pick a frequency, weekdays and an end date; :func:`build_rrule` writes the RFC
5545 rule, :func:`parse_simple_rrule` reads a simple stored rule back into those fields, and
:func:`describe_recurrence` says in plain (translated) words what a schedule does. Experts
may still type a raw RRULE: when filled, it wins over the structured fields.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib.admin import widgets as admin_widgets
from django.utils import formats
from django.utils.dates import WEEKDAYS
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext, pgettext

from scheduling import recurrence
from scheduling.errors import DomainError, InvalidRecurrence
from scheduling.models import Organization, PractitionerRole, Schedule
from scheduling.services.reassign import occupants_rekey

WEEKDAY_CODES = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
FREQUENCIES = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
#: How many occurrences the schedule page previews.
PREVIEW_COUNT = 10


#: Zones a Dutch clinic's staff are most likely to want, offered right after the
#: organisation's own (the full IANA list follows; the input filters as one types).
COMMON_ZONES = (
    "Europe/Amsterdam",
    "Europe/Brussels",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Paris",
    "UTC",
    "America/Curacao",
    "America/Aruba",
    "America/Paramaribo",
    "America/New_York",
    "Asia/Jakarta",
    "Australia/Sydney",
)


@lru_cache(maxsize=1)
def timezone_choices() -> list[tuple[str, str]]:
    """Every IANA zone this system knows, sorted, as form choices."""
    return [(name, name) for name in sorted(zoneinfo.available_timezones())]


def zone_suggestions(first: str | None) -> list[str]:
    """The organisation's zone, then the common ones, then every other, each once."""
    known = [name for name, _label in timezone_choices()]
    head = [name for name in (first, *COMMON_ZONES) if name and name in set(known)]
    seen = set(head)
    return list(dict.fromkeys(head)) + [name for name in known if name not in seen]


class ZoneInput(forms.TextInput):
    """A text box with an HTML ``<datalist>``: the browser filters the zones as one types.

    No script, so it works under the admin's CSP (``script-src 'self'``) and with a
    keyboard or screen reader like any other text box.
    """

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs={"autocomplete": "off", "size": 30, **(attrs or {})})
        self.suggestions: list[str] = zone_suggestions(None)

    def render(
        self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None
    ) -> SafeString:
        list_id = f"{(attrs or {}).get('id') or 'id_' + name}_list"
        box = super().render(name, value, {**(attrs or {}), "list": list_id}, renderer)
        options = format_html_join(
            "", '<option value="{}"></option>', ((z,) for z in self.suggestions)
        )
        return format_html('{}<datalist id="{}">{}</datalist>', box, list_id, options)


@dataclass
class SimpleRule:
    """The part of RFC 5545 the structured form can express."""

    freq: str
    interval: int = 1
    byday: list[str] = field(default_factory=list)
    until: date | None = None
    count: int | None = None


def build_rrule(rule: SimpleRule, *, tz: zoneinfo.ZoneInfo) -> str:
    """Write ``rule`` as an RRULE value; UNTIL becomes the end of that local day, in UTC.

    UTC is used (not a DATE value) because RFC 5545 wants UNTIL to have DTSTART's type,
    and real FHIR clients read a ``Z`` value most reliably.
    """
    parts = [f"FREQ={rule.freq}"]
    if rule.interval and rule.interval != 1:
        parts.append(f"INTERVAL={rule.interval}")
    if rule.byday:
        ordered = [code for code in WEEKDAY_CODES if code in rule.byday]
        parts.append("BYDAY=" + ",".join(ordered))
    if rule.until is not None:
        local_end = datetime.combine(rule.until, time(23, 59, 59), tzinfo=tz)
        parts.append("UNTIL=" + local_end.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ"))
    if rule.count is not None:
        parts.append(f"COUNT={rule.count}")
    return ";".join(parts)


def parse_simple_rrule(rrule: str, *, tz: zoneinfo.ZoneInfo) -> SimpleRule | None:
    """Read ``rrule`` into a :class:`SimpleRule`, or None when the form cannot express it."""
    if not rrule:
        return None
    try:
        recurrence.validate_rrule(rrule)
    except InvalidRecurrence:
        return None
    parts: dict[str, str] = {}
    for chunk in rrule.split(";"):
        name, _sep, value = chunk.partition("=")
        parts[name.strip().upper()] = value.strip().upper()
    if set(parts) - {"FREQ", "INTERVAL", "BYDAY", "UNTIL", "COUNT", "WKST"}:
        return None
    if parts.get("WKST", "MO") != "MO" or parts["FREQ"] not in FREQUENCIES:
        return None
    byday = [code for code in parts.get("BYDAY", "").split(",") if code]
    # Ordinal weekdays ("1MO", "-1FR") need the raw field.
    if any(code not in WEEKDAY_CODES for code in byday):
        return None
    until: date | None = None
    if "UNTIL" in parts:
        raw = parts["UNTIL"]
        try:
            if "T" in raw:
                instant = datetime.strptime(raw.rstrip("Z"), "%Y%m%dT%H%M%S")
                if not raw.endswith("Z"):
                    return None
                local = instant.replace(tzinfo=UTC).astimezone(tz)
                # Only the end of a local day round-trips through a date field unchanged.
                if local.time() != time(23, 59, 59):
                    return None
                until = local.date()
            else:
                until = datetime.strptime(raw, "%Y%m%d").date()
        except ValueError:
            return None
    return SimpleRule(
        freq=parts["FREQ"],
        interval=int(parts.get("INTERVAL", "1")),
        byday=byday,
        until=until,
        count=int(parts["COUNT"]) if "COUNT" in parts else None,
    )


def _date(value: date) -> str:
    # The format is translatable: Dutch writes the month out ("31 december 2027").
    return formats.date_format(value, pgettext("summary date format", "j M Y"))


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return _("%(items)s and %(last)s") % {"items": ", ".join(items[:-1]), "last": items[-1]}


def _weekday_names(codes: list[str]) -> list[str]:
    return [str(WEEKDAYS[WEEKDAY_CODES.index(code)]) for code in WEEKDAY_CODES if code in codes]


def _frequency_phrase(rule: SimpleRule) -> str:
    n = rule.interval
    if rule.freq == "DAILY":
        return ngettext("Every day", "Every %(n)d days", n) % {"n": n}
    if rule.freq == "WEEKLY":
        if rule.byday:
            days = _join(_weekday_names(rule.byday))
            return ngettext("Every %(days)s", "Every %(n)d weeks on %(days)s", n) % {
                "n": n,
                "days": days,
            }
        return ngettext("Every week", "Every %(n)d weeks", n) % {"n": n}
    if rule.freq == "MONTHLY":
        return ngettext("Every month", "Every %(n)d months", n) % {"n": n}
    return ngettext("Every year", "Every %(n)d years", n) % {"n": n}


def describe_recurrence(
    *,
    rrule: str,
    first_start: datetime,
    first_end: datetime,
    tzid: str,
    exdate_count: int = 0,
    slot_minutes: int | None = None,
) -> str:
    """A plain-language, translated summary of a schedule's availability.

    For example "Every Monday and Wednesday, 09:00-12:00 Europe/Amsterdam, 15-minute slots,
    until 31 Dec 2027" (with an en dash between the times; the slots only when given).
    """
    tz = zoneinfo.ZoneInfo(tzid)
    start_local = first_start.astimezone(tz)
    end_local = first_end.astimezone(tz)
    times = f"{start_local:%H:%M}\u2013{end_local:%H:%M} {tzid}"
    if slot_minutes:
        times += ", " + ngettext("%(n)d-minute slots", "%(n)d-minute slots", slot_minutes) % {
            "n": slot_minutes
        }
    if not rrule:
        when = _date(start_local.date())
        return _("Once, %(date)s, %(times)s") % {"date": when, "times": times}
    rule = parse_simple_rrule(rrule, tz=tz)
    if rule is None:
        text = _("Custom rule %(rrule)s, %(times)s") % {"rrule": rrule, "times": times}
    else:
        text = f"{_frequency_phrase(rule)}, {times}"
        if rule.until is not None:
            until = _date(rule.until)
            text += ", " + _("until %(date)s") % {"date": until}
        elif rule.count is not None:
            text += ", " + ngettext("once", "%(count)d times", rule.count) % {"count": rule.count}
    if exdate_count:
        text += " " + ngettext("(%(n)d exception)", "(%(n)d exceptions)", exdate_count) % {
            "n": exdate_count
        }
    return text


def upcoming_occurrences(schedule: Schedule, *, after: datetime) -> list[recurrence.Period]:
    """The next occurrences of a stored schedule, for the change page's preview."""
    tzid = schedule.rule_timezone(schedule.organization)
    if not schedule.rrule:
        if schedule.planning_end <= after:
            return []
        return [recurrence.Period(schedule.planning_start, schedule.planning_end)]
    return recurrence.upcoming(
        rrule=schedule.rrule,
        first_start=schedule.planning_start,
        first_end=schedule.planning_end,
        tzid=tzid,
        exdates=schedule.exdate_values(),
        after=after,
        limit=PREVIEW_COUNT,
    )


def _parse_exdate_line(line: str, *, tz: zoneinfo.ZoneInfo, first_start: datetime) -> str:
    """One exception as an ISO instant with offset; a bare date means that day's occurrence."""
    try:
        if len(line) == 10:
            day = date.fromisoformat(line)
            wall = datetime.combine(day, first_start.astimezone(tz).time(), tzinfo=tz)
            return wall.isoformat()
        value = datetime.fromisoformat(line)
    except ValueError:
        raise forms.ValidationError(
            _("'%(value)s' is not a date (2026-12-28) or date-time (2026-12-28T09:00)."),
            params={"value": line},
        ) from None
    if value.tzinfo is None:
        # Staff think in the schedule's zone; a time without offset is read there.
        value = value.replace(tzinfo=tz)
    return value.isoformat()


class WallDateTimeField(forms.SplitDateTimeField):
    """A date and a time as a naive wall clock: the form reads it in the schedule's zone."""

    def compress(self, data_list: tuple[date, time] | None) -> datetime | None:
        if data_list and data_list[0] is not None and data_list[1] is not None:
            return datetime.combine(data_list[0], data_list[1])
        return None


if TYPE_CHECKING:
    _ScheduleModelForm = forms.ModelForm[Schedule]
else:  # django-stubs' generics are not subscriptable at runtime
    _ScheduleModelForm = forms.ModelForm


class ScheduleAdminForm(_ScheduleModelForm):
    """The schedule change form: structured recurrence fields beside the raw RRULE."""

    frequency = forms.ChoiceField(
        label=gettext_lazy("Repeats"),
        required=False,
        choices=[
            ("", gettext_lazy("Does not repeat")),
            ("DAILY", gettext_lazy("Daily")),
            ("WEEKLY", gettext_lazy("Weekly")),
            ("MONTHLY", gettext_lazy("Monthly")),
            ("YEARLY", gettext_lazy("Yearly")),
        ],
    )
    interval = forms.IntegerField(
        label=gettext_lazy("Every"),
        required=False,
        min_value=1,
        max_value=366,
        initial=1,
        help_text=gettext_lazy("1 = every day/week/month/year, 2 = every other one, ..."),
    )
    weekdays = forms.MultipleChoiceField(
        label=gettext_lazy("On weekdays"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        choices=[(code, WEEKDAYS[i]) for i, code in enumerate(WEEKDAY_CODES)],
    )
    until = forms.DateField(
        label=gettext_lazy("Until (date)"),
        required=False,
        # The admin's own date box, like the first date: one format (the language's) for both.
        widget=admin_widgets.AdminDateWidget,
        help_text=gettext_lazy(
            "Last day with availability (inclusive). Leave empty, or use a count."
        ),
    )
    count = forms.IntegerField(
        label=gettext_lazy("Number of occurrences"),
        required=False,
        min_value=1,
        max_value=10000,
    )
    exceptions = forms.CharField(
        label=gettext_lazy("Exceptions"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 40}),
        help_text=gettext_lazy(
            "Days left out, one per line: a date (2026-12-28) or a date-time (2026-12-28T09:00)."
        ),
    )
    recurrence_timezone = forms.CharField(
        label=gettext_lazy("Time zone"),
        required=False,
        max_length=64,
        widget=ZoneInput,
        help_text=gettext_lazy("Type to search, e.g. Amsterdam. The organisation's zone is first."),
    )
    # Required unless the raw window fields are filled (checked in clean).
    first_date = forms.DateField(
        label=gettext_lazy("First date"), required=False, widget=admin_widgets.AdminDateWidget
    )
    start_time = forms.TimeField(
        label=gettext_lazy("From"),
        required=False,
        # Hours and minutes, as a clinic says them ("13:00", not "13:00:00").
        widget=admin_widgets.AdminTimeWidget(format="%H:%M"),
    )
    end_time = forms.TimeField(
        label=gettext_lazy("Until"),
        required=False,
        widget=admin_widgets.AdminTimeWidget(format="%H:%M"),
    )
    window_start = WallDateTimeField(
        label=gettext_lazy("Window start"),
        required=False,
        widget=admin_widgets.AdminSplitDateTime,
        help_text=gettext_lazy(
            "For a first window longer than a day: when start and end are both filled they "
            "win over the first date and times above."
        ),
    )
    window_end = WallDateTimeField(
        label=gettext_lazy("Window end"), required=False, widget=admin_widgets.AdminSplitDateTime
    )
    ends_next_day = forms.BooleanField(
        label=gettext_lazy("Ends the next day"),
        required=False,
        help_text=gettext_lazy("For a night shift, e.g. 22:00 until 06:00."),
    )

    class Meta:
        model = Schedule
        fields = [
            "organization",
            "fhir_id",
            "active",
            "practitioner_role",
            "practitioner",
            "slot_minutes",
            "recurrence_timezone",
            "rrule",
            "service_category",
            "service_type",
            "specialty",
            "comment",
        ]

    #: Set by the admin to the user's single organisation: its zone is the default.
    default_organization: Organization | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["rrule"].required = False
        if not (self.data.get("window_start_0") and self.data.get("window_end_0")):
            # Marked required (bold) for people; the raw window fields, when filled, stand in.
            for name in ("first_date", "start_time", "end_time"):
                self.fields[name].required = True
        self.fields["rrule"].help_text = _(
            "For experts: an RFC 5545 RRULE (e.g. FREQ=MONTHLY;BYDAY=1MO). When filled it wins "
            "over the fields above; empty it to use them."
        )
        instance: Schedule = self.instance
        organization = (
            instance.organization if instance.organization_id else self.default_organization
        )
        zone_name = instance.recurrence_timezone or (
            organization.timezone if organization else "Europe/Amsterdam"
        )
        self.fields["recurrence_timezone"].initial = zone_name
        self.fields["recurrence_timezone"].widget.suggestions = zone_suggestions(
            organization.timezone if organization else None
        )
        if instance.pk:
            self.initial["recurrence_timezone"] = zone_name
            tz = zoneinfo.ZoneInfo(zone_name)
            start_local = instance.planning_start.astimezone(tz)
            end_local = instance.planning_end.astimezone(tz)
            self.initial.update(
                first_date=start_local.date(),
                start_time=start_local.time(),
                end_time=end_local.time(),
                ends_next_day=end_local.date() > start_local.date(),
            )
            if (end_local.date() - start_local.date()).days > 1:
                # Longer than the from-until fields can say (e.g. a window made through the
                # API): keep it whole in the raw fields, which win.
                self.initial.update(
                    window_start=start_local.replace(tzinfo=None),
                    window_end=end_local.replace(tzinfo=None),
                )
            simple = parse_simple_rrule(instance.rrule, tz=tz)
            if simple is not None:
                # The structured fields carry the rule, so the raw field starts empty and
                # edits to the structured fields are not silently overridden.
                self.initial.update(
                    frequency=simple.freq,
                    interval=simple.interval,
                    weekdays=simple.byday,
                    until=simple.until,
                    count=simple.count,
                    rrule="",
                )
            self.initial["exceptions"] = "\n".join(instance.exdates or [])

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        zone_name = cleaned.get("recurrence_timezone") or ""
        try:
            tz = recurrence.validate_timezone(zone_name) if zone_name else None
        except InvalidRecurrence as exc:
            self.add_error("recurrence_timezone", exc.translated())
            return cleaned
        if tz is None:
            organization = cleaned.get("organization")
            tz = organization.zone if organization else zoneinfo.ZoneInfo("Europe/Amsterdam")

        raw = (cleaned.get("rrule") or "").strip()
        if raw.upper().startswith("RRULE:"):
            raw = raw[len("RRULE:") :]
        rrule = raw or self._structured_rrule(cleaned, tz)
        if rrule:
            try:
                recurrence.validate_rrule(rrule)
            except InvalidRecurrence as exc:
                self.add_error("rrule" if raw else "frequency", exc.translated())
                return cleaned
        cleaned["rrule"] = rrule

        start, end = self._first_window(cleaned, tz)
        cleaned["planning_start"], cleaned["planning_end"] = start, end
        until = cleaned.get("until")
        if not raw and rrule and until and start and until < start.astimezone(tz).date():
            self.add_error("until", _("The last day is before the first window."))

        exdates: list[str] = []
        lines = [line.strip() for line in (cleaned.get("exceptions") or "").splitlines()]
        for line in filter(None, lines):
            if start is None:
                break
            try:
                exdates.append(_parse_exdate_line(line, tz=tz, first_start=start))
            except forms.ValidationError as exc:
                self.add_error("exceptions", exc)
        if exdates and not rrule:
            self.add_error("exceptions", _("Exceptions only apply to a repeating schedule."))
        cleaned["exdates"] = exdates
        return cleaned

    def _first_window(
        self, cleaned: dict[str, Any], tz: zoneinfo.ZoneInfo
    ) -> tuple[datetime | None, datetime | None]:
        """The first window as instants: the first date's from-until wall times in ``tz``."""
        raw_start, raw_end = cleaned.get("window_start"), cleaned.get("window_end")
        if raw_start is not None and raw_end is not None:
            start, end = raw_start.replace(tzinfo=tz), raw_end.replace(tzinfo=tz)
            names = ("window_start", "window_end")
        else:
            day, from_time, until_time = (
                cleaned.get("first_date"),
                cleaned.get("start_time"),
                cleaned.get("end_time"),
            )
            missing = [
                name
                for name, value in (
                    ("first_date", day),
                    ("start_time", from_time),
                    ("end_time", until_time),
                )
                if value is None and name not in self.errors
            ]
            for name in missing:
                self.add_error(name, forms.Field.default_error_messages["required"])
            if day is None or from_time is None or until_time is None:
                return None, None
            end_day = day + timedelta(days=1) if cleaned.get("ends_next_day") else day
            start = datetime.combine(day, from_time, tzinfo=tz)
            end = datetime.combine(end_day, until_time, tzinfo=tz)
            names = ("start_time", "end_time")
        for name, wall in zip(names, (start, end), strict=True):
            # A wall time skipped by a clock change (02:30 on the last Sunday of March in
            # Amsterdam) does not exist: say so rather than silently shift it.
            if wall.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != wall.replace(
                tzinfo=None
            ):
                self.add_error(
                    name,
                    _("%(time)s does not exist on %(date)s in %(zone)s (the clocks change).")
                    % {"time": f"{wall:%H:%M}", "date": wall.date().isoformat(), "zone": tz.key},
                )
                return None, None
        if end <= start:
            self.add_error(names[1], _("The end must be after the start."))
            return None, None
        return start.astimezone(UTC), end.astimezone(UTC)

    def _structured_rrule(self, cleaned: dict[str, Any], tz: zoneinfo.ZoneInfo) -> str:
        freq = cleaned.get("frequency") or ""
        weekdays = cleaned.get("weekdays") or []
        until = cleaned.get("until")
        count = cleaned.get("count")
        if not freq:
            if weekdays or until or count:
                self.add_error("frequency", _("Choose how often the schedule repeats."))
            return ""
        if until and count:
            self.add_error(
                "count", _("Give either an end date or a number of occurrences, not both.")
            )
            return ""
        if weekdays and freq != "WEEKLY":
            self.add_error("weekdays", _("Weekdays can only be chosen for a weekly schedule."))
            return ""
        rule = SimpleRule(
            freq=freq,
            interval=cleaned.get("interval") or 1,
            byday=list(weekdays),
            until=until,
            count=count,
        )
        return build_rrule(rule, tz=tz)

    def _post_clean(self) -> None:
        # exdates is not a form field: put the parsed list on the instance before the
        # model's own validation runs.
        if "exdates" in self.cleaned_data:
            self.instance.exdates = self.cleaned_data["exdates"]
        if self.cleaned_data.get("planning_start") and self.cleaned_data.get("planning_end"):
            self.instance.planning_start = self.cleaned_data["planning_start"]
            self.instance.planning_end = self.cleaned_data["planning_end"]
        super()._post_clean()  # type: ignore[misc]
        refuse_occupant_clash(self, schedules=[self.instance])


def refuse_occupant_clash(
    form: forms.ModelForm[Any],
    *,
    schedules: list[Schedule] | None = None,
    roles: list[PractitionerRole] | None = None,
) -> None:
    """A form error when giving this schedule or role to another practitioner would
    double-book that person with the bookings already made on it (the admin saves
    re-key them through ``services.reassign.occupants_rekey``, which checks again under
    the locks)."""
    instance = form.instance
    if form.errors or not instance.pk or not getattr(instance, "organization_id", None):
        return
    try:
        occupants_rekey(
            organization=instance.organization,
            schedules=schedules or (),
            roles=roles or (),
            actor="",
            check_only=True,
        )
    except DomainError as exc:
        form.add_error(None, exc.translated())


class PractitionerRoleAdminForm(forms.ModelForm):  # type: ignore[type-arg]
    """A role's form that refuses handing its bookings to a practitioner busy then."""

    class Meta:
        model = PractitionerRole
        fields = ("organization", "fhir_id", "practitioner", "code", "specialty", "active")

    def _post_clean(self) -> None:
        super()._post_clean()  # type: ignore[misc]
        refuse_occupant_clash(self, roles=[self.instance])


class BlockTimeForm(forms.Form):
    """Make a stretch of a schedule unavailable (a stored busy-unavailable Slot)."""

    schedule = forms.ModelChoiceField(
        queryset=Schedule.objects.none(), label=gettext_lazy("Schedule")
    )
    start = forms.DateTimeField(
        label=gettext_lazy("Start"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    end = forms.DateTimeField(
        label=gettext_lazy("End"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    comment = forms.CharField(
        label=gettext_lazy("Comment"),
        required=False,
        max_length=500,
        widget=forms.TextInput(attrs={"size": 40}),
    )
    #: Shown once the block is known to cover bookings: blocking then needs this ticked.
    confirm = forms.BooleanField(
        label=gettext_lazy("Block anyway (the bookings stay)"),
        required=False,
        widget=forms.HiddenInput,
    )

    def __init__(self, *args: Any, schedules: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        schedule_field = self.fields["schedule"]
        assert isinstance(schedule_field, forms.ModelChoiceField)
        schedule_field.queryset = schedules

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        start, end = cleaned.get("start"), cleaned.get("end")
        if start and end:
            if end <= start:
                self.add_error("end", _("The end must be after the start."))
            elif end - start > timedelta(days=31):
                self.add_error("end", _("Block at most 31 days at a time."))
        return cleaned
