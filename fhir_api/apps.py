from django.apps import AppConfig


class FhirApiConfig(AppConfig):
    name = "fhir_api"
    verbose_name = "FHIR API"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # A class attribute of Django's WSGIHandler: set once, before any request, so
        # that no request can fail while Django builds it (see medikit.request).
        from medikit.request import install

        install()
