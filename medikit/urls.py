from django.contrib import admin
from django.urls import include, path

from medikit.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("", include("fhir_api.urls")),
]

# API paths answer OperationOutcome JSON even for errors outside DRF.
handler404 = "fhir_api.errors.handler404"
handler500 = "fhir_api.errors.handler500"
