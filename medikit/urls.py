from django.contrib import admin
from django.urls import include, path

from fhir_api import oauth
from fhir_api.openapi import openapi_json
from medikit.health import healthz
from medikit.home import doc, home

urlpatterns = [
    path("", home, name="home"),
    path("docs/<slug:name>.md", doc, name="doc"),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("oauth/token", oauth.token, name="oauth-token"),
    path("openapi.json", openapi_json, name="openapi"),
    path(".well-known/smart-configuration", oauth.smart_configuration, name="smart-configuration"),
    path(
        "v2/<str:organization_id>/fhir/R4/.well-known/smart-configuration",
        oauth.smart_configuration,
        name="tenant-smart-configuration",
    ),
    path("", include("fhir_api.urls")),
]

# API paths answer OperationOutcome JSON even for errors outside DRF.
handler400 = "fhir_api.errors.handler400"
handler403 = "fhir_api.errors.handler403"
handler404 = "fhir_api.errors.handler404"
handler500 = "fhir_api.errors.handler500"
