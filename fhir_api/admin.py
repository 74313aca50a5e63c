"""Admin for API clients. Secrets and tokens are never shown: only that a secret is set.

Clients are created with ``manage.py create_api_client``, which prints the secret once;
the admin cannot create them because it has no safe place to show a new secret (a
message would travel in a cookie or the session).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.hashers import identify_hasher
from django.core.management.base import CommandError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from fhir_api.management.commands.create_api_client import validate_scopes
from fhir_api.models import SECRET_SCHEME, AccessToken, ApiClient, ApiClientOrganization


class ApiClientForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = ApiClient
        fields = ["name", "scopes", "jwks", "active"]

    def clean_scopes(self) -> str:
        raw: str = self.cleaned_data.get("scopes", "")
        patient_bound = bool(self.instance and self.instance.patient_fhir_id)
        try:
            return " ".join(validate_scopes(raw, patient_bound=patient_bound))
        except CommandError as exc:
            raise forms.ValidationError(str(exc)) from None


class ApiClientOrganizationInline(admin.TabularInline):  # type: ignore[type-arg]
    model = ApiClientOrganization
    extra = 0
    autocomplete_fields = ()


@admin.register(ApiClient)
class ApiClientAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = ApiClientForm
    list_display = ["name", "client_id", "patient_fhir_id", "active", "revoked_at", "created_at"]
    list_filter = ["active"]
    search_fields = ["name", "client_id"]
    readonly_fields = ["client_id", "secret_status", "patient_fhir_id", "created_at", "revoked_at"]
    fields = [
        "name",
        "client_id",
        "secret_status",
        "patient_fhir_id",
        "scopes",
        "jwks",
        "active",
        "created_at",
        "revoked_at",
    ]
    inlines = [ApiClientOrganizationInline]
    actions = ["revoke"]

    @admin.display(description="client secret")
    def secret_status(self, obj: ApiClient) -> str:
        if not obj.secret_hash:
            return "not set (private_key_jwt only)"
        algorithm: str | None
        if obj.secret_hash.startswith(SECRET_SCHEME + "$"):
            algorithm = SECRET_SCHEME
        else:
            try:
                algorithm = identify_hasher(obj.secret_hash).algorithm
            except ValueError:
                algorithm = "unknown"
        return f"set, stored hashed ({algorithm}); it cannot be shown"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    # API clients span organisations and grant access to health data: clinic staff with
    # model permissions must not see or edit other tenants' clients, so superusers only.
    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    @admin.action(description="Revoke selected clients and delete their tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiClient]) -> None:
        now = timezone.now()
        count = queryset.update(active=False, revoked_at=now)
        AccessToken.objects.filter(client__in=queryset).delete()
        self.message_user(request, f"Revoked {count} client(s).", messages.SUCCESS)
