"""The admin's front desk without a browser: the day view, booking, moving, cancelling,
no-shows and unblocking through the services, the organisation fence on every view, and
every admin page in Dutch."""

from __future__ import annotations

import ast
import html
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from scheduling.models import (
    Appointment,
    AuditEvent,
    Organization,
    Patient,
    Schedule,
    Slot,
    StaffMembership,
)
from scheduling.services.blocks import time_block
from tests.factories import (
    AppointmentFactory,
    PatientFactory,
    PractitionerRoleFactory,
    ScheduleFactory,
)
from tests.test_admin import AMS

pytestmark = pytest.mark.django_db

DAY_URL = "/admin/scheduling/practitioner/day/"


def make_staff(username: str, organization: Organization) -> User:
    user = User.objects.create_user(username, password="pw-for-tests-123", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="scheduling"))
    StaffMembership.objects.create(organization=organization, user=user)
    return user


def clinic(organization: Organization, prefix: str) -> dict[str, Any]:
    today = timezone.now().astimezone(AMS).date()
    first = datetime.combine(today - timedelta(days=2), time(8), tzinfo=AMS)
    role = PractitionerRoleFactory(organization=organization, fhir_id=f"{prefix}-role")
    role.practitioner.family = f"{prefix.title()}doc"
    role.practitioner.save()
    schedule = ScheduleFactory(
        organization=organization,
        fhir_id=f"{prefix}-sched",
        practitioner_role=role,
        planning_start=first,
        planning_end=first + timedelta(hours=9),
        rrule="FREQ=DAILY",
    )
    patient = PatientFactory(
        organization=organization,
        fhir_id=f"{prefix}-pat",
        family=f"{prefix.title()}patient",
        birth_date=date(1970, 1, 2),
    )
    tomorrow = today + timedelta(days=1)
    start = datetime.combine(tomorrow, time(9), tzinfo=AMS)
    appointment = AppointmentFactory(
        organization=organization,
        fhir_id=f"{prefix}-appt",
        patient=patient,
        schedule=schedule,
        practitioner_role=role,
        start=start,
        end=start + timedelta(minutes=15),
        comment="Flu shot",
    )
    block = time_block(
        organization=organization,
        schedule=schedule,
        start=datetime.combine(tomorrow, time(15), tzinfo=AMS),
        end=datetime.combine(tomorrow, time(16), tzinfo=AMS),
        comment=f"{prefix} meeting",
        actor="test",
    )
    return {
        "role": role,
        "practitioner": role.practitioner,
        "schedule": schedule,
        "patient": patient,
        "appointment": appointment,
        "block": block,
        "tomorrow": tomorrow,
    }


@pytest.fixture
def two(org: Organization, outsider_org: Organization) -> dict[str, Any]:
    mine, theirs = clinic(org, "mine"), clinic(outsider_org, "theirs")
    client = Client()
    client.force_login(make_staff("desk-a", org))
    return {"mine": mine, "theirs": theirs, "client": client, "org": org}


def book_url(schedule: Schedule, start: datetime, **extra: str) -> str:
    query = {"schedule": schedule.pk, "start": start.isoformat(), **extra}
    return f"{DAY_URL}book/?{urlencode(query)}"


def test_day_view_shows_the_practitioners_bookings_and_blocks(two: dict[str, Any]) -> None:
    mine = two["mine"]
    response = two["client"].get(DAY_URL, {"date": mine["tomorrow"].isoformat()})
    assert response.status_code == 200
    body = response.content.decode()
    assert "Minedoc" in body and "Minepatient" in body and "Flu shot" in body
    assert "mine meeting" in body
    assert "Theirsdoc" not in body and "Theirspatient" not in body
    # 08:00-17:00 in 15 minutes, less the booking and the blocked hour.
    assert body.count('data-kind="free"') == 36 - 1 - 4
    bad = two["client"].get(DAY_URL, {"date": "tomorrow"})
    assert bad.status_code == 400 and "YYYY-MM-DD" in bad.content.decode()


