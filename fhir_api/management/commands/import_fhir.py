"""``manage.py import_fhir FILE --organization ID`` (docs/api.md section 9): all or nothing."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from fhir_api.ingest import bundle_import
from scheduling.errors import InvalidInput
from scheduling.models import Organization

#: Above this many entries a progress bar is worth its noise even when not on a terminal.
PROGRESS_THRESHOLD = 200


class Command(BaseCommand):
    help = (
        "Load a FHIR Bundle (collection, batch or transaction) of Patient, Practitioner, "
        "PractitionerRole, Schedule, Slot, Appointment and AppointmentResponse resources into "
        "an organisation, keeping their ids. All or nothing: the first bad entry aborts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="Path of a FHIR JSON Bundle, or '-' for stdin.")
        parser.add_argument("--organization", required=True, help="Organisation id.")

    def handle(self, *args: Any, **options: Any) -> None:
        organization = Organization.objects.filter(pk=options["organization"]).first()
        if organization is None:
            raise CommandError(
                f"Organisation {options['organization']!r} does not exist: create it first "
                "with create_organization."
            )
        data = self._read(options["file"])
        entries = data.get("entry") if isinstance(data, dict) else None
        count = len(entries) if isinstance(entries, list) else 0
        show = count > PROGRESS_THRESHOLD or sys.stderr.isatty()
        with tqdm(
            total=count, desc="Importing", unit="entry", file=sys.stderr, disable=not show
        ) as bar:
            try:
                summary = bundle_import(
                    organization=organization, data=data, on_entry=lambda: bar.update(1)
                )
            except InvalidInput as exc:
                raise CommandError(f"Nothing was imported: {exc.message}") from None
        self.stdout.write(self.style.SUCCESS(str(summary)))

    def _read(self, path: str) -> Any:
        try:
            if path == "-":
                text = sys.stdin.read()
            else:
                with open(path, encoding="utf-8") as handle:
                    text = handle.read()
        except OSError as exc:
            raise CommandError(f"Cannot read {path!r}: {exc.strerror}.") from None
        except UnicodeDecodeError:
            raise CommandError(f"{path!r} is not UTF-8 text.") from None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise CommandError(
                f"{'stdin' if path == '-' else path!r} is not JSON: {exc.msg} "
                f"(line {exc.lineno}, column {exc.colno})."
            ) from None
