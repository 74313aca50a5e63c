"""HTTP hardening that must hold for every response, whatever view produced it."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth import middleware as auth_middleware
from django.contrib.messages import middleware as messages_middleware
from django.contrib.sessions import middleware as sessions_middleware
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse
from django.middleware import locale as locale_middleware
from django.urls import reverse
from django.utils import translation
from django.utils.deprecation import MiddlewareMixin

from fhir_api.errors import (
    API_PREFIXES,
    InvalidRequest,
    django_outcome_response,
    error_response,
    issue,
)

# The API serves JSON only: nothing in a response may load or frame anything.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
# The admin loads its own static files; Django's admin styles use inline style attributes.
ADMIN_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'self'; "
    "form-action 'self'"
)
#: C0 controls other than tab, line feed and carriage return, and DEL. PostgreSQL refuses
#: NUL in text outright; the others have no business in an id, a code or a comment.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
#: environ key the WSGI wrapper (medikit.wsgi) reads: close the connection after this
#: response, because its request body was never read.
CLOSE_CONNECTION = "medikit.close_connection"


def _is_api(path: str) -> bool:
    return path.startswith(API_PREFIXES)


def has_control_characters(value: str) -> bool:
    return CONTROL_CHARACTERS.search(value) is not None


def control_character_error(expression: str) -> InvalidRequest:
    """The 400 for a string from outside that carries a control character."""
    return InvalidRequest.one(
        f"'{expression}' contains a control character (such as NUL); send printable text.",
        expression=[expression],
    )


def _too_large(request: HttpRequest, limit: int) -> HttpResponse:
    message = f"The request body is larger than the {limit} bytes this server accepts."
    headers = None
    body: dict[str, object] = {
        "resourceType": "OperationOutcome",
        "issue": [issue(message, code="too-long")],
    }
    if request.path.startswith("/oauth/"):
        # RFC 6749 5.2 members for OAuth clients, next to the OperationOutcome.
        body = {"error": "invalid_request", "error_description": message, **body}
    return django_outcome_response(413, body, headers)


class RequestSizeLimitMiddleware:
    """Refuse oversized or malformed API requests before anything reads them.

    DRF parses JSON straight from the request stream, which bypasses Django's
    DATA_UPLOAD_MAX_MEMORY_SIZE check, so the limit is enforced here on Content-Length.
    A request without Content-Length reads as an empty body under WSGI, so it cannot
    smuggle a large one past this check. The query string is parsed here too, so too
    many parameters (Django's TooManyFieldsSent) or a control character in one is a 400
    on every API route, whichever view would have read it.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not _is_api(request.path):
            return self.get_response(request)
        response = self._refusal(request) or self.get_response(request)
        if _body_unread(request):
            # A client that sent a body we never read must not reuse the connection: the
            # server would take the rest of that body for its next request.
            request.META[CLOSE_CONNECTION] = True
        return response

    def _refusal(self, request: HttpRequest) -> HttpResponse | None:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        length = _content_length(request)
        if length < 0:
            return error_response(
                InvalidRequest.one("The Content-Length header is not a number.", code="structure")
            )
        if limit is not None and length > limit:
            return _too_large(request, limit)
        try:
            for name, values in request.GET.lists():
                if has_control_characters(name):
                    raise control_character_error("(query parameter name)")
                if any(has_control_characters(value) for value in values):
                    raise control_character_error(name)
        except (InvalidRequest, SuspiciousOperation) as exc:
            return error_response(exc)
        return None

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        """Exceptions from non-DRF API views (the token endpoint): OperationOutcome too."""
        if _is_api(request.path):
            return error_response(exc)
        return None


def _content_length(request: HttpRequest) -> int:
    raw = request.META.get("CONTENT_LENGTH") or "0"
    try:
        return int(raw)
    except ValueError:
        return -1


def _body_unread(request: HttpRequest) -> bool:
    if _content_length(request) == 0:
        return False
    return not getattr(request, "_read_started", False) and not hasattr(request, "_body")


class TokenFloodMiddleware:
    """Refuse token requests from an address already over its failure limit, early.

    Sits right after the security headers so the 429 still carries them, and before
    everything a refused attempt does not need (sessions, locale, CSRF, auth, axes, URL
    resolution). Only what this process already knows is refused here (no query); the
    token view remains the authority for everything else (``fhir_api.throttle``).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.token_path: str | None = None

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if self.token_path is None:
            self.token_path = reverse("oauth-token")
        if request.method == "POST" and request.path_info == self.token_path:
            # Imported here: fhir_api.oauth imports this module (has_control_characters).
            from fhir_api.oauth import flood_refusal

            refusal = flood_refusal(request)
            if refusal is not None:
                return refusal
        return self.get_response(request)


class SecurityHeadersMiddleware:
    """Content-Security-Policy everywhere, and no caching of API responses (health data)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        api = _is_api(request.path)
        response.headers.setdefault("Content-Security-Policy", API_CSP if api else ADMIN_CSP)
        if api:
            # Patient data must not linger in browser, proxy or CDN caches.
            response["Cache-Control"] = "no-store"
        return response


class _NotForTheApi(MiddlewareMixin):
    """Mixed into Django's session, authentication and message middleware: the API answers
    bearer tokens, never a session, a Django user or a flash message, so its requests skip
    the three (each built a session store, a lazy user or a message storage per request)."""

    def __call__(self, request: HttpRequest) -> Any:
        if _is_api(request.path):
            return self.get_response(request)
        return super().__call__(request)


class SessionMiddleware(_NotForTheApi, sessions_middleware.SessionMiddleware):
    pass


class AuthenticationMiddleware(_NotForTheApi, auth_middleware.AuthenticationMiddleware):
    pass


class MessageMiddleware(_NotForTheApi, messages_middleware.MessageMiddleware):
    pass


#: The API's one language: its diagnostics are written for the client's developer, and
#: clients match on them (fhir_api.errors.outcome_for_exception).
API_LANGUAGE = "en"


class LocaleMiddleware(locale_middleware.LocaleMiddleware):
    """Django's language negotiation for the admin and the front desk; the API answers in
    English whatever the request's ``Accept-Language``. So an API request activates
    English (a thread that last served the Dutch admin must not answer DRF's own messages
    in Dutch), and its responses claim neither ``Content-Language`` from the request nor
    ``Vary: Accept-Language``, which would split shared caches for nothing."""

    def __call__(self, request: HttpRequest) -> Any:
        if _is_api(request.path):
            translation.activate(API_LANGUAGE)
            return self.get_response(request)
        return super().__call__(request)