def test_booking_from_a_free_slot_goes_through_the_service(two: dict[str, Any]) -> None:
    mine, client = two["mine"], two["client"]
    start = datetime.combine(mine["tomorrow"], time(10), tzinfo=AMS)
    url = book_url(mine["schedule"], start)
    found = client.get(url + "&q=1970-01-02").content.decode()
    assert "Minepatient" in found
    assert "Minepatient" in client.get(url + "&q=minepat").content.decode()
    response = client.post(
        url,
        {
            "schedule": mine["schedule"].pk,
            "start": start.isoformat(),
            "patient": mine["patient"].pk,
            "comment": "Check-up",
        },
    )
    assert response.status_code == 302
    booked = Appointment.objects.get(patient=mine["patient"], start=start)
    assert booked.comment == "Check-up" and booked.status == "booked"
    assert AuditEvent.objects.filter(appointment=booked, action="created").exists()
    # The same slot again: the engine refuses, in plain words, and nothing is written.
    other = PatientFactory(organization=two["org"], family="Other")
    again = client.post(
        url, {"schedule": mine["schedule"].pk, "start": start.isoformat(), "patient": other.pk}
    )
    assert again.status_code == 400
    assert 'id="desk-error"' in again.content.decode()
    assert not Appointment.objects.filter(patient=other).exists()


def test_move_cancel_and_noshow_from_the_booking(two: dict[str, Any]) -> None:
    mine, client = two["mine"], two["client"]
    appointment: Appointment = mine["appointment"]
    url = f"{DAY_URL}appointment/{appointment.pk}/"
    page = client.get(url).content.decode()
    new_start = datetime.combine(mine["tomorrow"], time(11), tzinfo=AMS)
    value = f"{mine['schedule'].pk}|{new_start.isoformat()}"
    assert html.escape(value) in page or value in page
    assert client.post(url, {"action": "move", "slot": value}).status_code == 302
    appointment.refresh_from_db()
    assert appointment.start == new_start
    assert AuditEvent.objects.filter(appointment=appointment, action="rescheduled").exists()
    # Not started: no no-show, in plain words.
    response = client.post(url, {"action": "noshow"})
    assert response.status_code == 400 and "has not started" in response.content.decode()
    assert client.post(url, {"action": "cancel", "reason": "Ill"}).status_code == 302
    appointment.refresh_from_db()
    assert (appointment.status, appointment.cancelation_reason) == ("cancelled", "Ill")


def test_unblock_frees_the_time(two: dict[str, Any]) -> None:
    mine, client = two["mine"], two["client"]
    url = f"{DAY_URL}blocked/{mine['block'].pk}/"
    assert "mine meeting" in client.get(url).content.decode()
    assert client.post(url).status_code == 302
    assert not Slot.objects.filter(pk=mine["block"].pk).exists()
    assert AuditEvent.objects.filter(action="unblocked").count() == 1


