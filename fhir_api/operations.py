"""Writes over HTTP: ``$book-slot`` (docs/api.md section 6), ``$hold``, ``$confirm``,
``$cancel``, ``$reschedule`` (section 13) and AppointmentResponse (section 7).

The views only turn FHIR JSON into service arguments and the result back into FHIR JSON;
every rule lives in ``scheduling.services``. Input is parsed with ``fhir.resources.R4B``;
each problem with it becomes one OperationOutcome issue whose ``expression`` names the
parameter or element, so a client can fix all of them in one go.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, ClassVar

from fhir.resources.R4B.appointmentresponse import AppointmentResponse as FhirAppointmentResponse
from fhir.resources.R4B.parameters import Parameters, ParametersParameter
from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from fhir_api.errors import InvalidRequest, Issue, issue, issues_from_pydantic
from fhir_api.mappers import appointment_response_to_fhir, appointment_to_fhir
from fhir_api.tenancy import TenantView
from scheduling import selectors, services
from scheduling.errors import BusinessRuleViolation
from scheduling.models import Appointment, ParticipationStatus, Patient

_ID = r"[A-Za-z0-9\-.]{1,64}"
_APPOINTMENT_REF = re.compile(rf"^Appointment/({_ID})$")
_ROLE_REF = re.compile(rf"^(?:PractitionerRole/)?({_ID})$")
# A Slot names its schedule as "Schedule/{id}": integrators paste that reference as it is.
_SCHEDULE_REF = re.compile(rf"^(?:Schedule/)?({_ID})$")
_KEY_RE = re.compile(r"^[\x21-\x7e]{1,200}$")
#: Dates from outside must lie in these years (inclusive): far enough for any booking, and
#: far from datetime's limits, which a UTC conversion of year 1 or 9999 would cross.
MIN_YEAR = 1900
MAX_YEAR = 2200

# name -> (value[x] element it must use, required)
_BOOK_PARAMETERS: dict[str, tuple[str, bool]] = {
    "start": ("valueDateTime", True),
    "schedule": ("valueString", True),
    "practitionerRole": ("valueString", True),
    "status": ("valueString", True),
    "comment": ("valueString", False),
}


def _issue(diagnostics: str, expression: str, code: str = "invalid") -> Issue:
    return issue(diagnostics, code=code, expression=[expression])


def _require_resource_type(data: Any, expected: str) -> None:
    found = data.get("resourceType") if isinstance(data, dict) else None
    if found != expected:
        raise InvalidRequest(
            [
                _issue(
                    f"The body must be a {expected} resource (resourceType '{expected}'), "
                    f"not {found!r}.",
                    f"{expected}.resourceType",
                    code="structure",
                )
            ]
        )


def _fhir_base(request: Request) -> str:
    """Absolute URL of this tenant's FHIR base, taken from the request's own path so it
    holds behind any script prefix: ``.../v2/{org}/fhir/R4``."""
    path = request.path
    return request.build_absolute_uri(path[: path.index("/Patient/")])


def _idempotency_key(request: Request) -> str | None:
    raw = request.META.get("HTTP_IDEMPOTENCY_KEY")
    if raw is None:
        return None
    if not _KEY_RE.match(raw):
        raise InvalidRequest(
            [
                _issue(
                    "The Idempotency-Key header must be 1-200 visible ASCII characters "
                    "(a UUID is a good choice).",
                    "Idempotency-Key",
                )
            ]
        )
    return str(raw)


_START_PARAMETER = ("valueDateTime", True)
# name -> (value[x] element it must use, required), per operation
_HOLD_PARAMETERS: dict[str, tuple[str, bool]] = {
    "start": _START_PARAMETER,
    "schedule": ("valueString", True),
    "practitionerRole": ("valueString", True),
    "comment": ("valueString", False),
    "holdDuration": ("valueDuration", False),
}
_CONFIRM_PARAMETERS: dict[str, tuple[str, bool]] = {}
_CANCEL_PARAMETERS: dict[str, tuple[str, bool]] = {"reason": ("valueString", False)}
_RESCHEDULE_PARAMETERS: dict[str, tuple[str, bool]] = {
    "start": _START_PARAMETER,
    "schedule": ("valueString", False),
    "practitionerRole": ("valueString", False),
}
#: UCUM codes a holdDuration may use, in seconds.
_DURATION_UNITS = {"s": 1, "min": 60}
_UCUM = "http://unitsofmeasure.org"


def _is_empty_body(data: Any) -> bool:
    """An operation that needs no parameters may be POSTed without a body."""
    return data is None or (hasattr(data, "__len__") and len(data) == 0)


def _model_type(element: str) -> TypeAdapter[Any]:
    annotation = ParametersParameter.model_fields[element].annotation
    assert annotation is not None  # every element of the R4B model is typed
    return TypeAdapter(annotation)


#: The elements of a ``Parameters.parameter`` that :func:`quick_parameters` checks itself,
#: each with the R4B model's own type for it (the same validators, so the same values):
#: the name and the primitive value[x] types the operations take.
_QUICK_TYPES = {
    element: _model_type(element) for element in ("name", "valueDateTime", "valueString")
}


def quick_parameters(data: dict[str, Any]) -> list[Any] | None:
    """The parameters of the commonest Parameters body, checked element by element with
    the R4B model's own types, or None for any other body (the whole model decides then).

    ``Parameters.model_validate`` costs about 0.11 ms for a four-parameter ``$book-slot``
    body, the largest piece of a refused booking's Python: most of it is the library's
    model-wide validators (each parameter element is checked against its 50-odd value[x]
    choices, twice). A body of exactly ``resourceType`` and a non-empty ``parameter``
    list whose items are exactly a ``name`` and one ``valueString`` or ``valueDateTime``,
    none null, has nothing those validators can refuse: each item's two elements are
    validated by the types the model itself would use for them (about 0.005 ms). Anything
    else (another element, a null, a value the types refuse) returns None, so every error
    still comes from the model, worded as before. ``tests/test_operation_parameters.py``
    holds the two to the same answers.
    """
    if len(data) != 2:
        return None
    items = data.get("parameter")
    if not isinstance(items, list) or not items:
        return None
    found: list[Any] = []
    name_type = _QUICK_TYPES["name"]
    for item in items:
        if not isinstance(item, dict) or len(item) != 2 or "name" not in item:
            return None
        element = next(key for key in item if key != "name")
        value_type = _QUICK_TYPES.get(element)
        if value_type is None:
            return None
        try:
            name = name_type.validate_python(item["name"])
            value = value_type.validate_python(item[element])
        except PydanticValidationError:
            return None
        if name is None or value is None:
            return None
        # Read as the model's parameters are: ``.name`` and ``getattr(p, element, None)``.
        found.append(SimpleNamespace(name=name, **{element: value}))
    return found


def read_parameters(
    data: Any,
    spec: dict[str, tuple[str, bool]],
    operation: str,
    *,
    body_optional: bool = False,
) -> dict[str, Any]:
    """The values of a Parameters body by name, checked for presence, type, repeats and
    syntax; references (``Schedule/x``, ``PractitionerRole/x``) resolved to bare ids.

    Every problem becomes one 400 issue (raised together as InvalidRequest) whose
    ``expression`` is ``Parameters.parameter[name]``.
    """
    if body_optional and _is_empty_body(data):
        data = {"resourceType": "Parameters"}
    _require_resource_type(data, "Parameters")
    quick = quick_parameters(data)
    parameters = _parameters_of_model(data) if quick is None else quick

    issues: list[Issue] = []
    values: dict[str, Any] = {}
    for parameter in parameters:
        name = parameter.name
        expression = f"Parameters.parameter[{name}]"
        if name not in spec:
            known = ", ".join(spec) or "no parameters"
            issues.append(
                _issue(f"Unknown parameter '{name}'; {operation} takes {known}.", expression)
            )
            continue
        if name in values:
            issues.append(_issue(f"Parameter '{name}' is given more than once.", expression))
            continue
        element = spec[name][0]
        value = getattr(parameter, element, None)
        if value is None:
            issues.append(_issue(f"Parameter '{name}' must be given as {element}.", expression))
            values[name] = None
            continue
        values[name] = value
    for name, (element, required) in spec.items():
        if required and name not in values:
            issues.append(
                _issue(
                    f"Parameter '{name}' ({element}) is required.",
                    f"Parameters.parameter[{name}]",
                    code="required",
                )
            )

    start = values.get("start")
    if start is not None and (not isinstance(start, datetime) or start.utcoffset() is None):
        issues.append(
            _issue(
                "start must be a full date-time with a timezone offset, "
                "e.g. 2026-06-01T09:00:00+02:00.",
                "Parameters.parameter[start]",
            )
        )
    elif start is not None and not MIN_YEAR <= start.year <= MAX_YEAR:
        # Converting year 1 or 9999 to UTC overflows; no clinic books that far out.
        issues.append(
            _issue(
                f"start must lie between the years {MIN_YEAR} and {MAX_YEAR}.",
                "Parameters.parameter[start]",
            )
        )
    role = values.get("practitionerRole")
    if role is not None:
        role_match = _ROLE_REF.match(role) if isinstance(role, str) else None
        if role_match is None:
            issues.append(
                _issue(
                    "practitionerRole must be a PractitionerRole id or 'PractitionerRole/{id}'.",
                    "Parameters.parameter[practitionerRole]",
                )
            )
        else:
            # The services take bare ids: references are resolved here, at the edge.
            values["practitionerRole"] = role_match.group(1)
    schedule = values.get("schedule")
    if schedule is not None:
        schedule_match = _SCHEDULE_REF.match(schedule) if isinstance(schedule, str) else None
        if schedule_match is None:
            issues.append(
                _issue(
                    "schedule must be a Schedule id or 'Schedule/{id}' (as in Slot.schedule).",
                    "Parameters.parameter[schedule]",
                )
            )
        else:
            values["schedule"] = schedule_match.group(1)
    duration = values.get("holdDuration")
    if duration is not None:
        try:
            values["holdDuration"] = _duration(duration)
        except InvalidRequest as exc:
            issues.extend(exc.issues)
    if issues:
        raise InvalidRequest(issues)
    return values


def _parameters_of_model(data: dict[str, Any]) -> Sequence[Any]:
    """``data``'s parameters as ``Parameters.model_validate`` reads them (400 otherwise)."""
    raw_parameters = data.get("parameter")
    names: dict[int, str] = {}
    if isinstance(raw_parameters, list):
        for index, item in enumerate(raw_parameters):
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                names[index] = item["name"]
    try:
        parsed = Parameters.model_validate(data)
    except PydanticValidationError as exc:
        raise InvalidRequest(issues_from_pydantic(exc, "Parameters", names)) from None
    return parsed.parameter or []


