from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("fhir_api.urls")),
]

# API paths answer OperationOutcome JSON even for errors outside DRF.
handler404 = "fhir_api.errors.handler404"
handler500 = "fhir_api.errors.handler500"
