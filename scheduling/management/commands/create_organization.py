"""``manage.py create_organization ID --name NAME [--timezone ZONE]`` (docs/api.md section 9)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from scheduling.models import Organization


class Command(BaseCommand):
    help = "Create an organisation (a tenant), or update its name and time zone if it exists."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("id", help="FHIR id used in API URLs, e.g. 'clinic-a'.")
        parser.add_argument("--name", required=True, help="Display name.")
        parser.add_argument(
            "--timezone",
            default="Europe/Amsterdam",
            help="IANA time zone of the clinic (default Europe/Amsterdam).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        organization = Organization.objects.filter(pk=options["id"]).first()
        created = organization is None
        if organization is None:
            organization = Organization(id=options["id"])
        organization.name = options["name"]
        organization.timezone = options["timezone"]
        try:
            organization.full_clean()
        except ValidationError as exc:
            problems = "; ".join(
                f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items()
            )
            raise CommandError(f"Cannot save organisation {options['id']!r}: {problems}") from None
        organization.save()
        verb = "Created" if created else "Updated"
        self.stdout.write(
            self.style.SUCCESS(
                f"{verb} organisation {organization.id} "
                f"({organization.name}, {organization.timezone})."
            )
        )