def _duration(value: Any) -> timedelta:
    """A UCUM valueDuration in seconds or minutes -> timedelta (InvalidRequest otherwise)."""
    expression = "Parameters.parameter[holdDuration]"
    unit = value.code or value.unit
    if value.system not in (None, _UCUM) or unit not in _DURATION_UNITS:
        raise InvalidRequest(
            [
                _issue(
                    "holdDuration must be a UCUM duration in 's' or 'min', e.g. "
                    '{"value": 5, "unit": "min", "system": "http://unitsofmeasure.org", '
                    '"code": "min"}.',
                    expression,
                )
            ]
        )
    if value.value is None or not value.value.is_finite() or value.value <= 0:
        raise InvalidRequest([_issue("holdDuration needs a positive value.", expression)])
    if value.value * _DURATION_UNITS[unit] > 86_400:
        # Far beyond the 60 minutes the service allows; refused here before any arithmetic.
        raise InvalidRequest([_issue("holdDuration may be at most 60 min.", expression)])
    return timedelta(seconds=float(value.value) * _DURATION_UNITS[unit])


class BookingInput:
    """The five ``$book-slot`` parameters, checked for presence, type and syntax."""

    def __init__(self, data: Any) -> None:
        values = read_parameters(data, _BOOK_PARAMETERS, "$book-slot")
        self.start: datetime = values["start"]
        self.schedule_id: str = str(values["schedule"])
        self.practitioner_role_id: str = str(values["practitionerRole"])
        self.status: str = str(values["status"])
        self.comment: str = str(values.get("comment") or "")


