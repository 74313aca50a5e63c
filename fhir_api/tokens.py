"""Issuing access tokens (shared by the token endpoint, commands and tests)."""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from fhir_api.models import AccessToken, ApiClient, token_digest


def issue_access_token(
    *, client: ApiClient, scopes: frozenset[str] | None = None, lifetime: int | None = None
) -> tuple[str, AccessToken]:
    """Create a token for ``client``; returns the raw value (shown once) and the row."""
    raw = secrets.token_urlsafe(32)
    # Expired tokens are useless; dropping the client's old ones keeps the table small.
    AccessToken.objects.filter(client=client, expires_at__lt=timezone.now()).delete()
    granted = scopes if scopes is not None else client.scope_set
    seconds = lifetime if lifetime is not None else settings.ACCESS_TOKEN_LIFETIME
    token = AccessToken.objects.create(
        client=client,
        digest=token_digest(raw),
        scopes=" ".join(sorted(granted)),
        expires_at=timezone.now() + timedelta(seconds=seconds),
    )
    return raw, token
