"""Who is calling, and may they do this? (docs/api.md section 8)

``authenticate`` turns a bearer token into a :class:`Principal`; ``check_access`` decides
whether that principal may perform one interaction on one organisation (and patient).
Both are called from ONE place, ``fhir_api.tenancy``, so no view can skip them.

Rules, in the order they are checked (the order matters for what leaks):
1. no, unknown, revoked or expired token -> 401 (with WWW-Authenticate);
2. organisation not one of the client's, or a patient path of another patient -> 404,
   exactly as for ids that do not exist, so foreign ids cannot be told from missing ones;
3. no scope for the interaction -> 403.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from django.db.models import BooleanField, ExpressionWrapper, Q, QuerySet
from django.http import HttpRequest

from fhir_api.errors import ApiError, issue
from fhir_api.models import AccessToken, token_digest
from scheduling import selectors
from scheduling.db.compiled_query import CompiledQuery, EpochSeconds
from scheduling.errors import NotFound
from scheduling.models import Organization

Interaction = Literal["read", "search", "create", "update", "delete"]

_INTERACTION_LETTER: dict[str, str] = {
    "create": "c",
    "read": "r",
    "update": "u",
    "delete": "d",
    "search": "s",
}
# SMART v1 names, still sent by many clients.
_V1_PERMISSIONS: dict[str, str] = {"read": "rs", "write": "cud", "*": "cruds"}
#: Resource types a scope may name; anything else is a typo that would silently grant nothing.
SCOPE_RESOURCE_TYPES = frozenset({"Schedule", "Slot", "Appointment", "AppointmentResponse", "*"})
SCOPE_CONTEXTS = frozenset({"system", "patient", "user"})
# SMART v2 permissions are a subsequence of "cruds" (order is fixed by the spec).
_V2_PERMISSIONS = re.compile(r"^c?r?u?d?s?$")


@dataclass(frozen=True, slots=True)
class ParsedScope:
    context: str
    resource: str
    letters: frozenset[str]


@lru_cache(maxsize=1024)  # a pure function of a short string, asked on every request
def parse_scope(scope: str) -> ParsedScope | None:
    """Parse one SMART scope (v2 ``.cruds`` or v1 ``.read``/``.write``/``.*``).

    Returns None for anything that is not a resource scope we understand (including
    ``launch``, ``openid`` and unknown resource types), so callers can drop or refuse it.

    >>> parse_scope("system/Slot.rs")
    ParsedScope(context='system', resource='Slot', letters=frozenset({'r', 's'}))
    >>> parse_scope("patient/Appointment.write").letters == frozenset("cud")
    True
    >>> parse_scope("system/Slot.sr") is None  # v2 letters must keep the order c r u d s
    True
    """
    context, slash, rest = scope.partition("/")
    if not slash or context not in SCOPE_CONTEXTS:
        return None
    resource, dot, permissions = rest.partition(".")
    if not dot or resource not in SCOPE_RESOURCE_TYPES:
        return None
    # SMART v2 granular scopes (``?category=...``) narrow a grant; we have no such
    # sub-categories, so honouring the base permission would widen it: refuse them.
    if "?" in permissions:
        return None
    if permissions in _V1_PERMISSIONS:
        letters = _V1_PERMISSIONS[permissions]
    elif permissions and _V2_PERMISSIONS.match(permissions):
        letters = permissions
    else:
        return None
    return ParsedScope(context=context, resource=resource, letters=frozenset(letters))


def scope_covers(granted: ParsedScope, wanted: ParsedScope) -> bool:
    """True when ``granted`` allows everything ``wanted`` asks for (same context)."""
    return (
        granted.context == wanted.context
        and granted.resource in (wanted.resource, "*")
        and wanted.letters <= granted.letters
    )


class AuthenticationRequired(ApiError):
    """No usable credentials: answered 401 with a WWW-Authenticate challenge."""

    status = 401

    def __init__(self, message: str, *, error: str = "invalid_token") -> None:
        description = message.replace('"', "'")
        super().__init__(
            [issue(message, code="login")],
            headers={
                "WWW-Authenticate": (
                    f'Bearer realm="medikit", error="{error}", error_description="{description}"'
                )
            },
        )
        self.error = error


class ScopeMissing(ApiError):
    """Authenticated, but the token's scopes do not cover the interaction: 403."""

    status = 403

    def __init__(self, message: str) -> None:
        super().__init__([issue(message, code="forbidden")])