class _PatientWriteView(TenantView):
    #: The operation's Parameters names: a domain error about one of these fields names
    #: ``Parameters.parameter[x]``; about another field, the element of ``subject``.
    parameter_names: frozenset[str] = frozenset()
    subject = "Appointment"

    def field_path(self, field: str) -> str:
        """The FHIR path of a domain field for this interaction (errors, docs/api.md 3)."""
        if not field or "." in field or "[" in field or "-" in field:
            return field  # already a path, or a header such as Idempotency-Key
        if field in self.parameter_names:
            return f"Parameters.parameter[{field}]"
        return f"{self.subject}.{field}"

    interaction: ClassVar = "create"
    patient_scoped: ClassVar[bool] = True

    @property
    def actor(self) -> str:
        return self.principal.client_id if self.principal is not None else "anonymous"

    def this_patient(self) -> Patient:
        assert self.patient is not None  # patient_scoped: tenancy resolved it or raised 404
        return self.patient

    def patient_for_booking(self) -> Patient:
        """The path's patient for a booking service, which needs only its key: a booking
        refused early (most of a race for one slot) then reads no patient row. The row is
        read for the answer (:meth:`answered_with_patient`)."""
        patient = self.patient_keyed
        assert patient is not None  # patient_scoped: tenancy resolved it or raised 404
        return patient

    def answered_with_patient(self, appointment: Appointment) -> Appointment:
        """``appointment`` (of this path's patient) with the patient's loaded row, which the
        answer shows (its name)."""
        appointment.patient = self.this_patient()
        return appointment


