"""The quick reading of an operation's Parameters body (``fhir_api.operations.
quick_parameters``) against ``fhir.resources.R4B``'s whole model: whenever the quick path
answers, the model accepts the body and reads the same names and values; every other body
is left to the model (so its errors are worded as before)."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B.parameters import Parameters
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from fhir_api.operations import quick_parameters

#: Every element the quick path reads (``getattr(p, element, None)``), compared one by one.
ELEMENTS = ("valueDateTime", "valueString", "valueInteger", "valueCode", "valueDuration")

VALUES: list[Any] = [
    "2026-06-01T09:00:00+02:00",
    "2026-06-01T09:00:00Z",
    "2026-06-01T09:00:00.123456789-03:30",
    "2026-06-01T23:59:60+00:00",
    "2026-06-01T24:00:00+00:00",
    "2026-06-01T09:00:00",
    "2026-06-01T09:00+02:00",
    "2026-06-01",
    "2026-06",
    "2026",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "2026-02-30T09:00:00+02:00",
    "sched-1",
    "Schedule/sched-1",
    "booked",
    "",
    " ",
    " padded ",
    "\t",
    "line\nbreak",
    "nul\x00",
    "x" * 300,
    "😀",
    0,
    1,
    1.5,
    True,
    False,
    None,
    [],
    ["sched-1"],
    {},
    {"value": 5, "unit": "min"},
]
NAMES: list[Any] = ["start", "schedule", "status", "", " ", "nul\x00", 7, None, True, [], {}]


def model_reading(body: dict[str, Any]) -> list[tuple[Any, dict[str, Any]]] | None:
    """What read_parameters reads of the model's parameters, or None if it refuses."""
    try:
        parsed = Parameters.model_validate(body)
    except ValidationError:
        return None
    return [
        (p.name, {element: getattr(p, element, None) for element in ELEMENTS})
        for p in parsed.parameter or []
    ]


def quick_reading(body: dict[str, Any]) -> list[tuple[Any, dict[str, Any]]] | None:
    found = quick_parameters(body)
    if found is None:
        return None
    return [(p.name, {element: getattr(p, element, None) for element in ELEMENTS}) for p in found]


def assert_same_when_quick(body: dict[str, Any]) -> bool:
    """The quick reading, where there is one, is the model's, value and type alike (an
    instant's offset included). True when the quick path answered."""
    quick = quick_reading(body)
    if quick is None:
        return False
    model = model_reading(body)
    assert model is not None, body
    assert quick == model, body
    for (_, ours), (_, theirs) in zip(quick, model, strict=True):
        for element in ELEMENTS:
            assert type(ours[element]) is type(theirs[element]), (body, element)
            utcoffset = getattr(ours[element], "utcoffset", None)
            if callable(utcoffset) and hasattr(ours[element], "hour"):
                assert utcoffset() == theirs[element].utcoffset(), (body, element)
    return True


def book_body(**overrides: Any) -> dict[str, Any]:
    parameters = [
        {"name": "start", "valueDateTime": "2026-06-01T09:00:00+02:00"},
        {"name": "schedule", "valueString": "sched-1"},
        {"name": "practitionerRole", "valueString": "role-1"},
        {"name": "status", "valueString": "booked"},
    ]
    return {"resourceType": "Parameters", "parameter": parameters, **overrides}


def test_a_booking_body_is_read_quickly_and_as_the_model_reads_it() -> None:
    assert assert_same_when_quick(book_body())


@pytest.mark.parametrize("element", ["valueDateTime", "valueString"])
@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_each_value_is_the_models_or_left_to_it(element: str, value: Any) -> None:
    body = {"resourceType": "Parameters", "parameter": [{"name": "start", element: value}]}
    assert_same_when_quick(body)


@pytest.mark.parametrize("name", NAMES, ids=repr)
def test_each_name_is_the_models_or_left_to_it(name: Any) -> None:
    body = {"resourceType": "Parameters", "parameter": [{"name": name, "valueString": "x"}]}
    assert_same_when_quick(body)


@pytest.mark.parametrize(
    "body",
    [
        book_body(id="p1"),
        book_body(meta={}),
        book_body(parameter=[]),
        book_body(parameter=None),
        book_body(parameter={"name": "start"}),
        book_body(parameter=[None]),
        book_body(parameter=["start"]),
        book_body(parameter=[{"name": "start"}]),
        book_body(parameter=[{"valueString": "x", "other": "y"}]),
        book_body(parameter=[{"name": "start", "valueInteger": 5}]),
        book_body(parameter=[{"name": "start", "valueCode": "x"}]),
        book_body(parameter=[{"name": "h", "valueDuration": {"value": 5, "unit": "min"}}]),
        book_body(parameter=[{"name": "start", "_valueString": {"extension": []}}]),
        book_body(parameter=[{"name": "start", "_name": {"id": "x"}}]),
        book_body(parameter=[{"name": "s", "part": [{"name": "x", "valueString": "y"}]}]),
        book_body(parameter=[{"name": "s", "valueString": "x", "valueDateTime": "2026"}]),
        book_body(parameter=[{"name": "s", "valueString": "x", "extension": []}]),
    ],
    ids=repr,
)
def test_any_other_shape_is_left_to_the_model(body: dict[str, Any]) -> None:
    assert quick_parameters(body) is None


_values = st.one_of(
    st.sampled_from(VALUES),
    st.text(max_size=40),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.integers(),
    st.none(),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.sampled_from(NAMES), st.text(max_size=20)),
            st.sampled_from(["valueDateTime", "valueString", "valueInteger"]),
            _values,
        ),
        min_size=1,
        max_size=6,
    )
)
def test_any_parameters_are_the_models_or_left_to_it(items: list[tuple[Any, str, Any]]) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": name, element: value} for name, element, value in items],
    }
    assert_same_when_quick(body)