def test_another_organisations_rows_are_invisible_and_untouchable(two: dict[str, Any]) -> None:
    theirs, client = two["theirs"], two["client"]
    appointment: Appointment = theirs["appointment"]
    start = datetime.combine(theirs["tomorrow"], time(10), tzinfo=AMS)
    assert client.get(DAY_URL, {"org": "outsider"}).status_code == 404
    assert client.get(DAY_URL, {"org": theirs["schedule"].organization_id}).status_code == 404
    # Their schedule, their appointment, their block: missing.
    assert client.get(book_url(theirs["schedule"], start)).status_code == 404
    assert client.get(f"{DAY_URL}appointment/{appointment.pk}/").status_code == 404
    assert client.get(f"{DAY_URL}blocked/{theirs['block'].pk}/").status_code == 404
    posts = [
        (
            book_url(theirs["schedule"], start),
            {
                "schedule": theirs["schedule"].pk,
                "start": start.isoformat(),
                "patient": theirs["patient"].pk,
            },
        ),
        (
            book_url(theirs["schedule"], start),
            {
                "schedule": theirs["schedule"].pk,
                "start": start.isoformat(),
                "patient": theirs["patient"].pk,
                "_hold": "1",
            },
        ),
        (f"{DAY_URL}appointment/{appointment.pk}/", {"action": "cancel", "reason": "x"}),
        (f"{DAY_URL}appointment/{appointment.pk}/", {"action": "confirm"}),
        (f"{DAY_URL}blocked/{theirs['block'].pk}/", {}),
    ]
    for url, data in posts:
        assert client.post(url, data).status_code == 404
    # My slot with their patient: the patient is not mine, so nobody is booked.
    mine = two["mine"]
    mine_start = datetime.combine(mine["tomorrow"], time(10), tzinfo=AMS)
    response = client.post(
        book_url(mine["schedule"], mine_start),
        {
            "schedule": mine["schedule"].pk,
            "start": mine_start.isoformat(),
            "patient": theirs["patient"].pk,
        },
    )
    assert response.status_code == 400
    # Moving my appointment onto their schedule: missing.
    mine_url = f"{DAY_URL}appointment/{mine['appointment'].pk}/"
    value = f"{theirs['schedule'].pk}|{start.isoformat()}"
    assert client.post(mine_url, {"action": "move", "slot": value}).status_code == 404
    # Their patient is not found by search either.
    search = client.get(book_url(mine["schedule"], mine_start, q="Theirspatient"))
    assert 'id="no-patients"' in search.content.decode()
    assert "theirs-pat" not in search.content.decode()
    appointment.refresh_from_db()
    assert appointment.status == "booked"
    assert Slot.objects.filter(pk=theirs["block"].pk).exists()
    assert not Appointment.objects.filter(patient=theirs["patient"]).exclude(pk=appointment.pk)
    assert Appointment.objects.filter(organization=two["org"]).count() == 1
    index = client.get("/admin/").content.decode()
    assert "Theirsdoc" not in index and "Minedoc" in index


# --------------------------------------------------------------------------- Dutch

CATALOGUE = Path(settings.BASE_DIR) / "locale" / "nl" / "LC_MESSAGES" / "django.po"
_TAG = re.compile(r"<[^>]+>")
_ATTR = re.compile(r'(?:aria-label|title|placeholder|value)="([^"]*)"')
_TEMPLATE_STRING = re.compile(r"{%\s*(?:translate|trans)\s+\"([^\"]+)\"")


@dataclass
class Entry:
    msgid: str = ""
    msgid_plural: str = ""
    msgstrs: list[str] = field(default_factory=list)
    flags: set[str] = field(default_factory=set)

    @property
    def msgstr(self) -> str:
        return self.msgstrs[0] if self.msgstrs else ""

    def translated(self) -> bool:
        return "fuzzy" not in self.flags and bool(self.msgstrs) and all(self.msgstrs)


def _catalogue() -> list[Entry]:
    """The Dutch .po file's entries (header left out), read without a po library."""
    entries: list[Entry] = []
    entry, target = Entry(), ""
    for raw in [*CATALOGUE.read_text(encoding="utf-8").splitlines(), ""]:
        line = raw.strip()
        if not line:
            if target:
                entries.append(entry)
            entry, target = Entry(), ""
        elif line.startswith("#,"):
            entry.flags |= {flag.strip() for flag in line[2:].split(",")}
        elif line.startswith("#"):
            continue
        else:
            keyword, _space, rest = line.partition(" ")
            if line.startswith('"'):
                keyword, rest = target, line
            text = ast.literal_eval(rest)
            if keyword == "msgid" or (keyword == target == "msgid"):
                entry.msgid += text
            elif keyword == "msgid_plural" or (keyword == target == "msgid_plural"):
                entry.msgid_plural += text
            elif keyword.startswith("msgstr"):
                if keyword != target or not entry.msgstrs:
                    entry.msgstrs.append("")
                entry.msgstrs[-1] += text
            target = keyword
    return [e for e in entries if e.msgid]


def test_the_dutch_catalogue_is_complete() -> None:
    po = _catalogue()
    assert len(po) > 250
    assert [e.msgid for e in po if not e.translated()] == []
    assert [e.msgid for e in po if "fuzzy" in e.flags] == []
    # Every string the templates ask for is in it, translated.
    translated = {e.msgid for e in po if e.translated()}
    templates = Path(settings.BASE_DIR) / "templates"
    asked = {
        match
        for path in templates.rglob("*.html")
        for match in _TEMPLATE_STRING.findall(path.read_text())
    }
    django_admin = {"Home", "Change", "Add", "Language", "Go"}
    assert sorted(asked - translated - django_admin) == []


