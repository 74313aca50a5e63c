"""Every FHIR route appears in docs/api.md, the CapabilityStatement and /openapi.json."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from fhir_api import views
from fhir_api.openapi import ROUTES, openapi_document, served_routes
from tests.api_helpers import url

API_DOC = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text(encoding="utf-8")
BASE = "/v2/{organizationId}/fhir/R4/"
ROUTE_NAMES = sorted(served_routes())


def below_base(path: str) -> str:
    assert path.startswith(BASE), path
    return path.removeprefix(BASE)


def test_every_route_has_an_openapi_entry_and_no_entry_is_stale() -> None:
    assert set(served_routes()) == set(ROUTES)
    assert len(ROUTE_NAMES) >= 9


@pytest.mark.parametrize("name", ROUTE_NAMES)
def test_route_is_in_docs_api_md(name: str) -> None:
    path = below_base(served_routes()[name])
    assert f"`{path}`" in API_DOC, f"docs/api.md does not list `{path}`"


@pytest.mark.django_db
def test_openapi_json_is_served_and_lists_every_route(client: Client) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    document = response.json()
    assert document == openapi_document()
    assert document["openapi"] == "3.1.0"
    for name, path in served_routes().items():
        operation = document["paths"][path][ROUTES[name].method]
        assert operation["operationId"] == name
        assert {p["name"] for p in operation["parameters"] if p["in"] == "path"} == set(
            re.findall(r"\{(\w+)\}", path)
        )
        for response_ in operation["responses"].values():
            for media in response_.get("content", {}).values():
                ref = media["schema"]["$ref"].rsplit("/", 1)[1]
                assert ref in document["components"]["schemas"]
    assert client.post("/openapi.json").status_code == 405


@pytest.mark.parametrize(
    "view", [views.ScheduleSearchView, views.SlotSearchView, views.AppointmentSearchView]
)
def test_openapi_search_parameters_are_the_ones_the_view_takes(view: Any) -> None:
    name = next(n for n, r in ROUTES.items() if r.search is view)
    operation = openapi_document()["paths"][served_routes()[name]]["get"]
    query = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
    assert query == set(view.params) | views.COMMON_PARAMS


def _capability_has(statement: dict[str, Any], name: str, path: str) -> bool:
    """Whether the CapabilityStatement offers the route: its interaction or operation."""
    route = ROUTES[name]
    below = below_base(path)
    if below == "metadata":
        return statement["resourceType"] == "CapabilityStatement"
    parts = below.split("/")
    if parts[0] == "Patient":
        parts = parts[2:]
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    resource = resources.get(parts[0])
    if resource is None:
        return False
    codes = {i["code"] for i in resource.get("interaction", [])}
    operations = {o["name"] for o in resource.get("operation", [])}
    if parts[-1].startswith("$"):
        return parts[-1][1:] in operations
    if route.search is not None:
        return "search-type" in codes
    if route.method == "post":
        return "create" in codes
    return "read" in codes


@pytest.mark.django_db
@pytest.mark.parametrize("name", ROUTE_NAMES)
def test_route_is_in_the_capability_statement(api: APIClient, name: str) -> None:
    statement = api.get(url("metadata")).json()
    assert _capability_has(statement, name, served_routes()[name])


@pytest.mark.django_db
def test_capability_search_params_are_accepted_by_the_searches(api: APIClient) -> None:
    statement = api.get(url("metadata")).json()
    searches = {
        "Schedule": views.ScheduleSearchView,
        "Slot": views.SlotSearchView,
        "Appointment": views.AppointmentSearchView,
    }
    for resource in statement["rest"][0]["resource"]:
        view = searches.get(resource["type"])
        if view is None:
            continue
        listed = {p["name"] for p in resource["searchParam"]}
        accepted = set(view.params) | views.COMMON_PARAMS
        assert listed <= accepted, listed - accepted
        # Everything accepted is listed, but the alias and the _include family, which
        # FHIR lists as searchInclude.
        assert accepted - listed <= {"id", "_include", "_include:iterate", "_format"}


def test_a_route_without_an_entry_is_still_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    from fhir_api import openapi

    routes = {**served_routes(), "fhir-new-op": BASE.rstrip("/") + "/Patient/{pid}/X/$new-op"}
    monkeypatch.setattr(openapi, "served_routes", lambda: routes)
    openapi.openapi_document.cache_clear()
    try:
        document = openapi.openapi_document()
    finally:
        openapi.openapi_document.cache_clear()
    assert document["paths"][routes["fhir-new-op"]]["post"]["operationId"] == "fhir-new-op"
