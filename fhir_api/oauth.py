"""OAuth 2.0 token endpoint (client credentials) and SMART configuration (docs/api.md section 8).

A small endpoint of our own rather than django-oauth-toolkit: DOT has no private_key_jwt
client authentication and no notion of binding a client to organisations or a patient.

Clients authenticate with ``client_secret_basic``, ``client_secret_post`` or, as in SMART
Backend Services, ``private_key_jwt`` (an RS384/ES384 JWT signed with a key from the
client's registered JWKS). Errors follow RFC 6749 section 5.2. Secrets, assertions and
tokens are never logged and never echoed in an error body.
"""

from __future__ import annotations

import base64
import binascii
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus

import jwt
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from fhir_api.auth import current_scopes
from fhir_api.models import ApiClient, UsedAssertion
from fhir_api.tokens import issue_access_token
from scheduling.models import Organization

logger = logging.getLogger(__name__)

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ("RS384", "ES384")
# SMART Backend Services: an assertion may live at most five minutes.
MAX_ASSERTION_LIFETIME = timedelta(minutes=5)
SUPPORTED_SCOPES = [
    f"{context}/{resource}.{permissions}"
    for context in ("system", "patient", "user")
    for resource, permissions in (
        ("Schedule", "rs"),
        ("Slot", "rs"),
        ("Appointment", "rs"),
        ("Appointment", "c"),
        ("AppointmentResponse", "c"),
    )
]
# Compared against when a client id is unknown, so the response takes as long as for a
# known client and client ids cannot be discovered by timing.
_DUMMY_SECRET_HASH: list[str] = []


class OAuthError(Exception):
    """An RFC 6749 error response: ``error`` code, description and HTTP status."""

    def __init__(
        self, error: str, description: str, *, status: int = 400, basic: bool = False
    ) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.basic = basic


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return response


def _error_response(exc: OAuthError) -> HttpResponse:
    response = JsonResponse(
        {"error": exc.error, "error_description": exc.description}, status=exc.status
    )
    if exc.status == 401:
        # RFC 6749 5.2: answer a failed Basic authentication with the Basic challenge.
        response["WWW-Authenticate"] = (
            'Basic realm="medikit"' if exc.basic else 'Bearer realm="medikit"'
        )
    return _no_store(response)


def token_endpoint_url(request: HttpRequest) -> str:
    """The absolute URL of the token endpoint: the ``aud`` a client assertion must carry."""
    configured: str = getattr(settings, "OAUTH_TOKEN_ENDPOINT_URL", "")
    return configured or request.build_absolute_uri(reverse("oauth-token"))


def _invalid_client(description: str, *, basic: bool = False) -> OAuthError:
    return OAuthError("invalid_client", description, status=401, basic=basic)


def _usable(client: ApiClient | None) -> bool:
    return client is not None and client.active and client.revoked_at is None


def _check_dummy_secret(secret: str) -> None:
    from django.contrib.auth.hashers import check_password

    if not _DUMMY_SECRET_HASH:
        _DUMMY_SECRET_HASH.append(make_password("not-a-client-secret"))
    check_password(secret, _DUMMY_SECRET_HASH[0])


def _basic_credentials(request: HttpRequest) -> tuple[str, str] | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise OAuthError(
            "invalid_request",
            "The token endpoint accepts only HTTP Basic client authentication in the "
            "Authorization header.",
        )
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _invalid_client(
            "The Basic credentials are not valid base64 of 'client_id:client_secret'.",
            basic=True,
        ) from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise _invalid_client(
            "The Basic credentials must be 'client_id:client_secret'.", basic=True
        )
    # RFC 6749 2.3.1: both parts are form-urlencoded before they are joined.
    return unquote_plus(client_id), unquote_plus(secret)


def _client_by_secret(client_id: str, secret: str, *, basic: bool) -> ApiClient:
    client = ApiClient.objects.filter(client_id=client_id).first()
    if client is None:
        _check_dummy_secret(secret)
        raise _invalid_client("Client authentication failed.", basic=basic)
    if not client.check_secret(secret) or not _usable(client):
        # One message for a wrong secret and a revoked client: neither tells an attacker
        # anything about which clients exist.
        raise _invalid_client("Client authentication failed.", basic=basic)
    return client