def _visible(body: str) -> str:
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", body, flags=re.S)
    return html.unescape(" ".join(_ATTR.findall(body)) + " " + _TAG.sub(" ", body))


#: English msgids that are Dutch words too ("Start" is Django's Dutch for "Home").
_ALSO_DUTCH = {"Start"}


def _english_phrases() -> list[str]:
    """Our catalogue's English phrases (several words, or a capitalised word; no
    placeholders) that Dutch changes:
    seeing one on a Dutch page means a string was left untranslated."""
    return [
        e.msgid
        for e in _catalogue()
        if e.translated()
        and (" " in e.msgid.strip() or (len(e.msgid) >= 5 and e.msgid[0].isupper()))
        and "%" not in e.msgid
        and "{" not in e.msgid
        and "<" not in e.msgid
        and e.msgstr.strip().lower() != e.msgid.strip().lower()
        and e.msgid not in _ALSO_DUTCH
    ]


def test_every_admin_page_renders_in_dutch(two: dict[str, Any]) -> None:
    mine, client = two["mine"], two["client"]
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "nl"
    urls = ["/admin/", f"{DAY_URL}?date={mine['tomorrow'].isoformat()}"]
    objects = {
        "appointment": mine["appointment"],
        "patient": mine["patient"],
        "practitioner": mine["practitioner"],
        "practitionerrole": mine["role"],
        "schedule": mine["schedule"],
        "slot": mine["block"],
        "organization": two["org"],
        "appointmentresponse": None,
        "auditevent": AuditEvent.objects.filter(organization=two["org"]).first(),
    }
    for name, obj in objects.items():
        urls.append(f"/admin/scheduling/{name}/")
        if name not in ("appointmentresponse", "auditevent", "organization", "slot"):
            urls.append(f"/admin/scheduling/{name}/add/")
        if obj is not None:
            urls.append(f"/admin/scheduling/{name}/{obj.pk}/change/")
    start = datetime.combine(mine["tomorrow"], time(10), tzinfo=AMS)
    urls += [
        book_url(mine["schedule"], start, q="Minepatient"),
        book_url(mine["schedule"], start, q="nobody"),
        f"{DAY_URL}appointment/{mine['appointment'].pk}/",
        f"{DAY_URL}blocked/{mine['block'].pk}/",
        f"/admin/scheduling/practitioner/{mine['practitioner'].pk}/calendar/",
        f"/admin/scheduling/practitioner/{mine['practitioner'].pk}/block/",
        f"/admin/scheduling/schedule/{mine['schedule'].pk}/calendar/",
    ]
    phrases = _english_phrases()
    assert len(phrases) > 50  # the check has something to find
    left: dict[str, list[str]] = {}
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.headers["Content-Language"] == "nl", url
        body = response.content.decode()
        assert not re.search(r"\d,\d+(px|%)", body), f"{url}: a Dutch decimal comma in CSS"
        text = _visible(body)
        untranslated = [p for p in phrases if re.search(rf"\b{re.escape(p)}\b", text)]
        if untranslated:
            left[url] = untranslated
    assert left == {}


def test_the_dutch_check_finds_an_untranslated_string(two: dict[str, Any]) -> None:
    # The check above is not vacuous: an English page fails it.
    client = two["client"]
    text = _visible(
        client.get(f"{DAY_URL}?date={two['mine']['tomorrow'].isoformat()}").content.decode()
    )
    assert any(re.search(rf"\b{re.escape(p)}\b", text) for p in _english_phrases())


def test_dutch_plurals_and_dates() -> None:
    po = {e.msgid: e.msgstr for e in _catalogue()}
    assert po["audit events"] == "auditgebeurtenissen"
    assert po["appointment responses"] == "reacties op afspraken"
    assert po["practitioner roles"] == "zorgverlenersrollen"
    assert Patient._meta.verbose_name_plural == "patients"
    from django.utils import formats, translation

    moment = datetime(2026, 11, 24, 13, 0, tzinfo=AMS)
    with translation.override("nl"), timezone.override(AMS):
        assert formats.date_format(moment, "DATETIME_FORMAT") == "24 nov 2026, 13:00"
    with translation.override("en"), timezone.override(AMS):
        assert formats.date_format(moment, "DATETIME_FORMAT") == "24 Nov 2026, 13:00"


