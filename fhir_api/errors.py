"""Every error becomes an OperationOutcome, here and only here.

The Zulip model ("errors as data"): :class:`ApiError` carries a status, its issues and any
extra headers; domain errors carry a category (no HTTP) that is mapped to a status once.
One function turns any exception into ``(status, outcome, headers)``
(:func:`outcome_for_exception`); DRF's exception handler, Django's handler400/403/404/500
and the middleware all render through it, so there is one wire format and one encoder.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, NotRequired, Self, TypedDict

import orjson
from django.core.exceptions import (
    DisallowedHost,
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.http import Http404, HttpRequest, HttpResponse, UnreadablePostError
from pydantic import ValidationError as PydanticValidationError
from rest_framework import exceptions as drf
from rest_framework.response import Response

from scheduling.errors import Category, DomainError

logger = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
#: Paths whose every answer, errors included, is JSON (never Django's HTML pages).
API_PREFIXES = ("/v2/", "/oauth/", "/.well-known/")


class Issue(TypedDict):
    severity: str
    code: str
    diagnostics: str
    expression: NotRequired[list[str]]


class OperationOutcome(TypedDict):
    resourceType: str
    issue: list[Issue]


def issue(
    diagnostics: str,
    *,
    code: str = "invalid",
    expression: Iterable[str] | None = None,
    severity: str = "error",
) -> Issue:
    """One OperationOutcome issue; ``expression`` names the parameter or element at fault."""
    item: Issue = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        item["expression"] = list(expression)
    return item


class ApiError(Exception):
    """An error answered with ``status`` and an OperationOutcome of ``issues``.

    Subclasses set ``status`` (and may add ``headers``, e.g. a WWW-Authenticate challenge
    or Retry-After); views raise them and never build error bodies by hand.
    """

    status: int = 400

    def __init__(
        self,
        issues: list[Issue],
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__("; ".join(item["diagnostics"] for item in issues))
        self.issues = issues or [issue("The request could not be processed.")]
        if status is not None:
            self.status = status
        self.headers: dict[str, str] = dict(headers or {})

    @classmethod
    def one(
        cls,
        diagnostics: str,
        *,
        code: str = "invalid",
        expression: Iterable[str] | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> Self:
        return cls(
            [issue(diagnostics, code=code, expression=expression)], status=status, headers=headers
        )

    @property
    def message(self) -> str:
        return self.issues[0]["diagnostics"]


class InvalidRequest(ApiError):
    """One or more problems found while reading a request (400)."""

    status = 400


class ServiceUnavailable(ApiError):
    """The database cannot be reached, or a transaction was cancelled: worth a retry (503)."""

    status = 503


class RateLimited(ApiError):
    """Too many attempts from one client id or address (429)."""

    status = 429


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

# Django's request-reading errors, in the order checked (subclasses first).
_SUSPICIOUS: tuple[tuple[type[Exception], int, str, str], ...] = (
    (
        TooManyFieldsSent,
        400,
        "too-costly",
        "The request has more parameters (query or form fields) than the 1000 this server reads.",
    ),
    (TooManyFilesSent, 400, "too-costly", "The request carries too many files."),
    (
        RequestDataTooBig,
        413,
        "too-long",
        "The request body is larger than this server accepts.",
    ),
    (
        DisallowedHost,
        400,
        "security",
        "The Host header does not name this server.",
    ),
    (SuspiciousOperation, 400, "security", "The request was refused as malformed."),
    (UnreadablePostError, 400, "incomplete", "The request body could not be read completely."),
)


def issues_from_pydantic(
    exc: PydanticValidationError, resource_type: str, names: dict[int, str] | None = None
) -> list[Issue]:
    """fhir.resources (pydantic) errors -> issues, at most 20, each naming its element.

    ``names`` maps positions in ``Parameters.parameter`` to parameter names, so a
    parameter's problem is also named as ``Parameters.parameter[name]``.
    """
    issues: list[Issue] = []
    for err in exc.errors(include_url=False)[:20]:
        loc = tuple(err.get("loc", ()))
        path = resource_type
        for part in loc:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        expressions = [path]
        if names and len(loc) >= 2 and loc[0] == "parameter" and isinstance(loc[1], int):
            name = names.get(loc[1])
            if name:
                expressions.append(f"Parameters.parameter[{name}]")
        message = str(err.get("msg", "Invalid value.")).split("\n")[0]
        if "but got multiple" in message:
            message = "A parameter must carry exactly one value[x]."
        code = "required" if "missing" in str(err.get("type", "")) else "invalid"
        issues.append(issue(f"{path}: {message}", code=code, expression=expressions))
    return issues or [issue("The resource is not valid.", expression=[resource_type])]


def _drf_message(exc: drf.APIException) -> str:
    detail = exc.detail
    if isinstance(detail, list | tuple):
        return " ".join(str(d) for d in detail)
    if isinstance(detail, dict):
        return " ".join(f"{k}: {v}" for k, v in detail.items())
    return str(detail)


def _unavailable(exc: Exception) -> ServiceUnavailable | None:
    # Imported here: the database module is only needed once something has gone wrong.
    from medikit.dbhealth import unavailable_error

    return unavailable_error(exc)


def outcome_for_exception(
    exc: Exception,
    *,
    allowed_methods: Iterable[str] | None = None,
    field_path: Callable[[str], str] | None = None,
) -> tuple[int, OperationOutcome, dict[str, str]]:
    """Any exception -> (status, OperationOutcome, headers). Never a stack trace on the wire.

    Domain errors name the domain field at fault (``start``, ``schedule``); ``field_path``
    (the view's) turns each into the FHIR path of this interaction, e.g.
    ``Parameters.parameter[start]``. Unexpected exceptions are logged once with their
    traceback and answered 500.

    Diagnostics are English whatever the request's Accept-Language: they are written for
    the developer of the client (docs/api.md, errors), and clients match on them. So a
    domain error gives its English ``message`` here, never ``translated()`` (the admin's).
    """
    if isinstance(exc, ApiError):
        return exc.status, _outcome(exc.issues), dict(exc.headers)
    if isinstance(exc, DomainError):
        expression = [field_path(name) for name in exc.expression] if field_path else exc.expression
        return (
            _CATEGORY_STATUS.get(exc.category, 400),
            _outcome([issue(exc.message, code=exc.issue_code, expression=expression)]),
            {},
        )
    if isinstance(exc, PydanticValidationError):
        return 400, _outcome(issues_from_pydantic(exc, exc.title or "Resource")), {}
    if isinstance(exc, Http404):
        return 404, _outcome([issue("Not found.", code="not-found")]), {}
    if isinstance(exc, PermissionDenied):
        return 403, _outcome([issue("Forbidden.", code="forbidden")]), {}
    for cls, status, code, message in _SUSPICIOUS:
        if isinstance(exc, cls):
            # Client mistakes (or probes), not server faults: one line, no traceback.
            logger.warning("request refused: %s", type(exc).__name__)
            return status, _outcome([issue(message, code=code)]), {}
    if isinstance(exc, drf.APIException):
        code = "processing"
        for drf_cls, issue_code in _DRF_CODES:
            if isinstance(exc, drf_cls):
                code = issue_code
                break
        headers: dict[str, str] = {}
        wait = getattr(exc, "wait", None)
        if isinstance(exc, drf.Throttled) and wait is not None:
            headers["Retry-After"] = str(int(wait))
        if isinstance(exc, drf.MethodNotAllowed) and allowed_methods is not None:
            headers["Allow"] = ", ".join(allowed_methods)
        return exc.status_code, _outcome([issue(_drf_message(exc), code=code)]), headers
    unavailable = _unavailable(exc)
    if unavailable is not None:
        return unavailable.status, _outcome(unavailable.issues), dict(unavailable.headers)
    logger.error("Unhandled error in the FHIR API", exc_info=exc)
    return (
        500,
        _outcome(
            [
                issue(
                    "An internal error occurred; it has been logged.",
                    code="exception",
                )
            ]
        ),
        {},
    )


def _outcome(issues: list[Issue]) -> OperationOutcome:
    return {"resourceType": "OperationOutcome", "issue": issues}


def operation_outcome(
    *, severity: str, code: str, diagnostics: str, expression: list[str] | None = None
) -> OperationOutcome:
    """An OperationOutcome with one issue."""
    return _outcome([issue(diagnostics, code=code, expression=expression, severity=severity)])


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


def exception_handler(exc: Exception, context: dict[str, Any] | None = None) -> Response:
    """DRF exception handler: any exception -> OperationOutcome response."""
    view = (context or {}).get("view")
    status, body, headers = outcome_for_exception(
        exc,
        allowed_methods=getattr(view, "allowed_methods", None),
        field_path=getattr(view, "field_path", None),
    )
    return Response(body, status=status, headers=headers or None, content_type=FHIR_JSON)


def encode_outcome(body: OperationOutcome | dict[str, Any]) -> bytes:
    """The one encoder for error bodies outside DRF (middleware, Django handlers)."""
    return orjson.dumps(body)


def django_outcome_response(
    status: int, body: OperationOutcome | dict[str, Any], headers: dict[str, str] | None = None
) -> HttpResponse:
    """A plain Django response with an OperationOutcome (for code that runs outside DRF)."""
    response = HttpResponse(encode_outcome(body), status=status, content_type=FHIR_JSON)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def error_response(exc: Exception) -> HttpResponse:
    """:func:`outcome_for_exception` as a plain Django response."""
    status, body, headers = outcome_for_exception(exc)
    return django_outcome_response(status, body, headers)


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIXES)


def _django_handler(status: int, code: str, message: str) -> Any:
    def handler(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
        if not is_api_path(request.path):
            from django.views import defaults

            fallback = {
                400: defaults.bad_request,
                403: defaults.permission_denied,
                404: defaults.page_not_found,
            }[status]
            try:
                return fallback(request, exception or Exception())
            except Exception as exc:
                # As for the 404 page: a request mangled enough (no valid Host, a multipart
                # body without a boundary) can break rendering the HTML page; it must still
                # get its own status, never a 500.
                logger.warning("%d page could not be rendered: %s", status, type(exc).__name__)
                return HttpResponse(message, status=status, content_type="text/plain")
        if exception is not None and not isinstance(exception, Http404):
            return error_response(exception)
        return django_outcome_response(status, _outcome([issue(message, code=code)]))

    return handler


handler400 = _django_handler(400, "invalid", "The request was refused as malformed.")
handler403 = _django_handler(403, "forbidden", "Forbidden.")


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Unknown URLs: OperationOutcome under the API prefixes, Django's page elsewhere."""
    if is_api_path(request.path):
        return django_outcome_response(
            404,
            _outcome(
                [
                    issue(
                        f"There is no FHIR endpoint at '{request.path}'.",
                        code="not-found",
                    )
                ]
            ),
        )
    from django.views.defaults import page_not_found

    try:
        return page_not_found(request, exception or Http404())
    except Exception as exc:
        # Rendering the HTML page needs the request's context (session, messages, user);
        # a request mangled enough to break that must still get its 404, not a 500.
        logger.warning("404 page could not be rendered: %s", type(exc).__name__)
        return HttpResponse("Not Found", status=404, content_type="text/plain")


def handler500(request: HttpRequest) -> HttpResponse:
    """Last resort (errors outside DRF): a generic OperationOutcome under the API prefixes."""
    if is_api_path(request.path):
        return django_outcome_response(
            500,
            _outcome([issue("An internal error occurred; it has been logged.", code="exception")]),
        )
    from django.views.defaults import server_error

    return server_error(request)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: an OperationOutcome under the API prefixes, Django's page elsewhere.

    The API authenticates with bearer tokens and is CSRF-exempt; this only answers
    unsafe methods sent to API URLs that do not take them.
    """
    if is_api_path(request.path):
        return django_outcome_response(
            403,
            _outcome([issue("This URL does not accept this method here.", code="forbidden")]),
        )
    from django.views.csrf import csrf_failure as django_csrf_failure

    return django_csrf_failure(request, reason)
