"""Who is calling, and may they do this? (CONTRACT section 8)

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

from dataclasses import dataclass
from typing import Literal

from django.http import HttpRequest
from django.utils import timezone

from fhir_api.models import AccessToken, token_digest
from scheduling.errors import NotFound

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


class AuthenticationRequired(Exception):
    """No usable credentials: answered 401 with a WWW-Authenticate challenge."""

    def __init__(self, message: str, *, error: str = "invalid_token") -> None:
        super().__init__(message)
        self.message = message
        self.error = error


class ScopeMissing(Exception):
    """Authenticated, but the token's scopes do not cover the interaction: 403."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class Principal:
    client_id: str
    organization_ids: frozenset[str]
    patient_id: str | None  # set for a patient-facing app: it reaches only this patient
    scopes: frozenset[str]

    def has_scope(self, resource_type: str, interaction: Interaction) -> bool:
        letter = _INTERACTION_LETTER[interaction]
        for scope in self.scopes:
            context, _, rest = scope.partition("/")
            if context not in ("system", "patient", "user") or not rest:
                continue
            resource, _, permissions = rest.partition(".")
            if resource not in (resource_type, "*"):
                continue
            permissions = permissions.split("?", 1)[0]
            permissions = _V1_PERMISSIONS.get(permissions, permissions)
            if letter in permissions:
                return True
        return False


def bearer_token(request: HttpRequest) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthenticationRequired(
            "The Authorization header must be 'Bearer <access token>'.", error="invalid_request"
        )
    return value.strip()


def authenticate(request: HttpRequest) -> Principal:
    """The principal behind the request's bearer token, or AuthenticationRequired."""
    raw = bearer_token(request)
    if raw is None:
        raise AuthenticationRequired(
            "This endpoint needs an access token: obtain one at POST /oauth/token "
            "(client credentials) and send 'Authorization: Bearer <token>'.",
            error="invalid_request",
        )
    token = (
        AccessToken.objects.select_related("client")
        .filter(digest=token_digest(raw))
        .only("expires_at", "scopes", "client__client_id", "client__active",
              "client__patient_fhir_id", "client__revoked_at")
        .first()
    )
    if token is None or not token.client.active or token.client.revoked_at is not None:
        raise AuthenticationRequired("The access token is not valid.")
    if token.expires_at <= timezone.now():
        raise AuthenticationRequired("The access token has expired: request a new one.")
    organization_ids = frozenset(
        token.client.organizations.values_list("id", flat=True)
    )
    return Principal(
        client_id=token.client.client_id,
        organization_ids=organization_ids,
        patient_id=token.client.patient_fhir_id or None,
        scopes=frozenset(token.scopes.split()),
    )


def check_access(
    principal: Principal,
    *,
    organization_id: str,
    patient_id: str | None,
    resource_type: str,
    interaction: Interaction,
) -> None:
    """Raise NotFound for foreign organisations/patients, ScopeMissing for a missing scope."""
    if organization_id not in principal.organization_ids:
        raise NotFound(f"Organization '{organization_id}' was not found.")
    if principal.patient_id is not None:
        if patient_id is None and resource_type in ("Appointment", "AppointmentResponse"):
            raise NotFound("Not found.")
        if patient_id is not None and patient_id != principal.patient_id:
            raise NotFound(f"Patient '{patient_id}' was not found.")
    if not principal.has_scope(resource_type, interaction):
        raise ScopeMissing(
            f"The access token's scopes do not allow {interaction} on {resource_type}: "
            f"it needs e.g. system/{resource_type}.{_INTERACTION_LETTER[interaction]}."
        )
