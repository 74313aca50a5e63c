"""FHIR read and search endpoints (docs/api.md sections 2-6).

Views only parse parameters, call a selector and map the result; tenancy and access
checks happen before any handler runs (``fhir_api.tenancy.TenantView``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import orjson
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django_filters import FilterSet
from rest_framework.request import Request
from rest_framework.response import Response

from fhir_api import auth, filters, includes, mappers, search
from fhir_api.acyclic import AcyclicAPIView
from fhir_api.errors import outcome_response
from fhir_api.pagination import DEFAULT_COUNT, MAX_COUNT, searchset
from fhir_api.parsers import FHIRJSONParser
from fhir_api.renderers import FHIRContentNegotiation, FHIRJSONRenderer, prerendered
from fhir_api.tenancy import TenantView
from scheduling import selectors
from scheduling.db import search_cache
from scheduling.errors import InvalidSearchValue, NotFound
from scheduling.recurrence import Period
from scheduling.selectors.schedules import ScheduleRow

COMMON_PARAMS = frozenset({"_count", "_offset", "_format"})
#: Slot searches without ``start`` generate from now for this long (docs/api.md section 5).
DEFAULT_SPAN = timedelta(days=7)


# --------------------------------------------------------------------------- parameters


class SearchParams:
    """The query string of one search, checked against the parameters a view allows."""

    def __init__(self, request: Request, allowed: frozenset[str], repeatable: frozenset[str]):
        self.query = request.query_params
        lenient = "handling=lenient" in request.META.get("HTTP_PREFER", "").replace(" ", "")
        self.lenient = lenient
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

    def includes(self, table: includes.IncludeTable) -> includes.Requested:
        """The ``_include`` / ``_include:iterate`` values, checked against ``table``."""
        values = {name: self.values(name) for name in table if self.has(name)}
        return includes.requested(values, table, lenient=self.lenient)

    def summary_count(self) -> bool:
        """``_summary=count`` asks for the total alone; ``false`` is the default."""
        value = self.one("_summary")
        if value is None or value == "false":
            return False
        if value == "count":
            return True
        if self.lenient:
            return False
        raise InvalidSearchValue(
            f"_summary={value!r} is not supported; use _summary=count (total only) or false.",
            expression=["_summary"],
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

    def paging(self) -> tuple[int, int]:
        """(_offset, _count); a too-large _count is capped (FHIR lets a server return fewer)."""
        offset = self.one("_offset")
        count = self.one("_count")
        return (
            search.parse_offset(offset),
            search.parse_count(count, default=DEFAULT_COUNT, maximum=MAX_COUNT),
        )

    def filters(self, filterset: type[FilterSet]) -> dict[str, Any]:
        """The stored-resource filters of this search, parsed by their FilterSet."""
        return filters.clean(filterset, self.query)

    @staticmethod
    def either(cleaned: dict[str, Any], first: str, second: str) -> Any:
        """The value of one of two alias parameters (``_id`` / ``id``), not both."""
        if first in cleaned and second in cleaned:
            raise InvalidSearchValue(
                f"Give either '{first}' or '{second}', not both.", expression=[first, second]
            )
        return cleaned.get(first, cleaned.get(second))

    def window(self, name: str, zone: ZoneInfo) -> Period | None:
        """The expansion window of docs/api.md section 5 (the engine's rules), or None."""
        window = search.derive_window(self.values(name), tz=zone, param=name)
        return None if window is None else Period(window.start, window.end)


# --------------------------------------------------------------------------- views


def cached_read(
    organization: Any,
    key: tuple[Any, ...],
    build: Callable[[], Any],
    *,
    bookings: bool = True,
    valid: Callable[[Any], bool] | None = None,
) -> Any:
    """The mapped resource of a read by id, from the per-process read cache when the
    organisation's data stamps (which came with the token query) say its rows are
    unchanged: then the read costs no query of its own. ``key`` must name everything the
    resource depends on besides the stamped tables (scheduling.db.search_cache); the
    organisation is part of every key. An id that is not found is never cached."""
    return search_cache.read_cache.get_or_build(
        organization, key, lambda: (build(), 1), bookings=bookings, valid=valid
    )


def versioned_read(request: Request, resource: dict[str, Any]) -> Response:
    """A read with ``ETag: W/"{versionId}"``; 304 without a body when ``If-None-Match``
    names that version (docs/api.md section 15), so a client can poll cheaply."""
    version = mappers.version_id(resource)
    if version is None:
        return Response(resource)
    headers = {"ETag": f'W/"{version}"'}
    if search.etag_matches(request.META.get("HTTP_IF_NONE_MATCH"), version):
        return Response(status=304, headers=headers)
    return Response(resource, headers=headers)


class FHIRSearchView(TenantView):
    interaction = "search"
    #: The stored-resource filters (fhir_api.filters); ``params`` lists them and the rest.
    filterset: ClassVar[type[FilterSet]]
    params: ClassVar[frozenset[str]] = frozenset()
    repeatable: ClassVar[frozenset[str]] = frozenset()

    def base_url(self, request: Request) -> str:
        return request.build_absolute_uri(f"/v2/{self.organization.pk}/fhir/R4")

    def search_params(self, request: Request) -> SearchParams:
        return SearchParams(request, self.params, self.repeatable)

    def paging(self, params: SearchParams) -> tuple[int, int]:
        return params.paging()


#: Pages of Schedule entries kept per cached result list (by base URL, offset and count).
_SCHEDULE_PAGES = 8


class MappedSchedules:
    """Mapped Schedule resources (stored ones and occurrences) kept across searches, by
    the organisation's time zone and the rows they are built from (``ScheduleRow.versions``:
    the schedule, its role and practitioners, each with its trigger-kept ``version``,
    scheduling.db.version_triggers), then by the result's id (the occurrence's start). A
    changed row has a new version, so a new key: nothing needs invalidating.

    A search that misses the search cache (a new window, or any edit of the organisation's
    schedules) then maps only what changed, instead of every occurrence again, and needs
    no schedule instances for the rest. The resources are kept rendered
    (``renderers.prerendered``): a page of them is then copied into the response rather
    than encoded again, and takes less memory. Only outside a transaction: a version written by a
    transaction that is rolled back could be written again later with other contents,
    whereas committed versions never repeat. Bounded by resources; the schedules seen
    longest ago go first. The resources are shared: never change them.
    """

    def __init__(self, max_entries: int) -> None:
        self._store = search_cache.VersionedStore(max_entries)

    @staticmethod
    def usable() -> bool:
        return not connection.in_atomic_block

    def of(self, zone: str, versions: Any) -> dict[str, orjson.Fragment]:
        """The resources kept for one schedule's rows, by result id (read only)."""
        return self._store.get((zone, versions)) or {}

    def put(self, zone: str, versions: Any, resources: dict[str, orjson.Fragment]) -> None:
        """Keep ``resources`` (by result id) of one schedule's rows, beside those kept."""

        def merged(kept: dict[str, orjson.Fragment] | None) -> tuple[Any, int]:
            # A new dict: readers may hold the old one.
            value = {**(kept or {}), **resources}
            return value, len(value)

        self._store.update((zone, versions), merged)

    def clear(self) -> None:
        self._store.clear()


#: About 2 KB each: a few MB per worker.
mapped_schedules = MappedSchedules(20_000)


class ScheduleSearchView(FHIRSearchView):
    resource_type = "Schedule"
    filterset = filters.ScheduleFilterSet
    params = frozenset(
        {"_id", "id", "service-category", "date", "actor", "active", "_include", "_summary"}
    )
    repeatable = frozenset({"date", "_include"})

    def get(self, request: Request, **kwargs: Any) -> Response:
        p = self.search_params(request)
        offset, count = self.paging(p)
        wanted = p.includes(includes.SCHEDULE)
        summary_count = p.summary_count()
        f = p.filters(self.filterset)
        organization = self.organization
        shared = mapped_schedules if mapped_schedules.usable() else None
        base = self.base_url(request)

        def search(instances: bool) -> selectors.ScheduleResults:
            return selectors.schedule_search(
                organization=organization,
                ids=p.either(f, "_id", "id"),
                actor=f.get("actor"),
                active=f.get("active"),
                service_category=f.get("service-category"),
                window=p.window("date", organization.zone),
                instances=instances,
            )

        # Without a transaction most results are mapped already (``mapped_schedules``): the
        # search then reads no schedule instances, and the page loads only those it maps.
        results = search(instances=shared is None)
        entries = self._page_entries(results, offset, count, summary_count, base, shared)
        if entries is None:  # a schedule changed since the search read it: read it again
            results = search(instances=True)
            entries = self._page_entries(results, offset, count, summary_count, base, shared)
            assert entries is not None
        kept = entries

        def page_entries(page: Sequence[selectors.ScheduleResult]) -> list[dict[str, Any]]:
            return kept

        def include(page: Sequence[selectors.ScheduleResult]) -> list[includes.Entry]:
            return includes.schedule_includes(
                organization=organization, page=page, wanted=wanted, base=base
            )

        return Response(
            searchset(
                request,
                results,
                offset=offset,
                count=count,
                page_entries=page_entries,
                include=include if wanted else None,
                summary_count=summary_count,
            )
        )

    def _page_entries(
        self,
        results: selectors.ScheduleResults,
        offset: int,
        count: int,
        summary_count: bool,
        base: str,
        shared: MappedSchedules | None,
    ) -> list[dict[str, Any]] | None:
        """The page's match entries, kept with the (cached) results per base URL and page:
        the searches a cached list serves repeat its first pages. Their resources, rendered
        (``renderers.prerendered``), come from ``shared`` or are mapped; None if a
        schedule to map changed since the search read it. Shared: never changed."""
        if summary_count:
            return []
        key = (base, offset, count)
        found: list[dict[str, Any]] | None = results.memo.get(key)
        if found is not None:
            return found
        page = results[offset : offset + count]
        zone = self.organization.timezone
        prefix = f"{base}/Schedule/"
        match = {"mode": "match"}
        # One pass builds the entries with their kept resources; an entry without one gets
        # its resource below (the entries are new: nothing shares them yet).
        entries: list[dict[str, Any]] = []
        unmapped: list[tuple[dict[str, Any], selectors.ScheduleResult]] = []
        # By id(row): its kept resources (a schedule's results are spread over the page).
        rows: dict[int, dict[str, orjson.Fragment]] = {}
        for r in page:
            _, result_id, row, _ = r  # (unpacked: cheaper than the named fields)
            resource = None
            if shared is not None:
                kept = rows.get(id(row))
                if kept is None:
                    kept = rows[id(row)] = shared.of(zone, row.versions)
                resource = kept.get(result_id)
            entry = {"fullUrl": prefix + result_id, "resource": resource, "search": match}
            entries.append(entry)
            if resource is None:
                unmapped.append((entry, r))
        if unmapped:
            loaded = selectors.schedule_rows_load(
                organization=self.organization, rows=(r.row for _, r in unmapped)
            )
            if loaded is None:
                return None
            parts: mappers.ScheduleParts = {}
            mapped: dict[ScheduleRow, dict[str, orjson.Fragment]] = {}
            for entry, r in unmapped:
                schedule = r.row.schedule or loaded[r.row.pk]
                rendered = prerendered(
                    mappers.schedule_to_fhir(schedule)
                    if r.period is None
                    else mappers.schedule_occurrence_to_fhir(schedule, r.period, memo=parts)
                )
                mapped.setdefault(r.row, {})[r.id] = rendered
                entry["resource"] = rendered
            if shared is not None:
                for row, kept_resources in mapped.items():
                    shared.put(zone, row.versions, kept_resources)
        if len(results.memo) < _SCHEDULE_PAGES:
            results.memo[key] = entries
        return entries


class ScheduleReadView(TenantView):
    resource_type = "Schedule"
    interaction = "read"

    def get(self, request: Request, fhir_id: str, **kwargs: Any) -> Response:
        organization = self.organization

        def build() -> dict[str, Any]:
            schedule = selectors.schedule_get(organization=organization, fhir_id=fhir_id)
            return mappers.schedule_to_fhir(schedule)

        # A schedule's resource depends on schedules, roles and practitioners only.
        return versioned_read(
            request, cached_read(organization, ("Schedule", fhir_id), build, bookings=False)
        )


#: Mapped Slot resources kept per cached snapshot: the first pages, which most searches ask.
_SLOT_MEMO_SIZE = 200


class SlotSearchView(FHIRSearchView):
    resource_type = "Slot"
    filterset = filters.SlotFilterSet
    params = frozenset(
        {"start", "schedule", "service-category", "status", "_include", "_include:iterate"}
        | {"_summary"}
    )
    repeatable = frozenset({"start", "_include", "_include:iterate"})

    def get(self, request: Request, **kwargs: Any) -> Response:
        p = self.search_params(request)
        offset, count = self.paging(p)
        wanted = p.includes(includes.SLOT)
        principal = self.principal
        # An include must not show what the token may not read on its own.
        if "Slot:schedule" in wanted and principal and not principal.has_scope("Schedule", "read"):
            raise auth.ScopeMissing(
                "_include=Slot:schedule returns Schedules: the access token needs "
                "a Schedule read scope as well, e.g. system/Schedule.rs."
            )
        summary_count = p.summary_count()
        now = selectors.utc_now()
        window = p.window("start", self.organization.zone) or Period(now, now + DEFAULT_SPAN)
        f = p.filters(self.filterset)
        schedule_ref = f.get("schedule")
        results = selectors.slot_search(
            organization=self.organization,
            window=window,
            schedule_ids=[schedule_ref.rpartition("/")[2]] if schedule_ref else None,
            statuses=f.get("status"),
            service_category=f.get("service-category"),
            now=now,
        )
        base = self.base_url(request)
        memo = results.memo  # shared by the searches served from one cached snapshot

        def entry(r: selectors.PageSlot) -> tuple[str, dict[str, Any]]:
            key = (r.id, r.status)
            resource = memo.get(key)
            if resource is None:
                resource = mappers.page_slot_to_fhir(r)
                if len(memo) < _SLOT_MEMO_SIZE:
                    memo[key] = resource
            return f"{base}/Slot/{r.id}", resource

        def include(page: Sequence[selectors.PageSlot]) -> list[includes.Entry]:
            return includes.slot_includes(
                organization=self.organization, page=page, wanted=wanted, base=base
            )

        return Response(
            searchset(
                request,
                # A page as plain values: no model instance per slot.
                results.plain(),
                offset=offset,
                count=count,
                to_entry=entry,
                include=include if wanted else None,
                summary_count=summary_count,
            )
        )


class SlotReadView(TenantView):
    resource_type = "Slot"
    interaction = "read"

    def get(self, request: Request, fhir_id: str, **kwargs: Any) -> Response:
        organization = self.organization

        def build() -> dict[str, Any]:
            return mappers.slot_to_fhir(
                selectors.slot_get(organization=organization, fhir_id=fhir_id)
            )

        return versioned_read(request, cached_read(organization, ("Slot", fhir_id), build))


class AppointmentSearchView(FHIRSearchView):
    resource_type = "Appointment"
    patient_scoped = True
    filterset = filters.AppointmentFilterSet
    params = frozenset({"_id", "id", "date", "status", "_include", "_summary"})
    repeatable = frozenset({"date", "_include"})

    def get(self, request: Request, **kwargs: Any) -> Response:
        p = self.search_params(request)
        offset, count = self.paging(p)
        wanted = p.includes(includes.APPOINTMENT)
        summary_count = p.summary_count()
        f = p.filters(self.filterset)
        ids = p.either(f, "_id", "id")
        window = p.window("date", self.organization.zone)
        if ids is None and window is None:
            raise InvalidSearchValue(
                "Searching a patient's appointments needs '_id' (or 'id') or 'date', "
                "e.g. ?date=ge2026-06-01.",
                expression=["date"],
            )
        assert self.patient is not None
        now = selectors.utc_now()  # one clock per response: a hold lapses for all of it
        results = selectors.patient_appointment_search(
            organization=self.organization,
            patient=self.patient,
            ids=ids,
            window=window,
            statuses=f.get("status"),
            now=now,
        )
        base = f"{self.base_url(request)}/Patient/{self.patient.fhir_id}"

        def entry(r: selectors.AppointmentResult) -> tuple[str, dict[str, Any]]:
            resource = (
                mappers.appointment_to_fhir(r.appointment, now=now)
                if r.period is None
                else mappers.appointment_occurrence_to_fhir(r.appointment, r.period)
            )
            return f"{base}/Appointment/{resource['id']}", resource

        patient = self.patient
        fhir_base = self.base_url(request)

        def include(page: Sequence[selectors.AppointmentResult]) -> list[includes.Entry]:
            return includes.appointment_includes(
                organization=self.organization,
                patient=patient,
                page=page,
                wanted=wanted,
                base=fhir_base,
            )

        return Response(
            searchset(
                request,
                results,
                offset=offset,
                count=count,
                to_entry=entry,
                include=include if wanted else None,
                summary_count=summary_count,
            )
        )


class AppointmentReadView(TenantView):
    resource_type = "Appointment"
    interaction = "read"
    patient_scoped = True

    def get(self, request: Request, fhir_id: str, **kwargs: Any) -> Response:
        # The patient's key came with the token query: a cached read asks nothing more,
        # and an uncached one reads the patient's row with the appointment's.
        organization, patient = self.organization, self.patient_key
        assert patient is not None
        # A hold lapses by the clock: the mapper reads it at this instant.
        now = selectors.utc_now()

        def build() -> tuple[dict[str, Any], datetime | None]:
            appointment = selectors.appointment_read(
                organization=organization, patient_pk=patient.pk, fhir_id=fhir_id
            )
            resource = mappers.appointment_to_fhir(appointment, now=now)
            # A live hold reads differently once it lapses, without its row changing.
            lapses = appointment.held_until if appointment.is_held else None
            return resource, lapses if lapses is not None and lapses > now else None

        # The patient's row is not stamped (its name is in the resource): its version is
        # part of the key, as is the patient, so one patient never sees another's entry.
        resource, _ = cached_read(
            organization,
            ("Appointment", fhir_id, patient.pk, patient.version),
            build,
            valid=lambda value: value[1] is None or now < value[1],
        )
        return versioned_read(request, resource)


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


class OperationDefinitionView(TenantView):
    """GET ``OperationDefinition/{name}``: the operations the CapabilityStatement names.
    Public like the CapabilityStatement, which links here."""

    resource_type = "OperationDefinition"
    interaction = "read"
    public = True

    def get(self, request: Request, name: str, **kwargs: Any) -> Response:
        from fhir_api.operation_definitions import OPERATIONS, operation_definition

        # Like the CapabilityStatement: tenant-neutral for anonymous callers (no lookup).
        organization_id = kwargs["organization_id"]
        definition = operation_definition(
            name, base_url=request.build_absolute_uri(f"/v2/{organization_id}/fhir/R4")
        )
        if definition is None:
            raise NotFound(
                f"OperationDefinition '{name}' was not found; this server defines: "
                f"{', '.join(OPERATIONS)}."
            )
        return Response(definition)


class NotFoundView(AcyclicAPIView):
    """Anything under /v2/ that is not a route: 404 OperationOutcome for every method."""

    renderer_classes = [FHIRJSONRenderer]
    parser_classes = [FHIRJSONParser]
    content_negotiation_class = FHIRContentNegotiation
    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []

    def handle(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        resource = kwargs.get("resource_type")
        if resource and resource not in (
            "Schedule",
            "Slot",
            "Patient",
            "metadata",
            "OperationDefinition",
        ):
            message = (
                f"Resource type '{resource}' is not served here; this server offers "
                "Schedule, Slot, Patient/{id}/Appointment and Patient/{id}/AppointmentResponse."
            )
        else:
            message = f"There is no FHIR endpoint at '{request.path}'."
        return outcome_response(404, code="not-found", diagnostics=message)

    # (DRF's stubs type APIView.options against View's, which mypy checks through a subclass)
    get = post = put = patch = delete = head = options = handle  # type: ignore[assignment]


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
