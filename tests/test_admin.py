"""The staff admin: organisation scoping, the schedule form, the calendar and block time."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import translation

from scheduling.admin_views import BadWeek, parse_week
from scheduling.forms import (
    ScheduleAdminForm,
    SimpleRule,
    build_rrule,
    describe_recurrence,
    parse_simple_rrule,
)
from scheduling.models import (
    Appointment,
    AuditEvent,
    Organization,
    Schedule,
    Slot,
    StaffMembership,
)
from tests.factories import (
    AppointmentFactory,
    PatientFactory,
    PractitionerFactory,
    PractitionerRoleFactory,
    ScheduleFactory,
)

AMS = zoneinfo.ZoneInfo("Europe/Amsterdam")


def make_staff(username: str, *organizations: Organization) -> User:
    user = User.objects.create_user(username, password="pw-for-tests-123", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="scheduling"))
    for organization in organizations:
        StaffMembership.objects.create(organization=organization, user=user)
    return user


@pytest.fixture
def staff(org: Organization) -> User:
    return make_staff("staff-a", org)


@pytest.fixture
def staff_client(staff: User) -> Client:
    client = Client()
    client.force_login(staff)
    return client


@pytest.fixture
def two_tenants(org: Organization, outsider_org: Organization) -> dict[str, Any]:
    mine = ScheduleFactory(organization=org, fhir_id="mine-sched")
    theirs = ScheduleFactory(organization=outsider_org, fhir_id="their-sched")
    patient = PatientFactory(organization=org, fhir_id="my-pat", family="Mijnheer")
    foreign_patient = PatientFactory(
        organization=outsider_org, fhir_id="their-pat", family="Vreemd"
    )
    return {
        "schedule": mine,
        "foreign_schedule": theirs,
        "patient": patient,
        "foreign_patient": foreign_patient,
        "appointment": AppointmentFactory(
            organization=org,
            fhir_id="my-appt",
            schedule=mine,
            patient=patient,
            practitioner_role=mine.practitioner_role,
            start=mine.planning_start,
        ),
        "foreign_appointment": AppointmentFactory(
            organization=outsider_org,
            fhir_id="their-appt",
            schedule=theirs,
            patient=foreign_patient,
            start=theirs.planning_start,
        ),
    }


def schedule_post(org: Organization, role_pk: int | str, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "organization": org.pk,
        "fhir_id": "new-sched",
        "active": "on",
        "practitioner_role": role_pk,
        "practitioner": "",
        "comment": "",
        "first_date": "2026-12-07",
        "start_time": "09:00",
        "end_time": "12:00",
        "slot_minutes": "15",
        "frequency": "WEEKLY",
        "interval": "1",
        "weekdays": ["MO", "WE"],
        "until": "2027-12-31",
        "count": "",
        "exceptions": "",
        "recurrence_timezone": "Europe/Amsterdam",
        "rrule": "",
        "service_category": "[]",
        "service_type": "[]",
        "specialty": "[]",
    }
    data.update(overrides)
    return data


# --- organisation scoping -------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("model", "mine", "theirs"),
    [
        ("schedule", "mine-sched", "their-sched"),
        ("patient", "my-pat", "their-pat"),
        ("appointment", "my-appt", "their-appt"),
    ],
)
def test_changelist_shows_only_own_organisation(
    staff_client: Client, two_tenants: dict[str, Any], model: str, mine: str, theirs: str
) -> None:
    response = staff_client.get(reverse(f"admin:scheduling_{model}_changelist"))
    assert response.status_code == 200
    body = response.content.decode()
    assert mine in body
    assert theirs not in body


@pytest.mark.django_db
def test_foreign_change_view_redirects_and_own_opens(
    staff_client: Client, two_tenants: dict[str, Any]
) -> None:
    foreign = two_tenants["foreign_schedule"]
    response = staff_client.get(reverse("admin:scheduling_schedule_change", args=[foreign.pk]))
    assert response.status_code == 302
    own = two_tenants["schedule"]
    response = staff_client.get(reverse("admin:scheduling_schedule_change", args=[own.pk]))
    assert response.status_code == 200
    for name in ("patient", "appointment"):
        url = reverse(f"admin:scheduling_{name}_change", args=[two_tenants[f"foreign_{name}"].pk])
        assert staff_client.get(url).status_code == 302
        delete = reverse(
            f"admin:scheduling_{name}_delete", args=[two_tenants[f"foreign_{name}"].pk]
        )
        # Appointments are cancelled, never deleted (403 for everyone); patients 302.
        assert staff_client.post(delete, {"post": "yes"}).status_code in (302, 403)
    assert Appointment.objects.filter(fhir_id="their-appt").exists()


@pytest.mark.django_db
def test_foreign_key_choices_and_organisation_default(
    staff_client: Client, two_tenants: dict[str, Any], org: Organization
) -> None:
    response = staff_client.get(reverse("admin:scheduling_schedule_add"))
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert list(form.fields["organization"].queryset) == [org]
    assert form.fields["organization"].initial == org.pk
    roles = set(form.fields["practitioner_role"].queryset.values_list("organization_id", flat=True))
    assert roles == {org.pk}
    assert form.fields["recurrence_timezone"].initial == "Europe/Amsterdam"

    response = staff_client.get(reverse("admin:scheduling_appointment_add"))
    fields = response.context["adminform"].form.fields
    # Booking asks for patient, schedule and start; the role follows from the schedule.
    assert "practitioner_role" not in fields and "slot" not in fields
    for name in ("patient", "schedule"):
        assert {o.organization_id for o in fields[name].queryset} <= {org.pk}, name
    assert two_tenants["patient"] in fields["patient"].queryset
    assert two_tenants["foreign_patient"] not in fields["patient"].queryset
    assert set(fields["schedule"].queryset) == {two_tenants["schedule"]}


@pytest.mark.django_db
def test_crafted_post_for_foreign_organisation_is_refused(
    staff_client: Client, two_tenants: dict[str, Any], outsider_org: Organization
) -> None:
    foreign_role = two_tenants["foreign_schedule"].practitioner_role
    data = schedule_post(outsider_org, foreign_role.pk, fhir_id="sneaky")
    response = staff_client.post(reverse("admin:scheduling_schedule_add"), data)
    assert response.status_code == 200  # the form again, with errors
    errors = response.context["adminform"].form.errors
    assert "organization" in errors
    assert "practitioner_role" in errors
    assert not Schedule.objects.filter(fhir_id="sneaky").exists()


@pytest.mark.django_db
def test_organisation_admin_scoped_and_staff_memberships_superuser_only(
    staff_client: Client, org: Organization, outsider_org: Organization
) -> None:
    response = staff_client.get(reverse("admin:scheduling_organization_changelist"))
    body = response.content.decode()
    assert "clinic-a" in body
    assert "clinic-b" not in body
    url = reverse("admin:scheduling_organization_change", args=[outsider_org.pk])
    assert staff_client.get(url).status_code == 302
    assert staff_client.get(reverse("admin:scheduling_organization_add")).status_code == 403
    assert (
        staff_client.get(reverse("admin:scheduling_staffmembership_changelist")).status_code == 403
    )


@pytest.mark.django_db
def test_superuser_sees_every_organisation(two_tenants: dict[str, Any]) -> None:
    root = User.objects.create_superuser("root", password="pw-for-tests-123")
    client = Client()
    client.force_login(root)
    body = client.get(reverse("admin:scheduling_schedule_changelist")).content.decode()
    assert "mine-sched" in body
    assert "their-sched" in body
    assert client.get(reverse("admin:scheduling_staffmembership_changelist")).status_code == 200


@pytest.mark.django_db
def test_cancel_action_frees_slot_writes_audit_and_ignores_foreign_rows(
    staff_client: Client, two_tenants: dict[str, Any]
) -> None:
    mine, theirs = two_tenants["appointment"], two_tenants["foreign_appointment"]
    response = staff_client.post(
        reverse("admin:scheduling_appointment_changelist"),
        {"action": "cancel_appointments", "_selected_action": [mine.pk, theirs.pk]},
    )
    assert response.status_code == 302
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.status == "cancelled"
    assert theirs.status == "booked"
    audit = AuditEvent.objects.get(appointment=mine)
    assert audit.action == "cancelled"
    assert audit.actor == "staff:staff-a"
    assert not AuditEvent.objects.filter(appointment=theirs).exists()


@pytest.mark.django_db
def test_noshow_action_refuses_future_appointment_with_message(
    staff_client: Client, two_tenants: dict[str, Any], org: Organization
) -> None:
    future = two_tenants["appointment"]
    past = AppointmentFactory(
        organization=org,
        fhir_id="past-appt",
        start=datetime.now(UTC) - timedelta(hours=2),
        end=datetime.now(UTC) - timedelta(hours=1, minutes=45),
    )
    response = staff_client.post(
        reverse("admin:scheduling_appointment_changelist"),
        {"action": "mark_noshow", "_selected_action": [future.pk, past.pk]},
        follow=True,
    )
    assert response.status_code == 200
    past.refresh_from_db()
    future.refresh_from_db()
    assert past.status == "noshow"
    assert future.status == "booked"
    texts = [str(m) for m in response.context["messages"]]
    assert any("has not started yet" in t for t in texts)
    assert AuditEvent.objects.filter(appointment=past, action="noshow").exists()


@pytest.mark.django_db
def test_appointment_search_by_patient_name_and_filter_by_status(
    staff_client: Client, two_tenants: dict[str, Any]
) -> None:
    url = reverse("admin:scheduling_appointment_changelist")
    assert "my-appt" in staff_client.get(url, {"q": "Mijnheer"}).content.decode()
    assert "my-appt" not in staff_client.get(url, {"q": "Nobody"}).content.decode()
    assert "my-appt" not in staff_client.get(url, {"status__exact": "cancelled"}).content.decode()
    # The foreign patient's name finds nothing of theirs.
    assert "their-appt" not in staff_client.get(url, {"q": "Vreemd"}).content.decode()


@pytest.mark.django_db
def test_read_only_audit_events(staff_client: Client) -> None:
    assert staff_client.get(reverse("admin:scheduling_auditevent_add")).status_code == 403
    assert staff_client.get(reverse("admin:scheduling_auditevent_changelist")).status_code == 200


# --- schedule form ----------------------------------------------------------------------


@pytest.mark.django_db
def test_structured_schedule_created_through_admin(
    staff_client: Client, two_tenants: dict[str, Any], org: Organization
) -> None:
    role = two_tenants["schedule"].practitioner_role
    data = schedule_post(org, role.pk, exceptions="2026-12-09\n2026-12-14T09:00")
    response = staff_client.post(reverse("admin:scheduling_schedule_add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    schedule = Schedule.objects.get(fhir_id="new-sched")
    assert schedule.rrule == "FREQ=WEEKLY;BYDAY=MO,WE;UNTIL=20271231T225959Z"
    assert schedule.planning_start == datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    assert schedule.exdates == ["2026-12-09T09:00:00+01:00", "2026-12-14T09:00:00+01:00"]

    page = staff_client.get(reverse("admin:scheduling_schedule_change", args=[schedule.pk]))
    body = page.content.decode()
    assert (
        "Every Monday and Wednesday, 09:00\u201312:00 Europe/Amsterdam, 15-minute slots, "
        "until 31 Dec 2027" in body
    )
    preview = page.context["preview"]
    assert len(preview) == 10
    starts = [start for start, _end in preview]
    assert all(s.astimezone(AMS).hour == 9 for s in starts)
    assert all(s.astimezone(AMS).weekday() in (0, 2) for s in starts)
    assert datetime(2026, 12, 9, 8, 0, tzinfo=UTC) not in starts
    # The structured fields come back from the stored rule; the raw field starts empty.
    form = page.context["adminform"].form
    assert form.initial["frequency"] == "WEEKLY"
    assert form.initial["weekdays"] == ["MO", "WE"]
    assert form.initial["until"] == date(2027, 12, 31)
    assert form.initial["rrule"] == ""


def _bound_form(org: Organization, role_pk: int, **overrides: Any) -> ScheduleAdminForm:
    return ScheduleAdminForm(data=schedule_post(org, role_pk, **overrides))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        ({"rrule": "FREQ=HOURLY"}, "rrule", "HOURLY"),
        ({"rrule": "this is junk"}, "rrule", ""),
        ({"rrule": "FREQ=DAILY;COUNT=3;UNTIL=20271231T000000Z"}, "rrule", "UNTIL"),
        ({"until": "2027-12-31", "count": "5"}, "count", "not both"),
        ({"end_time": "08:00"}, "end_time", "after the start"),
        ({"end_time": "09:00"}, "end_time", "after the start"),
        ({"end_time": "25:00"}, "end_time", ""),
        ({"first_date": ""}, "first_date", ""),
        ({"recurrence_timezone": "Amsterdam"}, "recurrence_timezone", ""),
        ({"recurrence_timezone": "Mars/Olympus_Mons"}, "recurrence_timezone", ""),
        ({"until": "2026-01-01"}, "until", "before the first window"),
        ({"exceptions": "next tuesday"}, "exceptions", "next tuesday"),
        ({"frequency": "DAILY"}, "weekdays", "weekly"),
        (
            {"frequency": "", "weekdays": [], "until": "", "exceptions": "2026-12-09"},
            "exceptions",
            "repeating",
        ),
        ({"interval": "0"}, "interval", ""),
    ],
)
def test_invalid_schedule_input_is_a_form_error(
    two_tenants: dict[str, Any],
    org: Organization,
    overrides: dict[str, Any],
    field: str,
    fragment: str,
) -> None:
    form = _bound_form(org, two_tenants["schedule"].practitioner_role.pk, **overrides)
    assert not form.is_valid()
    assert field in form.errors, form.errors
    assert fragment in " ".join(form.errors[field])


@pytest.mark.django_db
def test_invalid_input_through_admin_is_a_200_with_errors_not_500(
    staff_client: Client, two_tenants: dict[str, Any], org: Organization
) -> None:
    role = two_tenants["schedule"].practitioner_role
    response = staff_client.post(
        reverse("admin:scheduling_schedule_add"), schedule_post(org, role.pk, rrule="FREQ=HOURLY")
    )
    assert response.status_code == 200
    assert "errornote" in response.content.decode()
    assert not Schedule.objects.filter(fhir_id="new-sched").exists()


@pytest.mark.django_db
def test_raw_rrule_wins_over_structured_fields(
    two_tenants: dict[str, Any], org: Organization
) -> None:
    form = _bound_form(
        org, two_tenants["schedule"].practitioner_role.pk, rrule="RRULE:FREQ=MONTHLY;BYDAY=1MO"
    )
    assert form.is_valid(), form.errors
    schedule = form.save()
    assert schedule.rrule == "FREQ=MONTHLY;BYDAY=1MO"
    # Not simple enough for the structured fields: it stays in the raw field.
    assert ScheduleAdminForm(instance=schedule).initial["rrule"] == "FREQ=MONTHLY;BYDAY=1MO"


@pytest.mark.parametrize(
    ("rule", "tz", "expected"),
    [
        (SimpleRule("DAILY"), "Europe/Amsterdam", "FREQ=DAILY"),
        (SimpleRule("WEEKLY", 2, ["WE", "MO"]), "UTC", "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE"),
        (SimpleRule("MONTHLY", count=6), "UTC", "FREQ=MONTHLY;COUNT=6"),
        # End of the local day in summer time (+02:00) is 21:59:59Z.
        (
            SimpleRule("YEARLY", until=date(2030, 6, 30)),
            "Europe/Amsterdam",
            "FREQ=YEARLY;UNTIL=20300630T215959Z",
        ),
        # Southern hemisphere: Sydney is +10:00 in June.
        (
            SimpleRule("DAILY", until=date(2030, 6, 30)),
            "Australia/Sydney",
            "FREQ=DAILY;UNTIL=20300630T135959Z",
        ),
    ],
)
def test_build_and_parse_round_trip(rule: SimpleRule, tz: str, expected: str) -> None:
    zone = zoneinfo.ZoneInfo(tz)
    assert build_rrule(rule, tz=zone) == expected
    back = parse_simple_rrule(expected, tz=zone)
    assert back is not None
    assert (back.freq, back.interval, back.until, back.count) == (
        rule.freq,
        rule.interval,
        rule.until,
        rule.count,
    )
    assert back.byday == [c for c in ("MO", "TU", "WE", "TH", "FR", "SA", "SU") if c in rule.byday]


@pytest.mark.parametrize(
    "rrule",
    [
        "FREQ=MONTHLY;BYDAY=1MO",
        "FREQ=WEEKLY;WKST=SU",
        "FREQ=DAILY;BYHOUR=9",
        "junk",
        # Midnight local, not the end of a day: a date field would widen the rule.
        "FREQ=WEEKLY;BYDAY=MO;UNTIL=20271231T230000Z",
    ],
)
def test_parse_simple_rrule_leaves_complex_rules_alone(rrule: str) -> None:
    assert parse_simple_rrule(rrule, tz=AMS) is None


def test_summary_in_english_and_dutch() -> None:
    kwargs = {
        "rrule": "FREQ=WEEKLY;BYDAY=MO,WE;UNTIL=20271231T225959Z",
        "first_start": datetime(2026, 12, 7, 8, 0, tzinfo=UTC),
        "first_end": datetime(2026, 12, 7, 11, 0, tzinfo=UTC),
        "tzid": "Europe/Amsterdam",
    }
    with translation.override("en"):
        assert describe_recurrence(**kwargs) == (
            "Every Monday and Wednesday, 09:00\u201312:00 Europe/Amsterdam, until 31 Dec 2027"
        )
        assert describe_recurrence(**{**kwargs, "rrule": "FREQ=DAILY;INTERVAL=2;COUNT=5"}) == (
            "Every 2 days, 09:00\u201312:00 Europe/Amsterdam, 5 times"
        )
    with translation.override("nl"):
        assert describe_recurrence(**kwargs) == (
            "Elke maandag en woensdag, 09:00\u201312:00 Europe/Amsterdam, tot 31 december 2027"
        )
        # The slot length is part of the summary when given.
        assert describe_recurrence(**kwargs, slot_minutes=15) == (
            "Elke maandag en woensdag, 09:00\u201312:00 Europe/Amsterdam, slots van 15 minuten, "
            "tot 31 december 2027"
        )
    with translation.override("en"):
        assert describe_recurrence(**kwargs, slot_minutes=20) == (
            "Every Monday and Wednesday, 09:00\u201312:00 Europe/Amsterdam, 20-minute slots, "
            "until 31 Dec 2027"
        )


@pytest.mark.django_db
def test_preview_validates_and_shows_occurrences_without_saving(
    staff_client: Client, two_tenants: dict[str, Any], org: Organization
) -> None:
    role = two_tenants["schedule"].practitioner_role
    data = schedule_post(
        org,
        role.pk,
        first_date="2026-12-07",
        start_time="13:00",
        end_time="17:00",
        _preview="Preview",
    )
    before = Schedule.objects.count()
    response = staff_client.post(reverse("admin:scheduling_schedule_add"), data)
    assert response.status_code == 200
    assert Schedule.objects.count() == before
    assert not Schedule.objects.filter(fhir_id="new-sched").exists()
    body = response.content.decode()
    assert "Preview (not saved yet)" in body
    assert (
        "Every Monday and Wednesday, 13:00\u201317:00 Europe/Amsterdam, 15-minute slots, "
        "until 31 Dec 2027" in body
    )
    occurrences = response.context["preview"]
    assert len(occurrences) == 10
    assert all(start.strftime("%H:%M") == "13:00" for start, _end in occurrences)
    assert {start.strftime("%a") for start, _end in occurrences} == {"Mon", "Wed"}
    # The form comes back filled in, ready to save.
    assert 'value="13:00"' in body and 'name="_save"' in body

    # A bad form under Preview is shown with its errors, no summary, nothing saved.
    bad = staff_client.post(reverse("admin:scheduling_schedule_add"), {**data, "end_time": "12:00"})
    assert bad.status_code == 200
    assert "after the start" in bad.content.decode()
    assert "summary" not in bad.context or not bad.context["summary"]
    assert Schedule.objects.count() == before

    # Saving the same data (without _preview) does save.
    del data["_preview"]
    saved = staff_client.post(reverse("admin:scheduling_schedule_add"), data)
    assert saved.status_code == 302
    assert Schedule.objects.filter(fhir_id="new-sched").exists()


@pytest.mark.django_db
def test_preview_on_the_change_page_leaves_the_stored_schedule_alone(
    staff_client: Client, two_tenants: dict[str, Any], org: Organization
) -> None:
    schedule = two_tenants["schedule"]
    stored = (schedule.planning_start, schedule.planning_end, schedule.rrule)
    url = reverse("admin:scheduling_schedule_change", args=[schedule.pk])
    form = staff_client.get(url).context["adminform"].form
    data = schedule_post(
        org,
        schedule.practitioner_role.pk,
        fhir_id=schedule.fhir_id,
        start_time="07:00",
        end_time="08:00",
        frequency="DAILY",
        weekdays=[],
        _preview="Preview",
    )
    data["first_date"] = form.initial["first_date"].isoformat()
    response = staff_client.post(url, data)
    assert response.status_code == 200
    assert "Every day, 07:00\u201308:00" in response.context["summary"]
    schedule.refresh_from_db()
    assert (schedule.planning_start, schedule.planning_end, schedule.rrule) == stored


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("zone", "day", "times", "expected"),
    [
        # The last Sunday of March: Amsterdam moves from +01:00 to +02:00 at 02:00.
        (
            "Europe/Amsterdam",
            "2026-03-29",
            ("13:00", "17:00"),
            (datetime(2026, 3, 29, 11, 0, tzinfo=UTC), datetime(2026, 3, 29, 15, 0, tzinfo=UTC)),
        ),
        # The clinic opens at 01:00 (+01:00) and closes at 05:00 (+02:00): three hours.
        (
            "Europe/Amsterdam",
            "2026-03-29",
            ("01:00", "05:00"),
            (datetime(2026, 3, 29, 0, 0, tzinfo=UTC), datetime(2026, 3, 29, 3, 0, tzinfo=UTC)),
        ),
        # Sydney's summer (+11:00): a morning there is the previous evening in UTC.
        (
            "Australia/Sydney",
            "2026-12-08",
            ("09:00", "12:30"),
            (datetime(2026, 12, 7, 22, 0, tzinfo=UTC), datetime(2026, 12, 8, 1, 30, tzinfo=UTC)),
        ),
        # The first Sunday of April Sydney goes back from +11:00 to +10:00 at 03:00.
        (
            "Australia/Sydney",
            "2026-04-05",
            ("13:00", "17:00"),
            (datetime(2026, 4, 5, 3, 0, tzinfo=UTC), datetime(2026, 4, 5, 7, 0, tzinfo=UTC)),
        ),
    ],
)
def test_from_until_times_are_read_in_the_chosen_zone(
    two_tenants: dict[str, Any],
    org: Organization,
    zone: str,
    day: str,
    times: tuple[str, str],
    expected: tuple[datetime, datetime],
) -> None:
    role = two_tenants["schedule"].practitioner_role
    form = _bound_form(
        org,
        role.pk,
        first_date=day,
        start_time=times[0],
        end_time=times[1],
        recurrence_timezone=zone,
        frequency="",
        weekdays=[],
        until="",
    )
    assert form.is_valid(), form.errors
    assert (form.instance.planning_start, form.instance.planning_end) == expected


@pytest.mark.django_db
def test_a_night_window_ends_the_next_day_and_a_skipped_hour_is_an_error(
    two_tenants: dict[str, Any], org: Organization
) -> None:
    role = two_tenants["schedule"].practitioner_role
    night = _bound_form(org, role.pk, start_time="22:00", end_time="06:00", ends_next_day="on")
    assert night.is_valid(), night.errors
    assert night.instance.planning_start == datetime(2026, 12, 7, 21, 0, tzinfo=UTC)
    assert night.instance.planning_end == datetime(2026, 12, 8, 5, 0, tzinfo=UTC)

    gap = _bound_form(
        org,
        role.pk,
        first_date="2026-03-29",
        start_time="02:30",
        end_time="04:00",
        frequency="",
        weekdays=[],
        until="",
    )
    assert not gap.is_valid()
    assert "does not exist" in str(gap.errors["start_time"])


@pytest.mark.django_db
def test_preview_never_shows_or_uses_another_organisations_schedule_or_role(
    staff_client: Client, two_tenants: dict[str, Any], org: Organization
) -> None:
    theirs = two_tenants["foreign_schedule"]
    data = schedule_post(org, theirs.practitioner_role.pk, _preview="Preview")
    # Their schedule's page: not found for this staff user, preview or not.
    url = reverse("admin:scheduling_schedule_change", args=[theirs.pk])
    response = staff_client.post(url, {**data, "fhir_id": theirs.fhir_id})
    assert response.status_code == 302
    assert "their-sched" not in staff_client.get(response.url).content.decode()
    # Their role on a new schedule: a form error, no summary.
    added = staff_client.post(reverse("admin:scheduling_schedule_add"), data)
    assert added.status_code == 200
    assert added.context["adminform"].form.errors.get("practitioner_role")
    assert not added.context.get("summary")


@pytest.mark.django_db
def test_a_window_longer_than_a_day_survives_the_form(
    staff_client: Client, two_tenants: dict[str, Any], org: Organization
) -> None:
    # A schedule made through the API may have one window of several days; the from-until
    # fields cannot say that, so the raw window fields carry it and saving keeps it whole.
    schedule = two_tenants["schedule"]
    schedule.planning_start = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    schedule.planning_end = datetime(2026, 12, 11, 16, 0, tzinfo=UTC)
    schedule.rrule = ""
    schedule.save()
    url = reverse("admin:scheduling_schedule_change", args=[schedule.pk])
    form = staff_client.get(url).context["adminform"].form
    assert form.initial["window_start"] == datetime(2026, 12, 7, 9, 0)
    assert form.initial["window_end"] == datetime(2026, 12, 11, 17, 0)
    data = schedule_post(
        org,
        schedule.practitioner_role.pk,
        fhir_id=schedule.fhir_id,
        frequency="",
        weekdays=[],
        until="",
        window_start_0="2026-12-07",
        window_start_1="09:00",
        window_end_0="2026-12-11",
        window_end_1="17:00",
    )
    response = staff_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    schedule.refresh_from_db()
    assert schedule.planning_start == datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    assert schedule.planning_end == datetime(2026, 12, 11, 16, 0, tzinfo=UTC)

    # Without the raw fields the first date and times are required again.
    bare = _bound_form(org, schedule.practitioner_role.pk, first_date="", start_time="")
    assert not bare.is_valid()
    assert set(bare.errors) >= {"first_date", "start_time"}


@pytest.mark.django_db
def test_the_zone_list_starts_with_the_organisations_zone(
    staff_client: Client, two_tenants: dict[str, Any], org: Organization
) -> None:
    org.timezone = "America/Curacao"
    org.save()
    page = staff_client.get(reverse("admin:scheduling_schedule_add"))
    form = page.context["adminform"].form
    assert form.fields["recurrence_timezone"].initial == "America/Curacao"
    suggestions = form.fields["recurrence_timezone"].widget.suggestions
    assert suggestions[:2] == ["America/Curacao", "Europe/Amsterdam"]
    assert len(suggestions) == len(set(suggestions)) > 400
    body = page.content.decode()
    # A plain text box with a datalist: searchable without any script.
    assert 'list="id_recurrence_timezone_list"' in body
    assert '<datalist id="id_recurrence_timezone_list"><option value="America/Curacao">' in body
    # One date format for the first and the last date: the admin's own date box.
    assert 'name="first_date" class="vDateField"' in body
    assert 'name="until" class="vDateField"' in body


# --- calendar and blocking time -----------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"week": "2026-W48"}, date(2026, 11, 23)),
        ({"start": "2026-11-26"}, date(2026, 11, 23)),
        ({"week": "2020-W53"}, date(2020, 12, 28)),
        ({}, date(2026, 11, 23)),
    ],
)
def test_parse_week(params: dict[str, str], expected: date) -> None:
    assert parse_week(params, today=date(2026, 11, 27)) == expected


@pytest.mark.parametrize("params", [{"week": "2026-48"}, {"week": "2026-W60"}, {"start": "soon"}])
def test_parse_week_rejects_junk(params: dict[str, str]) -> None:
    with pytest.raises(BadWeek):
        parse_week(params, today=date(2026, 11, 27))


@pytest.mark.django_db
def test_schedule_calendar_shows_slots_bookings_and_blocked_time(
    staff_client: Client, two_tenants: dict[str, Any]
) -> None:
    schedule = two_tenants["schedule"]
    Slot.objects.create(
        organization=schedule.organization,
        fhir_id="blk-1",
        schedule=schedule,
        status="busy-unavailable",
        start=schedule.planning_start + timedelta(hours=2),
        end=schedule.planning_end,
        comment="Team meeting",
    )
    local = schedule.planning_start.astimezone(AMS)
    week = f"{local.isocalendar()[0]}-W{local.isocalendar()[1]:02d}"
    url = reverse("admin:scheduling_schedule_calendar", args=[schedule.pk])
    response = staff_client.get(url, {"week": week})
    assert response.status_code == 200
    kinds = [b.kind for day in response.context["days"] for b in day.blocks]
    # 3 hours of 15 minutes; the first slot is booked, the last 4 are blocked. As in Slot
    # search (the calendar asks the same engine), the stored block replaces the generated
    # slot at its own start, so 1 booked + 3 covered slots are busy.
    assert kinds.count("window") == 1
    assert kinds.count("booking") == 1
    assert kinds.count("blocked") == 1
    assert kinds.count("busy") == 4
    assert kinds.count("free") == 7
    body = response.content.decode()
    assert "Team meeting" in body
    assert 'id="prev-week"' in body


@pytest.mark.django_db
def test_calendars_of_another_organisation_are_404(
    staff_client: Client, two_tenants: dict[str, Any]
) -> None:
    foreign = two_tenants["foreign_schedule"]
    for name in ("calendar", "block"):
        url = reverse(f"admin:scheduling_schedule_{name}", args=[foreign.pk])
        assert staff_client.get(url).status_code == 404
    url = reverse("admin:scheduling_practitioner_calendar", args=[foreign.practitioner.pk])
    assert staff_client.get(url).status_code == 404
    assert (
        staff_client.get(
            reverse("admin:scheduling_schedule_calendar", args=["not-a-number"])
        ).status_code
        == 404
    )


@pytest.mark.django_db
def test_front_desk_views_of_another_organisation_are_404_and_change_nothing(
    staff_client: Client, two_tenants: dict[str, Any]
) -> None:
    foreign_schedule = two_tenants["foreign_schedule"]
    foreign_appt: Appointment = two_tenants["foreign_appointment"]
    foreign_block = Slot.objects.create(
        organization=foreign_schedule.organization,
        fhir_id="their-block",
        schedule=foreign_schedule,
        status="busy-unavailable",
        start=foreign_schedule.planning_start,
        end=foreign_schedule.planning_end,
    )
    start = foreign_schedule.planning_start.isoformat()
    book = reverse("admin:scheduling_frontdesk_book")
    desk = reverse("admin:scheduling_frontdesk_appointment", args=[foreign_appt.pk])
    unblock = reverse("admin:scheduling_frontdesk_slot", args=[foreign_block.pk])
    day = reverse("admin:scheduling_frontdesk_day")
    assert staff_client.get(day, {"org": foreign_schedule.organization_id}).status_code == 404
    assert "Vreemd" not in staff_client.get(day).content.decode()
    assert (
        staff_client.get(book, {"schedule": foreign_schedule.pk, "start": start}).status_code == 404
    )
    assert staff_client.get(desk).status_code == 404
    assert staff_client.get(unblock).status_code == 404
    booking = {
        "schedule": foreign_schedule.pk,
        "start": start,
        "patient": two_tenants["foreign_patient"].pk,
    }
    assert staff_client.post(book, booking).status_code == 404
    for action in ({"action": "cancel", "reason": "x"}, {"action": "noshow"}):
        assert staff_client.post(desk, action).status_code == 404
    assert staff_client.post(unblock).status_code == 404
    foreign_appt.refresh_from_db()
    assert foreign_appt.status == "booked"
    assert Slot.objects.filter(pk=foreign_block.pk).exists()
    assert Appointment.objects.filter(organization=foreign_schedule.organization).count() == 1
    assert not AuditEvent.objects.exists()


@pytest.mark.django_db
def test_bad_week_is_400(staff_client: Client, two_tenants: dict[str, Any]) -> None:
    url = reverse("admin:scheduling_schedule_calendar", args=[two_tenants["schedule"].pk])
    response = staff_client.get(url, {"week": "2026-W99"})
    assert response.status_code == 400
    assert "is not a week" in response.content.decode()


@pytest.mark.django_db
def test_practitioner_calendar_lists_all_their_schedules(
    staff_client: Client, org: Organization
) -> None:
    practitioner = PractitionerFactory(organization=org)
    role = PractitionerRoleFactory(organization=org, practitioner=practitioner)
    first = ScheduleFactory(organization=org, practitioner_role=role)
    ScheduleFactory(
        organization=org,
        practitioner_role=role,
        planning_start=first.planning_start + timedelta(days=1),
        planning_end=first.planning_end + timedelta(days=1),
    )
    local = first.planning_start.astimezone(AMS).date()
    url = reverse("admin:scheduling_practitioner_calendar", args=[practitioner.pk])
    response = staff_client.get(url, {"start": local.isoformat()})
    assert response.status_code == 200
    kinds = [b.kind for day in response.context["days"] for b in day.blocks]
    assert kinds.count("window") == 2
    assert reverse("admin:scheduling_practitioner_calendar", args=[practitioner.pk]) in (
        staff_client.get(reverse("admin:scheduling_practitioner_changelist")).content.decode()
    )


@pytest.mark.django_db
def test_block_time_creates_busy_unavailable_slot(
    staff_client: Client, two_tenants: dict[str, Any]
) -> None:
    schedule = two_tenants["schedule"]
    url = reverse("admin:scheduling_schedule_block", args=[schedule.pk])
    assert staff_client.get(url).context["form"].initial["schedule"] == schedule
    response = staff_client.post(
        url,
        {
            "schedule": schedule.pk,
            "start": "2026-12-08T13:00",
            "end": "2026-12-08T14:30",
            "comment": "Dentist",
        },
    )
    assert response.status_code == 302
    assert "week=2026-W50" in response["Location"]
    slot = Slot.objects.get(comment="Dentist")
    assert slot.status == "busy-unavailable"
    # Read in the organisation's zone (CET, +01:00).
    assert slot.start == datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
    assert slot.organization_id == schedule.organization_id


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("start", "end"),
    [("2026-12-08T14:00", "2026-12-08T13:00"), ("yesterday", "2026-12-08T13:00")],
)
def test_block_time_bad_input_is_400(
    staff_client: Client, two_tenants: dict[str, Any], start: str, end: str
) -> None:
    schedule = two_tenants["schedule"]
    url = reverse("admin:scheduling_schedule_block", args=[schedule.pk])
    response = staff_client.post(url, {"schedule": schedule.pk, "start": start, "end": end})
    assert response.status_code == 400
    assert response.context["form"].errors
    assert not Slot.objects.filter(status="busy-unavailable").exists()


@pytest.mark.django_db
def test_block_time_cannot_target_foreign_schedule(
    staff_client: Client, two_tenants: dict[str, Any]
) -> None:
    url = reverse("admin:scheduling_schedule_block", args=[two_tenants["schedule"].pk])
    response = staff_client.post(
        url,
        {
            "schedule": two_tenants["foreign_schedule"].pk,
            "start": "2026-12-08T13:00",
            "end": "2026-12-08T14:00",
        },
    )
    assert response.status_code == 400
    assert "schedule" in response.context["form"].errors
    assert not Slot.objects.exists()


@pytest.mark.django_db
def test_admin_pages_in_dutch(staff_client: Client, two_tenants: dict[str, Any]) -> None:
    url = reverse("admin:scheduling_schedule_calendar", args=[two_tenants["schedule"].pk])
    body = staff_client.get(url, HTTP_ACCEPT_LANGUAGE="nl").content.decode()
    assert "Vorige week" in body
    assert "Tijd blokkeren" in body


@pytest.mark.django_db
def test_block_over_a_booking_lists_it_and_needs_confirmation(
    staff_client: Client, two_tenants: dict[str, Any]
) -> None:
    schedule = two_tenants["schedule"]
    booking = Appointment.objects.filter(schedule=schedule).select_related("patient").first()
    assert booking is not None
    url = reverse("admin:scheduling_schedule_block", args=[schedule.pk])
    local = booking.start.astimezone(AMS)
    data = {
        "schedule": schedule.pk,
        "start": f"{local:%Y-%m-%dT%H:%M}",
        "end": f"{local + timedelta(hours=1):%Y-%m-%dT%H:%M}",
        "comment": "Training",
    }
    first = staff_client.post(url, data)
    assert first.status_code == 400
    page = first.content.decode()
    assert 'id="block-hits"' in page and str(booking.patient) in page
    assert f"Appointment/{booking.fhir_id}" in page
    assert not Slot.objects.filter(comment="Training").exists()
    confirmed = staff_client.post(url, {**data, "confirm": "on"})
    assert confirmed.status_code == 302
    assert Slot.objects.filter(comment="Training", status="busy-unavailable").exists()
    booking.refresh_from_db()
    assert booking.is_active, "a block never cancels or hides a booking"
    event = AuditEvent.objects.get(action="blocked")
    assert event.detail["bookingsKept"] == [f"Appointment/{booking.fhir_id}"]


# --- appointments through the booking services -----------------------------------------


def _split(value: datetime) -> dict[str, str]:
    local = value.astimezone(AMS)
    return {"start_0": f"{local:%Y-%m-%d}", "start_1": f"{local:%H:%M}"}


@pytest.mark.django_db
def test_admin_books_through_the_engine_and_refuses_in_plain_words(
    staff_client: Client, two_tenants: dict[str, Any], org: Organization
) -> None:
    schedule = two_tenants["schedule"]
    add = reverse("admin:scheduling_appointment_add")
    patient = PatientFactory(organization=org, family="Bakker")
    base = {"patient": patient.pk, "schedule": schedule.pk, "status": "booked", "comment": ""}
    # The fixture's booking holds the first slot: refused, with the clash in words.
    taken = staff_client.post(add, {**base, **_split(schedule.planning_start)})
    assert taken.status_code == 200
    errors = str(taken.context["adminform"].form.errors)
    assert "no longer free" in errors and "uniq_" not in errors and "Constraint" not in errors
    # Off the grid: no such slot.
    off = staff_client.post(add, {**base, **_split(schedule.planning_start + timedelta(minutes=7))})
    assert "No slot of schedule" in str(off.context["adminform"].form.errors)
    # Another practitioner's blocked time does not matter; this one's free slot books.
    ok = staff_client.post(add, {**base, **_split(schedule.planning_start + timedelta(minutes=15))})
    assert ok.status_code == 302, ok.context["adminform"].form.errors
    booked = Appointment.objects.get(patient=patient)
    assert booked.practitioner_role == schedule.practitioner_role
    assert AuditEvent.objects.filter(appointment=booked, action="created").exists()
    assert AuditEvent.objects.get(appointment=booked).actor == "staff:staff-a"


@pytest.mark.django_db
def test_admin_moves_and_cancels_through_the_services(
    staff_client: Client, two_tenants: dict[str, Any], org: Organization
) -> None:
    schedule, booking = two_tenants["schedule"], two_tenants["appointment"]
    other = AppointmentFactory(
        organization=org,
        schedule=schedule,
        practitioner_role=schedule.practitioner_role,
        start=schedule.planning_start + timedelta(minutes=30),
        end=schedule.planning_start + timedelta(minutes=45),
    )
    change = reverse("admin:scheduling_appointment_change", args=[booking.pk])
    form = {
        "status": "booked",
        "schedule": schedule.pk,
        "comment": "",
        "description": "",
        "cancelation_reason": "",
    }
    # Onto the other booking: refused, nothing changes.
    clash = staff_client.post(change, {**form, **_split(other.start)})
    assert clash.status_code == 200
    assert "no longer free" in str(clash.context["adminform"].form.errors)
    booking.refresh_from_db()
    assert booking.start == schedule.planning_start
    # Onto a free slot: moved, same id, audited.
    moved = staff_client.post(change, {**form, **_split(other.end)})
    assert moved.status_code == 302, moved.context["adminform"].form.errors
    booking.refresh_from_db()
    assert booking.start == other.end
    assert AuditEvent.objects.filter(appointment=booking, action="rescheduled").exists()
    # Cancelled with a reason: the slot is free again.
    cancel = {**form, **_split(booking.start), "status": "cancelled", "cancelation_reason": "ill"}
    assert staff_client.post(change, cancel).status_code == 302
    booking.refresh_from_db()
    assert (booking.status, booking.cancelation_reason) == ("cancelled", "ill")
    assert AuditEvent.objects.filter(appointment=booking, action="cancelled").exists()


@pytest.mark.django_db
def test_saving_a_schedule_that_overlaps_another_of_the_practitioner_warns(
    staff_client: Client, two_tenants: dict[str, Any], org: Organization
) -> None:
    mine = two_tenants["schedule"]
    local = mine.planning_start.astimezone(AMS)
    data = schedule_post(
        org,
        mine.practitioner_role.pk,
        fhir_id="vaccinations",
        first_date=f"{local:%Y-%m-%d}",
        start_time=f"{local + timedelta(hours=1):%H:%M}",
        end_time=f"{local + timedelta(hours=5):%H:%M}",
        frequency="",
        weekdays=[],
        until="",
    )
    response = staff_client.post(reverse("admin:scheduling_schedule_add"), data, follow=True)
    assert response.status_code == 200
    warnings = [str(m) for m in response.context["messages"] if m.level_tag == "warning"]
    assert any("overlaps" in w and "mine-sched" in w for w in warnings), warnings


@pytest.mark.django_db
def test_schedule_form_edits_booking_rules_and_refuses_nonsense(
    staff_client: Client, two_tenants: dict[str, Any], org: Organization
) -> None:
    role = two_tenants["schedule"].practitioner_role
    url = reverse("admin:scheduling_schedule_add")
    bad = staff_client.post(
        url, schedule_post(org, role.pk, capacity="0", buffer_after_minutes="900")
    )
    assert bad.status_code == 200
    errors = bad.context["adminform"].form.errors
    assert "capacity" in errors and "buffer_after_minutes" in errors
    good = staff_client.post(
        url,
        schedule_post(
            org, role.pk, capacity="3", minimum_notice_minutes="120", cancellation_cutoff_hours="24"
        ),
    )
    assert good.status_code == 302, good.context["adminform"].form.errors
    saved = Schedule.objects.get(fhir_id="new-sched")
    assert (saved.capacity, saved.minimum_notice_minutes, saved.cancellation_cutoff_hours) == (
        3,
        120,
        24,
    )
    page = staff_client.get(
        reverse("admin:scheduling_schedule_change", args=[saved.pk]), HTTP_ACCEPT_LANGUAGE="nl"
    )
    assert "Boekingsregels" in page.content.decode()
    assert "Boek minstens" in page.content.decode()


@pytest.mark.django_db
def test_calendar_shows_group_slots_filling_and_buffers(
    staff_client: Client, org: Organization
) -> None:
    from scheduling import services

    make_staff_org = org
    group = ScheduleFactory(
        organization=make_staff_org, fhir_id="group", capacity=3, buffer_after_minutes=10
    )
    for _ in range(2):
        services.appointment_book(
            organization=org,
            patient=PatientFactory(organization=org),
            schedule_id=group.fhir_id,
            start=group.planning_start,
            practitioner_role_id=group.practitioner_role.fhir_id,
            status="booked",
            comment="",
            actor="test",
        )
    local = group.planning_start.astimezone(AMS)
    week = f"{local.isocalendar()[0]}-W{local.isocalendar()[1]:02d}"
    url = reverse("admin:scheduling_schedule_calendar", args=[group.pk])
    response = staff_client.get(url, {"week": week})
    blocks = [b for day in response.context["days"] for b in day.blocks]
    first = next(b for b in blocks if b.kind == "free" and b.start == group.planning_start)
    assert first.detail == "2 of 3 booked"
    assert "2 of 3 booked" in response.content.decode()
    # An empty group slot says how many can come, not "0 of 3 booked".
    empty = next(b for b in blocks if b.kind == "free" and b.start > group.planning_start)
    assert empty.detail == "3 places free"
    assert "0 of 3" not in response.content.decode()
    dutch = staff_client.get(url, {"week": week}, HTTP_ACCEPT_LANGUAGE="nl").content.decode()
    assert "3 plaatsen vrij" in dutch and "2 van 3 geboekt" in dutch
    buffers = [b for b in blocks if b.kind == "buffer"]
    assert len(buffers) == 2  # one after each booking
    assert all(b.end - b.start == timedelta(minutes=10) for b in buffers)


# --- cancel with a reason, holds -----------------------------------------------------------


@pytest.mark.django_db
def test_cancel_button_with_reason_on_the_change_page(
    staff_client: Client, two_tenants: dict[str, Any], org: Organization
) -> None:
    mine = two_tenants["appointment"]
    page = staff_client.get(reverse("admin:scheduling_appointment_change", args=[mine.pk]))
    cancel_url = reverse("admin:scheduling_appointment_cancel", args=[mine.pk])
    assert page.status_code == 200
    assert cancel_url in page.content.decode() and 'name="reason"' in page.content.decode()
    response = staff_client.post(cancel_url, {"reason": "  practitioner ill "}, follow=True)
    assert response.status_code == 200
    mine.refresh_from_db()
    assert (mine.status, mine.cancelation_reason) == ("cancelled", "practitioner ill")
    event = AuditEvent.objects.get(appointment=mine, action="cancelled")
    assert event.actor == "staff:staff-a" and event.detail["reason"] == "practitioner ill"
    # Cancelled: the button is gone, and a repeated POST changes nothing.
    page = staff_client.get(reverse("admin:scheduling_appointment_change", args=[mine.pk]))
    assert cancel_url not in page.content.decode()
    staff_client.post(cancel_url, {"reason": "again"})
    mine.refresh_from_db()
    assert mine.cancelation_reason == "practitioner ill"
    # Staff may cancel what has started (the API refuses it).
    started = AppointmentFactory(
        organization=org,
        start=datetime.now(UTC) - timedelta(minutes=5),
        end=datetime.now(UTC) + timedelta(minutes=10),
    )
    staff_client.post(reverse("admin:scheduling_appointment_cancel", args=[started.pk]), {})
    started.refresh_from_db()
    assert started.status == "cancelled"


@pytest.mark.django_db
def test_cancel_button_refuses_foreign_rows_and_get(
    staff_client: Client, two_tenants: dict[str, Any]
) -> None:
    theirs, mine = two_tenants["foreign_appointment"], two_tenants["appointment"]
    response = staff_client.post(
        reverse("admin:scheduling_appointment_cancel", args=[theirs.pk]), {"reason": "x"}
    )
    assert response.status_code == 403
    response = staff_client.get(reverse("admin:scheduling_appointment_cancel", args=[mine.pk]))
    assert response.status_code == 403
    for row in (theirs, mine):
        row.refresh_from_db()
        assert row.status == "booked"


@pytest.mark.django_db
def test_hold_expiry_is_shown_on_pending_appointments(
    staff_client: Client, two_tenants: dict[str, Any], org: Organization
) -> None:
    schedule = two_tenants["schedule"]
    live = AppointmentFactory(
        organization=org,
        fhir_id="live-hold",
        status="pending",
        schedule=schedule,
        start=schedule.planning_start + timedelta(hours=1),
        held_until=datetime(2030, 1, 2, 11, 5, 7, tzinfo=UTC),
    )
    lapsed = AppointmentFactory(
        organization=org,
        fhir_id="lapsed-hold",
        status="pending",
        schedule=schedule,
        start=schedule.planning_start + timedelta(hours=2),
        held_until=datetime.now(UTC) - timedelta(minutes=1),
    )
    page = staff_client.get(reverse("admin:scheduling_appointment_change", args=[live.pk]))
    # In the organisation's zone (Amsterdam, UTC+1 in January).
    assert "held until 2030-01-02 12:05:07" in page.content.decode()
    page = staff_client.get(reverse("admin:scheduling_appointment_change", args=[lapsed.pk]))
    assert "lapsed at" in page.content.decode()
    listing = staff_client.get(reverse("admin:scheduling_appointment_changelist")).content.decode()
    assert "held until 2030-01-02 12:05:07" in listing and "lapsed at" in listing