@dataclass(frozen=True, slots=True)
class Principal:
    client_id: str
    organization_ids: frozenset[str]
    patient_id: str | None  # set for a patient-facing app: it reaches only this patient
    scopes: frozenset[str]

    def has_scope(self, resource_type: str, interaction: Interaction) -> bool:
        """Whether any of the token's scopes allows ``interaction`` on ``resource_type``.

        ``patient/`` scopes only count for a client bound to a patient: without a patient
        in context they would otherwise reach every patient of the organisation.
        """
        letter = _INTERACTION_LETTER[interaction]
        for scope in self.scopes:
            parsed = parse_scope(scope)
            if parsed is None or parsed.resource not in (resource_type, "*"):
                continue
            if parsed.context == "patient" and self.patient_id is None:
                continue
            if letter in parsed.letters:
                return True
        return False


def bearer_token(request: HttpRequest) -> str | None:
    header: str = request.META.get("HTTP_AUTHORIZATION", "")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthenticationRequired(
            "The Authorization header must be 'Bearer <access token>'.", error="invalid_request"
        )
    return value.strip()


def _token_columns() -> dict[str, Any]:
    """This module's own columns of the token query, by name (their order is the dict's)."""
    return {
        "expires_at": EpochSeconds("expires_at"),
        "scopes": "scopes",
        "client_id": "client__client_id",
        "active": "client__active",
        "patient_fhir_id": "client__patient_fhir_id",
        "revoked": ExpressionWrapper(
            Q(client__revoked_at__isnull=False), output_field=BooleanField()
        ),
        "client_scopes": "client__scopes",
        "organization_id": "client__apiclientorganization__organization_id",
    }


_OWN = {name: index for index, name in enumerate(_token_columns())}
#: Where the organisation's columns start; selectors.organization_from_row decodes them,
#: so their order stays selectors' business.
_TOKEN_COLUMNS = len(_OWN)


#: Where the path's patient's columns start, when the query has them.
_PATIENT_COLUMNS = _TOKEN_COLUMNS + len(selectors.organization_columns(""))


def _token_rows(
    digest: str, organization_id: str, patient_id: str | None = None
) -> QuerySet[AccessToken]:
    return AccessToken.objects.filter(digest=digest).values_list(
        *_token_columns().values(),
        # The organisation the request names rides along: one round trip for both.
        *selectors.organization_columns(organization_id),
        # And below Patient/{id}, that patient's key.
        *(selectors.patient_columns(organization_id, patient_id) if patient_id is not None else ()),
    )


#: Every request runs one of them: compiled once per process (integers, text and booleans
#: only). The second for the paths below Patient/{id}.
_TOKEN_QUERY = CompiledQuery(_token_rows, arity=2)
_TOKEN_AND_PATIENT_QUERY = CompiledQuery(_token_rows, arity=3)


def authenticate(request: HttpRequest) -> Principal:
    """The principal behind the request's bearer token, or AuthenticationRequired."""
    return _principal(_token_query_rows(request, ""))


def authenticate_for(
    request: HttpRequest, organization_id: str
) -> tuple[Principal, Organization | None]:
    """:func:`authenticate`, and the organisation ``organization_id`` (None when there is no
    such organisation), in one query. Access to it is not checked here."""
    rows = _token_query_rows(request, organization_id)
    principal = _principal(rows)
    return principal, selectors.organization_from_row(rows[0][_TOKEN_COLUMNS:])


