"""Bad requests, media types, tenancy isolation and the CapabilityStatement."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhirclient.models.capabilitystatement import CapabilityStatement as FCCapabilityStatement
from rest_framework.test import APIClient

from fhir_api.errors import exception_handler
from tests.api_helpers import assert_bundle, assert_outcome, body, url
from tests.factories import AppointmentFactory, PatientFactory, ScheduleFactory, SlotFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def data(org: Any) -> dict[str, Any]:
    schedule = ScheduleFactory(organization=org, fhir_id="s1", rrule="FREQ=DAILY")
    patient = PatientFactory(organization=org, fhir_id="p1")
    SlotFactory(organization=org, schedule=schedule, fhir_id="slot1")
    AppointmentFactory(organization=org, patient=patient, fhir_id="a1")
    return {"schedule": schedule, "patient": patient}


# (method, path, extra request kwargs, status, text expected in diagnostics)
BAD_REQUESTS: list[tuple[str, str, dict[str, Any], int, str | None]] = [
    ("get", "Schedule?foo=1", {}, 400, "foo"),
    ("get", "Schedule?_sort=date", {}, 400, "_sort"),
    ("get", "Schedule?status=active", {}, 400, "status"),
    ("get", "Schedule?date=2026-13-01", {}, 400, None),
    ("get", "Schedule?date=2026-02-30", {}, 400, None),
    ("get", "Schedule?date=tomorrow", {}, 400, "tomorrow"),
    ("get", "Schedule?date=ne2026-06-01", {}, 400, "ne"),
    ("get", "Schedule?date=sa2026-06-01", {}, 400, "sa"),
    ("get", "Schedule?date=ap2026-06-01", {}, 400, None),
    ("get", "Schedule?date=ge2026-01-01&date=le2027-06-01", {}, 400, "366"),
    ("get", "Schedule?date=ge2026-06-10&date=le2026-06-01", {}, 400, "empty"),
    ("get", "Schedule?date=", {}, 400, None),
    ("get", "Schedule?active=yes", {}, 400, "true"),
    ("get", "Schedule?active=true&active=false", {}, 400, "only once"),
    ("get", "Schedule?_id=a&_id=b", {}, 400, "only once"),
    ("get", "Schedule?_id=a&id=b", {}, 400, None),
    ("get", "Schedule?_id=bad$id", {}, 400, "FHIR id"),
    ("get", "Schedule?_id=a,,b", {}, 400, "empty"),
    ("get", "Schedule?actor=Patient/p1", {}, 400, "PractitionerRole"),
    ("get", "Schedule?actor=PractitionerRole/", {}, 400, None),
    ("get", "Schedule?service-category=a|b|c", {}, 400, "|"),
    ("get", "Schedule?service-category=http://x|", {}, 400, "no code"),
    ("get", "Schedule?_count=abc", {}, 400, "_count"),
    ("get", "Schedule?_count=-1", {}, 400, "_count"),
    ("get", "Schedule?_offset=x", {}, 400, "_offset"),
    ("get", "Schedule?_format=xml", {}, 406, "xml"),
    ("get", "Schedule?_format=application/fhir%2Bxml", {}, 406, None),
    ("get", "Schedule?_format=text/html", {}, 406, None),
    ("get", "Schedule", {"HTTP_ACCEPT": "application/fhir+xml"}, 406, "XML"),
    ("get", "Schedule", {"HTTP_ACCEPT": "text/html"}, 406, None),
    ("get", "Slot?status=open", {}, 400, "open"),
    ("get", "Slot?start=lt2025-1", {}, 400, None),
    ("get", "Slot?schedule=Practitioner/x", {}, 400, "Schedule"),
    ("get", "Slot?start=ge2026-06-01&start=le2028-01-01", {}, 400, "366"),
    ("get", "Patient/p1/Appointment", {}, 400, "date"),
    ("get", "Patient/p1/Appointment?date=2026-06-01&status=done", {}, 400, "done"),
    ("get", "Patient/p1/Appointment?date=2026-06-01&patient=p1", {}, 400, "patient"),
    ("post", "Schedule", {}, 405, None),
    ("put", "Schedule/s1", {}, 405, None),
    ("delete", "Schedule/s1", {}, 405, None),
    ("patch", "Slot/slot1", {}, 405, None),
    ("post", "Slot", {}, 405, None),
    ("put", "Patient/p1/Appointment/a1", {}, 405, None),
    ("delete", "Patient/p1/Appointment/a1", {}, 405, None),
    ("post", "metadata", {}, 405, None),
    ("get", "Practitioner", {}, 404, "Practitioner"),
    ("get", "Observation/1", {}, 404, "Observation"),
    ("get", "Patient/p1", {}, 404, None),
    ("get", "Schedule/s1/_history", {}, 404, None),
    ("get", "Schedule/missing", {}, 404, "missing"),
    ("get", "Slot/missing", {}, 404, "missing"),
    ("get", "Patient/p1/Appointment/missing", {}, 404, "missing"),
    ("get", "Patient/nobody/Appointment?date=2026-06-01", {}, 404, "nobody"),
]


@pytest.mark.parametrize(
    ("method", "path", "extra", "status", "contains"),
    BAD_REQUESTS,
    ids=[f"{m} {p} {e}" for m, p, e, *_ in BAD_REQUESTS],
)
def test_bad_requests_answer_operation_outcome(
    api: APIClient,
    data: dict[str, Any],
    method: str,
    path: str,
    extra: dict[str, Any],
    status: int,
    contains: str | None,
) -> None:
    response = getattr(api, method)(url(path), **extra)
    outcome = assert_outcome(response, status, contains=contains)
    if status == 400 and contains and not contains.isdigit():
        # The parameter at fault is named where there is one.
        assert (
            outcome["issue"][0].get("expression") or contains in outcome["issue"][0]["diagnostics"]
        )


def test_unknown_parameter_names_it_in_expression(api: APIClient, data: Any) -> None:
    outcome = assert_outcome(api.get(url("Schedule?colour=red")), 400)
    assert outcome["issue"][0]["expression"] == ["colour"]


def test_lenient_handling_ignores_unknown_parameters(api: APIClient, data: Any) -> None:
    response = api.get(url("Schedule?colour=red"), HTTP_PREFER="handling=lenient")
    assert [e["resource"]["id"] for e in assert_bundle(response)["entry"]] == ["s1"]


def test_window_too_large_is_too_costly(api: APIClient, data: Any) -> None:
    outcome = assert_outcome(api.get(url("Schedule?date=ge2026-01-01&date=lt2027-06-01")), 400)
    assert outcome["issue"][0]["code"] == "too-costly"


@pytest.mark.parametrize(
    ("query", "accept"),
    [
        ("", None),
        ("", "application/json"),
        ("", "application/fhir+json"),
        ("", "*/*"),
        ("", "text/html, application/fhir+json;q=0.9"),
        ("?_format=json", None),
        ("?_format=application/json", None),
        ("?_format=application/fhir%2Bjson", "application/xml"),
    ],
)
def test_json_is_served_in_every_spelling(
    api: APIClient, data: Any, query: str, accept: str | None
) -> None:
    extra = {"HTTP_ACCEPT": accept} if accept else {}
    response = api.get(url(f"Schedule{query}"), **extra)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/fhir+json"


def test_non_json_body_on_booking_is_415(api: APIClient, data: Any) -> None:
    response = api.post(
        url("Patient/p1/Appointment/$book-slot"),
        "<Parameters/>",
        content_type="application/fhir+xml",
    )
    assert_outcome(response, 415)


def test_malformed_json_on_booking_is_400(api: APIClient, data: Any) -> None:
    response = api.post(
        url("Patient/p1/Appointment/$book-slot"), "{not json", content_type="application/fhir+json"
    )
    assert_outcome(response, 400, contains="JSON")


def test_no_token_is_401_with_challenge(data: Any) -> None:
    response = APIClient().get(url("Schedule"))
    assert_outcome(response, 401)
    assert response["WWW-Authenticate"].startswith(
        'Bearer realm="medikit", error="invalid_request"'
    )
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer nonsense")
    response = bad.get(url("Schedule"))
    assert_outcome(response, 401)
    assert 'error="invalid_token"' in response["WWW-Authenticate"]


def test_missing_scope_is_403(org: Any, make_api_client: Callable[..., Any], data: Any) -> None:
    _, token = make_api_client(org, scopes="system/Slot.rs")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.get(url("Slot")).status_code == 200
    outcome = assert_outcome(client.get(url("Schedule")), 403)
    assert outcome["issue"][0]["code"] == "forbidden"


def test_unknown_path_under_v2_is_outcome(api: APIClient) -> None:
    assert_outcome(api.get("/v2/"), 404)
    assert_outcome(api.get("/v2/clinic-a/fhir/R5/Schedule"), 404)
    assert_outcome(api.get("/v2/clinic-a/fhir/R4/Schedule/a/b/c"), 404)


# --------------------------------------------------------------------------- tenancy

ROUTES = [
    ("get", "metadata"),
    ("get", "Schedule"),
    ("get", "Schedule/s1"),
    ("get", "Slot"),
    ("get", "Slot/slot1"),
    ("get", "Patient/p1/Appointment?date=ge2026-01-01"),
    ("get", "Patient/p1/Appointment/a1"),
    ("post", "Patient/p1/Appointment/$book-slot"),
    ("post", "Patient/p1/AppointmentResponse"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_outsider_organisation_gets_404_everywhere(
    org: Any,
    outsider_org: Any,
    make_api_client: Callable[..., Any],
    data: Any,
    method: str,
    path: str,
) -> None:
    """A client of clinic-b cannot tell clinic-a's data from missing data."""
    _, token = make_api_client(outsider_org)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    if path == "metadata":
        assert_outcome(client.get(url(path, org="no-such-org")), 404)
        return
    response = (
        getattr(client, method)(url(path), {}, format="json")
        if method == "post"
        else client.get(url(path))
    )
    foreign = assert_outcome(response, 404)
    assert foreign["issue"][0]["diagnostics"] == "Organization 'clinic-a' was not found."
    missing = (
        client.get(url(path, org="no-such-org"))
        if method == "get"
        else getattr(client, method)(url(path, org="no-such-org"), {}, format="json")
    )
    assert body(missing)["issue"][0]["diagnostics"] == "Organization 'no-such-org' was not found."
    # Its own organisation is served normally (nothing of clinic-a leaks into it).
    if path in ("Schedule", "Slot"):
        assert assert_bundle(client.get(url(path, org="clinic-b")))["total"] == 0


