"""The staff admin in a real browser (Debian's chromium driven by Playwright).

A clinic staff user (not a superuser) logs in, creates a recurring schedule through the
structured form, reads its summary and preview, opens the week calendar, blocks time,
cancels an appointment, and cannot see another organisation's data. Screenshots of the
calendar land in test-artifacts/.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, Permission, User
from django.db import connections

from scheduling.models import Appointment, AuditEvent, Organization, Schedule, Slot, StaffMembership
from tests.factories import (
    AppointmentFactory,
    OrganizationFactory,
    PatientFactory,
    PractitionerRoleFactory,
    ScheduleFactory,
)

# Playwright's sync API runs an event loop in this thread; Django's ORM calls from the test
# body are still plain synchronous calls.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts"
AMS = ZoneInfo("Europe/Amsterdam")
PASSWORD = "staff-pw-for-browser-tests"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

if not CHROMIUM.exists():
    if os.environ.get("CI", "").lower() == "true":
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install -y chromium (CI=true)")
    pytestmark.append(pytest.mark.skip(reason=f"{CHROMIUM} is not installed"))


def next_monday() -> date:
    today = datetime.now(AMS).date()
    return today + timedelta(days=7 - today.weekday())


@pytest.fixture
def browser_page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-GB")
        page = context.new_page()
        page.set_default_timeout(15_000)
        try:
            yield page
        finally:
            # Between its calls Playwright marks its event loop as running in this thread,
            # and Django then keeps this thread's database connections apart from the ones
            # it uses outside the session: the test's ORM calls opened a second connection
            # that the database fixtures never see. Close it while the session still runs,
            # or it stays open until the garbage collector finds it, often after the test
            # database should have been dropped ("being accessed by other users").
            connections.close_all()
            context.close()
            browser.close()


@pytest.fixture(autouse=True)
def _plain_static_files(settings: Any) -> None:
    # Without DEBUG the manifest storage needs collectstatic; the live server serves the
    # admin's CSS straight from the apps instead, so the screenshots look like production.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def clinic() -> dict[str, Any]:
    org = OrganizationFactory(id="clinic-a", name="Clinic A")
    outsider = OrganizationFactory(id="clinic-b", name="Clinic B")
    group, _ = Group.objects.get_or_create(name="Clinic staff")
    group.permissions.set(Permission.objects.filter(content_type__app_label="scheduling"))
    user = User.objects.create_user("staff", password=PASSWORD, is_staff=True)
    user.groups.add(group)
    StaffMembership.objects.create(organization=org, user=user)

    role = PractitionerRoleFactory(organization=org, fhir_id="dr-bakker-gp")
    role.practitioner.family = "Bakker"
    role.practitioner.save()
    monday = next_monday()
    start = datetime.combine(monday + timedelta(days=1), time(9), tzinfo=AMS)
    existing = ScheduleFactory(
        organization=org,
        fhir_id="tuesday-clinic",
        practitioner_role=role,
        planning_start=start,
        planning_end=start + timedelta(hours=2),
    )
    patient = PatientFactory(organization=org, fhir_id="pat-visser", family="Visser")
    appointment = AppointmentFactory(
        organization=org,
        fhir_id="appt-visser",
        patient=patient,
        schedule=existing,
        practitioner_role=role,
        start=start + timedelta(minutes=30),
        end=start + timedelta(minutes=45),
    )
    foreign = ScheduleFactory(organization=outsider, fhir_id="secret-foreign-sched")
    PatientFactory(organization=outsider, fhir_id="secret-foreign-pat", family="Geheim")
    return {
        "org": org,
        "role": role,
        "monday": monday,
        "appointment": appointment,
        "foreign": foreign,
        "existing": existing,
    }


def login(page: Any, base: str) -> None:
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", "staff")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/")


def test_staff_user_runs_the_clinic_in_a_browser(
    live_server: Any, browser_page: Any, clinic: dict[str, Any]
) -> None:
    page, base = browser_page, live_server.url
    ARTIFACTS.mkdir(exist_ok=True)
    login(page, base)
    monday = clinic["monday"]

    # --- a recurring schedule through the structured form ---------------------------
    page.goto(f"{base}/admin/scheduling/schedule/add/")
    # The organisation is the user's only one, preselected.
    assert page.input_value("#id_organization") == "clinic-a"
    page.fill("#id_fhir_id", "dr-bakker-mornings")
    page.select_option("#id_practitioner_role", label=str(clinic["role"]))
    # A first date and from-until times, not two date-times.
    page.fill("#id_first_date", monday.isoformat())
    page.fill("#id_start_time", "09:00")
    page.fill("#id_end_time", "12:00")
    page.fill("#id_slot_minutes", "15")
    page.select_option("#id_frequency", "WEEKLY")
    page.check("input[name=weekdays][value=MO]")
    page.check("input[name=weekdays][value=WE]")
    # The last date is the same kind of box as the first: the same format.
    assert page.get_attribute("#id_until", "class") == page.get_attribute("#id_first_date", "class")
    page.fill("#id_until", "2027-12-31")
    # The zone is a searchable text box, the organisation's zone first and preselected.
    assert page.input_value("#id_recurrence_timezone") == "Europe/Amsterdam"
    zone_list = page.get_attribute("#id_recurrence_timezone", "list")
    first_option = page.locator(f"datalist#{zone_list} option").first
    assert first_option.get_attribute("value") == "Europe/Amsterdam"

    # Preview first: summary and occurrences shown, nothing saved.
    with page.expect_navigation():
        page.click("#preview-button")
    assert page.inner_text("#schedule-summary h2") == "Preview (not saved yet)"
    assert page.inner_text("#schedule-summary .summary") == (
        "Every Monday and Wednesday, 09:00\u201312:00 Europe/Amsterdam, 15-minute slots, "
        "until 31 Dec 2027"
    )
    assert page.locator("#occurrence-preview li").count() == 10
    assert not Schedule.objects.filter(fhir_id="dr-bakker-mornings").exists()
    assert page.input_value("#id_start_time") == "09:00"
    page.screenshot(path=str(ARTIFACTS / "desk-schedule-preview.png"), full_page=True)

    page.click("input[name=_continue]")
    page.wait_for_selector("#schedule-summary")

    schedule = Schedule.objects.get(fhir_id="dr-bakker-mornings")
    assert schedule.rrule == "FREQ=WEEKLY;BYDAY=MO,WE;UNTIL=20271231T225959Z"
    summary = page.inner_text("#schedule-summary .summary")
    assert summary == (
        "Every Monday and Wednesday, 09:00\u201312:00 Europe/Amsterdam, 15-minute slots, "
        "until 31 Dec 2027"
    )
    items = page.locator("#occurrence-preview li")
    assert items.count() == 10
    first = items.nth(0).inner_text()
    assert first.startswith("Mon") and "09:00" in first and "12:00" in first
    assert items.nth(1).inner_text().startswith("Wed")

    # --- a broken raw rule is a form error, not a 500 -------------------------------
    page.click("fieldset.collapse summary")
    page.fill("#id_rrule", "FREQ=HOURLY")
    with page.expect_navigation():
        page.click("input[name=_continue]")
    assert page.locator(".errornote").count() == 1
    assert "HOURLY" in page.inner_text(".field-rrule .errorlist")
    assert Schedule.objects.get(pk=schedule.pk).rrule.startswith("FREQ=WEEKLY")

    # --- the week calendar -----------------------------------------------------------
    page.goto(f"{base}/admin/scheduling/schedule/{schedule.pk}/change/")
    page.click("#calendar-link")
    page.wait_for_selector("#week-calendar")
    week = f"{monday.isocalendar()[0]}-W{monday.isocalendar()[1]:02d}"
    if week not in page.url:
        page.goto(f"{page.url.split('?')[0]}?week={week}")
    monday_column = page.locator(f".wk-day[data-day='{monday.isoformat()}']")
    assert monday_column.locator(".blk-window").count() == 1
    assert monday_column.locator(".blk-free").count() == 12  # 09:00-12:00 in 15 minutes
    tuesday = (monday + timedelta(days=1)).isoformat()
    assert page.locator(f".wk-day[data-day='{tuesday}'] .blk").count() == 0
    page.screenshot(path=str(ARTIFACTS / "calendar-schedule.png"), full_page=True)

    # --- blocking time from the calendar ---------------------------------------------
    page.click("#block-time")
    page.wait_for_selector("#block-form")
    page.fill("#id_start", f"{monday.isoformat()}T10:00")
    page.fill("#id_end", f"{monday.isoformat()}T11:00")
    page.fill("#id_comment", "Team meeting")
    page.click("input[name=_block]")
    page.wait_for_selector("#week-calendar")
    assert "Blocked" in page.inner_text(".messagelist")
    blocked = monday_column.locator(".blk-blocked")
    assert blocked.count() == 1
    assert "Team meeting" in blocked.inner_text()
    assert monday_column.locator(".blk-free").count() == 8
    slot = Slot.objects.get(comment="Team meeting")
    assert slot.status == "busy-unavailable"
    assert slot.start == datetime.combine(monday, time(10), tzinfo=AMS).astimezone(UTC)
    page.screenshot(path=str(ARTIFACTS / "calendar-blocked.png"), full_page=True)

    # --- the practitioner's calendar shows both schedules and the booking -------------
    page.goto(f"{base}/admin/scheduling/practitioner/")
    page.click("text=Week calendar")
    page.goto(f"{page.url.split('?')[0]}?week={week}")
    grid = page.locator("#week-calendar")
    assert grid.locator(".blk-window").count() == 3  # Mon + Wed mornings, Tuesday clinic
    assert grid.locator(".blk-booking").count() == 1
    assert "Visser" in grid.locator(".blk-booking").inner_text()
    page.screenshot(path=str(ARTIFACTS / "calendar-practitioner.png"), full_page=True)

    # --- cancelling an appointment with the admin action ------------------------------
    appointment: Appointment = clinic["appointment"]
    page.goto(f"{base}/admin/scheduling/appointment/?q=Visser")
    page.check(f"input[name=_selected_action][value='{appointment.pk}']")
    page.select_option("select[name=action]", "cancel_appointments")
    page.click("button[name=index]")
    page.wait_for_selector(".messagelist")
    assert "1 appointment(s) cancelled." in page.inner_text(".messagelist")
    appointment.refresh_from_db()
    assert appointment.status == "cancelled"
    assert AuditEvent.objects.filter(appointment=appointment, action="cancelled").exists()

    # --- another organisation's data stays invisible -----------------------------------
    for path in ("schedule", "patient", "organization"):
        page.goto(f"{base}/admin/scheduling/{path}/")
        body = page.inner_text("#content")
        assert "secret-foreign" not in body
        assert "clinic-b" not in body
    response = page.goto(f"{base}/admin/scheduling/schedule/{clinic['foreign'].pk}/calendar/")
    assert response is not None and response.status == 404
    page.goto(f"{base}/admin/scheduling/schedule/{clinic['foreign'].pk}/change/")
    assert page.url.rstrip("/").endswith("/admin")  # the admin's "doesn't exist" redirect
    assert page.locator("a[href*='staffmembership']").count() == 0


def test_calendar_in_dutch(live_server: Any, browser_page: Any, clinic: dict[str, Any]) -> None:
    page, base = browser_page, live_server.url
    login(page, base)
    # The language switch in the admin header (Django's set_language view).
    page.select_option("#language-switch select", "nl")
    with page.expect_navigation():
        page.click("#language-switch input[type=submit]")
    assert "Praktijkbeheer" in page.inner_text("#content")
    existing: Schedule = clinic["existing"]
    week = "{}-W{:02d}".format(*clinic["monday"].isocalendar()[:2])
    page.goto(f"{base}/admin/scheduling/schedule/{existing.pk}/calendar/?week={week}")
    assert "Vorige week" in page.inner_text(".wk-nav")
    assert "Tijd blokkeren" in page.inner_text(".wk-nav")
    page.goto(f"{base}/admin/scheduling/schedule/{existing.pk}/change/")
    assert page.inner_text("#schedule-summary .summary").startswith("Eenmalig")
    # The schedule form in Dutch: dates in the Dutch format, Preview shows without saving.
    local = existing.planning_start.astimezone(AMS)
    assert page.input_value("#id_first_date") == f"{local:%d-%m-%Y}"
    assert page.input_value("#id_start_time") == f"{local:%H:%M}"
    page.fill("#id_end_time", f"{local + timedelta(hours=1):%H:%M}")
    with page.expect_navigation():
        page.click("#preview-button")
    assert page.input_value("#preview-button") == "Voorbeeld"
    assert page.inner_text("#schedule-summary h2") == "Voorbeeld (nog niet opgeslagen)"
    summary = page.inner_text("#schedule-summary .summary")
    assert (
        summary.startswith("Eenmalig") and f"slots van {existing.slot_minutes} minuten" in summary
    )
    page.screenshot(path=str(ARTIFACTS / "desk-schedule-preview-nl.png"), full_page=True)
    existing.refresh_from_db()
    assert existing.planning_end.astimezone(AMS).time() != (local + timedelta(hours=1)).time()
    assert Organization.objects.count() == 2


def test_blocking_over_a_booking_lists_the_patient_and_needs_confirmation(
    live_server: Any, browser_page: Any, clinic: dict[str, Any]
) -> None:
    page, base = browser_page, live_server.url
    ARTIFACTS.mkdir(exist_ok=True)
    login(page, base)
    existing: Schedule = clinic["existing"]
    tuesday = clinic["monday"] + timedelta(days=1)
    page.goto(f"{base}/admin/scheduling/schedule/{existing.pk}/block/")
    page.wait_for_selector("#block-form")
    page.fill("#id_start", f"{tuesday.isoformat()}T09:00")
    page.fill("#id_end", f"{tuesday.isoformat()}T10:00")
    page.fill("#id_comment", "Fire drill")
    with page.expect_navigation():
        page.click("input[name=_block]")
    # Not blocked yet: the booking it would cover is listed, with a box to tick.
    hits = page.locator("#block-hits")
    assert "Visser" in hits.inner_text()
    assert "appt-visser" in hits.inner_text()
    # When, in the clinic's time (the booking is 09:30 Amsterdam), not the API's UTC.
    assert "09:30" in hits.inner_text() and "UTC" not in hits.inner_text()
    assert not Slot.objects.filter(comment="Fire drill").exists()
    page.screenshot(path=str(ARTIFACTS / "block-over-booking-confirm.png"), full_page=True)
    page.check("#id_confirm")
    with page.expect_navigation():
        page.click("input[name=_block]")
    page.wait_for_selector("#week-calendar")
    assert Slot.objects.filter(comment="Fire drill", status="busy-unavailable").exists()
    column = page.locator(f".wk-day[data-day='{tuesday.isoformat()}']")
    # The block does not hide the booking: it is drawn above the blocked time.
    booking = column.locator(".blk-booking")
    assert booking.count() == 1 and "Visser" in booking.inner_text()
    assert booking.is_visible()
    assert column.locator(".blk-blocked").count() == 1
    appointment: Appointment = clinic["appointment"]
    appointment.refresh_from_db()
    assert appointment.status == "booked"
    assert AuditEvent.objects.filter(action="blocked").count() == 1
    page.screenshot(path=str(ARTIFACTS / "block-over-booking-done.png"), full_page=True)
