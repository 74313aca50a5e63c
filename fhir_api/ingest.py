"""FHIR JSON Bundles -> domain rows (the inverse of ``fhir_api.mappers``).

``bundle_import`` loads a Bundle of type collection, batch or transaction into one
organisation, all or nothing. Every resource is parsed with ``fhir.resources.R4B`` first;
the first entry that cannot be used aborts the whole import with an :class:`InvalidInput`
whose message names the entry (1-based index, type and id), so an operator can find it.

References are resolved within the organisation, by ``Type/id`` (relative or absolute) or by
the ``fullUrl`` of another entry (``urn:uuid:...``), whatever the order of the entries: rows
are written in dependency order, not in bundle order.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Q
from django.db.models.expressions import RawSQL
from django.utils import timezone
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError as PydanticValidationError

from fhir_api.booking_rules import EXT_BOOKING_RULES, RuleError, parse_booking_rules
from scheduling import models as m
from scheduling import recurrence
from scheduling.errors import InvalidInput, SlotTaken, gettext_noop
from scheduling.selectors.common import utc_now
from scheduling.services.claims import (
    ClashCheck,
    expire_lapsed_holds,
    integrity_conflict,
    lock_occupants,
)
from scheduling.services.reassign import occupants_rekey

EXT_RECURRENCE = "urn:extension:recurrence"
EXT_SLOT_DURATION = "urn:extension:slot-duration"
EXT_HELD_UNTIL = "urn:extension:held-until"

BUNDLE_TYPES = ("collection", "batch", "transaction")
#: The order rows are written in: every reference points to a type written earlier.
IMPORT_ORDER = (
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Schedule",
    "Slot",
    "Appointment",
    "AppointmentResponse",
)
_MINUTES_PER_UNIT = {"min": 1, "minute": 1, "minutes": 1, "h": 60, "hour": 60, "hours": 60}


@dataclass
class ImportSummary:
    """What an import wrote: counts per resource type, and how many rows were new."""

    counts: Counter[str] = field(default_factory=Counter)
    created: int = 0
    updated: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __str__(self) -> str:
        parts = [f"{self.counts[t]} {t}" for t in IMPORT_ORDER if self.counts[t]]
        detail = ", ".join(parts) if parts else "nothing"
        return (
            f"Imported {self.total} resources: {detail} "
            f"({self.created} created, {self.updated} updated)."
        )


class _EntryError(Exception):
    """A problem with one entry; ``bundle_import`` adds which entry it was."""

    def __init__(self, message: str, *, expression: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.expression = expression


@dataclass
class _Entry:
    index: int  # 0-based position in Bundle.entry
    resource_type: str
    fhir_id: str
    full_url: str
    resource: Any  # a parsed fhir.resources.R4B model

    @property
    def label(self) -> str:
        return f"entry {self.index + 1} ({self.resource_type}/{self.fhir_id})"


def bundle_import(
    *,
    organization: m.Organization,
    data: Any,
    on_entry: Callable[[], None] | None = None,
) -> ImportSummary:
    """Load the FHIR Bundle ``data`` (parsed JSON) into ``organization``, all or nothing.

    Existing rows with the same ids are updated. Raises InvalidInput naming the first
    entry at fault (``entry 3 (Schedule/abc): rrule: ...``); nothing is changed then.
    ``on_entry`` is called once per entry written (for a progress bar).

    Set-wise: each resource type is read, validated and resolved in memory (references to
    rows of the bundle need no query; stored rows are read once each), new rows are written
    with ``bulk_create`` in batches and existing ones updated one by one, all in one
    transaction. Appointments are checked together by the engine
    (:class:`~scheduling.services.claims.ClashCheck`) under the locks of every occupant and
    patient involved, and each gets its AuditEvent.
    """
    entries = _parse_bundle(data)
    summary = ImportSummary()
    by_url = {e.full_url: e for e in entries if e.full_url}
    importer = _Importer(organization=organization, by_url=by_url, summary=summary)
    by_type: dict[str, list[_Entry]] = defaultdict(list)
    for entry in entries:
        by_type[entry.resource_type].append(entry)
    with transaction.atomic():
        for resource_type in IMPORT_ORDER:
            if by_type[resource_type]:
                importer.write_all(resource_type, by_type[resource_type], on_entry)
    if len(entries) >= ANALYZE_THRESHOLD:
        _analyze(summary)
    return summary


#: Rows written per INSERT statement (per COPY on PostgreSQL).
BATCH_SIZE = 1000
COPY_SIZE = 10_000
#: Above this many entries, PostgreSQL's planner statistics of the tables filled are
#: refreshed at once (autovacuum would do it, later).
ANALYZE_THRESHOLD = 1000

_MODELS: dict[str, type[Any]] = {
    "Patient": m.Patient,
    "Practitioner": m.Practitioner,
    "PractitionerRole": m.PractitionerRole,
    "Schedule": m.Schedule,
    "Slot": m.Slot,
    "Appointment": m.Appointment,
    "AppointmentResponse": m.AppointmentResponse,
}
#: Not validated per row by ``full_clean``: the version (the database's), and the foreign
#: keys, which the importer resolved itself within the organisation (a FK's validation is
#: one query per row); the models' ``clean()`` still refuses another organisation's rows.
_NOT_VALIDATED: dict[type[Any], list[str]] = {
    model: ["version", *(f.name for f in model._meta.concrete_fields if f.is_relation)]
    for model in _MODELS.values()
}


#: Rows per UPDATE statement when an import updates existing ids.
UPDATE_BATCH_SIZE = 200
#: What an update writes: every column but the key, the creation time and the version.
_UPDATED_FIELDS: dict[type[Any], list[str]] = {
    model: [
        f.name
        for f in model._meta.concrete_fields
        if not f.primary_key and f.name not in ("organization", "fhir_id", "created_at", "version")
    ]
    for model in _MODELS.values()
}


def _copy(model: type[Any], rows: list[Any]) -> None:
    """PostgreSQL: insert ``rows`` (new, validated) with COPY, ids drawn from the table's
    sequence first so every row knows its primary key, as after ``bulk_create``. Values
    are prepared by the model's own fields (auto_now, JSON); ``version`` takes its
    database default."""
    meta = model._meta
    pk = meta.pk
    fields = [f for f in meta.concrete_fields if f is not pk and f.name != "version"]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in (pk, *fields))
    with connection.cursor() as cursor, connection.wrap_database_errors:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [meta.db_table, pk.column, len(rows)],
        )
        ids = [value for (value,) in cursor.fetchall()]
        with cursor.cursor.copy(
            f"COPY {connection.ops.quote_name(meta.db_table)} ({columns}) FROM STDIN"
        ) as copy:
            prepared = [(f, _copy_preparer(f)) for f in fields]
            for row, row_id in zip(rows, ids, strict=True):
                setattr(row, pk.attname, row_id)
                copy.write_row([row_id, *(prep(f.pre_save(row, True)) for f, prep in prepared)])
    for row in rows:
        row._state.adding = False
        row._state.db = connection.alias


#: Field classes whose ``get_db_prep_save`` gives PostgreSQL a value of these types
#: unchanged (``to_python`` of such a value is the value; the PostgreSQL backend adapts
#: no instant). Exact classes only: a subclass may prepare differently.
_COPIED_AS_IS: dict[type[Any], tuple[type[Any], ...]] = {
    models.CharField: (str,),
    models.TextField: (str,),
    models.IntegerField: (int,),
    models.PositiveIntegerField: (int,),
    models.PositiveSmallIntegerField: (int,),
    models.BigAutoField: (int,),
    models.BooleanField: (bool,),
    models.DateTimeField: (datetime,),
}


def _copy_preparer(field: Any) -> Callable[[Any], Any]:
    """How COPY gets ``field``'s value: the field's own ``get_db_prep_save``, skipped for
    a value it would hand over unchanged (per :data:`_COPIED_AS_IS`; an instant only when
    aware, since a naive one is made aware, with a warning, by the field). Preparing every
    value of every row through the field was a seventh of a large import's time."""
    target = field.target_field if field.is_relation else field
    kinds = _COPIED_AS_IS.get(type(target), ())
    instant = type(target) is models.DateTimeField

    def prepare(value: Any) -> Any:
        if value is None or (
            type(value) in kinds and (not instant or value.utcoffset() is not None)
        ):
            return value
        return field.get_db_prep_save(value, connection)

    return prepare


