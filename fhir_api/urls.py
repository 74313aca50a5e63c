"""Routes below /v2/{organizationId}/fhir/R4/ (docs/api.md section 2)."""

from __future__ import annotations

from django.urls import URLPattern, re_path

from fhir_api import views

_ID = r"(?P<fhir_id>[A-Za-z0-9\-.]{1,64})"
_PID = r"(?P<patient_id>[A-Za-z0-9\-.]{1,64})"
_BASE = r"^v2/(?P<organization_id>[A-Za-z0-9\-.]{1,64})/fhir/R4/"

urlpatterns: list[URLPattern] = [
    re_path(_BASE + r"metadata/?$", views.CapabilityView.as_view(), name="fhir-metadata"),
    re_path(
        _BASE + r"Schedule/?$", views.ScheduleSearchView.as_view(), name="fhir-schedule-search"
    ),
    re_path(
        _BASE + rf"Schedule/{_ID}/?$", views.ScheduleReadView.as_view(), name="fhir-schedule-read"
    ),
    re_path(_BASE + r"Slot/?$", views.SlotSearchView.as_view(), name="fhir-slot-search"),
    re_path(_BASE + rf"Slot/{_ID}/?$", views.SlotReadView.as_view(), name="fhir-slot-read"),
    re_path(
        _BASE + rf"Patient/{_PID}/Appointment/\$book-slot/?$",
        views.operation_view("BookSlotView"),
        name="fhir-book-slot",
    ),
    re_path(
        _BASE + rf"Patient/{_PID}/Appointment/\$hold/?$",
        views.operation_view("HoldView"),
        name="fhir-hold",
    ),
    re_path(
        _BASE + rf"Patient/{_PID}/Appointment/{_ID}/\$confirm/?$",
        views.operation_view("ConfirmView"),
        name="fhir-confirm",
    ),
    re_path(
        _BASE + rf"Patient/{_PID}/Appointment/{_ID}/\$cancel/?$",
        views.operation_view("CancelView"),
        name="fhir-cancel",
    ),
    re_path(
        _BASE + rf"Patient/{_PID}/Appointment/{_ID}/\$reschedule/?$",
        views.operation_view("RescheduleView"),
        name="fhir-reschedule",
    ),
    re_path(
        _BASE + r"OperationDefinition/(?P<name>[a-z\-]{1,64})/?$",
        views.OperationDefinitionView.as_view(),
        name="fhir-operation-definition",
    ),
    re_path(
        _BASE + rf"Patient/{_PID}/AppointmentResponse/?$",
        views.operation_view("AppointmentResponseView"),
        name="fhir-appointment-response",
    ),
    re_path(
        _BASE + rf"Patient/{_PID}/Appointment/?$",
        views.AppointmentSearchView.as_view(),
        name="fhir-appointment-search",
    ),
    re_path(
        _BASE + rf"Patient/{_PID}/Appointment/{_ID}/?$",
        views.AppointmentReadView.as_view(),
        name="fhir-appointment-read",
    ),
    re_path(
        _BASE + r"(?P<resource_type>[A-Za-z]+)(?:/.*)?$",
        views.NotFoundView.as_view(),
        name="fhir-unknown-type",
    ),
    re_path(r"^v2/.*$", views.NotFoundView.as_view(), name="fhir-not-found"),
]