PATIENT_ROUTES = [r for r in ROUTES if r[1].startswith("Patient/")]


@pytest.mark.parametrize(("method", "path"), PATIENT_ROUTES)
def test_outsider_patient_gets_404(
    org: Any, make_api_client: Callable[..., Any], data: Any, method: str, path: str
) -> None:
    """A patient app bound to another patient reaches none of p1's paths."""
    PatientFactory(organization=org, fhir_id="p2")
    _, token = make_api_client(
        org,
        patient_id="p2",
        scopes="patient/Appointment.rs patient/Appointment.c patient/AppointmentResponse.c",
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = (
        getattr(client, method)(url(path), {}, format="json")
        if method == "post"
        else client.get(url(path))
    )
    assert_outcome(response, 404)
    own = client.get(url(path.replace("p1", "p2"))) if method == "get" else None
    if own is not None and "a1" not in path:
        assert_bundle(own)


def test_patient_of_another_organisation_is_404(
    org: Any, outsider_org: Any, api: APIClient, data: Any
) -> None:
    PatientFactory(organization=outsider_org, fhir_id="foreign")
    assert_outcome(api.get(url("Patient/foreign/Appointment?date=2026-06-01")), 404)


# --------------------------------------------------------------------------- capability


def test_capability_statement_is_public_and_valid(data: Any) -> None:
    response = APIClient().get(url("metadata"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/fhir+json"
    cap = body(response)
    CapabilityStatement.model_validate(cap)
    FCCapabilityStatement(cap)
    rest = cap["rest"][0]
    types = {r["type"]: r for r in rest["resource"]}
    assert set(types) == {
        "Schedule",
        "Slot",
        "Appointment",
        "AppointmentResponse",
        "OperationDefinition",  # read: the definitions of the operations it names
    }
    assert {p["name"] for p in types["Slot"]["searchParam"]} >= {"start", "schedule", "status"}
    assert types["Appointment"]["operation"][0]["name"] == "book-slot"
    oauth = rest["security"]["extension"][0]["extension"][0]
    assert oauth == {"url": "token", "valueUri": "http://testserver/oauth/token"}
    assert rest["security"]["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"


def test_unexpected_error_is_generic_500(caplog: Any) -> None:
    response = exception_handler(RuntimeError("secret detail /etc/passwd"), {})
    assert response.status_code == 500
    assert "secret" not in str(response.data)
    assert response.data["issue"][0]["code"] == "exception"
    assert "Unhandled error" in caplog.text


def test_the_api_answers_in_english_whatever_accept_language(api: APIClient, data: Any) -> None:
    """Diagnostics are English (docs/api.md): DRF's own messages too, even on a thread whose
    last request (the Dutch admin) left Dutch active; and an API response neither varies
    by nor claims the request's language. The admin still negotiates (test_front_desk)."""
    from django.utils import translation

    org = data["schedule"].organization_id
    translation.activate("nl")  # what a Dutch admin request leaves on its thread
    try:
        for language in ("nl", "en", None):
            extra = {} if language is None else {"HTTP_ACCEPT_LANGUAGE": language}
            response = api.put(url("Slot", org), {}, format="json", **extra)
            assert_outcome(response, 405, contains='Method "PUT" not allowed.')
            assert "Accept-Language" not in response.headers.get("Vary", "")
            assert "Content-Language" not in response.headers
            search = api.get(url("Schedule", org), **extra)
            assert search.status_code == 200
            assert "Accept-Language" not in search.headers.get("Vary", "")
            translation.activate("nl")
    finally:
        translation.deactivate()