class BookSlotView(_PatientWriteView):
    """POST ``Patient/{pid}/Appointment/$book-slot``: book one slot for this patient."""

    resource_type: ClassVar[str] = "Appointment"
    parameter_names = frozenset({"start", "schedule", "practitionerRole", "status", "comment"})

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = _idempotency_key(request)
        booking = BookingInput(request.data)
        patient = self.patient_for_booking()
        result = services.appointment_book(
            organization=self.organization,
            patient=patient,
            schedule_id=booking.schedule_id,
            start=booking.start,
            practitioner_role_id=booking.practitioner_role_id,
            status=booking.status,
            comment=booking.comment,
            actor=self.actor,
            idempotency_key=key,
        )
        appointment = self.answered_with_patient(result.appointment)
        location = (
            f"{_fhir_base(request)}/Patient/{patient.fhir_id}/Appointment/{appointment.fhir_id}"
        )
        # A replayed Idempotency-Key answers exactly like the original request (201).
        return Response(
            appointment_to_fhir(appointment), status=201, headers={"Location": location}
        )


class HoldView(_PatientWriteView):
    """POST ``Patient/{pid}/Appointment/$hold``: keep one slot for this patient a while."""

    resource_type: ClassVar[str] = "Appointment"
    also_interactions: ClassVar = ("update",)
    parameter_names = frozenset(_HOLD_PARAMETERS)

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = _idempotency_key(request)
        values = read_parameters(request.data, _HOLD_PARAMETERS, "$hold")
        patient = self.patient_for_booking()
        now = selectors.utc_now()
        result = services.appointment_hold(
            organization=self.organization,
            patient=patient,
            schedule_id=str(values["schedule"]),
            start=values["start"],
            practitioner_role_id=str(values["practitionerRole"]),
            comment=str(values.get("comment") or ""),
            actor=self.actor,
            hold_duration=values.get("holdDuration") or services.DEFAULT_HOLD_DURATION,
            idempotency_key=key,
            now=now,
        )
        appointment = self.answered_with_patient(result.appointment)
        location = (
            f"{_fhir_base(request)}/Patient/{patient.fhir_id}/Appointment/{appointment.fhir_id}"
        )
        return Response(
            appointment_to_fhir(appointment, now=now),
            status=201,
            headers={"Location": location},
        )


class _AppointmentOperationView(_PatientWriteView):
    """An operation on one stored appointment of this patient: ``Appointment/{id}/$name``.

    An appointment of another patient or organisation, or a generated occurrence, answers
    404 before anything else is looked at.
    """

    resource_type: ClassVar[str] = "Appointment"
    also_interactions: ClassVar = ("update",)

    def target(self, fhir_id: str) -> Appointment:
        return selectors.appointment_get(
            organization=self.organization, patient=self.this_patient(), fhir_id=fhir_id
        )

    def answer(self, appointment: Appointment) -> Response:
        return Response(appointment_to_fhir(appointment, now=selectors.utc_now()), status=200)


