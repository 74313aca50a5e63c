"""The tenant's CapabilityStatement (GET metadata)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fhir_api import includes, mappers
from fhir_api.operation_definitions import capability_operations
from scheduling.models import Organization

_SMART_OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
_SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"

_PAGING = [
    ("_count", "number", "Page size (default 50, at most 500)."),
    ("_offset", "number", "Index of the first entry of the page."),
    ("_summary", "token", "count: the Bundle's total alone, without entries."),
]
_EXTENSIONS_DOC = (
    f"Extensions: {mappers.EXT_RECURRENCE} (complex: rrule, timezone, exdate), "
    f"{mappers.EXT_PARENT_SCHEDULE}, {mappers.EXT_PARENT_APPOINTMENT}, "
    f"{mappers.EXT_SLOT_DURATION} (valueDuration in minutes), "
    f"{mappers.EXT_HELD_UNTIL} (valueInstant: when a hold lapses)."
)


def _params(items: list[tuple[str, str, str]]) -> list[dict[str, str]]:
    return [
        {"name": name, "type": kind, "documentation": doc} for name, kind, doc in items + _PAGING
    ]


def _include_values(table: includes.IncludeTable) -> list[str]:
    # Taken from the tables the searches enforce, so this can never promise more or less.
    return [key for param in table.values() for key in param]


#: Reads answer with meta.versionId and ETag, and 304 to a matching If-None-Match; there is
#: no history (vread), so the version is advertised but not readable by version.
_VERSIONED_READ = {"versioning": "versioned", "readHistory": False, "conditionalRead": "not-match"}


def capability_statement(
    *, organization: Organization | None, base_url: str, token_url: str
) -> dict[str, Any]:
    """What this server offers one organisation: resources, searches, operations, security.

    Without an organisation (an anonymous caller) the statement is tenant-neutral: it must
    not tell whether the organisation in the URL exists.

    It changes only with the code, the organisation's name and the URLs, so it is built
    once per process for each of those (the dict is shared: never change it).
    """
    return _statement(organization.name if organization else None, base_url, token_url)


@lru_cache(maxsize=512)
def _statement(name: str | None, base_url: str, token_url: str) -> dict[str, Any]:
    description = "MediKIT scheduling" + (f" for {name}" if name is not None else "")
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-01-01",
        "publisher": "MediKIT",
        "kind": "instance",
        "software": {"name": "MediKIT scheduling server", "version": "2"},
        "implementation": {
            "description": description,
            "url": base_url,
        },
        "fhirVersion": "4.0.1",
        "format": ["json", "application/fhir+json"],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "Searches with a date window expand recurring Schedules and Appointments "
                    "into generated occurrences. " + _EXTENSIONS_DOC
                ),
                "security": {
                    "extension": [
                        {
                            "url": _SMART_OAUTH_URIS,
                            "extension": [{"url": "token", "valueUri": token_url}],
                        }
                    ],
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": _SECURITY_SERVICE,
                                    "code": "SMART-on-FHIR",
                                    "display": "SMART-on-FHIR",
                                }
                            ],
                            "text": "OAuth 2.0 client credentials (SMART Backend Services)",
                        }
                    ],
                    "description": (
                        f"Get a token at POST {token_url} (client credentials) and send "
                        "'Authorization: Bearer <token>'."
                    ),
                },
                "resource": [
                    {
                        "type": "Schedule",
                        "documentation": _EXTENSIONS_DOC,
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        **_VERSIONED_READ,
                        "searchInclude": _include_values(includes.SCHEDULE),
                        "searchParam": _params(
                            [
                                ("_id", "token", "Logical id(s), comma = OR; alias 'id'."),
                                ("service-category", "token", "code, system|code or |code."),
                                ("date", "date", "Window for recurrence expansion."),
                                ("actor", "reference", "PractitionerRole/x or Practitioner/x."),
                                ("active", "token", "true or false."),
                            ]
                        ),
                    },
                    {
                        "type": "Slot",
                        "documentation": (
                            "_include=Slot:schedule, and _include:iterate=Schedule:actor "
                            "with it for the schedules' actors."
                        ),
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        **_VERSIONED_READ,
                        "searchInclude": _include_values(includes.SLOT),
                        "searchParam": _params(
                            [
                                ("start", "date", "Slot generation window (default 7 days)."),
                                ("schedule", "reference", "Schedule/x or x."),
                                ("service-category", "token", "code, system|code or |code."),
                                ("status", "token", "free, busy, ... comma = OR."),
                            ]
                        ),
                    },
                    {
                        "type": "Appointment",
                        "documentation": (
                            "Below Patient/{id}/Appointment only. " + _EXTENSIONS_DOC
                        ),
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        **_VERSIONED_READ,
                        "searchInclude": _include_values(includes.APPOINTMENT),
                        "searchParam": _params(
                            [
                                ("_id", "token", "Logical id(s), comma = OR; alias 'id'."),
                                ("date", "date", "Window for recurrence expansion."),
                                ("status", "token", "Comma = OR."),
                            ]
                        ),
                        "operation": capability_operations(base_url=base_url),
                    },
                    {
                        "type": "OperationDefinition",
                        "documentation": (
                            "The definitions of the operations named above, readable by "
                            "OperationDefinition/{name}."
                        ),
                        "interaction": [{"code": "read"}],
                    },
                    {
                        "type": "AppointmentResponse",
                        "documentation": "POST below Patient/{id}/AppointmentResponse.",
                        "interaction": [{"code": "create"}],
                    },
                ],
            }
        ],
    }