def _copy_update(model: type[Any], rows: list[Any], fields: list[str]) -> None:
    """PostgreSQL: write ``fields`` of existing ``rows`` (validated) back: COPY into a
    temporary table shaped like the table, then one UPDATE ... FROM it. The version
    trigger moves each row's version on as for any UPDATE."""
    meta = model._meta
    quote = connection.ops.quote_name
    pk = meta.pk
    columns = [pk, *(meta.get_field(name) for name in fields)]
    table, temporary = quote(meta.db_table), quote(f"import_{meta.db_table}")
    names = ", ".join(quote(f.column) for f in columns)
    assignments = ", ".join(f"{quote(f.column)} = t.{quote(f.column)}" for f in columns[1:])
    # Only quoted names of the model's own table and columns go into the SQL; values are
    # copied.
    with connection.cursor() as cursor, connection.wrap_database_errors:
        cursor.execute(
            f"CREATE TEMPORARY TABLE {temporary} AS SELECT {names} FROM {table} WITH NO DATA"  # noqa: S608
        )
        with cursor.cursor.copy(f"COPY {temporary} ({names}) FROM STDIN") as copy:
            prepared = [(f, _copy_preparer(f)) for f in columns[1:]]
            for row in rows:
                copy.write_row([row.pk, *(prep(f.pre_save(row, False)) for f, prep in prepared)])
        cursor.execute(
            f"UPDATE {table} SET {assignments} FROM {temporary} AS t "  # noqa: S608
            f"WHERE {table}.{quote(pk.column)} = t.{quote(pk.column)}"
        )
        cursor.execute(f"DROP TABLE {temporary}")


