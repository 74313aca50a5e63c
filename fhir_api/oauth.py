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
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus

import jwt
from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse, UnreadablePostError
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from fhir_api import throttle
from fhir_api.auth import current_scopes
from fhir_api.errors import django_outcome_response, issue, operation_outcome
from fhir_api.middleware import has_control_characters
from fhir_api.models import ApiClient, UsedAssertion, secret_digest
from fhir_api.tokens import issue_access_token
from medikit.clientip import client_address

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
# RFC 6749 error -> FHIR IssueType code of the OperationOutcome members of an error body.
_ISSUE_CODES = {
    "invalid_client": "login",
    "invalid_request": "invalid",
    "unsupported_grant_type": "not-supported",
    "invalid_scope": "forbidden",
    "slow_down": "throttled",
}


class OAuthError(Exception):
    """An RFC 6749 error response: ``error`` code, description and HTTP status."""

    def __init__(
        self,
        error: str,
        description: str,
        *,
        status: int = 400,
        basic: bool = False,
        expression: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.basic = basic
        self.expression = expression
        self.retry_after = retry_after


def _slow_down(wait: int) -> OAuthError:
    return OAuthError(
        "slow_down",
        "Too many failed client authentications from this address or for this "
        f"client id; retry in {wait} seconds.",
        status=429,
        retry_after=wait,
    )


def flood_refusal(request: HttpRequest) -> HttpResponse | None:
    """The 429 for a token request from an address this process knows is over its limit.

    Called by ``fhir_api.middleware.TokenFloodMiddleware`` before sessions, locale,
    CSRF, authentication, axes and URL resolution: a brute force that has reached the
    address limit then costs the server a fraction of a normal request, so a flood of
    refused attempts leaves more of the machine to everyone else. The answer is the
    same one the token view gives (same function), only earlier.
    """
    wait = throttle.known_wait_seconds(limit=throttle.address_limit(client_address(request) or "-"))
    if wait is None:
        return None
    logger.info("token request refused: slow_down (known flood)")
    return _error_response(_slow_down(wait))


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return response


def _error_response(exc: OAuthError) -> HttpResponse:
    # RFC 6749 5.2 members for OAuth clients, and the same error as an OperationOutcome
    # (docs/api.md section 3: every error is one) for clients that read FHIR errors.
    outcome_issue = issue(
        exc.description,
        code=_ISSUE_CODES.get(exc.error, "invalid"),
        expression=[exc.expression] if exc.expression else None,
    )
    response = JsonResponse(
        {
            "error": exc.error,
            "error_description": exc.description,
            "resourceType": "OperationOutcome",
            "issue": [outcome_issue],
        },
        status=exc.status,
    )
    if exc.retry_after is not None:
        response["Retry-After"] = str(exc.retry_after)
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
    client_id, secret = unquote_plus(client_id), unquote_plus(secret)
    if has_control_characters(client_id) or has_control_characters(secret):
        raise OAuthError(
            "invalid_request",
            "The Basic credentials contain a control character (such as NUL).",
            expression="Authorization",
        )
    return client_id, secret


def _client_by_secret(client_id: str, secret: str, *, basic: bool) -> ApiClient:
    client = ApiClient.objects.filter(client_id=client_id).first()
    if client is None:
        # The same work as for a known client, so client ids cannot be found by timing.
        secret_digest(secret)
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


#: Verified against when the assertion's issuer is unknown, so the answer and the work
#: are the same as for a known client whose keys do not match (created on first use).
_DUMMY_KEY: list[Any] = []


def _verify_against_dummy_key(assertion: str, alg: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    if not _DUMMY_KEY:
        _DUMMY_KEY.append(ec.generate_private_key(ec.SECP384R1()).public_key())
    with contextlib.suppress(jwt.PyJWTError, ValueError, TypeError):
        jwt.decode(assertion, key=_DUMMY_KEY[0], algorithms=[alg], options={"verify_aud": False})


_NO_MATCHING_KEY = "The client assertion's signature does not match any registered key."


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
    if has_control_characters(client_id):
        raise OAuthError(
            "invalid_request",
            "The client assertion's 'iss' contains a control character (such as NUL).",
            expression="client_assertion.iss",
        )
    form_client_id = request.POST.get("client_id")
    if form_client_id is not None and form_client_id != client_id:
        raise _invalid_client("client_id does not match the client assertion's issuer.")
    client = ApiClient.objects.filter(client_id=client_id).first()
    if client is None or not _usable(client):
        # Unknown, inactive and revoked clients answer exactly as a key mismatch does.
        _verify_against_dummy_key(assertion, alg)
        raise _invalid_client(_NO_MATCHING_KEY)
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
        except (jwt.PyJWTError, ValueError, TypeError, KeyError, OverflowError):
            # A key of the wrong type or a bad signature: try the next registered key.
            continue
    if claims is None:
        raise _invalid_client(_NO_MATCHING_KEY)
    now = timezone.now()
    exp = claims["exp"]
    # Compared as a number before any conversion: exp = 1e18 would overflow a datetime.
    if (
        not isinstance(exp, int | float)
        or isinstance(exp, bool)
        or exp > now.timestamp() + MAX_ASSERTION_LIFETIME.total_seconds()
    ):
        raise _invalid_client("The client assertion may be valid for at most 5 minutes.")
    expires_at = datetime.fromtimestamp(int(exp), tz=UTC)
    jti = claims["jti"]
    if not isinstance(jti, str) or not jti or len(jti) > 255:
        raise _invalid_client("The client assertion's 'jti' must be a string of 1-255 chars.")
    if has_control_characters(jti):
        raise OAuthError(
            "invalid_request",
            "The client assertion's 'jti' contains a control character (such as NUL).",
            expression="client_assertion.jti",
        )
    UsedAssertion.objects.filter(client=client, expires_at__lt=now).delete()
    try:
        with transaction.atomic():
            UsedAssertion.objects.create(client=client, jti=jti, expires_at=expires_at)
    except IntegrityError:
        raise _invalid_client("The client assertion has been used before.") from None
    return client


def _claimed_client_id(request: HttpRequest) -> str | None:
    """The client id a token request claims (not verified): what its failures count under."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return unquote_plus(decoded.partition(":")[0])
    assertion = request.POST.get("client_assertion")
    if assertion:
        try:
            issuer = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            return None
        return issuer if isinstance(issuer, str) else None
    return request.POST.get("client_id")


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
        try:
            form = request.POST
        except (SuspiciousOperation, UnreadablePostError):
            raise OAuthError(
                "invalid_request",
                "The form could not be read: it is truncated or has more than 1000 fields.",
            ) from None
        for name, values in form.lists():
            if has_control_characters(name) or any(map(has_control_characters, values)):
                raise OAuthError(
                    "invalid_request",
                    f"Form parameter '{name}' contains a control character (such as NUL).",
                    expression=name if not has_control_characters(name) else None,
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
        limits = throttle.token_limits(
            client_id=_claimed_client_id(request), address=client_address(request) or "-"
        )
        wait = throttle.token_wait_seconds(limits=limits)
        if wait is not None:
            raise _slow_down(wait)
        try:
            client = _authenticate_client(request)
        except OAuthError as exc:
            if exc.error == "invalid_client":
                throttle.token_failure_record(limits=limits)
            raise
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


@csrf_exempt  # read-only and token-free: unsafe methods get 405, not a CSRF page
def smart_configuration(request: HttpRequest, organization_id: str | None = None) -> HttpResponse:
    """GET /.well-known/smart-configuration (also under each organisation's FHIR base).

    The same document for every organisation id, existing or not: discovery is how a
    client finds the token endpoint, so it must work without a token, and a 404 for
    unknown ids would let anyone enumerate the organisations.
    """
    if request.method not in ("GET", "HEAD"):
        return django_outcome_response(
            405,
            operation_outcome(
                severity="error",
                code="not-supported",
                diagnostics="The SMART configuration is read with GET.",
            ),
            {"Allow": "GET, HEAD"},
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
