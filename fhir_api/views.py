"""FHIR read and search endpoints (CONTRACT sections 2-6).

Views only parse parameters, call a selector and map the result; tenancy and access
checks happen before any handler runs (``fhir_api.tenancy.TenantView``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from fhir_api import mappers, search
from fhir_api.errors import outcome_response
from fhir_api.pagination import DEFAULT_COUNT, MAX_COUNT, searchset
from fhir_api.parsers import FHIRJSONParser
from fhir_api.renderers import FHIRContentNegotiation, FHIRJSONRenderer
from fhir_api.tenancy import TenantView
from scheduling import selectors
from scheduling.errors import InvalidSearchValue
from scheduling.models import FHIR_ID_RE, AppointmentStatus, SlotStatus
from scheduling.recurrence import Period

COMMON_PARAMS = frozenset({"_count", "_offset", "_format"})
#: Slot searches without ``start`` generate from now for this long (CONTRACT section 5).
DEFAULT_SPAN = timedelta(days=7)


# --------------------------------------------------------------------------- parameters


class SearchParams:
    """The query string of one search, checked against the parameters a view allows."""

    def __init__(self, request: Request, allowed: frozenset[str], repeatable: frozenset[str]):
        self.query = request.query_params
        lenient = "handling=lenient" in request.META.get("HTTP_PREFER", "").replace(" ", "")
        for name in self.query:
            if name not in allowed and name not in COMMON_PARAMS:
                if lenient:
                    continue
                raise InvalidSearchValue(
                    f"Unknown search parameter '{name}'. Supported here: "
                    f"{', '.join(sorted(allowed | COMMON_PARAMS))} "
                    "(or send 'Prefer: handling=lenient' to ignore unknown parameters).",
                    expression=[name],
                )
            if name not in repeatable and len(self.query.getlist(name)) > 1:
                raise InvalidSearchValue(
                    f"Search parameter '{name}' may be given only once; "
                    "separate alternatives with a comma instead.",
                    expression=[name],
                )

    def has(self, name: str) -> bool:
        return name in self.query

    def one(self, name: str) -> str | None:
        value = self.query.get(name)
        if value is None:
            return None
        if not value.strip():
            raise InvalidSearchValue(f"Search parameter '{name}' is empty.", expression=[name])
        return value.strip()

    def values(self, name: str) -> list[str]:
        return self.query.getlist(name)

    def csv(self, name: str) -> list[str] | None:
        value = self.one(name)
        if value is None:
            return None
        items = [item.strip() for item in value.split(",")]
        if any(not item for item in items):
            raise InvalidSearchValue(
                f"Search parameter '{name}' has an empty item in '{value}'.", expression=[name]
            )
        return items

    def paging(self) -> tuple[int, int]:
        """(_offset, _count); a too-large _count is capped (FHIR lets a server return fewer)."""
        offset = self.one("_offset")
        count = self.one("_count")
        return (
            search.parse_offset(offset),
            search.parse_count(count, default=DEFAULT_COUNT, maximum=MAX_COUNT),
        )

    def boolean(self, name: str) -> bool | None:
        value = self.one(name)
        return None if value is None else search.parse_bool(value, param=name)

    def ids(self, *names: str) -> list[str] | None:
        given = [name for name in names if self.has(name)]
        if len(given) > 1:
            raise InvalidSearchValue(
                f"Give either '{given[0]}' or '{given[1]}', not both.", expression=given
            )
        if not given:
            return None
        items = self.csv(given[0]) or []
        for item in items:
            if not FHIR_ID_RE.match(item):
                raise InvalidSearchValue(
                    f"'{item}' is not a FHIR id (1-64 of A-Z, a-z, 0-9, '-', '.').",
                    expression=[given[0]],
                )
        return items

    def tokens(self, name: str) -> list[selectors.Token] | None:
        items = self.csv(name)
        if items is None:
            return None
        out: list[selectors.Token] = []
        for item in items:
            # A second unescaped bar would be swallowed into the code: refuse it instead.
            if item.replace("\\|", "").count("|") > 1:
                raise InvalidSearchValue(
                    f"Token '{item}' of '{name}' has more than one '|': use code, "
                    "system|code or |code.",
                    expression=[name],
                )
            system, code = search.parse_token(item)
            if code is None:
                raise InvalidSearchValue(
                    f"Token '{item}' of '{name}' has no code after '|'.", expression=[name]
                )
            out.append((system, code))
        return out

    def codes(self, name: str, allowed: set[str]) -> list[str] | None:
        items = self.csv(name)
        if items is None:
            return None
        for item in items:
            if item not in allowed:
                raise InvalidSearchValue(
                    f"'{item}' is not a valid {name} here; use one of: "
                    f"{', '.join(sorted(allowed))}.",
                    expression=[name],
                )
        return items

    def reference(self, name: str, types: tuple[str, ...]) -> str | None:
        value = self.one(name)
        if value is None:
            return None
        kind, slash, ref_id = value.rpartition("/")
        if slash and kind not in types:
            raise InvalidSearchValue(
                f"'{value}' of '{name}' must reference {' or '.join(types)} (or be a bare id).",
                expression=[name],
            )
        if not FHIR_ID_RE.match(ref_id):
            raise InvalidSearchValue(f"'{ref_id}' in '{name}' is not a FHIR id.", expression=[name])
        return value

    def window(self, name: str, zone: ZoneInfo) -> Period | None:
        """The expansion window of CONTRACT section 5 (the engine's rules), or None."""
        window = search.derive_window(self.values(name), tz=zone, param=name)
        return None if window is None else Period(window.start, window.end)


# --------------------------------------------------------------------------- views


class FHIRSearchView(TenantView):
    interaction = "search"
    params: ClassVar[frozenset[str]] = frozenset()
    repeatable: ClassVar[frozenset[str]] = frozenset()

    def base_url(self, request: Request) -> str:
        return request.build_absolute_uri(f"/v2/{self.organization.pk}/fhir/R4")

    def search_params(self, request: Request) -> SearchParams:
        return SearchParams(request, self.params, self.repeatable)

    def paging(self, params: SearchParams) -> tuple[int, int]:
        return params.paging()


class ScheduleSearchView(FHIRSearchView):
    resource_type = "Schedule"
    params = frozenset({"_id", "id", "service-category", "date", "actor", "active"})
    repeatable = frozenset({"date"})

    def get(self, request: Request, **kwargs: Any) -> Response:
        p = self.search_params(request)
        offset, count = self.paging(p)
        results = selectors.schedule_search(
            organization=self.organization,
            ids=p.ids("_id", "id"),
            actor=p.reference("actor", ("PractitionerRole", "Practitioner")),
            active=p.boolean("active"),
            service_category=p.tokens("service-category"),
            window=p.window("date", self.organization.zone),
        )
        base = self.base_url(request)
        memo: mappers.ScheduleParts = {}

        def entry(r: selectors.ScheduleResult) -> tuple[str, dict[str, Any]]:
            resource = (
                mappers.schedule_to_fhir(r.schedule)
                if r.period is None
                else mappers.schedule_occurrence_to_fhir(r.schedule, r.period, memo=memo)
            )
            return f"{base}/Schedule/{resource['id']}", resource

        return Response(searchset(request, results, offset=offset, count=count, to_entry=entry))


class ScheduleReadView(TenantView):
    resource_type = "Schedule"
    interaction = "read"

    def get(self, request: Request, fhir_id: str, **kwargs: Any) -> Response:
        schedule = selectors.schedule_get(organization=self.organization, fhir_id=fhir_id)
        return Response(mappers.schedule_to_fhir(schedule))


_SLOT_STATUSES = {choice.value for choice in SlotStatus}
#: Mapped Slot resources kept per cached snapshot: the first pages, which most searches ask.
_SLOT_MEMO_SIZE = 200
_APPOINTMENT_STATUSES = {choice.value for choice in AppointmentStatus}


class SlotSearchView(FHIRSearchView):
    resource_type = "Slot"
    params = frozenset({"start", "schedule", "service-category", "status"})
    repeatable = frozenset({"start"})

    def get(self, request: Request, **kwargs: Any) -> Response:
        p = self.search_params(request)
        offset, count = self.paging(p)
        now = selectors.utc_now()
        window = p.window("start", self.organization.zone) or Period(now, now + DEFAULT_SPAN)
        schedule_ref = p.reference("schedule", ("Schedule",))
        results = selectors.slot_search(
            organization=self.organization,
            window=window,
            schedule_ids=[schedule_ref.rpartition("/")[2]] if schedule_ref else None,
            statuses=p.codes("status", _SLOT_STATUSES),
            service_category=p.tokens("service-category"),
            now=now,
        )
        base = self.base_url(request)
        memo = results.memo  # shared by the searches served from one cached snapshot

        def entry(r: selectors.SlotResult) -> tuple[str, dict[str, Any]]:
            key = (r.id, r.status)
            resource = memo.get(key)
            if resource is None:
                if r.slot is not None:
                    resource = mappers.slot_to_fhir(r.slot)
                else:
                    resource = mappers.generated_slot_to_fhir(r.schedule, r.generated)
                if len(memo) < _SLOT_MEMO_SIZE:
                    memo[key] = resource
            return f"{base}/Slot/{resource['id']}", resource

        return Response(searchset(request, results, offset=offset, count=count, to_entry=entry))


class SlotReadView(TenantView):
    resource_type = "Slot"
    interaction = "read"

    def get(self, request: Request, fhir_id: str, **kwargs: Any) -> Response:
        slot = selectors.slot_get(organization=self.organization, fhir_id=fhir_id)
        return Response(mappers.slot_to_fhir(slot))


class AppointmentSearchView(FHIRSearchView):
    resource_type = "Appointment"
    patient_scoped = True
    params = frozenset({"_id", "id", "date", "status"})
    repeatable = frozenset({"date"})

    def get(self, request: Request, **kwargs: Any) -> Response:
        p = self.search_params(request)
        offset, count = self.paging(p)
        ids = p.ids("_id", "id")
        window = p.window("date", self.organization.zone)
        if ids is None and window is None:
            raise InvalidSearchValue(
                "Searching a patient's appointments needs '_id' (or 'id') or 'date', "
                "e.g. ?date=ge2026-06-01.",
                expression=["date"],
            )
        assert self.patient is not None
        results = selectors.patient_appointment_search(
            organization=self.organization,
            patient=self.patient,
            ids=ids,
            window=window,
            statuses=p.codes("status", _APPOINTMENT_STATUSES),
        )
        base = f"{self.base_url(request)}/Patient/{self.patient.fhir_id}"

        def entry(r: selectors.AppointmentResult) -> tuple[str, dict[str, Any]]:
            resource = (
                mappers.appointment_to_fhir(r.appointment)
                if r.period is None
                else mappers.appointment_occurrence_to_fhir(r.appointment, r.period)
            )
            return f"{base}/Appointment/{resource['id']}", resource

        return Response(searchset(request, results, offset=offset, count=count, to_entry=entry))


class AppointmentReadView(TenantView):
    resource_type = "Appointment"
    interaction = "read"
    patient_scoped = True

    def get(self, request: Request, fhir_id: str, **kwargs: Any) -> Response:
        assert self.patient is not None
        appointment = selectors.appointment_get(
            organization=self.organization, patient=self.patient, fhir_id=fhir_id
        )
        return Response(mappers.appointment_to_fhir(appointment))


class CapabilityView(TenantView):
    resource_type = "CapabilityStatement"
    interaction = "read"
    public = True

    def get(self, request: Request, **kwargs: Any) -> Response:
        from fhir_api.capability import capability_statement

        organization_id = kwargs["organization_id"]
        return Response(
            capability_statement(
                organization=self.tenant,
                base_url=request.build_absolute_uri(f"/v2/{organization_id}/fhir/R4"),
                token_url=request.build_absolute_uri("/oauth/token"),
            )
        )


class NotFoundView(APIView):
    """Anything under /v2/ that is not a route: 404 OperationOutcome for every method."""

    renderer_classes = [FHIRJSONRenderer]
    parser_classes = [FHIRJSONParser]
    content_negotiation_class = FHIRContentNegotiation
    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []

    def handle(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        resource = kwargs.get("resource_type")
        if resource and resource not in ("Schedule", "Slot", "Patient", "metadata"):
            message = (
                f"Resource type '{resource}' is not served here; this server offers "
                "Schedule, Slot, Patient/{id}/Appointment and Patient/{id}/AppointmentResponse."
            )
        else:
            message = f"There is no FHIR endpoint at '{request.path}'."
        return outcome_response(404, code="not-found", diagnostics=message)

    get = post = put = patch = delete = head = options = handle


def _unavailable(request: HttpRequest) -> HttpResponse:
    from fhir_api.errors import django_outcome_response, operation_outcome

    body = operation_outcome(
        severity="error", code="not-supported", diagnostics="This operation is not available."
    )
    return django_outcome_response(501, body)


def operation_view(name: str) -> Callable[..., HttpResponse]:
    """A view that imports ``fhir_api.operations.<name>`` on first use.

    The booking views live in another module that may load later; importing lazily keeps
    the URLconf loadable on its own.
    """
    cache: dict[str, Callable[..., HttpResponse]] = {}

    @csrf_exempt
    def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if name not in cache:
            try:
                from fhir_api import operations
            except ImportError:
                return _unavailable(request)
            cache[name] = getattr(operations, name).as_view()
        return cache[name](request, *args, **kwargs)

    return view
