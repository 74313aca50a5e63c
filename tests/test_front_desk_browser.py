"""The front desk in a real browser (Debian's chromium driven by Playwright), 1366x900.

A receptionist (staff, not superuser) sees tomorrow with three practitioners side by side,
books a patient from a free slot, moves the booking, cancels it with a reason, blocks a
practitioner's morning over a booking (confirmation first) and unblocks it; the same
journey in Dutch. Screenshots land in test-artifacts/.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission, User

from scheduling.models import Appointment, AuditEvent, Slot, StaffMembership
from tests import test_admin_browser as admin_browser
from tests.factories import (
    AppointmentFactory,
    OrganizationFactory,
    PatientFactory,
    PractitionerRoleFactory,
    ScheduleFactory,
)

# The same browser, marks and static files as the admin's browser tests.
AMS, ARTIFACTS, PASSWORD = admin_browser.AMS, admin_browser.ARTIFACTS, admin_browser.PASSWORD
browser_page = admin_browser.browser_page
_plain_static_files = admin_browser._plain_static_files
pytestmark = admin_browser.pytestmark


@pytest.fixture
def desk() -> dict[str, Any]:
    org = OrganizationFactory(id="clinic-a", name="Clinic A")
    outsider = OrganizationFactory(id="clinic-b", name="Clinic B")
    group, _ = Group.objects.get_or_create(name="Front desk")
    group.permissions.set(Permission.objects.filter(content_type__app_label="scheduling"))
    user = User.objects.create_user("desk", password=PASSWORD, is_staff=True)
    user.groups.add(group)
    StaffMembership.objects.create(organization=org, user=user)
    today = datetime.now(AMS).date()
    first = datetime.combine(today - timedelta(days=3), time(8), tzinfo=AMS)
    schedules = {}
    for fhir_id, family, capacity in (
        ("dr-bakker", "Bakker", None),
        ("dr-de-vries", "De Vries", None),
        ("group-yoga", "Smit", 3),
    ):
        role = PractitionerRoleFactory(organization=org, fhir_id=f"role-{fhir_id}")
        role.practitioner.family = family
        role.practitioner.given = "Els"
        role.practitioner.prefix = "Dr."
        role.practitioner.save()
        schedules[fhir_id] = ScheduleFactory(
            organization=org,
            fhir_id=fhir_id,
            practitioner_role=role,
            planning_start=first,
            planning_end=first + timedelta(hours=9),
            rrule="FREQ=DAILY",
            capacity=capacity,
        )
    visser = PatientFactory(
        organization=org,
        fhir_id="pat-visser",
        family="Visser",
        given="Jan",
        birth_date=date(1980, 4, 2),
    )
    PatientFactory(organization=org, fhir_id="pat-jansen", family="Jansen", given="Piet")
    tomorrow = today + timedelta(days=1)
    smit_start = datetime.combine(tomorrow, time(11), tzinfo=AMS)
    for n in range(2):
        AppointmentFactory(
            organization=org,
            fhir_id=f"yoga-{n}",
            patient=PatientFactory(organization=org, family=f"Yogi{n}"),
            schedule=schedules["group-yoga"],
            practitioner_role=schedules["group-yoga"].practitioner_role,
            start=smit_start,
            end=smit_start + timedelta(minutes=15),
            comment="Back pain group",
            seat=n,
        )
    PatientFactory(organization=outsider, fhir_id="secret-foreign-pat", family="Geheim")
    return {"org": org, "schedules": schedules, "visser": visser, "tomorrow": tomorrow}


def login(page: Any, base: str) -> None:
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", "desk")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/")


def column(page: Any, desk: dict[str, Any], key: str) -> Any:
    practitioner = desk["schedules"][key].practitioner_role.practitioner
    return page.locator(f".desk-col[data-practitioner='{practitioner.pk}']")


def test_book_move_cancel_and_block_from_the_day_view(
    live_server: Any, browser_page: Any, desk: dict[str, Any]
) -> None:
    page, base = browser_page, live_server.url
    page.set_viewport_size({"width": 1366, "height": 900})
    ARTIFACTS.mkdir(exist_ok=True)
    login(page, base)
    tomorrow: date = desk["tomorrow"]

    # --- the day across three practitioners -----------------------------------------
    page.goto(f"{base}/admin/scheduling/practitioner/day/?date={tomorrow.isoformat()}")
    assert page.locator(".desk-col").count() == 3
    heads = page.inner_text("#day-calendar")
    assert "Bakker" in heads and "De Vries" in heads and "Smit" in heads
    bakker = column(page, desk, "dr-bakker")
    assert bakker.locator("a.dblk-free").count() == 36  # 08:00-17:00 in 15 minutes
    # The group slot says how full it is, and both patients are visible side by side.
    smit = column(page, desk, "group-yoga")
    assert "2 of 3 booked" in smit.locator("a.dblk-free[data-start='11:00']").inner_text()
    # An empty group slot says how many can still come.
    assert "3 places free" in smit.locator("a.dblk-free[data-start='11:15']").inner_text()
    assert smit.locator(".dblk-booking").count() == 2
    assert "Back pain group" in smit.locator(".dblk-booking").first.inner_text()
    page.screenshot(path=str(ARTIFACTS / "desk-day-three-practitioners.png"), full_page=True)

    # --- book from a free slot: click, search, pick, book ----------------------------
    bakker.locator("a.dblk-free[data-start='09:00']").click()
    # Search as you type: no Enter, the list follows the typing.
    page.locator("#id_q").press_sequentially("viss", delay=40)
    page.wait_for_selector("#patient-results")
    assert page.locator("#patient-results li").count() == 1
    page.fill("#id_comment", "Knee check")
    page.screenshot(path=str(ARTIFACTS / "desk-book.png"), full_page=True)
    page.click("input[name=_book]")
    page.wait_for_selector("#day-calendar")
    assert "Booked Jan Visser" in page.inner_text(".messagelist")
    booking = bakker.locator(".dblk-booking")
    assert booking.count() == 1
    assert "Jan Visser" in booking.inner_text() and "Knee check" in booking.inner_text()
    assert booking.get_attribute("data-status") == "booked"
    appointment = Appointment.objects.get(patient=desk["visser"])
    assert appointment.start == datetime.combine(tomorrow, time(9), tzinfo=AMS)
    assert AuditEvent.objects.filter(appointment=appointment, action="created").exists()
    page.screenshot(path=str(ARTIFACTS / "desk-booked.png"), full_page=True)

    # --- move it to 10:30 ---------------------------------------------------------------
    booking.click()
    page.wait_for_selector("#appointment-details")
    page.click("button.move-slot[data-start='10:30']")
    page.wait_for_selector("#day-calendar")
    appointment.refresh_from_db()
    assert appointment.start == datetime.combine(tomorrow, time(10, 30), tzinfo=AMS)
    assert bakker.locator(".dblk-booking").inner_text().startswith("10:30")
    assert bakker.locator("a.dblk-free[data-start='09:00']").count() == 1

    # --- cancel it with a reason -----------------------------------------------------------
    bakker.locator(".dblk-booking").click()
    page.fill("#id_reason", "Patient is ill")
    page.screenshot(path=str(ARTIFACTS / "desk-appointment.png"), full_page=True)
    page.click("#cancel-form input[type=submit]")
    page.wait_for_selector("#day-calendar")
    appointment.refresh_from_db()
    assert appointment.status == "cancelled"
    assert appointment.cancelation_reason == "Patient is ill"
    assert bakker.locator(".dblk-booking").count() == 0
    assert bakker.locator("a.dblk-free[data-start='10:30']").count() == 1

    # --- hold a slot for a caller, then confirm the hold --------------------------------
    bakker.locator("a.dblk-free[data-start='14:00']").click()
    page.locator("#id_q").press_sequentially("jansen", delay=40)
    page.wait_for_selector("#patient-results")
    page.click("#hold-button")
    page.wait_for_selector("#day-calendar")
    held = Appointment.objects.get(patient__family="Jansen")
    assert held.status == "pending" and held.held_until is not None
    until = f"{held.held_until.astimezone(AMS):%H:%M}"
    box = bakker.locator(".dblk-booking")
    assert box.get_attribute("data-status") == "held"
    assert f"held until {until}" in box.inner_text()
    page.screenshot(path=str(ARTIFACTS / "desk-held.png"), full_page=True)
    box.click()
    page.click("#confirm-form input[type=submit]")
    page.wait_for_selector("#day-calendar")
    held.refresh_from_db()
    assert held.status == "booked"
    assert bakker.locator(".dblk-booking").get_attribute("data-status") == "booked"

    # --- block Smit's morning over the group bookings: listed, confirmed, then unblocked
    page.locator(
        f"#head-{desk['schedules']['group-yoga'].practitioner_role.practitioner.pk} .block-link"
    ).click()
    page.wait_for_selector("#block-form")
    page.fill("#id_start", f"{tomorrow.isoformat()}T10:00")
    page.fill("#id_end", f"{tomorrow.isoformat()}T12:00")
    page.fill("#id_comment", "Training")
    page.click("input[name=_block]")
    page.wait_for_selector("#block-hits")
    assert "Yogi0" in page.inner_text("#block-hits")
    assert not Slot.objects.filter(comment="Training").exists()
    page.screenshot(path=str(ARTIFACTS / "desk-block-confirm.png"), full_page=True)
    assert "all of them" in page.inner_text("#block-note")
    page.check("#id_confirm")
    page.click("input[name=_block]")
    # Back on the day it was asked from.
    page.wait_for_selector("#day-calendar")
    assert Slot.objects.filter(comment="Training", status="busy-unavailable").count() == 1
    smit = column(page, desk, "group-yoga")
    assert smit.locator(".dblk-booking").count() == 2  # a block never hides a booking
    assert smit.locator("a.dblk-free[data-start='11:00']").count() == 0
    page.screenshot(path=str(ARTIFACTS / "desk-blocked.png"), full_page=True)
    smit.locator("a.dblk-blocked").click()
    page.click("#unblock-form input[type=submit]")
    page.wait_for_selector("#day-calendar")
    assert not Slot.objects.filter(comment="Training").exists()
    assert AuditEvent.objects.filter(action="unblocked").count() == 1
    assert column(page, desk, "group-yoga").locator("a.dblk-free[data-start='11:00']").count() == 1


def test_today_shows_the_now_line_and_past_time_apart(
    live_server: Any, browser_page: Any, desk: dict[str, Any]
) -> None:
    page, base = browser_page, live_server.url
    page.set_viewport_size({"width": 1366, "height": 900})
    login(page, base)
    page.goto(f"{base}/admin/scheduling/practitioner/day/")
    assert page.locator("#today-mark").count() == 1
    now = datetime.now(AMS)
    bakker = column(page, desk, "dr-bakker")
    # The day runs 08:00-17:00: from 08:00 on its first slot has started.
    if time(8) < now.time() < time(17):
        # Started slots are "past", not "busy": nobody took them.
        assert bakker.locator(".dblk-past").count() >= 1
        assert bakker.locator(".dblk-busy").count() == 0
        assert bakker.locator(".desk-now").count() == 1
    else:
        assert bakker.locator(".dblk-past").count() in (0, 36)
    page.screenshot(path=str(ARTIFACTS / "desk-today.png"), full_page=True)

    # The index opens on today: one card per practitioner, the models in the sidebar.
    page.goto(f"{base}/admin/")
    assert page.locator("#today .today-card").count() == 3
    assert page.locator("#content-related a[href$='/scheduling/appointment/']").count() >= 1
    assert page.locator("#content-main .app-scheduling").count() == 0
    page.screenshot(path=str(ARTIFACTS / "desk-index.png"), full_page=True)
    page.click("#open-day-view")
    page.wait_for_selector("#day-calendar")


def test_the_same_journey_in_dutch(
    live_server: Any, browser_page: Any, desk: dict[str, Any]
) -> None:
    page, base = browser_page, live_server.url
    page.set_viewport_size({"width": 1366, "height": 900})
    ARTIFACTS.mkdir(exist_ok=True)
    login(page, base)
    page.select_option("#language-switch select", "nl")
    with page.expect_navigation():
        page.click("#language-switch input[type=submit]")
    tomorrow: date = desk["tomorrow"]
    page.goto(f"{base}/admin/scheduling/practitioner/day/?date={tomorrow.isoformat()}")
    nav = page.inner_text("#day-nav")
    assert "Vorige dag" in nav and "Volgende dag" in nav
    bakker = column(page, desk, "dr-bakker")
    assert "vrij" in bakker.locator("a.dblk-free").first.inner_text()
    page.screenshot(path=str(ARTIFACTS / "desk-day-nl.png"), full_page=True)
    bakker.locator("a.dblk-free[data-start='09:15']").click()
    page.fill("#id_q", "2-4-1980")  # by birth date
    page.press("#id_q", "Enter")
    page.wait_for_selector("#patient-results")
    assert "geboren" in page.inner_text("#patient-results")
    page.click("input[name=_book]")
    page.wait_for_selector("#day-calendar")
    assert "Jan Visser geboekt" in page.inner_text(".messagelist")
    # The same patient at the same time with another practitioner: refused, in Dutch.
    column(page, desk, "dr-de-vries").locator("a.dblk-free[data-start='09:15']").click()
    page.fill("#id_q", "Visser")
    page.press("#id_q", "Enter")
    page.wait_for_selector("#patient-results")
    page.click("input[name=_book]")
    page.wait_for_selector("#desk-error")
    refusal = page.inner_text("#desk-error")
    assert "De patiënt heeft op dat moment al een afspraak" in refusal, refusal
    assert "already" not in refusal
    page.screenshot(path=str(ARTIFACTS / "desk-refused-nl.png"), full_page=True)
    page.goto(f"{base}/admin/scheduling/practitioner/day/?date={tomorrow.isoformat()}")
    # Move it to 10:00, in Dutch.
    bakker.locator(".dblk-booking").click()
    page.wait_for_selector("#appointment-details")
    assert "Verplaatsen naar een ander vrij tijdslot" in page.inner_text("#move legend")
    page.click("button.move-slot[data-start='10:00']")
    page.wait_for_selector("#day-calendar")
    assert "Verplaatst" in page.inner_text(".messagelist")
    assert bakker.locator(".dblk-booking").inner_text().startswith("10:00")
    # Block Bakker's morning over it: the booking is listed, in Dutch, to confirm.
    page.locator(
        f"#head-{desk['schedules']['dr-bakker'].practitioner_role.practitioner.pk} .block-link"
    ).click()
    page.wait_for_selector("#block-form")
    page.fill("#id_start", f"{tomorrow.isoformat()}T09:30")
    page.fill("#id_end", f"{tomorrow.isoformat()}T10:30")
    page.fill("#id_comment", "Overleg")
    page.click("input[name=_block]")
    page.wait_for_selector("#block-hits")
    hits = page.inner_text("#block-hits")
    assert "Jan Visser" in hits and "afspraak" in hits, hits
    page.screenshot(path=str(ARTIFACTS / "desk-block-confirm-nl.png"), full_page=True)
    page.check("#id_confirm")
    page.click("input[name=_block]")
    page.wait_for_selector("#day-calendar")
    assert Slot.objects.filter(comment="Overleg", status="busy-unavailable").count() == 1
    assert bakker.locator(".dblk-booking").count() == 1  # a block never hides a booking
    bakker.locator(".dblk-booking").click()
    assert "Annuleren" in page.inner_text("#cancel")
    page.fill("#id_reason", "Ziek")
    page.click("#cancel-form input[type=submit]")
    page.wait_for_selector("#day-calendar")
    assert "geannuleerd" in page.inner_text(".messagelist")
    page.screenshot(path=str(ARTIFACTS / "desk-cancelled-nl.png"), full_page=True)
    assert Appointment.objects.get(patient=desk["visser"]).status == "cancelled"

    # Lists for people, in Dutch: time, patient, practitioner, coloured status first.
    page.goto(f"{base}/admin/scheduling/appointment/")
    headers = [h.strip() for h in page.locator("#result_list thead th").all_inner_texts()]
    assert [h for h in headers if h][:4] == ["TIJD", "PATIËNT", "ZORGVERLENER", "STATUS"]
    assert page.locator("#result_list .status-pill.st-cancelled").count() == 1
    assert "Selecteer afspraak om te wijzigen" in page.inner_text("#content")
    page.screenshot(path=str(ARTIFACTS / "desk-appointments-nl.png"), full_page=True)
    # The patient page lists the patient's appointments.
    page.goto(f"{base}/admin/scheduling/patient/{desk['visser'].pk}/change/")
    assert "Geannuleerd" in page.inner_text("#appointments-group")
    page.screenshot(path=str(ARTIFACTS / "desk-patient-nl.png"), full_page=True)
