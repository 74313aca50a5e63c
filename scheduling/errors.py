"""Domain errors: plain messages and a category, no HTTP.

Each error carries a FHIR IssueType code and a category; ``fhir_api.errors`` maps the
category to an HTTP status once, in one place (the Zulip "errors as data" pattern).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum


def gettext_noop(message: str) -> str:
    """Mark ``message`` for the translation catalogue without translating it here.

    Named like Django's so ``makemessages`` extracts it, defined here so the pure modules
    (recurrence, availability) stay free of Django. A message is translated only where it
    is shown to a person (``DomainError.translated``, the admin); the API keeps English.
    """
    return message


def _same(message: str) -> str:
    return message


def _fill(template: str, params: Mapping[str, object], translate: Callable[[str], str]) -> str:
    text = translate(template)
    if not params:  # a template without params is used as it is: a literal '%' stays
        return text
    return text % {key: _render(value, translate) for key, value in params.items()}


def _render(value: object, translate: Callable[[str], str]) -> object:
    if isinstance(value, Text):
        return value.render(translate)
    if isinstance(value, list | tuple):
        return "; ".join(str(_render(item, translate)) for item in value)
    return value


@dataclass(frozen=True)
class Text:
    """A part of a message that is itself a sentence to translate (a clash, a booking).

    A param of a DomainError may be a Text, or a list of them (joined with '; '): it is
    rendered in the same language as the message around it.
    """

    template: str
    params: Mapping[str, object] = field(default_factory=dict)

    def render(self, translate: Callable[[str], str] = _same) -> str:
        return _fill(self.template, self.params, translate)

    def __str__(self) -> str:
        return self.render()


class Category(Enum):
    INVALID = "invalid"  # malformed input -> 400
    TOO_COSTLY = "too-costly"  # request would cost too much -> 400
    NOT_FOUND = "not-found"  # -> 404
    CONFLICT = "conflict"  # state changed meanwhile (slot taken) -> 409
    BUSINESS_RULE = "business-rule"  # well-formed but not allowed -> 422


class DomainError(Exception):
    """Base of every domain error.

    ``message`` is written for a developer who must fix the request; ``expression``
    names the parameter or element at fault (FHIRPath-ish), when there is one.

    The message is a template marked with ``gettext_noop`` whose named placeholders
    (``%(start)s``) are filled from ``params``: never an f-string, so one catalogue entry
    covers every instance. ``message`` is always the English text (the API's diagnostics,
    logs); ``translated()`` is the same sentence in the active language (the admin).
    """

    category: Category = Category.INVALID
    issue_code: str = "invalid"

    def __init__(
        self,
        message: str,
        *,
        expression: list[str] | None = None,
        params: Mapping[str, object] | None = None,
    ) -> None:
        self.template = message
        self.params = dict(params or {})
        self.message = _fill(message, self.params, _same)
        super().__init__(self.message)
        self.expression = list(expression or [])

    def translated(self) -> str:
        """The message in the active language (English when no catalogue has it)."""
        from django.utils.translation import gettext  # lazily: the pure modules import this

        return _fill(self.template, self.params, gettext)


class InvalidInput(DomainError):
    category = Category.INVALID
    issue_code = "invalid"


class InvalidRecurrence(InvalidInput):
    """An RRULE, time zone or exdate that cannot be used."""


class InvalidSearchValue(InvalidInput):
    """A search parameter value that cannot be parsed."""


class WindowTooLarge(DomainError):
    category = Category.TOO_COSTLY
    issue_code = "too-costly"


class NotFound(DomainError):
    category = Category.NOT_FOUND
    issue_code = "not-found"


class Conflict(DomainError):
    category = Category.CONFLICT
    issue_code = "conflict"


class SlotTaken(Conflict):
    """The slot was free when looked up but is no longer."""


class BusinessRuleViolation(DomainError):
    category = Category.BUSINESS_RULE
    issue_code = "business-rule"


class BlockHitsBookings(Conflict):
    """Blocking time over active bookings needs an explicit confirmation.

    ``bookings`` lists them (patient, time, appointment id) so the caller can show whom the
    block would affect; the bookings stay when the block is confirmed.
    """

    def __init__(
        self,
        message: str,
        *,
        bookings: Sequence[Text | str],
        params: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message, expression=["start"], params=params)
        self._bookings = list(bookings)

    @property
    def bookings(self) -> list[str]:
        """The bookings hit, in English (what the API and logs show)."""
        return [str(booking) for booking in self._bookings]