def authenticate_for_patient(
    request: HttpRequest, organization_id: str, patient_id: str
) -> tuple[Principal, Organization | None, selectors.PatientKey | None]:
    """:func:`authenticate_for`, and the key of the organisation's patient ``patient_id``
    (None when there is no such patient), still in one query. Access to neither is checked
    here."""
    rows = _token_query_rows(request, organization_id, patient_id)
    principal = _principal(rows)
    first = rows[0]
    return (
        principal,
        selectors.organization_from_row(first[_TOKEN_COLUMNS:_PATIENT_COLUMNS]),
        selectors.patient_key_from_row(first[_PATIENT_COLUMNS:]),
    )


def _token_query_rows(
    request: HttpRequest, organization_id: str, patient_id: str | None = None
) -> list[tuple[Any, ...]]:
    raw = bearer_token(request)
    if raw is None:
        raise AuthenticationRequired(
            "This endpoint needs an access token: obtain one at POST /oauth/token "
            "(client credentials) and send 'Authorization: Bearer <token>'.",
            error="invalid_request",
        )
    # One query for the token, its client and the client's organisations: one row per
    # organisation (a single row with None when it has none), no model instances.
    if patient_id is None:
        return _TOKEN_QUERY.rows(token_digest(raw), organization_id)
    return _TOKEN_AND_PATIENT_QUERY.rows(token_digest(raw), organization_id, patient_id)


def _principal(rows: list[tuple[Any, ...]]) -> Principal:
    if not rows:
        raise AuthenticationRequired("The access token is not valid.")
    first = rows[0]
    if not first[_OWN["active"]] or first[_OWN["revoked"]]:
        raise AuthenticationRequired("The access token is not valid.")
    if first[_OWN["expires_at"]] <= time.time():
        raise AuthenticationRequired("The access token has expired: request a new one.")
    column = _OWN["organization_id"]
    organization_ids = frozenset(row[column] for row in rows if row[column] is not None)
    return Principal(
        client_id=first[_OWN["client_id"]],
        organization_ids=organization_ids,
        patient_id=first[_OWN["patient_fhir_id"]] or None,
        scopes=_current_scopes(first[_OWN["scopes"]], first[_OWN["client_scopes"]]),
    )


@lru_cache(maxsize=1024)
def _current_scopes(token_scopes: str, client_scopes: str) -> frozenset[str]:
    # Keyed by the stored strings: a client's tokens share one entry per scope set.
    return current_scopes(token_scopes.split(), frozenset(client_scopes.split()))


def current_scopes(token_scopes: Iterable[str], client_scopes: Iterable[str]) -> frozenset[str]:
    """The token's scopes the client still holds.

    A token keeps the scopes it was issued with, but narrowing a client (in the admin)
    must take effect at once, not when its tokens expire.
    """
    held = [parsed for scope in client_scopes if (parsed := parse_scope(scope))]
    kept: set[str] = set()
    for scope in token_scopes:
        wanted = parse_scope(scope)
        if wanted is not None and any(scope_covers(have, wanted) for have in held):
            kept.add(scope)
    return frozenset(kept)


def check_access(
    principal: Principal,
    *,
    organization_id: str,
    patient_id: str | None,
    resource_type: str,
    interaction: Interaction,
    also: tuple[Interaction, ...] = (),
) -> None:
    """Raise NotFound for foreign organisations/patients, ScopeMissing for a missing scope.

    ``also``: further interactions any one of which grants access as well.
    """
    if organization_id not in principal.organization_ids:
        raise NotFound(f"Organization '{organization_id}' was not found.")
    if principal.patient_id is not None:
        if patient_id is None and resource_type in ("Appointment", "AppointmentResponse"):
            raise NotFound("Not found.")
        if patient_id is not None and patient_id != principal.patient_id:
            raise NotFound(f"Patient '{patient_id}' was not found.")
    if not any(principal.has_scope(resource_type, i) for i in (interaction, *also)):
        raise ScopeMissing(
            f"The access token's scopes do not allow {interaction} on {resource_type}: "
            f"it needs e.g. system/{resource_type}.{_INTERACTION_LETTER[interaction]}."
        )
