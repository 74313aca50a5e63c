"""An OpenAPI 3.1 description of the FHIR routes, for tools that do not speak FHIR.

Built from the routes themselves (``fhir_api.urls``), the search parameters the views
enforce and the FilterSets that parse them (``fhir_api.filters``), so it cannot drift from
what is served. ``ROUTES`` adds what a route cannot say about itself (method, summary,
body); a route missing there is still listed, generically. The FHIR description proper is
the CapabilityStatement (``metadata``); docs/api.md is the prose.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any, NamedTuple

import orjson
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern
from django.views.decorators.http import require_safe

from fhir_api import filters, views

FHIR_SPEC = "https://hl7.org/fhir/R4"
#: The catch-all routes that answer 404 for anything not served: not part of the API.
CATCH_ALL = frozenset({"fhir-unknown-type", "fhir-not-found"})
_PATH_NAMES = {"organization_id": "organizationId", "patient_id": "pid", "fhir_id": "id"}
_GROUP = re.compile(r"\(\?P<(\w+)>[^()]*\)")


class Route(NamedTuple):
    method: str
    summary: str
    search: type[views.FHIRSearchView] | None = None  # its parameters are described
    body: str | None = None  # resource type of the request body
    ok: tuple[int, str] = (200, "Bundle")
    scope: str = ""


ROUTES: dict[str, Route] = {
    "fhir-metadata": Route(
        "get", "CapabilityStatement of this organisation", ok=(200, "CapabilityStatement")
    ),
    "fhir-schedule-search": Route(
        "get", "Search schedules", views.ScheduleSearchView, scope="Schedule.rs"
    ),
    "fhir-schedule-read": Route(
        "get", "Read a stored schedule", ok=(200, "Schedule"), scope="Schedule.rs"
    ),
    "fhir-slot-search": Route(
        "get", "Search slots, free or busy", views.SlotSearchView, scope="Slot.rs"
    ),
    "fhir-slot-read": Route("get", "Read a stored slot", ok=(200, "Slot"), scope="Slot.rs"),
    "fhir-appointment-search": Route(
        "get",
        "Search a patient's appointments",
        views.AppointmentSearchView,
        scope="Appointment.rs",
    ),
    "fhir-appointment-read": Route(
        "get",
        "Read one of the patient's appointments",
        ok=(200, "Appointment"),
        scope="Appointment.rs",
    ),
    "fhir-book-slot": Route(
        "post",
        "$book-slot: book one slot for the patient",
        body="Parameters",
        ok=(201, "Appointment"),
        scope="Appointment.c",
    ),
    "fhir-hold": Route(
        "post",
        "$hold: keep one slot for the patient until held-until (then it lapses by itself)",
        body="Parameters",
        ok=(201, "Appointment"),
        scope="Appointment.c",
    ),
    "fhir-confirm": Route(
        "post",
        "$confirm: a live hold becomes booked",
        body="Parameters",
        ok=(200, "Appointment"),
        scope="Appointment.c",
    ),
    "fhir-cancel": Route(
        "post",
        "$cancel: cancel the appointment and free its slot",
        body="Parameters",
        ok=(200, "Appointment"),
        scope="Appointment.c",
    ),
    "fhir-reschedule": Route(
        "post",
        "$reschedule: move the appointment (same id) to another slot, atomically",
        body="Parameters",
        ok=(200, "Appointment"),
        scope="Appointment.c",
    ),
    "fhir-operation-definition": Route(
        "get",
        "OperationDefinition of an operation the CapabilityStatement names",
        ok=(200, "OperationDefinition"),
    ),
    "fhir-appointment-response": Route(
        "post",
        "Record the patient's answer (accepted, declined, ...)",
        body="AppointmentResponse",
        ok=(201, "AppointmentResponse"),
        scope="AppointmentResponse.c",
    ),
}

_PARAM_DOCS = {
    "date": "FHIR date with eq/ge/gt/le/lt; repeat for a range (docs/api.md section 5).",
    "start": "FHIR date with eq/ge/gt/le/lt; the slot window (default now to now + 7 days).",
    "_include": "Include referenced resources (docs/api.md section 15).",
    "_include:iterate": "Schedule:actor, together with _include=Slot:schedule.",
    "_summary": "count: the total alone, without entries.",
    "_count": "Page size (default 50, at most 500).",
    "_offset": "Matches to skip.",
    "_format": "json, application/json or application/fhir+json.",
}


def path_template(pattern: URLPattern) -> str:
    """``^v2/(?P<organization_id>...)/fhir/R4/Slot/?$`` -> ``/v2/{organizationId}/fhir/R4/Slot``."""
    regex = pattern.pattern.regex.pattern
    text = _GROUP.sub(lambda m: "{" + _PATH_NAMES.get(m.group(1), m.group(1)) + "}", regex)
    return "/" + text.removeprefix("^").removesuffix("$").removesuffix("/?").replace("\\", "")


def served_routes() -> dict[str, str]:
    """Route name -> OpenAPI path template of every FHIR route but the catch-alls."""
    from fhir_api.urls import urlpatterns

    return {
        p.name: path_template(p)
        for p in urlpatterns
        if isinstance(p, URLPattern) and p.name and p.name not in CATCH_ALL
    }


def _schema(resource_type: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{resource_type}"}


def _json(resource_type: str) -> dict[str, Any]:
    return {"application/fhir+json": {"schema": _schema(resource_type)}}


def _parameters(path: str, route: Route) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"\{(\w+)\}", path)
    ]
    if route.search is not None:
        declared = filters.filters_of(route.search.filterset)
        for name in sorted(route.search.params | views.COMMON_PARAMS):
            declared_filter = declared.get(name)
            # Stored-resource filters describe themselves (help text, value schema); the
            # date windows, includes and paging are documented here.
            schema: dict[str, Any] = (
                dict(declared_filter.schema) if declared_filter else {"type": "string"}
            )
            repeatable = name in route.search.repeatable
            if repeatable:
                schema = {"type": "array", "items": schema}
            out.append(
                {
                    "name": name,
                    "in": "query",
                    "required": False,
                    "description": (
                        declared_filter.extra["help_text"]
                        if declared_filter
                        else _PARAM_DOCS.get(name, "")
                    ),
                    "schema": schema,
                    **({"explode": True} if repeatable else {}),
                }
            )
        out.append(
            {
                "name": "Prefer",
                "in": "header",
                "description": "handling=lenient: ignore unknown parameters instead of 400.",
                "schema": {"type": "string"},
            }
        )
    elif route.method == "get" and route.ok[1] != "CapabilityStatement":
        out.append(
            {
                "name": "If-None-Match",
                "in": "header",
                "description": 'W/"{versionId}": 304 while the resource is unchanged.',
                "schema": {"type": "string"},
            }
        )
    elif route.body == "Parameters":
        out.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "description": "Repeat it to get the earlier booking back instead of a second.",
                "schema": {"type": "string"},
            }
        )
    return out


def _operation(name: str, path: str, route: Route) -> dict[str, Any]:
    status, resource_type = route.ok
    outcome = {"description": "OperationOutcome", "content": _json("OperationOutcome")}
    responses: dict[str, Any] = {
        str(status): {"description": resource_type, "content": _json(resource_type)}
    }
    if status == 201:
        responses["201"]["headers"] = {"Location": {"schema": {"type": "string"}}}
    if route.method == "get" and route.search is None and route.scope:
        responses["200"]["headers"] = {"ETag": {"schema": {"type": "string"}}}
        responses["304"] = {"description": "Not modified (If-None-Match names this version)."}
    codes = ["400", "404"] if not route.scope else ["400", "401", "403", "404"]
    if route.method == "post":
        codes += ["409", "422"]
    for code in codes:
        responses[code] = outcome
    operation: dict[str, Any] = {
        "operationId": name,
        "summary": route.summary,
        "parameters": _parameters(path, route),
        "responses": responses,
    }
    if route.body:
        operation["requestBody"] = {"required": True, "content": _json(route.body)}
    if route.scope:
        operation["security"] = [{"oauth2": [f"system/{route.scope}", f"patient/{route.scope}"]}]
    return operation


_RESOURCES = (
    "Bundle",
    "OperationOutcome",
    "CapabilityStatement",
    "Schedule",
    "Slot",
    "Appointment",
    "AppointmentResponse",
    "Parameters",
    "OperationDefinition",
)


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (the same for every request: built once per process)."""
    routes = served_routes()
    paths: dict[str, Any] = {}
    for name, path in routes.items():
        # A route added without an entry here still appears (operations are POSTed, the
        # rest read); tests/test_openapi.py fails until it gets its own entry.
        route = ROUTES.get(name) or Route(
            "post" if "$" in path else "get", name, ok=(200, "Bundle")
        )
        paths.setdefault(path, {})[route.method] = _operation(name, path, route)
    scopes = {
        f"{context}/{scope}": f"{scope} ({context} client)"
        for scope in sorted({r.scope for r in ROUTES.values() if r.scope})
        for context in ("system", "patient")
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "MediKIT scheduling API (FHIR R4)",
            "version": "2",
            "description": (
                "FHIR R4 Schedule, Slot, Appointment and AppointmentResponse per organisation. "
                "Bodies are FHIR JSON; see docs/api.md in the repository and each tenant's "
                "CapabilityStatement (GET .../metadata)."
            ),
            "license": {"name": "EUPL-1.2", "identifier": "EUPL-1.2"},
        },
        "externalDocs": {"description": "FHIR R4", "url": FHIR_SPEC},
        "paths": paths,
        "components": {
            "schemas": {
                name: {
                    "type": "object",
                    "description": f"A FHIR R4 {name} resource ({FHIR_SPEC}/{name.lower()}.html).",
                    "required": ["resourceType"],
                    "properties": {"resourceType": {"const": name}},
                }
                for name in _RESOURCES
            },
            "securitySchemes": {
                "oauth2": {
                    "type": "oauth2",
                    "description": "Client credentials (secret or signed JWT); SMART v2 scopes.",
                    "flows": {"clientCredentials": {"tokenUrl": "/oauth/token", "scopes": scopes}},
                }
            },
        },
    }


@require_safe
def openapi_json(request: HttpRequest) -> HttpResponse:
    """GET /openapi.json: public, like the CapabilityStatement."""
    return HttpResponse(orjson.dumps(openapi_document()), content_type="application/json")
