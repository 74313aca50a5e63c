"""``manage.py expire_holds [--organization ID]``: write lapsed holds down as cancelled.

Housekeeping, not correctness: a hold lapses by itself at ``held_until`` (reads, searches
and bookings compare it with the clock), and the next booking of its time tidies it too.
This only keeps the table honest for reports, exports and direct SQL; run it from cron.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scheduling.models import Organization
from scheduling.services import appointment_holds_expire

ACTOR = "command:expire_holds"


class Command(BaseCommand):
    help = "Mark holds whose held-until has passed as cancelled ('hold expired'), audited."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--organization", help="Only this organisation (default: all).")

    def handle(self, *args: Any, **options: Any) -> None:
        organizations = Organization.objects.order_by("pk")
        if options["organization"]:
            organizations = organizations.filter(pk=options["organization"])
            if not organizations.exists():
                raise CommandError(f"Organization '{options['organization']}' does not exist.")
        total = 0
        # One transaction per organisation: a large tenant never holds the others' rows.
        for organization in organizations:
            total += appointment_holds_expire(organization=organization, actor=ACTOR)
        self.stdout.write(f"{total} lapsed hold(s) marked cancelled.")
