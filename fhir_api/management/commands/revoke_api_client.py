"""manage.py revoke_api_client: lock a client out for good, effective immediately."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from fhir_api.models import AccessToken, ApiClient


class Command(BaseCommand):
    help = "Revoke an API client and delete its access tokens."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("client_id")

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            client = (
                ApiClient.objects.select_for_update().filter(client_id=options["client_id"]).first()
            )
            if client is None:
                raise CommandError(f"No API client with client id '{options['client_id']}'.")
            client.active = False
            client.revoked_at = client.revoked_at or timezone.now()
            client.save(update_fields=["active", "revoked_at"])
            # Tokens already handed out must stop working now, not when they expire.
            deleted, _ = AccessToken.objects.filter(client=client).delete()
        self.stdout.write(f"Revoked {client.client_id}; deleted {deleted} access token(s).")
