"""``manage.py seed_demo_api_client --organization ID``: the demo API client (run by seed_demo).

Prints the number of rows created (0 on a second run), which ``seed_demo`` adds to its own.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from fhir_api.demo import demo_api_client_ensure
from scheduling.models import Organization


class Command(BaseCommand):
    help = "Create (once) the demo API client, bound to the given organisation."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--organization", required=True)

    def handle(self, *args: Any, **options: Any) -> str:
        organization = Organization.objects.filter(pk=options["organization"]).first()
        if organization is None:
            raise CommandError(f"Organization '{options['organization']}' does not exist.")
        return str(demo_api_client_ensure(organization=organization))
