"""Organisation scoping for the Django admin: the one place staff users are fenced in.

A staff user works for one or more organisations (``StaffMembership``) and must see and
edit only their rows: changelists, change forms, foreign-key choices, actions and the
organisation field itself. Superusers see everything. Every ModelAdmin of the scheduling
app inherits :class:`OrganizationScopedAdmin`, so no admin has to re-check the tenant.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import QuerySet
from django.forms import ModelChoiceField, ModelForm, ModelMultipleChoiceField
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from scheduling.models import Organization


def user_organizations(user: Any) -> QuerySet[Organization]:
    """The organisations a user may manage in the admin (all of them for a superuser)."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return Organization.objects.none()
    if user.is_superuser:
        return Organization.objects.all()
    return Organization.objects.filter(staffmembership__user=user).distinct()


def user_single_organization(user: Any) -> Organization | None:
    """The user's organisation when there is exactly one (used as the default everywhere)."""
    organizations = list(user_organizations(user)[:2])
    return organizations[0] if len(organizations) == 1 else None


def request_zone(request: HttpRequest) -> zoneinfo.ZoneInfo:
    """The zone admin pages are shown in: the user's single organisation's, else the server's."""
    organization = user_single_organization(request.user)
    return organization.zone if organization is not None else timezone.get_default_timezone()


@contextmanager
def organization_timezone(request: HttpRequest) -> Iterator[None]:
    """Show and read date-times in the organisation's zone, not the server's."""
    with timezone.override(request_zone(request)):
        yield


def _organization_lookup(model: type[models.Model]) -> str | None:
    """The ORM path from ``model`` to its organisation, or None for untenanted models."""
    if model is Organization:
        return "pk"
    try:
        field = model._meta.get_field("organization")
    except Exception:
        return None
    return "organization" if field.is_relation else None


if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[Any]
else:  # django-stubs' generics are not subscriptable at runtime
    _ModelAdmin = admin.ModelAdmin


class OrganizationScopedAdmin(_ModelAdmin):
    """Limit everything a staff user sees or touches to their organisations.

    ``organization_lookup`` is the ORM path from this admin's model to its organisation
    (``"pk"`` for Organization itself). Superusers are not limited.
    """

    organization_lookup: str = "organization"

    # --- what the user may see --------------------------------------------------------
    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(
            **{f"{self.organization_lookup}__in": user_organizations(request.user)}
        )

    def _limit_related(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if request.user.is_superuser:
            return queryset
        lookup = _organization_lookup(queryset.model)
        if lookup is None:
            return queryset
        return queryset.filter(**{f"{lookup}__in": user_organizations(request.user)})

    def formfield_for_foreignkey(
        self, db_field: models.ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> ModelChoiceField[Any] | None:
        formfield = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if formfield is not None and formfield.queryset is not None:
            formfield.queryset = self._limit_related(request, formfield.queryset)
            if db_field.related_model is Organization and not request.user.is_superuser:
                single = user_single_organization(request.user)
                if single is not None:
                    formfield.initial = single.pk
                    # One choice: nothing to pick, and no empty option to pick by mistake.
                    formfield.empty_label = None
        return formfield

    def formfield_for_manytomany(
        self, db_field: models.ManyToManyField[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> ModelMultipleChoiceField[Any] | None:
        formfield = super().formfield_for_manytomany(db_field, request, **kwargs)
        if formfield is not None and formfield.queryset is not None:
            formfield.queryset = self._limit_related(request, formfield.queryset)
        return formfield

    # --- what the user may write ------------------------------------------------------
    def save_model(
        self, request: HttpRequest, obj: Any, form: ModelForm[Any], change: bool
    ) -> None:
        # The form's choices are already limited; this stops a crafted POST all the same.
        if not request.user.is_superuser:
            allowed = set(user_organizations(request.user).values_list("pk", flat=True))
            org_id = obj.pk if isinstance(obj, Organization) else obj.organization_id
            if org_id not in allowed:
                raise PermissionDenied
        super().save_model(request, obj, form, change)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        # Delete views already 302 for foreign objects (get_queryset); belt and braces.
        if not self.get_queryset(request).filter(pk=obj.pk).exists():
            raise PermissionDenied
        super().delete_model(request, obj)

    # --- date-times in the organisation's zone ----------------------------------------
    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        with organization_timezone(request):
            response = super().changeform_view(request, object_id, form_url, extra_context)
            # Template responses render lazily; render inside the zone so times match.
            if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                response.render()
            return response

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        with organization_timezone(request):
            response = super().changelist_view(request, extra_context)
            if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                response.render()
            return response
