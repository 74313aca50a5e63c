"""The ONE place where the tenant (and patient) of a request is resolved and enforced.

Every FHIR view derives from :class:`TenantView`. ``initial()`` runs before any handler
(DRF calls it from ``dispatch``), so a handler cannot run without ``self.organization``
set and access checked. There is deliberately no per-view opt-out except ``public``,
which only the CapabilityStatement uses: anonymous callers get a tenant-neutral document
(no organisation is looked up, so unknown and foreign ids answer alike), callers with a
token of that organisation get its own, and tokens of other organisations get 404.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from rest_framework.request import Request

from fhir_api import auth
from fhir_api.acyclic import AcyclicAPIView
from fhir_api.parsers import FHIRJSONParser
from fhir_api.renderers import FHIRContentNegotiation, FHIRJSONRenderer
from scheduling.db.compiled_query import CompiledModelQuery
from scheduling.errors import NotFound
from scheduling.models import Organization, Patient
from scheduling.selectors import PatientKey
from scheduling.selectors.common import loaded

#: (organisation id, patient id): the patient of a patient-scoped request.
_PATIENT_BY_ID = CompiledModelQuery(
    lambda organization_id, fhir_id: Patient.objects.filter(
        organization_id=organization_id, fhir_id=fhir_id
    ).order_by(),
    kinds="ss",
)


class TenantView(AcyclicAPIView):
    """Base view: authenticates, resolves the organisation and patient, checks access."""

    resource_type: ClassVar[str] = ""
    interaction: ClassVar[Literal["read", "search", "create"]] = "read"
    #: Interactions that grant access as well as ``interaction`` (any one of them suffices):
    #: an operation that changes an existing appointment needs ``.c`` or ``.u``.
    also_interactions: ClassVar[tuple[auth.Interaction, ...]] = ()
    patient_scoped: ClassVar[bool] = False
    # Only the CapabilityStatement: it must be readable before a client has a token.
    public: ClassVar[bool] = False

    renderer_classes = [FHIRJSONRenderer]
    parser_classes = [FHIRJSONParser]
    content_negotiation_class = FHIRContentNegotiation
    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []

    organization: Organization
    #: The organisation when one was resolved; None only for an anonymous public view.
    tenant: Organization | None
    #: The path's patient (``patient_scoped``), known to exist and to be reachable by the
    #: token; its row loads on the first use of :attr:`patient`.
    patient_key: PatientKey | None
    principal: auth.Principal | None
    _patient: Patient | None

    @property
    def patient(self) -> Patient | None:
        """The path's patient (``patient_scoped`` views), else None."""
        if self.patient_key is None:
            return None
        if self._patient is None:
            patient_id = str(self.kwargs["patient_id"])
            patient = _PATIENT_BY_ID.first(self.organization.pk, patient_id)
            if patient is None:  # deleted since the token query found it
                raise NotFound(f"Patient '{patient_id}' was not found.")
            self._patient = patient
        return self._patient

    @property
    def patient_keyed(self) -> Patient | None:
        """The path's patient as an instance holding only what the token query read of it
        (its pk, id and version; ``patient_scoped`` views, else None): reading any other
        field reads it from the row. For work that needs to know only who the patient
        is, such as a booking refused because its slot is taken, which then costs no
        read of the patient's row; the loaded :attr:`patient` when there is one."""
        if self.patient_key is None:
            return None
        if self._patient is not None:
            return self._patient
        return loaded(
            Patient,
            self.organization,
            id=self.patient_key.pk,
            fhir_id=str(self.kwargs["patient_id"]),
            version=self.patient_key.version,
        )

    def perform_authentication(self, request: Request) -> None:
        """Nothing: the bearer token is checked in :meth:`initial`, and DRF's own
        ``request.user`` (no authentication classes: anonymous) is left to whoever asks."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        organization_id = str(kwargs.get("organization_id", ""))
        organization: Organization | None
        self.tenant = None
        self.patient_key = self._patient = None
        patient_id = str(kwargs["patient_id"]) if self.patient_scoped else None
        patient_key = None
        if self.public:
            try:
                # A caller with a usable token: it and the organisation in one query.
                self.principal, organization = auth.authenticate_for(request, organization_id)
            except auth.AuthenticationRequired:
                # Anonymous (or a token that is no use: never an error here): a
                # tenant-neutral answer, the same for every organisation id, existing or
                # not, so the answer reveals nothing about which exist.
                self.principal = None
                return
        elif patient_id is not None:
            # As below, and the patient's key (404 after the access checks) too.
            self.principal, organization, patient_key = auth.authenticate_for_patient(
                request, organization_id, patient_id
            )
        else:
            # The token first (401), then the organisation (404), in one query. The
            # organisation comes with its data stamps, which key the search caches
            # (scheduling.db.search_cache).
            self.principal, organization = auth.authenticate_for(request, organization_id)
        if organization is None:
            raise NotFound(f"Organization '{organization_id}' was not found.")
        if self.public:
            # A caller who shows a token of other organisations is told 404, exactly as
            # for an organisation that does not exist.
            if (
                self.principal is not None
                and organization.pk not in self.principal.organization_ids
            ):
                raise NotFound(f"Organization '{organization_id}' was not found.")
        elif self.principal is not None:
            auth.check_access(
                self.principal,
                organization_id=organization.pk,
                patient_id=patient_id,
                resource_type=self.resource_type,
                interaction=self.interaction,
                also=self.also_interactions,
            )
        self.organization = organization
        self.tenant = organization
        if patient_id is not None:
            if patient_key is None:
                raise NotFound(f"Patient '{patient_id}' was not found.")
            self.patient_key = patient_key
