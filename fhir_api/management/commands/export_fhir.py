"""``manage.py export_fhir --organization ID [--output FILE]`` (docs/api.md section 9)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import QuerySet

from fhir_api import mappers
from scheduling import models as m

_NAMESPACE = uuid.UUID("5b0e8a52-6f0c-4d36-9a43-0c1b7f1d8e21")

# (type, rows, mapper); the order is the Bundle's order, so a re-import needs no sorting.
_Kind = tuple[str, Callable[[m.Organization], QuerySet[Any]], Callable[[Any], dict[str, Any]]]
_KINDS: tuple[_Kind, ...] = (
    ("Patient", lambda o: m.Patient.objects.filter(organization=o), mappers.patient_to_fhir),
    (
        "Practitioner",
        lambda o: m.Practitioner.objects.filter(organization=o),
        mappers.practitioner_to_fhir,
    ),
    (
        "PractitionerRole",
        lambda o: m.PractitionerRole.objects.filter(organization=o).select_related("practitioner"),
        mappers.practitioner_role_to_fhir,
    ),
    (
        "Schedule",
        lambda o: m.Schedule.objects.filter(organization=o).select_related(
            "organization", "practitioner_role__practitioner", "practitioner"
        ),
        mappers.schedule_to_fhir,
    ),
    (
        "Slot",
        lambda o: m.Slot.objects.filter(organization=o).select_related("schedule"),
        mappers.slot_to_fhir,
    ),
    (
        "Appointment",
        lambda o: m.Appointment.objects.filter(organization=o).select_related(
            "organization", "patient", "practitioner_role", "slot"
        ),
        mappers.appointment_to_fhir,
    ),
    (
        "AppointmentResponse",
        lambda o: m.AppointmentResponse.objects.filter(organization=o).select_related(
            "appointment", "patient"
        ),
        mappers.appointment_response_to_fhir,
    ),
)


#: Rows read and mapped per query.
_CHUNK = 1000


def full_url(
    *, organization: m.Organization, resource_type: str, fhir_id: str, base_url: str | None
) -> str:
    """The entry's fullUrl: the resource's URL on a server, or a stable ``urn:uuid``.

    Without a base URL the fullUrl depends only on type and id, not on the organisation,
    so exporting, importing elsewhere and exporting again gives the identical Bundle.
    """
    if base_url:
        return f"{base_url.rstrip('/')}/v2/{organization.id}/fhir/R4/{resource_type}/{fhir_id}"
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{resource_type}/{fhir_id}')}"


def organization_entries(
    *, organization: m.Organization, base_url: str | None = None
) -> Iterator[dict[str, Any]]:
    """Every stored resource of ``organization`` as a Bundle entry, by type then id, read
    and mapped a chunk at a time (only the ids of one type are held in memory)."""
    for resource_type, rows, to_fhir in _KINDS:
        # Sorted in Python: database collations order ids differently (PostgreSQL's locale
        # vs SQLite's bytes), and the file must be the same whichever database wrote it.
        keys = sorted(
            rows(organization).order_by().values_list("fhir_id", "pk"), key=lambda k: k[0]
        )
        for i in range(0, len(keys), _CHUNK):
            pks = [pk for _, pk in keys[i : i + _CHUNK]]
            by_pk = {row.pk: row for row in rows(organization).filter(pk__in=pks)}
            for pk in pks:
                row = by_pk[pk]
                yield {
                    "fullUrl": full_url(
                        organization=organization,
                        resource_type=resource_type,
                        fhir_id=row.fhir_id,
                        base_url=base_url,
                    ),
                    "resource": to_fhir(row),
                }


def organization_bundle(
    *, organization: m.Organization, base_url: str | None = None
) -> dict[str, Any]:
    """Every stored resource of ``organization`` as a collection Bundle, by type then id."""
    entries = list(organization_entries(organization=organization, base_url=base_url))
    # No "total": FHIR R4 allows it on searchset and history Bundles only (bdl-1).
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def write_bundle(
    write: Callable[[str], object], *, organization: m.Organization, base_url: str | None = None
) -> int:
    """Write :func:`organization_bundle` to ``handle`` as each entry is read (the same text
    as ``json.dumps(bundle, indent=2, ensure_ascii=False)`` and a newline) through ``write``;
    returns how many entries it wrote."""
    count = 0
    write('{\n  "resourceType": "Bundle",\n  "type": "collection",\n  "entry": [')
    for item in organization_entries(organization=organization, base_url=base_url):
        text = json.dumps(item, indent=2, ensure_ascii=False).replace("\n", "\n    ")
        write(("," if count else "") + "\n    " + text)
        count += 1
    write("\n  ]\n}\n" if count else "]\n}\n")
    return count


class Command(BaseCommand):
    help = "Write every stored resource of an organisation as a FHIR Bundle (type collection)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--organization", required=True, help="Organisation id.")
        parser.add_argument("--output", help="File to write (default: stdout).")
        parser.add_argument(
            "--base-url",
            default=None,
            help=(
                "Server base URL, e.g. https://fhir.example.org: fullUrls become the "
                "resources' URLs there (default: stable urn:uuid values)."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        organization = m.Organization.objects.filter(pk=options["organization"]).first()
        if organization is None:
            raise CommandError(f"Organisation {options['organization']!r} does not exist.")
        base_url = options["base_url"]
        if options["output"]:
            try:
                with open(options["output"], "w", encoding="utf-8") as handle:
                    count = write_bundle(handle.write, organization=organization, base_url=base_url)
            except OSError as exc:
                raise CommandError(f"Cannot write {options['output']!r}: {exc.strerror}.") from None
            self.stderr.write(f"Exported {count} resources to {options['output']}.")
        else:
            write_bundle(
                lambda text: self.stdout.write(text, ending=""),
                organization=organization,
                base_url=base_url,
            )
