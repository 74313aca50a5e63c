"""The stored-resource filters of the searches, declared as django-filter FilterSets.

Each FHIR search parameter that filters stored rows (``_id``, ``status``, the
``service-category`` and ``actor`` tokens, ``active``, ``schedule``) is a ``Filter`` whose form
field parses and checks the FHIR value; :func:`clean` turns a query string into the
selectors' keyword arguments, and a bad value into a 400 OperationOutcome naming the
parameter. The OpenAPI description (``fhir_api.openapi``) is generated from the same
declarations.

The selectors, not ``FilterSet.qs``, do the filtering: they expand recurrences, consult the
search caches and apply the occupancy rules, which a queryset filter cannot. For the same
reason no FilterSet is instantiated per request (that copies every filter and builds a form
class): :func:`clean` uses the class-level filters' fields, which are built once per process,
so the slot search (a hot path) pays a few field ``clean()`` calls and no ORM work.
Date windows (``date``, ``start``) stay with ``fhir_api.search`` and the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Model, QuerySet

from fhir_api import search
from scheduling.errors import InvalidSearchValue
from scheduling.models import (
    FHIR_ID_RE,
    Appointment,
    AppointmentStatus,
    Schedule,
    Slot,
    SlotStatus,
)


def _items(value: str, param: str) -> list[str]:
    items = [item.strip() for item in value.split(",")]
    if any(not item for item in items):
        raise ValidationError(f"Search parameter '{param}' has an empty item in '{value}'.")
    return items


class _FHIRField(forms.Field):
    """A FHIR search value; ``param`` names it in error messages."""

    def __init__(self, *, param: str, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)
        self.param = param


class IdListField(_FHIRField):
    """``a,b,c``: logical ids (OR)."""

    def to_python(self, value: Any) -> list[str] | None:
        if value in self.empty_values:
            return None
        items = _items(str(value), self.param)
        for item in items:
            if not FHIR_ID_RE.match(item):
                raise ValidationError(
                    f"'{item}' is not a FHIR id (1-64 of A-Z, a-z, 0-9, '-', '.')."
                )
        return items


class TokenListField(_FHIRField):
    """``code``, ``system|code`` or ``|code``, comma = OR -> [(system, code)]."""

    def to_python(self, value: Any) -> list[tuple[str | None, str]] | None:
        if value in self.empty_values:
            return None
        out: list[tuple[str | None, str]] = []
        for item in _items(str(value), self.param):
            # A second unescaped bar would be swallowed into the code: refuse it instead.
            if item.replace("\\|", "").count("|") > 1:
                raise ValidationError(
                    f"Token '{item}' of '{self.param}' has more than one '|': use code, "
                    "system|code or |code."
                )
            system, code = search.parse_token(item)
            if code is None:
                raise ValidationError(f"Token '{item}' of '{self.param}' has no code after '|'.")
            out.append((system, code))
        return out


class CodeListField(_FHIRField):
    """Codes from a fixed FHIR value set, comma = OR."""

    def __init__(self, *, codes: frozenset[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.codes = codes

    def to_python(self, value: Any) -> list[str] | None:
        if value in self.empty_values:
            return None
        items = _items(str(value), self.param)
        for item in items:
            if item not in self.codes:
                raise ValidationError(
                    f"'{item}' is not a valid {self.param} here; use one of: "
                    f"{', '.join(sorted(self.codes))}."
                )
        return items


class ReferenceField(_FHIRField):
    """``Type/id`` of one of ``types``, or a bare id."""

    def __init__(self, *, types: tuple[str, ...], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.types = types

    def to_python(self, value: Any) -> str | None:
        if value in self.empty_values:
            return None
        text = str(value)
        kind, slash, ref_id = text.rpartition("/")
        if slash and kind not in self.types:
            raise ValidationError(
                f"'{text}' of '{self.param}' must reference {' or '.join(self.types)} "
                "(or be a bare id)."
            )
        if not FHIR_ID_RE.match(ref_id):
            raise ValidationError(f"'{ref_id}' in '{self.param}' is not a FHIR id.")
        return text


class FHIRBooleanField(_FHIRField):
    """Exactly ``true`` or ``false`` (Django's BooleanField would take 'on', '1', ...)."""

    def to_python(self, value: Any) -> bool | None:
        if value in self.empty_values:
            return None
        if value in ("true", "false"):
            return bool(value == "true")
        raise ValidationError(f"{self.param}={value!r} must be 'true' or 'false'.")


class FHIRFilter(django_filters.Filter):  # type: ignore[misc]  # django-filter is untyped
    """A FHIR search parameter. Parsing only: the selectors filter (see the module notes)."""

    #: OpenAPI schema of one value of the parameter.
    schema: dict[str, Any] = {"type": "string"}

    def __init__(self, param: str, help_text: str, **kwargs: Any) -> None:
        super().__init__(label=param, param=param, help_text=help_text, **kwargs)
        self.param = param

    def filter(self, qs: QuerySet[Any], value: Any) -> QuerySet[Any]:
        raise NotImplementedError(
            "FHIR searches filter in scheduling.selectors (recurrences, caches, occupancy)."
        )


class IdsFilter(FHIRFilter):
    field_class = IdListField


class TokensFilter(FHIRFilter):
    field_class = TokenListField


class ReferenceFilter(FHIRFilter):
    field_class = ReferenceField


class BooleanFilter(FHIRFilter):
    field_class = FHIRBooleanField
    schema = {"type": "string", "enum": ["true", "false"]}


class CodesFilter(FHIRFilter):
    field_class = CodeListField

    def __init__(self, param: str, help_text: str, *, codes: frozenset[str]) -> None:
        super().__init__(param, help_text, codes=codes)
        self.schema = {"type": "string", "description": "comma = OR", "examples": sorted(codes)}


def _filterset(
    name: str, model: type[Model], filters: Mapping[str, FHIRFilter]
) -> type[django_filters.FilterSet]:
    # FHIR names such as 'service-category' are not Python identifiers: declared by name.
    meta = type("Meta", (), {"model": model, "fields": []})
    return type(name, (django_filters.FilterSet,), {**filters, "Meta": meta})


_ID_HELP = "Logical id(s), comma = OR."
_CATEGORY_HELP = "Service category token: code, system|code or |code; comma = OR."

ScheduleFilterSet = _filterset(
    "ScheduleFilterSet",
    Schedule,
    {
        "_id": IdsFilter("_id", _ID_HELP),
        "id": IdsFilter("id", "Alias of _id."),
        "service-category": TokensFilter("service-category", _CATEGORY_HELP),
        "actor": ReferenceFilter(
            "actor",
            "PractitionerRole/{id}, Practitioner/{id} or a bare id (either kind).",
            types=("PractitionerRole", "Practitioner"),
        ),
        "active": BooleanFilter("active", "true or false."),
    },
)
SlotFilterSet = _filterset(
    "SlotFilterSet",
    Slot,
    {
        "schedule": ReferenceFilter("schedule", "Schedule/{id} or a bare id.", types=("Schedule",)),
        "service-category": TokensFilter("service-category", _CATEGORY_HELP),
        "status": CodesFilter(
            "status", "Slot status(es), comma = OR.", codes=frozenset(SlotStatus.values)
        ),
    },
)
AppointmentFilterSet = _filterset(
    "AppointmentFilterSet",
    Appointment,
    {
        "_id": IdsFilter("_id", _ID_HELP),
        "id": IdsFilter("id", "Alias of _id."),
        "status": CodesFilter(
            "status",
            "Appointment status(es), comma = OR.",
            codes=frozenset(AppointmentStatus.values),
        ),
    },
)


def filters_of(filterset: type[django_filters.FilterSet]) -> dict[str, FHIRFilter]:
    """The FHIR filters a FilterSet declares, by parameter name."""
    return {name: f for name, f in filterset.base_filters.items() if isinstance(f, FHIRFilter)}


def clean(filterset: type[django_filters.FilterSet], query: Mapping[str, Any]) -> dict[str, Any]:
    """The parsed values of the FilterSet's parameters present in ``query`` (a QueryDict).

    Raises InvalidSearchValue (400, ``expression`` = the parameter) for an empty or
    malformed value. Parameters not in ``query`` are left out of the result.
    """
    out: dict[str, Any] = {}
    for name, declared in filters_of(filterset).items():
        if name not in query:
            continue
        raw = query.get(name)
        value = raw.strip() if isinstance(raw, str) else raw
        if not value:
            raise InvalidSearchValue(f"Search parameter '{name}' is empty.", expression=[name])
        try:
            out[name] = declared.field.clean(value)
        except ValidationError as exc:
            raise InvalidSearchValue(exc.messages[0], expression=[name]) from None
    return out
