"""Domain errors: plain messages and a category, no HTTP.

Each error carries a FHIR IssueType code and a category; ``fhir_api.errors`` maps the
category to an HTTP status once, in one place (the Zulip "errors as data" pattern).
"""

from __future__ import annotations

from enum import Enum


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
    """

    category: Category = Category.INVALID
    issue_code: str = "invalid"

    def __init__(self, message: str, *, expression: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.expression = list(expression or [])


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

    def __init__(self, message: str, *, bookings: list[str]) -> None:
        super().__init__(message, expression=["start"])
        self.bookings = bookings