class ConfirmView(_AppointmentOperationView):
    """POST ``Patient/{pid}/Appointment/{id}/$confirm``: a live hold becomes booked."""

    parameter_names = frozenset(_CONFIRM_PARAMETERS)

    def post(self, request: Request, fhir_id: str, *args: Any, **kwargs: Any) -> Response:
        read_parameters(request.data, _CONFIRM_PARAMETERS, "$confirm", body_optional=True)
        appointment = services.appointment_confirm(
            organization=self.organization, appointment=self.target(fhir_id), actor=self.actor
        )
        return self.answer(appointment)


class CancelView(_AppointmentOperationView):
    """POST ``Patient/{pid}/Appointment/{id}/$cancel``: cancel and free the slot."""

    parameter_names = frozenset(_CANCEL_PARAMETERS)

    def post(self, request: Request, fhir_id: str, *args: Any, **kwargs: Any) -> Response:
        key = _idempotency_key(request)
        values = read_parameters(request.data, _CANCEL_PARAMETERS, "$cancel", body_optional=True)
        appointment = services.appointment_cancel(
            organization=self.organization,
            appointment=self.target(fhir_id),
            actor=self.actor,
            reason=str(values.get("reason") or ""),
            idempotency_key=key,
        )
        return self.answer(appointment)


class RescheduleView(_AppointmentOperationView):
    """POST ``Patient/{pid}/Appointment/{id}/$reschedule``: the same appointment, moved."""

    parameter_names = frozenset(_RESCHEDULE_PARAMETERS)

    def post(self, request: Request, fhir_id: str, *args: Any, **kwargs: Any) -> Response:
        key = _idempotency_key(request)
        values = read_parameters(request.data, _RESCHEDULE_PARAMETERS, "$reschedule")
        appointment = services.appointment_reschedule(
            organization=self.organization,
            appointment=self.target(fhir_id),
            start=values["start"],
            schedule_id=values.get("schedule"),
            practitioner_role_id=values.get("practitionerRole"),
            actor=self.actor,
            idempotency_key=key,
        )
        return self.answer(appointment)


class AppointmentResponseView(_PatientWriteView):
    """POST ``Patient/{pid}/AppointmentResponse``: the patient accepts, declines, ..."""

    resource_type: ClassVar[str] = "AppointmentResponse"
    subject = "AppointmentResponse"

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = request.data
        _require_resource_type(data, "AppointmentResponse")
        try:
            parsed = FhirAppointmentResponse.model_validate(data)
        except PydanticValidationError as exc:
            raise InvalidRequest(issues_from_pydantic(exc, "AppointmentResponse")) from None
        patient = self.this_patient()

        issues: list[Issue] = []
        reference = parsed.appointment.reference if parsed.appointment else None
        match = _APPOINTMENT_REF.match(reference) if isinstance(reference, str) else None
        if match is None:
            issues.append(
                _issue(
                    "appointment.reference must be 'Appointment/{id}' of one of this "
                    "patient's appointments.",
                    "AppointmentResponse.appointment.reference",
                )
            )
        status = parsed.participantStatus
        if status not in ParticipationStatus.values:
            allowed = ", ".join(ParticipationStatus.values)
            issues.append(
                _issue(
                    f"participantStatus '{status}' is not one of: {allowed}.",
                    "AppointmentResponse.participantStatus",
                    code="code-invalid",
                )
            )
        if issues:
            raise InvalidRequest(issues)
        assert match is not None  # issues raised above otherwise

        actor_reference = parsed.actor.reference if parsed.actor else None
        if actor_reference != f"Patient/{patient.fhir_id}":
            raise BusinessRuleViolation(
                f"actor.reference must be 'Patient/{patient.fhir_id}', the patient of this "
                f"path (got {actor_reference!r}).",
                expression=["AppointmentResponse.actor.reference"],
            )

        response = services.appointment_respond(
            organization=self.organization,
            patient=patient,
            appointment_fhir_id=match.group(1),
            participant_status=str(status),
            comment=parsed.comment or "",
            actor=self.actor,
        )
        base = _fhir_base(request)
        location = f"{base}/Patient/{patient.fhir_id}/AppointmentResponse/{response.fhir_id}"
        return Response(
            appointment_response_to_fhir(response), status=201, headers={"Location": location}
        )
