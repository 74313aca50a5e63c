"""The demo API client (``seed_demo``): a fixed, publicly known client id and secret.

Lives in fhir_api because API clients are fhir_api's models; the scheduling app's
``seed_demo`` reaches it through the ``seed_demo_api_client`` command by name, so
scheduling never imports fhir_api.
"""

from __future__ import annotations

from fhir_api.models import ApiClient, ApiClientOrganization
from scheduling.models import Organization

DEMO_CLIENT_ID = "demo-client"
DEMO_CLIENT_SECRET = "demo-secret"
DEMO_CLIENT_SCOPES = (
    "system/Schedule.rs system/Slot.rs system/Appointment.rs system/Appointment.c "
    "system/AppointmentResponse.c"
)


def demo_api_client_ensure(*, organization: Organization) -> int:
    """Create the demo client bound to ``organization`` if missing; return rows created."""
    created = 0
    client = ApiClient.objects.filter(client_id=DEMO_CLIENT_ID).first()
    if client is None:
        client = ApiClient(client_id=DEMO_CLIENT_ID, name="Demo client", scopes=DEMO_CLIENT_SCOPES)
        client.set_secret(DEMO_CLIENT_SECRET)
        client.save()
        created += 1
    _, bound = ApiClientOrganization.objects.get_or_create(organization=organization, client=client)
    return created + int(bound)