def test_block_from_the_day_returns_to_the_day_but_never_off_site(two: dict[str, Any]) -> None:
    mine, client = two["mine"], two["client"]
    url = f"/admin/scheduling/practitioner/{mine['practitioner'].pk}/block/"
    day = mine["tomorrow"].isoformat()
    data = {
        "schedule": mine["schedule"].pk,
        "start": f"{day}T12:00",
        "end": f"{day}T13:00",
        "comment": "Lunch",
    }
    back = f"{DAY_URL}?date={day}"
    response = client.post(url, {**data, "next": back})
    assert response.status_code == 302 and response["Location"] == back
    response = client.post(
        url,
        {**data, "start": f"{day}T13:00", "end": f"{day}T14:00", "next": "https://evil.example/"},
    )
    assert response.status_code == 302
    assert response["Location"].startswith(
        f"/admin/scheduling/practitioner/{mine['practitioner'].pk}/calendar/"
    )
    assert Slot.objects.filter(comment="Lunch").count() == 2


def test_a_free_slot_of_the_week_calendar_books_it(two: dict[str, Any]) -> None:
    mine, client = two["mine"], two["client"]
    url = f"/admin/scheduling/practitioner/{mine['practitioner'].pk}/calendar/"
    body = client.get(url, {"start": mine["tomorrow"].isoformat()}).content.decode()
    start = datetime.combine(mine["tomorrow"], time(10), tzinfo=AMS)
    link = html.escape(book_url(mine["schedule"], start, org=two["org"].pk))
    assert link in body
    assert body.count(f"{DAY_URL}book/") >= 31  # tomorrow's free slots at least


def test_holds_and_statuses_are_coloured_in_the_day_view(two: dict[str, Any]) -> None:
    mine, client = two["mine"], two["client"]
    start = datetime.combine(mine["tomorrow"], time(12), tzinfo=AMS)
    AppointmentFactory(
        organization=two["org"],
        patient=PatientFactory(organization=two["org"], family="Holder"),
        schedule=mine["schedule"],
        practitioner_role=mine["role"],
        start=start,
        end=start + timedelta(minutes=15),
        status="pending",
        held_until=timezone.now() + timedelta(minutes=5),
    )
    body = client.get(DAY_URL, {"date": mine["tomorrow"].isoformat()}).content.decode()
    assert body.count('data-status="held"') == 1
    assert body.count('data-status="booked"') == 1
    assert 'class="dblk dblk-booking st-held"' in body


def test_appointment_list_for_people_and_generated_ids(two: dict[str, Any]) -> None:
    mine, theirs, client = two["mine"], two["theirs"], two["client"]
    listing = client.get("/admin/scheduling/appointment/").content.decode()
    headers = re.findall(r'<th scope="col" class="(?:sortable )?column-(\w+)', listing)
    assert headers[:4] == ["when", "patient", "practitioner", "status_badge"]
    assert "status-pill st-booked" in listing
    # Filter by practitioner: only mine are offered, and filtering works.
    assert f"?practitioner={mine['practitioner'].pk}" in listing
    assert f"?practitioner={theirs['practitioner'].pk}" not in listing
    filtered = client.get(
        "/admin/scheduling/appointment/", {"practitioner": mine["practitioner"].pk}
    ).content.decode()
    assert "Minepatient" in filtered
    # New patients and schedules get a generated id to keep; a saved one is read-only.
    for model in ("patient", "schedule"):
        add = client.get(f"/admin/scheduling/{model}/add/").content.decode()
        assert re.search(r'name="fhir_id" value="[0-9a-f]{32}"', add), model
    change = client.get(f"/admin/scheduling/patient/{mine['patient'].pk}/change/").content
    assert b'name="fhir_id"' not in change and b"mine-pat" in change
    # The patient page lists their appointments.
    assert b"Flu shot" in change


