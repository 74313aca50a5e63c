"""HTTP hardening that must hold for every response, whatever view produced it."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse

API_PREFIXES = ("/v2/", "/oauth/")
# The API serves JSON only: nothing in a response may load or frame anything.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
# The admin loads its own static files; Django's admin styles use inline style attributes.
ADMIN_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'self'; "
    "form-action 'self'"
)


def _is_api(path: str) -> bool:
    return path.startswith(API_PREFIXES)


def _too_large(request: HttpRequest, limit: int) -> HttpResponse:
    message = f"The request body is larger than the {limit} bytes this server accepts."
    if request.path.startswith("/oauth/"):
        body = {"error": "invalid_request", "error_description": message}
        return HttpResponse(orjson.dumps(body), status=413, content_type="application/json")
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "too-long", "diagnostics": message}],
    }
    return HttpResponse(orjson.dumps(outcome), status=413, content_type="application/fhir+json")


class RequestSizeLimitMiddleware:
    """Refuse oversized API bodies with 413 before anything reads them.

    DRF parses JSON straight from the request stream, which bypasses Django's
    DATA_UPLOAD_MAX_MEMORY_SIZE check, so the limit is enforced here on Content-Length.
    A request without Content-Length reads as an empty body under WSGI, so it cannot
    smuggle a large one past this check.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and _is_api(request.path):
            raw = request.META.get("CONTENT_LENGTH") or "0"
            try:
                length = int(raw)
            except ValueError:
                length = -1
            if length < 0:
                outcome = {
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {
                            "severity": "error",
                            "code": "structure",
                            "diagnostics": "The Content-Length header is not a number.",
                        }
                    ],
                }
                return HttpResponse(
                    orjson.dumps(outcome), status=400, content_type="application/fhir+json"
                )
            if length > limit:
                return _too_large(request, limit)
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
