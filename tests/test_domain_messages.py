"""Domain error messages: one English template per sentence, in the Dutch catalogue.

The admin shows a DomainError in the reader's language (``translated()``); the API keeps the
English ``message`` whatever the request's Accept-Language (docs/api.md, errors:
diagnostics are for the developer of the client).
"""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.utils import translation

import scheduling.errors as errors
from scheduling.errors import BlockHitsBookings, BusinessRuleViolation, Text, gettext_noop
from scheduling.recurrence import validate_rrule
from scheduling.services.blocks import time_block
from scheduling.services.common import clinic_time
from tests.factories import AppointmentFactory, OrganizationFactory, ScheduleFactory
from tests.test_front_desk import _catalogue

DOMAIN = Path(settings.BASE_DIR) / "scheduling"
ERROR_CLASSES = {
    name
    for name, value in vars(errors).items()
    if isinstance(value, type) and issubclass(value, errors.DomainError)
}
_PLACEHOLDER = re.compile(r"%\((\w+)\)[sdr]")


def _modules() -> list[Path]:
    return [p for p in DOMAIN.rglob("*.py") if "migrations" not in p.parts]


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _marked(node: ast.expr) -> bool:
    """A template: gettext_noop("literal"), a module constant holding one, or a choice
    between such (a conditional expression, a table lookup)."""
    if isinstance(node, ast.Call) and _name(node.func) == "gettext_noop":
        return len(node.args) == 1 and isinstance(node.args[0], ast.Constant)
    if isinstance(node, ast.IfExp):
        return _marked(node.body) and _marked(node.orelse)
    return isinstance(node, ast.Name | ast.Subscript)


def test_every_domain_error_in_scheduling_is_built_from_a_marked_template() -> None:
    unmarked = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and _name(node.func) in ERROR_CLASSES
                and not (node.args and _marked(node.args[0]))
            ):
                unmarked.append(f"{path.relative_to(DOMAIN)}:{node.lineno}")
    assert unmarked == []


def _templates() -> dict[str, str]:
    """Every gettext_noop literal in scheduling/, with where it is."""
    found = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and _name(node.func) == "gettext_noop":
                assert len(node.args) == 1 and isinstance(node.args[0], ast.Constant), (
                    f"{path}:{node.lineno}: gettext_noop takes one literal string"
                )
                found[node.args[0].value] = f"{path.relative_to(DOMAIN)}:{node.lineno}"
    return found


def test_every_domain_template_is_translated_with_the_same_placeholders() -> None:
    templates = _templates()
    assert len(templates) > 80  # the walk found the raise sites
    dutch = {e.msgid: e.msgstr for e in _catalogue() if e.translated()}
    missing = sorted(f"{where}: {t!r}" for t, where in templates.items() if t not in dutch)
    assert missing == []
    for template in templates:
        assert sorted(_PLACEHOLDER.findall(dutch[template])) == sorted(
            _PLACEHOLDER.findall(template)
        ), template
    # Constants and tables hold templates too: each Name/Subscript site above resolves
    # to one of these (checked by raising them below and in the admin tests).


def test_a_domain_error_keeps_english_in_message_and_speaks_dutch_when_translated() -> None:
    exc = BusinessRuleViolation(
        gettext_noop("Appointment '%(appointment)s' was not found."),
        params={"appointment": "a1"},
    )
    with translation.override("nl"):
        assert exc.message == "Appointment 'a1' was not found."
        assert str(exc) == exc.message
        dutch = exc.translated()
    assert dutch != exc.message and "'a1'" in dutch
    with translation.override("en"):
        assert exc.translated() == exc.message


def test_nested_texts_follow_the_language_of_the_sentence() -> None:
    booking = Text(
        gettext_noop("%(patient)s, %(time)s (%(appointment)s)"),
        {
            "patient": Text(gettext_noop("a patient")),
            "time": "2027-01-04 09:00 (+01:00)",
            "appointment": "A",
        },
    )
    exc = BlockHitsBookings(
        gettext_noop(
            "This block covers %(count)s booking(s); confirm to block the time anyway "
            "(the bookings stay): %(bookings)s."
        ),
        bookings=[booking],
        params={"count": 1, "bookings": [booking]},
    )
    assert exc.bookings == ["a patient, 2027-01-04 09:00 (+01:00) (A)"]
    assert exc.message.endswith("(the bookings stay): a patient, 2027-01-04 09:00 (+01:00) (A).")
    with translation.override("nl"):
        dutch = exc.translated()
    assert "a patient" not in dutch and "een patiënt, 2027-01-04 09:00 (+01:00) (A)" in dutch


@pytest.mark.parametrize(
    "rrule",
    ["", "RRULE:FREQ=DAILY", "FREQ=HOURLY", "FREQ=WEEKLY;BYDAY=XX", "FREQ=WEEKLY;COUNT=0"],
)
def test_recurrence_refusals_are_dutch_in_dutch(rrule: str) -> None:
    with pytest.raises(errors.InvalidRecurrence) as excinfo:
        validate_rrule(rrule)
    with translation.override("nl"):
        assert excinfo.value.translated() != excinfo.value.message


@pytest.mark.parametrize(
    ("instant", "zone", "expected"),
    [
        (datetime(2026, 12, 8, 8, 15, tzinfo=UTC), "Europe/Amsterdam", "2026-12-08 09:15 (+01:00)"),
        (datetime(2026, 7, 8, 8, 15, tzinfo=UTC), "Europe/Amsterdam", "2026-07-08 10:15 (+02:00)"),
        # Sydney's morning is the previous day in UTC.
        (datetime(2026, 12, 7, 22, 0, tzinfo=UTC), "Australia/Sydney", "2026-12-08 09:00 (+11:00)"),
        (datetime(2026, 12, 8, 8, 15, tzinfo=UTC), "UTC", "2026-12-08 08:15 (+00:00)"),
    ],
)
def test_clinic_time_is_the_wall_time_with_its_offset(
    instant: datetime, zone: str, expected: str
) -> None:
    assert clinic_time(instant, ZoneInfo(zone)) == expected
    assert clinic_time(int(instant.timestamp()), ZoneInfo(zone)) == expected


@pytest.mark.django_db
def test_a_block_names_the_bookings_it_hits_in_the_clinics_time() -> None:
    sydney = OrganizationFactory(id="clinic-syd", timezone="Australia/Sydney")
    schedule = ScheduleFactory(organization=sydney)
    start = datetime(2030, 12, 9, 9, 0, tzinfo=ZoneInfo("Australia/Sydney"))
    AppointmentFactory(
        organization=sydney,
        schedule=schedule,
        practitioner_role=schedule.practitioner_role,
        start=start,
        end=start + timedelta(minutes=15),
    )
    with pytest.raises(BlockHitsBookings) as excinfo:
        time_block(
            organization=sydney,
            schedule=schedule,
            start=start - timedelta(hours=1),
            end=start + timedelta(hours=1),
            comment="",
            actor="test",
        )
    # 2030-12-08 22:00 UTC, as read in Sydney: the same instant, the clinic's wall time.
    assert "2030-12-09 09:00 (+11:00)" in excinfo.value.message
    assert "UTC" not in excinfo.value.message
    with translation.override("nl"):
        assert "2030-12-09 09:00 (+11:00)" in excinfo.value.translated()