def test_staff_of_two_organisations_pick_one(two: dict[str, Any]) -> None:
    theirs = two["theirs"]
    user = make_staff("desk-both", two["org"])
    StaffMembership.objects.create(organization=theirs["schedule"].organization, user=user)
    client = Client()
    client.force_login(user)
    day = theirs["tomorrow"].isoformat()
    default = client.get(DAY_URL, {"date": day}).content.decode()
    assert 'id="day-org"' in default
    assert "Minedoc" in default and "Theirsdoc" not in default  # one organisation a page
    other = client.get(DAY_URL, {"date": day, "org": theirs["schedule"].organization_id})
    assert "Theirsdoc" in other.content.decode() and "Minedoc" not in other.content.decode()


def test_refusals_read_in_dutch_on_a_dutch_admin(two: dict[str, Any]) -> None:
    """A domain refusal (the engine's, a service's) is shown in the reader's language: the
    English sentence of the API must not leak onto a Dutch page."""
    mine, client = two["mine"], two["client"]
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "nl"
    taken = mine["appointment"].start
    other = PatientFactory(organization=two["org"], family="Anders")
    # Book: the slot is taken.
    refused = client.post(
        book_url(mine["schedule"], taken),
        {"schedule": mine["schedule"].pk, "start": taken.isoformat(), "patient": other.pk},
    )
    body = html.unescape(refused.content.decode())
    assert refused.status_code == 400
    assert "is niet meer vrij: de zorgverlener is dan al geboekt" in body
    assert "no longer free" not in body
    # Move another booking onto it: refused in Dutch too, nothing moved.
    later = taken + timedelta(hours=1)
    second = AppointmentFactory(
        organization=two["org"],
        patient=other,
        schedule=mine["schedule"],
        practitioner_role=mine["role"],
        start=later,
        end=later + timedelta(minutes=15),
    )
    url = f"{DAY_URL}appointment/{second.pk}/"
    moved = client.post(
        url, {"action": "move", "slot": f"{mine['schedule'].pk}|{taken.isoformat()}"}
    )
    body = html.unescape(moved.content.decode())
    assert moved.status_code == 400 and "is niet meer vrij" in body and "no longer" not in body
    second.refresh_from_db()
    assert second.start == later
    # No-show before the start: the lifecycle service's refusal.
    early = client.post(url, {"action": "noshow"})
    body = html.unescape(early.content.decode())
    assert "is nog niet begonnen" in body and "has not started" not in body
    # Block over the booking: the bookings it hits are listed, in Dutch, for confirmation.
    day = mine["tomorrow"].isoformat()
    blocked = client.post(
        f"/admin/scheduling/practitioner/{mine['practitioner'].pk}/block/",
        {"schedule": mine["schedule"].pk, "start": f"{day}T08:30", "end": f"{day}T09:30"},
    )
    body = html.unescape(blocked.content.decode())
    assert 'id="block-hits"' in body and "Minepatient" in body
    hits = body.split('id="block-hits"', 1)[1].split("</div>", 1)[0]
    assert ", 09:00" in hits and "UTC" not in hits  # the reader's time, not the API's
    assert "Deze tijd valt over" in body and "covers" not in body
    assert not Slot.objects.filter(start__date=mine["tomorrow"], comment="").exists()