def _analyze(summary: ImportSummary) -> None:
    if connection.vendor != "postgresql":
        return
    tables = [_MODELS[t]._meta.db_table for t in IMPORT_ORDER if summary.counts[t]]
    if summary.counts["Appointment"]:
        tables.append(m.AuditEvent._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {', '.join(tables)}")


@contextmanager
def _blame(entry: _Entry) -> Iterator[None]:
    """Any refusal inside names ``entry``."""
    try:
        yield
    except _EntryError as exc:
        raise _invalid(entry, exc.message, exc.expression) from None
    except ValidationError as exc:
        raise _invalid(entry, _validation_message(exc), "") from None
    except IntegrityError as exc:
        raise _invalid(entry, _integrity_message(exc), "") from None
    except (InvalidInput, SlotTaken) as exc:
        raise _invalid(entry, exc.message, ".".join(exc.expression)) from None


def _invalid(entry: _Entry, message: str, expression: str) -> InvalidInput:
    path = f"Bundle.entry[{entry.index}].resource"
    return InvalidInput(
        f"{entry.label}: {message}",
        expression=[f"{path}.{expression}" if expression else path],
    )


def _validation_message(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(
            f"{name}: {' '.join(str(msg) for msg in errors)}"
            if name != "__all__"
            else " ".join(str(msg) for msg in errors)
            for name, errors in exc.message_dict.items()
        )
    return " ".join(exc.messages)


def _integrity_message(exc: IntegrityError) -> str:
    if integrity_conflict(exc):
        return "it would double-book its practitioner or patient (the database refused it)."
    return "conflicts with data already stored (a database constraint refused it)."


# --------------------------------------------------------------------------- parsing


def _parse_bundle(data: Any) -> list[_Entry]:
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise InvalidInput("The file is not a FHIR Bundle (resourceType must be 'Bundle').")
    if data.get("type") not in BUNDLE_TYPES:
        raise InvalidInput(
            f"Bundle.type {data.get('type')!r} cannot be imported: use one of "
            f"{', '.join(BUNDLE_TYPES)}.",
            expression=["Bundle.type"],
        )
    raw_entries = data.get("entry") or []
    if not isinstance(raw_entries, list):
        raise InvalidInput("Bundle.entry must be a list.", expression=["Bundle.entry"])
    entries: list[_Entry] = []
    seen: dict[tuple[str, str], int] = {}
    urls: set[str] = set()
    for index, raw in enumerate(raw_entries):
        entry = _parse_entry(index, raw, bundle_type=data["type"])
        key = (entry.resource_type, entry.fhir_id)
        if key in seen:
            raise InvalidInput(
                f"{entry.label}: the same resource is also entry {seen[key] + 1}.",
                expression=[f"Bundle.entry[{index}]"],
            )
        seen[key] = index
        if entry.full_url:
            if entry.full_url in urls:
                raise InvalidInput(
                    f"{entry.label}: fullUrl {entry.full_url!r} is used by another entry.",
                    expression=[f"Bundle.entry[{index}].fullUrl"],
                )
            urls.add(entry.full_url)
        entries.append(entry)
    return entries


def _parse_entry(index: int, raw: Any, *, bundle_type: str) -> _Entry:
    where = f"entry {index + 1}"
    path = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("resource"), dict):
        raise InvalidInput(f"{where}: has no resource.", expression=[f"{path}.resource"])
    body: dict[str, Any] = raw["resource"]
    resource_type = body.get("resourceType")
    raw_id = body.get("id")
    label = f"{where} ({resource_type}/{raw_id or '?'})"
    if resource_type not in IMPORT_ORDER:
        raise InvalidInput(
            f"{label}: resource type {resource_type!r} cannot be imported; supported: "
            f"{', '.join(IMPORT_ORDER)}.",
            expression=[f"{path}.resource.resourceType"],
        )
    request = raw.get("request")
    if bundle_type in ("batch", "transaction"):
        if not isinstance(request, dict):
            raise InvalidInput(
                f"{label}: a {bundle_type} entry needs a request (method and url).",
                expression=[f"{path}.request"],
            )
        if request.get("method") not in ("POST", "PUT"):
            raise InvalidInput(
                f"{label}: request.method {request.get('method')!r} is not supported: "
                "use POST or PUT.",
                expression=[f"{path}.request.method"],
            )
    try:
        resource: Any = get_fhir_model_class(resource_type).model_validate(body)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        element = ".".join(str(part) for part in first["loc"])
        raise InvalidInput(
            f"{label}: {element}: {first['msg']} (value {first.get('input')!r}).",
            expression=[f"{path}.resource.{element}"],
        ) from None
    fhir_id = resource.id or _id_from_request(request) or str(uuid.uuid4())
    if not m.FHIR_ID_RE.match(fhir_id):
        raise InvalidInput(
            f"{where} ({resource_type}/{fhir_id}): {fhir_id!r} is not a FHIR id.",
            expression=[f"{path}.resource.id"],
        )
    return _Entry(
        index=index,
        resource_type=resource_type,
        fhir_id=fhir_id,
        full_url=str(raw.get("fullUrl") or ""),
        resource=resource,
    )


def _id_from_request(request: Any) -> str | None:
    # PUT Patient/abc names the id; a POST lets the server choose one.
    if isinstance(request, dict) and request.get("method") == "PUT":
        url = str(request.get("url") or "").split("?", 1)[0].rstrip("/")
        parts = url.split("/")
        if len(parts) >= 2 and parts[-1]:
            return parts[-1]
    return None


# --------------------------------------------------------------------------- writing


class _Importer:
    def __init__(
        self,
        *,
        organization: m.Organization,
        by_url: dict[str, _Entry],
        summary: ImportSummary,
    ) -> None:
        self.organization = organization
        self.by_url = by_url
        self.summary = summary
        #: Rows of this bundle, and stored rows already looked up, by (type, id).
        self.rows: dict[tuple[str, str], Any] = {}
        self._role_schedules: dict[int, list[m.Schedule]] = {}

    def write_all(
        self, resource_type: str, entries: list[_Entry], on_entry: Callable[[], None] | None
    ) -> None:
        """Build and validate every entry of one type in memory, then write them."""
        model = _MODELS[resource_type]
        fill = getattr(self, f"_write_{resource_type.lower()}")
        existing = self._existing(model, [e.fhir_id for e in entries])
        written: list[tuple[_Entry, Any]] = []
        new: list[tuple[_Entry, Any]] = []
        changed: list[tuple[_Entry, Any]] = []
        holders: dict[str, tuple[int | None, ...]] = {}
        for entry in entries:
            row = existing.get(entry.fhir_id)
            with _blame(entry):
                if row is None:
                    row = model(organization=self.organization, fhir_id=entry.fhir_id)
                    new.append((entry, row))
                else:
                    changed.append((entry, row))
                    holders[entry.fhir_id] = _holder(row)
                fill(entry, entry.resource, row)
                # Derives what the model derives (an appointment's occupant and occupied
                # range) and validates every value; references were resolved above.
                row.full_clean(
                    validate_unique=False, validate_constraints=False, exclude=_NOT_VALIDATED[model]
                )
            written.append((entry, row))
            self.rows[(resource_type, entry.fhir_id)] = row
        if model is m.Appointment:
            self._check_appointments(written, [row.pk for _, row in changed])
        self._update(model, changed)
        self._rekey([(e, row) for e, row in changed if _holder(row) != holders[e.fhir_id]])
        self._insert(model, new)
        if model is m.Appointment:
            self._audit(written)
        self.summary.counts[resource_type] += len(entries)
        self.summary.created += len(new)
        self.summary.updated += len(changed)
        if on_entry is not None:
            for _ in entries:
                on_entry()

    def _rekey(self, handed_over: list[tuple[_Entry, Any]]) -> None:
        """Schedules and roles given to another practitioner: their stored bookings take
        the new person's time, as the admin does (``services.reassign``); a clash refuses
        the import naming the entry."""
        for entry, row in handed_over:
            with _blame(entry):
                occupants_rekey(
                    organization=self.organization,
                    schedules=[row] if isinstance(row, m.Schedule) else (),
                    roles=[row] if isinstance(row, m.PractitionerRole) else (),
                    actor="import_fhir",
                )

    def _existing(self, model: type[Any], ids: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        # On PostgreSQL one array parameter (``= ANY``) per batch instead of an IN list of
        # a thousand: the statement's text no longer grows with the batch, and neither
        # Django nor psycopg handles each id as a parameter of its own. (Only the model's
        # own quoted names go into the SQL; the ids are bound.)
        postgres = connection.vendor == "postgresql"
        column = f"{connection.ops.quote_name(model._meta.db_table)}.fhir_id"
        size = COPY_SIZE if postgres else BATCH_SIZE
        for i in range(0, len(ids), size):
            chunk = ids[i : i + size]
            among = (
                RawSQL(f"{column} = ANY(%s)", (chunk,), models.BooleanField())  # noqa: S611
                if postgres
                else Q(fhir_id__in=chunk)
            )
            rows = model.objects.filter(among, organization=self.organization)
            found.update((row.fhir_id, row) for row in rows)
        return found

    def _update(self, model: type[Any], pairs: list[tuple[_Entry, Any]]) -> None:
        """Existing rows, validated above, written back in batches (``bulk_update``; on
        PostgreSQL COPY into a temporary table and one UPDATE); the version trigger moves
        each one's version on as for any UPDATE."""
        if not pairs:
            return
        fields = _UPDATED_FIELDS[model]
        now = timezone.now()
        for _, row in pairs:
            row.updated_at = now  # what auto_now does on save()
        size = COPY_SIZE if connection.vendor == "postgresql" else UPDATE_BATCH_SIZE
        for i in range(0, len(pairs), size):
            chunk = pairs[i : i + size]
            try:
                with transaction.atomic():
                    if connection.vendor == "postgresql":
                        _copy_update(model, [row for _, row in chunk], fields)
                    else:
                        model.objects.bulk_update([row for _, row in chunk], fields)
            except IntegrityError:
                # The database refused one of them: find which, to name its entry.
                for entry, row in chunk:
                    with _blame(entry), transaction.atomic():
                        model.objects.bulk_update([row], fields)

    def _insert(self, model: type[Any], pairs: list[tuple[_Entry, Any]]) -> None:
        copy = connection.vendor == "postgresql"
        for i in range(0, len(pairs), COPY_SIZE if copy else BATCH_SIZE):
            chunk = pairs[i : i + (COPY_SIZE if copy else BATCH_SIZE)]
            rows = [row for _, row in chunk]
            try:
                with transaction.atomic():
                    if copy:
                        _copy(model, rows)
                    else:
                        model.objects.bulk_create(rows)
            except IntegrityError:
                # The database refused one of them: find which, to name its entry.
                for entry, row in chunk:
                    row.pk = None
                    row._state.adding = True
                    with _blame(entry), transaction.atomic():
                        model.objects.bulk_create([row])

    def _check_appointments(
        self, written: list[tuple[_Entry, m.Appointment]], replaced: list[int]
    ) -> None:
        """Refuse the first appointment (in bundle order) that would double-book its
        practitioner or patient, against what is stored and the appointments before it;
        as ``appointment_store`` does one at a time: locks, lapsed holds tidied, engine."""
        now = utc_now()
        rows = [row for _, row in written]
        lock_occupants(
            organization=self.organization,
            keys={row.occupant for row in rows} | {f"patient:{row.patient_id}" for row in rows},
        )
        plain = [r for r in rows if r.is_active and not r.hold_lapsed(now) and not r.rrule]
        if plain:
            expire_lapsed_holds(
                organization=self.organization,
                now=now,
                actor="import_fhir",
                occupants={r.occupant for r in plain if r.occupant},
                patients={r.patient_id for r in plain},
                start=min(r.start for r in plain),
                end=max(r.end for r in plain),
            )
        check = ClashCheck(
            organization=self.organization, appointments=rows, now=now, exclude=replaced
        )
        for entry, row in written:
            clashes = check.check(row)
            if clashes:
                with _blame(entry):
                    raise SlotTaken(
                        gettext_noop("Appointment/%(appointment)s would double-book: %(clashes)s."),
                        expression=["start"],
                        params={"appointment": row.fhir_id, "clashes": clashes},
                    )

    def _audit(self, written: list[tuple[_Entry, m.Appointment]]) -> None:
        m.AuditEvent.objects.bulk_create(
            [
                m.AuditEvent(
                    organization=self.organization,
                    actor="import_fhir",
                    action=m.AuditEvent.Action.IMPORTED,
                    appointment=row,
                    appointment_fhir_id=row.fhir_id,
                    detail={
                        "status": row.status,
                        "start": row.start.isoformat(),
                        "end": row.end.isoformat(),
                        "patient": row.patient.fhir_id,
                        "entry": entry.index,
                    },
                )
                for entry, row in written
            ],
            batch_size=BATCH_SIZE,
        )

    # -- helpers ---------------------------------------------------------------------

    def _target(self, reference: Any, element: str) -> tuple[str, str]:
        """(type, id) of a reference: ``Type/id``, an absolute URL or another entry's fullUrl."""
        value = getattr(reference, "reference", None) if reference is not None else None
        if not value:
            raise _EntryError(f"{element}: a reference is required.", expression=element)
        if value in self.by_url:
            target = self.by_url[value]
            return target.resource_type, target.fhir_id
        if value.startswith("urn:"):
            raise _EntryError(
                f"{element}: {value!r} is not the fullUrl of any entry in this bundle.",
                expression=element,
            )
        parts = value.split("?", 1)[0].rstrip("/").split("/")
        if "_history" in parts:
            parts = parts[: parts.index("_history")]
        if len(parts) < 2:
            raise _EntryError(
                f"{element}: {value!r} is not a reference of the form Type/id.",
                expression=element,
            )
        return parts[-2], parts[-1]

    def _lookup(self, model: type[Any], fhir_id: str) -> Any:
        """The row of this bundle or the stored row (looked up once), or None."""
        key = (model.__name__, fhir_id)
        if key not in self.rows:
            rows = model.objects.filter(organization=self.organization, fhir_id=fhir_id)
            if model is m.Schedule:
                rows = rows.select_related("practitioner_role")
            elif model is m.Slot:
                rows = rows.select_related("schedule__practitioner_role")
            row = rows.first()
            if row is None:
                return None
            self.rows[key] = row
        return self.rows[key]

    def _resolve(self, reference: Any, element: str, model: type[Any]) -> Any:
        resource_type, fhir_id = self._target(reference, element)
        expected = model.__name__
        if resource_type != expected:
            raise _EntryError(
                f"{element}: must reference a {expected}, not {resource_type}/{fhir_id}.",
                expression=element,
            )
        row = self._lookup(model, fhir_id)
        if row is None:
            raise _EntryError(
                f"{element}: {expected}/{fhir_id} is neither in this bundle nor stored in "
                f"organisation '{self.organization.id}'.",
                expression=element,
            )
        return row

    # -- resources -------------------------------------------------------------------

    def _write_patient(self, entry: _Entry, res: Any, row: m.Patient) -> None:
        row.family, row.given = _name(res.name)
        row.gender = res.gender or ""
        row.birth_date = res.birthDate if isinstance(res.birthDate, date) else None
        row.email = _telecom(res.telecom, "email")
        row.phone = _telecom(res.telecom, "phone")
        row.active = res.active if res.active is not None else True

    def _write_practitioner(self, entry: _Entry, res: Any, row: m.Practitioner) -> None:
        row.family, row.given = _name(res.name)
        first = (res.name or [None])[0]
        row.prefix = " ".join(first.prefix or []) if first is not None else ""
        row.active = res.active if res.active is not None else True

    def _write_practitionerrole(self, entry: _Entry, res: Any, row: m.PractitionerRole) -> None:
        row.practitioner = (
            self._resolve(res.practitioner, "practitioner", m.Practitioner)
            if res.practitioner is not None
            else None
        )
        row.code = _codings(res.code)
        row.specialty = _codings(res.specialty)
        row.active = res.active if res.active is not None else True

    def _write_schedule(self, entry: _Entry, res: Any, row: m.Schedule) -> None:
        # The resource's own values first, references last: a broken rule is the more
        # useful message when both are wrong.
        horizon = res.planningHorizon
        if horizon is None or horizon.start is None or horizon.end is None:
            raise _EntryError(
                "planningHorizon: start and end are required (the first availability window).",
                expression="planningHorizon",
            )
        row.planning_start = _instant(horizon.start, "planningHorizon.start")
        row.planning_end = _instant(horizon.end, "planningHorizon.end")
        row.slot_minutes = _slot_minutes(res.extension)
        _set_recurrence(row, res.extension)
        _set_booking_rules(row, res.extension)
        row.active = res.active if res.active is not None else True
        row.service_category = _codings(res.serviceCategory)
        row.service_type = _codings(res.serviceType)
        row.specialty = _codings(res.specialty)
        row.comment = res.comment or ""
        row.practitioner_role = None
        row.practitioner = None
        for i, actor in enumerate(res.actor or []):
            element = f"actor[{i}]"
            if not actor.reference:
                continue  # a display-only actor ("unassigned") links nothing
            resource_type, _ = self._target(actor, element)
            if resource_type == "PractitionerRole" and row.practitioner_role is None:
                row.practitioner_role = self._resolve(actor, element, m.PractitionerRole)
            elif resource_type == "Practitioner" and row.practitioner is None:
                row.practitioner = self._resolve(actor, element, m.Practitioner)
            else:
                raise _EntryError(
                    f"{element}: {actor.reference!r} is not allowed: a schedule has at most "
                    "one PractitionerRole and one Practitioner actor.",
                    expression=element,
                )

    def _write_slot(self, entry: _Entry, res: Any, row: m.Slot) -> None:
        row.schedule = self._resolve(res.schedule, "schedule", m.Schedule)
        row.status = res.status
        row.start = _instant(res.start, "start")
        row.end = _instant(res.end, "end")
        row.service_category = _codings(res.serviceCategory)
        row.overbooked = bool(res.overbooked)
        row.comment = res.comment or ""

    def _write_appointment(self, entry: _Entry, res: Any, row: m.Appointment) -> None:
        row.status = res.status
        if res.start is None or res.end is None:
            raise _EntryError("start and end are required.", expression="start")
        row.start = _instant(res.start, "start")
        row.end = _instant(res.end, "end")
        patient = None
        role = None
        for i, participant in enumerate(res.participant or []):
            element = f"participant[{i}].actor"
            if participant.actor is None or not participant.actor.reference:
                continue
            resource_type, _ = self._target(participant.actor, element)
            if resource_type == "Patient" and patient is None:
                patient = self._resolve(participant.actor, element, m.Patient)
                row.patient_status = participant.status
            elif resource_type == "PractitionerRole" and role is None:
                role = self._resolve(participant.actor, element, m.PractitionerRole)
                row.practitioner_status = participant.status
            else:
                raise _EntryError(
                    f"{element}: {participant.actor.reference!r} is not allowed: an "
                    "appointment has one Patient and at most one PractitionerRole.",
                    expression=element,
                )
        if patient is None:
            raise _EntryError(
                "participant: one participant must be the Patient.", expression="participant"
            )
        row.patient = patient
        row.practitioner_role = role
        row.slot = None
        row.schedule = None
        if res.slot:
            row.slot, row.schedule = self._appointment_slot(res.slot[0])
        if row.schedule is None and role is not None:
            row.schedule = self._schedule_covering(role, row.start, row.end)
        row.service_category = _codings(res.serviceCategory)
        row.description = res.description or ""
        row.comment = res.comment or ""
        reason = res.cancelationReason
        row.cancelation_reason = (
            (reason.text or _first_display(reason) or "") if reason is not None else ""
        )
        _set_recurrence(row, res.extension)
        # A hold keeps its expiry, so an exported hold still lapses after an import.
        row.held_until = _held_until(res.extension) if row.status == "pending" else None
        # Checked set-wise by the engine and audited in write_all.

    def _schedule_covering(
        self, role: m.PractitionerRole, start: datetime, end: datetime
    ) -> m.Schedule | None:
        """The one schedule of ``role`` whose availability covers ``start``-``end``, if any.

        FHIR has no Appointment.schedule, yet the schedule is what marks its slots busy: an
        appointment of the role inside exactly one of its windows belongs to that schedule.
        """
        if role.pk not in self._role_schedules:
            self._role_schedules[role.pk] = [
                self.rows.get(("Schedule", schedule.fhir_id), schedule)
                for schedule in role.schedules.filter(organization=self.organization)
                .select_related("practitioner_role")
                .order_by("pk")
            ]
        covering = []
        for schedule in self._role_schedules[role.pk]:
            if schedule.is_recurring:
                periods = recurrence.expand(
                    rrule=schedule.rrule,
                    first_start=schedule.planning_start,
                    first_end=schedule.planning_end,
                    tzid=schedule.rule_timezone(self.organization),
                    exdates=schedule.exdate_values(),
                    window_start=start,
                    window_end=end,
                )
                windows = [(p.start, p.end) for p in periods]
            else:
                windows = [(schedule.planning_start, schedule.planning_end)]
            if any(lo <= start and end <= hi for lo, hi in windows):
                covering.append(schedule)
        return covering[0] if len(covering) == 1 else None

    def _appointment_slot(self, reference: Any) -> tuple[m.Slot | None, m.Schedule | None]:
        resource_type, fhir_id = self._target(reference, "slot[0]")
        if resource_type != "Slot":
            raise _EntryError(
                f"slot[0]: must reference a Slot, not {resource_type}/{fhir_id}.",
                expression="slot[0]",
            )
        slot = self._lookup(m.Slot, fhir_id)
        if slot is not None:
            return slot, slot.schedule
        # A generated slot ({scheduleId}-{start}) is not stored: link its schedule instead.
        parsed = recurrence.split_occurrence_id(fhir_id)
        if parsed is not None:
            schedule = self._lookup(m.Schedule, parsed[0])
            if schedule is not None:
                return None, schedule
        raise _EntryError(
            f"slot[0]: Slot/{fhir_id} is neither stored nor a generated slot of a known schedule.",
            expression="slot[0]",
        )

    def _write_appointmentresponse(
        self, entry: _Entry, res: Any, row: m.AppointmentResponse
    ) -> None:
        row.appointment = self._resolve(res.appointment, "appointment", m.Appointment)
        row.patient = self._resolve(res.actor, "actor", m.Patient)
        row.participant_status = res.participantStatus
        row.comment = res.comment or ""
        row.start = _instant(res.start, "start") if res.start is not None else None
        row.end = _instant(res.end, "end") if res.end is not None else None


# --------------------------------------------------------------------------- values


def _instant(value: Any, element: str) -> datetime:
    # A date alone, or a time without an offset, does not say which instant is meant.
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise _EntryError(
            f"{element}: {value!s} needs a date, a time and a timezone offset "
            "(e.g. 2026-06-01T09:00:00+02:00).",
            expression=element,
        )
    return value


def _name(names: Any) -> tuple[str, str]:
    if not names:
        return "", ""
    first = names[0]
    return first.family or "", " ".join(first.given or [])


def _telecom(telecom: Any, system: str) -> str:
    for point in telecom or []:
        if point.system == system and point.value:
            return str(point.value)
    return ""


def _codings(concepts: Any) -> list[dict[str, str]]:
    """CodeableConcepts -> the stored [{system, code, display}] (one per concept)."""
    out: list[dict[str, str]] = []
    for concept in concepts or []:
        coding = (concept.coding or [None])[0]
        item: dict[str, str] = {}
        if coding is not None:
            for key in ("system", "code", "display"):
                value = getattr(coding, key, None)
                if value:
                    item[key] = str(value)
        if not item.get("display") and concept.text:
            item["display"] = concept.text
        if item:
            out.append(item)
    return out


def _first_display(concept: Any) -> str:
    for coding in concept.coding or []:
        if coding.display or coding.code:
            return str(coding.display or coding.code)
    return ""


def _extensions(extensions: Any, url: str) -> list[Any]:
    return [ext for ext in extensions or [] if ext.url == url]


def _held_until(extensions: Any) -> datetime | None:
    found = _extensions(extensions, EXT_HELD_UNTIL)
    if not found:
        return None
    element = f"extension('{EXT_HELD_UNTIL}')"
    value = found[0].valueInstant
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise _EntryError(
            f"{element}: needs a valueInstant with a timezone offset.", expression=element
        )
    return value


def _slot_minutes(extensions: Any) -> int | None:
    found = _extensions(extensions, EXT_SLOT_DURATION)
    if not found:
        return None
    element = f"extension('{EXT_SLOT_DURATION}')"
    duration = found[0].valueDuration
    if duration is None or duration.value is None:
        raise _EntryError(
            f"{element}: needs a valueDuration with a value, e.g. "
            '{"value": 15, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"}.',
            expression=element,
        )
    unit = str(duration.code or duration.unit or "min").lower()
    if unit not in _MINUTES_PER_UNIT:
        raise _EntryError(
            f"{element}: unit {unit!r} is not supported: use minutes ('min') or hours ('h').",
            expression=element,
        )
    minutes = duration.value * _MINUTES_PER_UNIT[unit]
    if minutes != int(minutes) or minutes < 1:
        raise _EntryError(
            f"{element}: a slot lasts a whole, positive number of minutes (got {minutes}).",
            expression=element,
        )
    return int(minutes)


def _holder(row: Any) -> tuple[int | None, ...]:
    """What decides whose time a schedule's or role's bookings take (``occupant_key``)."""
    if isinstance(row, m.Schedule):
        return (row.practitioner_id, row.practitioner_role_id)
    if isinstance(row, m.PractitionerRole):
        return (row.practitioner_id,)
    return ()


def _set_booking_rules(row: m.Schedule, extensions: Any) -> None:
    found = _extensions(extensions, EXT_BOOKING_RULES)
    if len(found) > 1:
        element = f"extension('{EXT_BOOKING_RULES}')"
        raise _EntryError(f"{element}: at most one.", expression=element)
    try:
        values = parse_booking_rules(found[0] if found else None)
    except RuleError as exc:
        raise _EntryError(str(exc), expression=exc.element) from None
    for name, value in values.items():
        setattr(row, name, value)


def _set_recurrence(row: m.Schedule | m.Appointment, extensions: Any) -> None:
    found = _extensions(extensions, EXT_RECURRENCE)
    row.rrule, row.recurrence_timezone, row.exdates = "", "", []
    if not found:
        return
    element = f"extension('{EXT_RECURRENCE}')"
    if len(found) > 1:
        raise _EntryError(f"{element}: at most one recurrence.", expression=element)
    parts = found[0].extension or []
    rrules = [p.valueString for p in parts if p.url == "rrule"]
    if len(rrules) != 1 or not rrules[0]:
        raise _EntryError(
            f"{element}: needs exactly one 'rrule' (valueString), e.g. FREQ=WEEKLY;BYDAY=MO.",
            expression=element,
        )
    try:
        recurrence.validate_rrule(rrules[0])
    except InvalidInput as exc:
        raise _EntryError(f"rrule: {exc.message}", expression=f"{element}.rrule") from None
    zones = [p.valueCode or p.valueString for p in parts if p.url == "timezone"]
    if len(zones) > 1:
        raise _EntryError(f"{element}: at most one 'timezone'.", expression=element)
    if zones:
        try:
            recurrence.validate_timezone(zones[0] or "")
        except InvalidInput as exc:
            raise _EntryError(
                f"timezone: {exc.message}", expression=f"{element}.timezone"
            ) from None
    exdates: list[str] = []
    for part in parts:
        if part.url == "exdate":
            value = _instant(part.valueDateTime, f"{element}.exdate")
            exdates.append(value.isoformat())
        elif part.url not in ("rrule", "timezone"):
            raise _EntryError(
                f"{element}: unknown part {part.url!r} (rrule, timezone, exdate).",
                expression=element,
            )
    row.rrule = rrules[0]
    row.recurrence_timezone = zones[0] if zones else ""
    row.exdates = exdates
