"""Helpers shared by the API tests: URLs, validation of responses with two FHIR libraries."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhirclient.models.bundle import Bundle as FCBundle
from fhirclient.models.operationoutcome import OperationOutcome as FCOperationOutcome

BASE = "/v2/clinic-a/fhir/R4"
FHIR_JSON = "application/fhir+json"


def url(path: str, org: str = "clinic-a") -> str:
    return f"/v2/{org}/fhir/R4/{path}"


def body(response: Any) -> dict[str, Any]:
    import orjson

    return orjson.loads(response.content)


def assert_fhir_json(response: Any) -> None:
    assert response["Content-Type"].startswith(FHIR_JSON), response["Content-Type"]


def assert_outcome(response: Any, status: int, *, contains: str | None = None) -> dict[str, Any]:
    """The response is an OperationOutcome with ``status`` that both libraries accept."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert_fhir_json(response)
    data = body(response)
    assert data["resourceType"] == "OperationOutcome"
    OperationOutcome.model_validate(data)
    FCOperationOutcome(data)
    issue = data["issue"][0]
    assert issue["severity"] and issue["code"] and issue["diagnostics"]
    if contains is not None:
        assert contains in issue["diagnostics"], issue["diagnostics"]
    return data


def assert_bundle(response: Any, *, includes: bool = False) -> dict[str, Any]:
    """A 200 searchset Bundle, valid for fhir.resources R4B and fhirclient R4.

    Without ``includes`` every entry must be a match; with it, matches come first and
    the included entries after them.
    """
    assert response.status_code == 200, (response.status_code, response.content[:800])
    assert_fhir_json(response)
    data = body(response)
    assert data["resourceType"] == "Bundle" and data["type"] == "searchset"
    Bundle.model_validate(data)
    FCBundle(data)
    for entry in data.get("entry", []):
        assert entry["fullUrl"].startswith("http")
        assert entry["fullUrl"].endswith(
            f"/{entry['resource']['resourceType']}/{entry['resource']['id']}"
        )
        if not includes:
            assert entry["search"] == {"mode": "match"}
    if includes:
        modes = [entry["search"]["mode"] for entry in data.get("entry", [])]
        assert modes == sorted(modes, key=lambda mode: mode != "match"), modes
        assert set(modes) <= {"match", "include"}
    return data


def ids(bundle: dict[str, Any]) -> list[str]:
    return [entry["resource"]["id"] for entry in bundle.get("entry", [])]