def test_the_slot_admin_blocks_and_unblocks_only_through_the_block_service(
    two: dict[str, Any],
) -> None:
    """A stored slot made busy in the Slot admin would skip Block time's confirmation and
    audit: there it is read-only but for its comment, and Delete unblocks, audited."""
    mine, theirs, client = two["mine"], two["theirs"], two["client"]
    block: Slot = mine["block"]
    assert client.get("/admin/scheduling/slot/add/").status_code == 403
    url = f"/admin/scheduling/slot/{block.pk}/change/"
    page = client.get(url).content.decode()
    assert 'id="slot-block-time"' in page and 'id="slot-unblock"' in page
    assert f"/admin/scheduling/schedule/{mine['schedule'].pk}/block/" in page
    # A crafted POST cannot free, move or widen the block; the comment is kept.
    response = client.post(
        url,
        {
            "status": "free",
            "start": "2030-01-01 08:00",
            "end": "2030-01-01 18:00",
            "comment": "Team meeting",
        },
    )
    assert response.status_code == 302
    before = (block.status, block.start, block.end)
    block.refresh_from_db()
    assert (block.status, block.start, block.end) == before
    assert block.comment == "Team meeting"
    # Their block: not mine to see or delete.
    their_block: Slot = theirs["block"]
    assert client.get(f"/admin/scheduling/slot/{their_block.pk}/change/").status_code == 302
    client.post(f"/admin/scheduling/slot/{their_block.pk}/delete/", {"post": "yes"})
    client.post(
        "/admin/scheduling/slot/",
        {"action": "delete_selected", "_selected_action": [their_block.pk], "post": "yes"},
    )
    assert Slot.objects.filter(pk=their_block.pk).exists()
    # Delete is the block service's unblock, audited.
    response = client.post(f"/admin/scheduling/slot/{block.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Slot.objects.filter(pk=block.pk).exists()
    unblocked = AuditEvent.objects.get(action="unblocked", organization=two["org"])
    assert unblocked.appointment_fhir_id == f"Slot/{block.fhir_id}"
    assert unblocked.actor == "staff:desk-a"


def test_a_hold_from_a_free_slot_shows_its_expiry_and_is_confirmed_from_the_booking(
    two: dict[str, Any],
) -> None:
    mine, client = two["mine"], two["client"]
    start = datetime.combine(mine["tomorrow"], time(10), tzinfo=AMS)
    url = book_url(mine["schedule"], start)
    form = client.get(url + "&q=Minepatient").content.decode()
    assert 'id="hold-button"' in form
    before = timezone.now()
    response = client.post(
        url,
        {
            "schedule": mine["schedule"].pk,
            "start": start.isoformat(),
            "patient": mine["patient"].pk,
            "_hold": "1",
        },
    )
    assert response.status_code == 302
    held = Appointment.objects.get(patient=mine["patient"], start=start)
    assert held.status == "pending" and held.held_until is not None
    assert timedelta(minutes=9) < held.held_until - before <= timedelta(minutes=11)
    assert AuditEvent.objects.filter(appointment=held, action="held").exists()
    until = f"{held.held_until.astimezone(AMS):%H:%M}"
    # The day view tells a hold from a booking, with its expiry; the slot is not free.
    day = client.get(DAY_URL, {"date": mine["tomorrow"].isoformat()}).content.decode()
    assert f"held until {until}" in day and "st-held" in day
    assert 'data-kind="free" data-start="10:15"' in day
    assert 'data-kind="free" data-start="10:00"' not in day
    # Another patient cannot take the held slot.
    other = PatientFactory(organization=two["org"], family="Other")
    taken = client.post(
        url, {"schedule": mine["schedule"].pk, "start": start.isoformat(), "patient": other.pk}
    )
    assert taken.status_code == 400
    desk = f"{DAY_URL}appointment/{held.pk}/"
    page = client.get(desk).content.decode()
    assert 'id="confirm-form"' in page and f"held until {until}" in page
    assert client.post(desk, {"action": "confirm"}).status_code == 302
    held.refresh_from_db()
    assert (held.status, held.held_until) == ("booked", None)
    assert AuditEvent.objects.filter(appointment=held, action="confirmed").exists()
    assert 'id="confirm-form"' not in client.get(desk).content.decode()
    # Confirming again: the service's refusal, in plain words.
    again = client.post(desk, {"action": "confirm"})
    assert again.status_code == 400 and "not a held appointment" in again.content.decode()


def test_the_appointment_list_and_add_page_lead_to_booking_in_the_day_view(
    two: dict[str, Any],
) -> None:
    client = two["client"]
    listing = client.get("/admin/scheduling/appointment/").content.decode()
    assert f'href="{DAY_URL}" id="book-in-day-view"' in listing
    add = client.get("/admin/scheduling/appointment/add/").content.decode()
    assert 'id="book-from-day"' in add and f'href="{DAY_URL}"' in add
