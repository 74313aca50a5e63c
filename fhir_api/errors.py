"""Every error becomes an OperationOutcome, here and only here.

Domain errors carry a category (no HTTP); this module maps categories, DRF exceptions,
authentication errors and fhir.resources validation errors to a status and an
OperationOutcome issue once, so views never build error bodies by hand.
"""

from __future__ import annotations

import logging
from typing import Any, NotRequired, TypedDict

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from pydantic import ValidationError as PydanticValidationError
from rest_framework import exceptions as drf
from rest_framework.response import Response

from fhir_api.auth import AuthenticationRequired, ScopeMissing
from scheduling.errors import Category, DomainError

logger = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"


class Issue(TypedDict):
    severity: str
    code: str
    diagnostics: str
    expression: NotRequired[list[str]]


class OperationOutcome(TypedDict):
    resourceType: str
    issue: list[Issue]


_CATEGORY_STATUS: dict[Category, int] = {
    Category.INVALID: 400,
    Category.TOO_COSTLY: 400,
    Category.NOT_FOUND: 404,
    Category.CONFLICT: 409,
    Category.BUSINESS_RULE: 422,
}

# DRF exception class -> FHIR IssueType code (status comes from the exception itself).
_DRF_CODES: tuple[tuple[type[drf.APIException], str], ...] = (
    (drf.ParseError, "structure"),
    (drf.UnsupportedMediaType, "not-supported"),
    (drf.NotAcceptable, "not-supported"),
    (drf.MethodNotAllowed, "not-supported"),
    (drf.NotFound, "not-found"),
    (drf.Throttled, "throttled"),
    (drf.NotAuthenticated, "login"),
    (drf.AuthenticationFailed, "login"),
    (drf.PermissionDenied, "forbidden"),
    (drf.ValidationError, "invalid"),
)


def operation_outcome(
    *, severity: str, code: str, diagnostics: str, expression: list[str] | None = None
) -> OperationOutcome:
    """An OperationOutcome with one issue."""
    issue: Issue = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = list(expression)
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def outcome_response(
    status: int,
    *,
    code: str,
    diagnostics: str,
    expression: list[str] | None = None,
    severity: str = "error",
    headers: dict[str, str] | None = None,
) -> Response:
    """A DRF Response carrying an OperationOutcome, rendered as application/fhir+json."""
    body = operation_outcome(
        severity=severity, code=code, diagnostics=diagnostics, expression=expression
    )
    return Response(body, status=status, headers=headers, content_type=FHIR_JSON)


def _loc_to_expression(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def _pydantic_response(exc: PydanticValidationError) -> Response:
    errors = exc.errors(include_url=False)
    issues: list[Issue] = []
    for err in errors[:20]:
        issue: Issue = {
            "severity": "error",
            "code": "invalid" if err.get("type") != "missing" else "required",
            "diagnostics": str(err.get("msg", "Invalid value.")),
        }
        loc = tuple(err.get("loc", ()))
        if loc:
            issue["expression"] = [_loc_to_expression(loc)]
        issues.append(issue)
    if not issues:
        issues.append({"severity": "error", "code": "invalid", "diagnostics": "Invalid resource."})
    body: OperationOutcome = {"resourceType": "OperationOutcome", "issue": issues}
    return Response(body, status=400, content_type=FHIR_JSON)


def _drf_message(exc: drf.APIException) -> str:
    detail = exc.detail
    if isinstance(detail, list | tuple):
        return " ".join(str(d) for d in detail)
    if isinstance(detail, dict):
        return " ".join(f"{k}: {v}" for k, v in detail.items())
    return str(detail)


def exception_handler(exc: Exception, context: dict[str, Any] | None = None) -> Response:
    """DRF exception handler: any exception -> OperationOutcome response, never a stack trace."""
    if isinstance(exc, DomainError):
        return outcome_response(
            _CATEGORY_STATUS.get(exc.category, 400),
            code=exc.issue_code,
            diagnostics=exc.message,
            expression=exc.expression or None,
        )
    if isinstance(exc, AuthenticationRequired):
        description = exc.message.replace('"', "'")
        return outcome_response(
            401,
            code="login",
            diagnostics=exc.message,
            headers={
                "WWW-Authenticate": (
                    f'Bearer realm="medikit", error="{exc.error}", '
                    f'error_description="{description}"'
                )
            },
        )
    if isinstance(exc, ScopeMissing):
        return outcome_response(403, code="forbidden", diagnostics=exc.message)
    if isinstance(exc, PydanticValidationError):
        return _pydantic_response(exc)
    if isinstance(exc, Http404):
        return outcome_response(404, code="not-found", diagnostics="Not found.")
    if isinstance(exc, PermissionDenied):
        return outcome_response(403, code="forbidden", diagnostics="Forbidden.")
    if isinstance(exc, drf.APIException):
        code = "processing"
        for cls, issue_code in _DRF_CODES:
            if isinstance(exc, cls):
                code = issue_code
                break
        headers: dict[str, str] = {}
        wait = getattr(exc, "wait", None)
        if isinstance(exc, drf.Throttled) and wait is not None:
            headers["Retry-After"] = str(int(wait))
        if isinstance(exc, drf.MethodNotAllowed) and context:
            view = context.get("view")
            if view is not None:
                headers["Allow"] = ", ".join(view.allowed_methods)
        return outcome_response(
            exc.status_code, code=code, diagnostics=_drf_message(exc), headers=headers or None
        )
    logger.exception("Unhandled error in the FHIR API", exc_info=exc)
    return outcome_response(
        500,
        code="exception",
        diagnostics="An internal error occurred; it has been logged.",
    )


def _django_outcome(status: int, body: OperationOutcome) -> HttpResponse:
    import orjson

    return HttpResponse(orjson.dumps(body), status=status, content_type=FHIR_JSON)


def _is_api_path(request: HttpRequest) -> bool:
    return request.path.startswith(("/v2/", "/oauth/"))


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Unknown URLs: OperationOutcome under the API prefixes, Django's page elsewhere."""
    if _is_api_path(request):
        return _django_outcome(
            404,
            operation_outcome(
                severity="error",
                code="not-found",
                diagnostics=f"There is no FHIR endpoint at '{request.path}'.",
            ),
        )
    from django.views.defaults import page_not_found

    return page_not_found(request, exception or Http404())


def handler500(request: HttpRequest) -> HttpResponse:
    """Last resort (errors outside DRF): a generic OperationOutcome under the API prefixes."""
    if _is_api_path(request):
        return _django_outcome(
            500,
            operation_outcome(
                severity="error",
                code="exception",
                diagnostics="An internal error occurred; it has been logged.",
            ),
        )
    from django.views.defaults import server_error

    return server_error(request)
