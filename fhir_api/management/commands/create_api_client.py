"""manage.py create_api_client: register a partner system or patient app (docs/api.md section 9)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from fhir_api.auth import parse_scope
from fhir_api.models import ApiClient, ApiClientOrganization
from fhir_api.oauth import ASSERTION_ALGORITHMS
from scheduling.models import Organization, Patient


def validate_scopes(raw: str, *, patient_bound: bool) -> list[str]:
    """The scopes in ``raw`` or CommandError naming the first one we cannot honour."""
    scopes = raw.split()
    if not scopes:
        raise CommandError("--scope needs at least one scope, e.g. 'system/Slot.rs'.")
    for scope in scopes:
        parsed = parse_scope(scope)
        if parsed is None:
            raise CommandError(
                f"Unknown scope '{scope}': use SMART scopes such as system/Schedule.rs, "
                "system/Slot.rs, system/Appointment.rs, system/Appointment.c, "
                "system/AppointmentResponse.c (or the patient/ and user/ forms)."
            )
        # patient/ scopes mean "the patient in context": without a bound patient they would
        # grant nothing (or, worse, everyone), so refuse the combination up front.
        if parsed.context == "patient" and not patient_bound:
            raise CommandError(f"Scope '{scope}' needs a patient: pass --patient PID.")
    return scopes


def _load_jwks(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CommandError(f"Cannot read the JWKS file '{path}': {exc}") from None
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list) or not keys:
        raise CommandError("The JWKS file must be a JSON object with a non-empty 'keys' list.")
    for index, key in enumerate(keys):
        if not isinstance(key, dict) or key.get("kty") not in ("RSA", "EC"):
            raise CommandError(f"JWKS key {index} must be an RSA or EC public key.")
        if any(private in key for private in ("d", "p", "q")):
            raise CommandError(
                f"JWKS key {index} contains private key material: register the public key only."
            )
        alg = key.get("alg")
        if alg is not None and alg not in ASSERTION_ALGORITHMS:
            raise CommandError(f"JWKS key {index} has alg '{alg}': use RS384 or ES384.")
    return {"keys": keys}


class Command(BaseCommand):
    help = "Create an API client; prints its client id and secret (the secret is shown once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument(
            "--organization",
            action="append",
            required=True,
            dest="organizations",
            help="Organisation id the client may use (repeat for several).",
        )
        parser.add_argument("--patient", default="", help="Bind the client to this patient.")
        parser.add_argument("--scope", required=True, help="Space-separated SMART scopes.")
        parser.add_argument("--jwks", help="JSON file with the client's public keys.")
        parser.add_argument(
            "--json", action="store_true", help="Print one JSON object and nothing else."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        organization_ids: list[str] = list(dict.fromkeys(options["organizations"]))
        organizations = list(Organization.objects.filter(pk__in=organization_ids))
        missing = sorted(set(organization_ids) - {o.pk for o in organizations})
        if missing:
            raise CommandError(f"Unknown organisation(s): {', '.join(missing)}.")
        patient_id: str = options["patient"]
        if patient_id:
            for organization in organizations:
                if not Patient.objects.filter(
                    organization=organization, fhir_id=patient_id
                ).exists():
                    raise CommandError(
                        f"Patient '{patient_id}' does not exist in organisation "
                        f"'{organization.pk}'."
                    )
        scopes = validate_scopes(options["scope"], patient_bound=bool(patient_id))
        jwks = _load_jwks(options["jwks"]) if options.get("jwks") else {}

        secret = ApiClient.new_secret()
        with transaction.atomic():
            client = ApiClient(
                name=options["name"],
                client_id=ApiClient.new_client_id(),
                patient_fhir_id=patient_id,
                scopes=" ".join(scopes),
                jwks=jwks,
            )
            client.set_secret(secret)
            client.save()
            ApiClientOrganization.objects.bulk_create(
                ApiClientOrganization(organization=o, client=client) for o in organizations
            )

        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "client_id": client.client_id,
                        "client_secret": secret,
                        "name": client.name,
                        "organizations": sorted(o.pk for o in organizations),
                        "patient": patient_id or None,
                        "scope": client.scopes,
                    }
                )
            )
            return
        self.stdout.write(f"client_id:     {client.client_id}")
        self.stdout.write(f"client_secret: {secret}")
        self.stderr.write("Store the secret now: it is kept hashed and cannot be shown again.")