def _jwks_keys(client: ApiClient) -> list[dict[str, Any]]:
    jwks = client.jwks or {}
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    return [key for key in keys or [] if isinstance(key, dict)]


def _client_by_assertion(request: HttpRequest, assertion: str) -> ApiClient:
    failed = _invalid_client("The client assertion is not valid.")
    try:
        header = jwt.get_unverified_header(assertion)
        # Read unverified only to find whose keys to verify with; nothing is trusted yet.
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise failed from None
    alg = header.get("alg")
    if alg not in ASSERTION_ALGORITHMS:
        raise _invalid_client(
            f"The client assertion must be signed with one of {', '.join(ASSERTION_ALGORITHMS)}."
        )
    client_id = unverified.get("iss")
    if not isinstance(client_id, str) or unverified.get("sub") != client_id:
        raise _invalid_client("The client assertion's 'iss' and 'sub' must both be the client id.")
    form_client_id = request.POST.get("client_id")
    if form_client_id is not None and form_client_id != client_id:
        raise _invalid_client("client_id does not match the client assertion's issuer.")
    client = ApiClient.objects.filter(client_id=client_id).first()
    if client is None or not _usable(client):
        raise failed
    kid = header.get("kid")
    candidates = [key for key in _jwks_keys(client) if kid is None or key.get("kid") == kid]
    claims: dict[str, Any] | None = None
    for candidate in candidates:
        try:
            key = jwt.PyJWK.from_dict(candidate, algorithm=alg)
            claims = jwt.decode(
                assertion,
                key=key,
                algorithms=[alg],
                audience=token_endpoint_url(request),
                issuer=client_id,
                options={"require": ["exp", "iss", "sub", "aud", "jti"]},
            )
            break
        except jwt.ExpiredSignatureError:
            raise _invalid_client("The client assertion has expired.") from None
        except jwt.InvalidAudienceError:
            raise _invalid_client(
                "The client assertion's 'aud' must be the token endpoint URL."
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise _invalid_client(f"The client assertion lacks the '{exc.claim}' claim.") from None
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            # A key of the wrong type or a bad signature: try the next registered key.
            continue
    if claims is None:
        raise _invalid_client("The client assertion's signature does not match any registered key.")
    now = timezone.now()
    expires_at = datetime.fromtimestamp(int(claims["exp"]), tz=UTC)
    if expires_at > now + MAX_ASSERTION_LIFETIME:
        raise _invalid_client("The client assertion may be valid for at most 5 minutes.")
    jti = claims["jti"]
    if not isinstance(jti, str) or not jti or len(jti) > 255:
        raise _invalid_client("The client assertion's 'jti' must be a string of 1-255 chars.")
    UsedAssertion.objects.filter(client=client, expires_at__lt=now).delete()
    try:
        with transaction.atomic():
            UsedAssertion.objects.create(client=client, jti=jti, expires_at=expires_at)
    except IntegrityError:
        raise _invalid_client("The client assertion has been used before.") from None
    return client


def _authenticate_client(request: HttpRequest) -> ApiClient:
    basic = _basic_credentials(request)
    form_secret = request.POST.get("client_secret")
    assertion_type = request.POST.get("client_assertion_type")
    assertion = request.POST.get("client_assertion")
    methods = sum(
        (basic is not None, form_secret is not None, assertion is not None or bool(assertion_type))
    )
    if methods > 1:
        raise OAuthError(
            "invalid_request", "Use exactly one client authentication method (RFC 6749 2.3)."
        )
    if basic is not None:
        return _client_by_secret(*basic, basic=True)
    if form_secret is not None:
        client_id = request.POST.get("client_id")
        if not client_id:
            raise OAuthError("invalid_request", "client_secret needs client_id in the form.")
        return _client_by_secret(client_id, form_secret, basic=False)
    if assertion is not None or assertion_type:
        if assertion_type != JWT_BEARER:
            raise OAuthError("invalid_request", f"client_assertion_type must be '{JWT_BEARER}'.")
        if not assertion:
            raise OAuthError("invalid_request", "client_assertion is missing.")
        return _client_by_assertion(request, assertion)
    raise OAuthError(
        "invalid_client",
        "Client authentication is required: HTTP Basic, client_id and client_secret in the "
        "form, or a client_assertion (private_key_jwt).",
        status=401,
        basic=True,
    )


def granted_scopes(client: ApiClient, requested: str | None) -> frozenset[str]:
    """Requested scopes the client holds (all of the client's when none are requested).

    A requested scope counts as held when one of the client's scopes covers it, so a
    client with ``system/*.rs`` may ask for ``system/Slot.rs``. Unknown or unheld scopes
    are dropped, as RFC 6749 3.3 allows.
    """
    if requested is None or not requested.strip():
        return client.scope_set
    return current_scopes(requested.split(), client.scope_set)


@csrf_exempt
@never_cache
def token(request: HttpRequest) -> HttpResponse:
    """POST /oauth/token: the client-credentials grant."""
    try:
        if request.method != "POST":
            response = _error_response(
                OAuthError("invalid_request", "Use POST for the token endpoint.", status=405)
            )
            response["Allow"] = "POST"
            return response
        content_type = (request.content_type or "").lower()
        if content_type != "application/x-www-form-urlencoded":
            raise OAuthError(
                "invalid_request",
                "The token request must be application/x-www-form-urlencoded.",
            )
        repeated = sorted(name for name in request.POST if len(request.POST.getlist(name)) > 1)
        if repeated:
            # RFC 6749 3.2: parameters must not be repeated; which copy wins is ambiguous.
            raise OAuthError("invalid_request", f"Repeated parameter(s): {', '.join(repeated)}.")
        grant_type = request.POST.get("grant_type")
        if not grant_type:
            raise OAuthError("invalid_request", "grant_type is missing.")
        if grant_type != "client_credentials":
            raise OAuthError(
                "unsupported_grant_type", "Only grant_type=client_credentials is supported."
            )
        client = _authenticate_client(request)
        scopes = granted_scopes(client, request.POST.get("scope"))
        if not scopes:
            raise OAuthError(
                "invalid_scope", "None of the requested scopes is granted to this client."
            )
        raw, access_token = issue_access_token(client=client, scopes=scopes)
    except OAuthError as exc:
        logger.info("token request refused: %s", exc.error)
        return _error_response(exc)
    logger.info("token issued to client %s", client.client_id)
    return _no_store(
        JsonResponse(
            {
                "access_token": raw,
                "token_type": "bearer",
                "expires_in": max(
                    0, int((access_token.expires_at - timezone.now()).total_seconds())
                ),
                "scope": access_token.scopes,
            }
        )
    )


@require_GET
def smart_configuration(request: HttpRequest, organization_id: str | None = None) -> HttpResponse:
    """GET /.well-known/smart-configuration (also under each organisation's FHIR base)."""
    if organization_id is not None and not Organization.objects.filter(pk=organization_id).exists():
        return JsonResponse(
            {
                "resourceType": "OperationOutcome",
                "issue": [
                    {
                        "severity": "error",
                        "code": "not-found",
                        "diagnostics": f"Organization '{organization_id}' was not found.",
                    }
                ],
            },
            status=404,
            content_type="application/fhir+json",
        )
    return JsonResponse(
        {
            "token_endpoint": token_endpoint_url(request),
            "token_endpoint_auth_methods_supported": [
                "private_key_jwt",
                "client_secret_basic",
                "client_secret_post",
            ],
            "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
            "grant_types_supported": ["client_credentials"],
            "scopes_supported": SUPPORTED_SCOPES,
            "capabilities": ["client-confidential-asymmetric", "client-confidential-symmetric"],
        }
    )
