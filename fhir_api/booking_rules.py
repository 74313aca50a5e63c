"""``urn:extension:booking-rules`` on Schedule: the wire form of a schedule's booking rules.

One table says, for every part of the extension, which model field holds it, in what unit,
and which FHIR value type carries it; the mapper (out) and the importer (in) both read it, so
the two directions cannot drift apart. See docs/api.md, "Booking rules".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scheduling import models as m

EXT_BOOKING_RULES = "urn:extension:booking-rules"

#: Minutes per UCUM unit a duration may be written in.
_MINUTES = {"min": 1, "h": 60, "d": 1440}


@dataclass(frozen=True, slots=True)
class Part:
    name: str  # the extension part's url
    field: str  # the Schedule model field
    unit: str | None  # UCUM unit the field counts in; None for a positiveInt
    maximum: int  # in the field's unit


PARTS = (
    Part("minimumNotice", "minimum_notice_minutes", "min", m.MAX_NOTICE_MINUTES),
    Part("maximumAdvance", "maximum_advance_days", "d", m.MAX_ADVANCE_DAYS),
    Part("bufferBefore", "buffer_before_minutes", "min", m.MAX_BUFFER_MINUTES),
    Part("bufferAfter", "buffer_after_minutes", "min", m.MAX_BUFFER_MINUTES),
    Part("capacity", "capacity", None, m.MAX_CAPACITY),
    Part("cancellationCutoff", "cancellation_cutoff_hours", "h", m.MAX_CUTOFF_HOURS),
    Part("maxActivePerPatient", "max_active_per_patient", None, m.MAX_CAPACITY),
)
_BY_NAME = {part.name: part for part in PARTS}


class RuleError(ValueError):
    """A part of the extension that makes no sense; ``element`` names it."""

    def __init__(self, message: str, element: str) -> None:
        super().__init__(message)
        self.element = element


def booking_rules_extension(schedule: m.Schedule) -> dict[str, Any] | None:
    """The extension for a schedule's rules, or None when it has none."""
    inner: list[dict[str, Any]] = []
    for part in PARTS:
        value = getattr(schedule, part.field)
        if value is None:
            continue
        if part.unit is None:
            inner.append({"url": part.name, "valuePositiveInt": value})
        else:
            inner.append(
                {
                    "url": part.name,
                    "valueDuration": {
                        "value": value,
                        "unit": part.unit,
                        "system": "http://unitsofmeasure.org",
                        "code": part.unit,
                    },
                }
            )
    return {"url": EXT_BOOKING_RULES, "extension": inner} if inner else None


def parse_booking_rules(extension: Any | None) -> dict[str, int | None]:
    """Model field values from a parsed (fhir.resources) extension, every field present
    (None where the part is absent). RuleError for an unknown, repeated, mistyped,
    non-positive or out-of-range part."""
    values: dict[str, int | None] = {part.field: None for part in PARTS}
    base = f"extension('{EXT_BOOKING_RULES}')"
    seen: set[str] = set()
    for inner in (extension.extension or []) if extension is not None else []:
        element = f"{base}.extension('{inner.url}')"
        part = _BY_NAME.get(inner.url or "")
        if part is None:
            known = ", ".join(p.name for p in PARTS)
            raise RuleError(f"{element}: unknown booking rule; the rules are: {known}.", element)
        if part.name in seen:
            raise RuleError(f"{element}: given more than once.", element)
        seen.add(part.name)
        values[part.field] = _value(part, inner, element)
    return values


def _value(part: Part, inner: Any, element: str) -> int:
    if part.unit is None:
        value = inner.valuePositiveInt
        if value is None:
            raise RuleError(f"{element}: needs a valuePositiveInt.", element)
    else:
        duration = inner.valueDuration
        if duration is None or duration.value is None:
            raise RuleError(
                f"{element}: needs a valueDuration, e.g. "
                f'{{"value": 1, "unit": "{part.unit}", "system": "http://unitsofmeasure.org", '
                f'"code": "{part.unit}"}}.',
                element,
            )
        unit = str(duration.code or duration.unit or part.unit)
        if unit not in _MINUTES:
            raise RuleError(f"{element}: use minutes ('min'), hours ('h') or days ('d').", element)
        minutes = float(duration.value) * _MINUTES[unit]
        in_unit = minutes / _MINUTES[part.unit]
        if in_unit != int(in_unit):
            raise RuleError(
                f"{element}: must be a whole number of {part.unit} (got {duration.value} {unit}).",
                element,
            )
        value = int(in_unit)
    if value < 1:
        raise RuleError(f"{element}: must be positive (got {value}).", element)
    if value > part.maximum:
        raise RuleError(
            f"{element}: {value} {part.unit or ''} is more than the {part.maximum} allowed.",
            element,
        )
    return int(value)
