"""The searches' stored-resource filters as django-filter FilterSets (fhir_api.filters).

Tables of examples: a value and what the selectors receive, or the 400 it answers.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.http import QueryDict

from fhir_api import filters, views
from fhir_api.openapi import ROUTES, openapi_document, served_routes
from scheduling.errors import InvalidSearchValue


@pytest.mark.parametrize(
    ("filterset", "query", "expected"),
    [
        (filters.ScheduleFilterSet, "_id=a,b.c", {"_id": ["a", "b.c"]}),
        (filters.ScheduleFilterSet, "active=false", {"active": False}),
        (filters.ScheduleFilterSet, "actor=Practitioner/p-1", {"actor": "Practitioner/p-1"}),
        (filters.ScheduleFilterSet, "actor=role-1", {"actor": "role-1"}),
        (
            filters.ScheduleFilterSet,
            "service-category=http://x|gp,|17,physio",
            {"service-category": [("http://x", "gp"), ("", "17"), (None, "physio")]},
        ),
        (filters.SlotFilterSet, "status=free,busy", {"status": ["free", "busy"]}),
        (filters.SlotFilterSet, "schedule=Schedule/s-1", {"schedule": "Schedule/s-1"}),
        (filters.AppointmentFilterSet, "status=booked&id=x", {"status": ["booked"], "id": ["x"]}),
        # Parameters that are not stored-resource filters are not theirs to parse.
        (filters.SlotFilterSet, "start=ge2026-06-01&_count=5", {}),
    ],
)
def test_values_the_selectors_receive(filterset: Any, query: str, expected: Any) -> None:
    assert filters.clean(filterset, QueryDict(query)) == expected


@pytest.mark.parametrize(
    ("filterset", "query", "param", "message"),
    [
        (filters.ScheduleFilterSet, "_id=a,,b", "_id", "empty item"),
        (filters.ScheduleFilterSet, "_id=a b", "_id", "not a FHIR id"),
        (filters.ScheduleFilterSet, "active=yes", "active", "'true' or 'false'"),
        (filters.ScheduleFilterSet, "active=1", "active", "'true' or 'false'"),
        (filters.ScheduleFilterSet, "actor=Patient/p", "actor", "must reference"),
        (filters.ScheduleFilterSet, "service-category=a|b|c", "service-category", "more than one"),
        (filters.ScheduleFilterSet, "service-category=sys|", "service-category", "no code"),
        (filters.SlotFilterSet, "status=open", "status", "not a valid status"),
        (filters.SlotFilterSet, "schedule=Slot/x", "schedule", "must reference Schedule"),
        (filters.SlotFilterSet, "status=", "status", "is empty"),
        (filters.AppointmentFilterSet, "status=free", "status", "not a valid status"),
    ],
)
def test_malformed_values_are_400_naming_the_parameter(
    filterset: Any, query: str, param: str, message: str
) -> None:
    with pytest.raises(InvalidSearchValue) as caught:
        filters.clean(filterset, QueryDict(query))
    assert caught.value.expression == [param]
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "view", [views.ScheduleSearchView, views.SlotSearchView, views.AppointmentSearchView]
)
def test_each_filter_is_a_parameter_of_its_search_and_described_in_openapi(view: Any) -> None:
    declared = filters.filters_of(view.filterset)
    assert declared and set(declared) <= view.params
    name = next(n for n, r in ROUTES.items() if r.search is view)
    operation = openapi_document()["paths"][served_routes()[name]]["get"]
    described = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
    for param, declared_filter in declared.items():
        assert described[param]["description"] == declared_filter.extra["help_text"]
        assert described[param]["schema"] == declared_filter.schema


def test_a_filterset_never_filters_a_queryset_itself() -> None:
    # The selectors filter (recurrences, caches, occupancy); a queryset path would bypass them.
    declared = filters.filters_of(filters.SlotFilterSet)["status"]
    with pytest.raises(NotImplementedError):
        declared.filter(None, ["free"])
