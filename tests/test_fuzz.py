"""Fuzzing every route of a live server (issue #18): no 500 for any input.

Hypothesis draws raw HTTP requests (method, path with odd ids, query strings with
repeats, control characters and >1000 parameters, headers, tokens of every kind, bodies
of every shape and media type) and sends them over one keep-alive session to a live
server. Every answer must be below 500; every 4xx on the API prefixes must be an
OperationOutcome in JSON; nothing may log a traceback or an error.

``MEDIKIT_FUZZ_REQUESTS`` sets how many requests are sent (10,000 by default, per CI run;
``make fuzz`` sends 100,000 for a release). Requests go out in batches drawn by one
hypothesis example each, which keeps hypothesis' per-example cost off the request rate.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import pytest
import requests
from django.db import connection
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from urllib3.util import parse_url

from fhir_api.models import ApiClient
from medikit.logfilters import NoTracebackForSecurityEvents
from tests.factories import (
    AppointmentFactory,
    OrganizationFactory,
    PatientFactory,
    ScheduleFactory,
    SlotFactory,
)

REQUESTS = int(os.environ.get("MEDIKIT_FUZZ_REQUESTS", "10000"))
BATCH = 24
#: Concurrent keep-alive sessions: the live server is threaded, and one client alone
#: leaves it idle while it generates the next requests.
SENDERS = 3
API_PREFIXES = ("/v2/", "/oauth/", "/.well-known/")

# ----------------------------------------------------------------------------- vocabulary

NASTY = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\x07bell",
    "\x1b[31m",
    "\x7f",
    "\u202e",
    "\ufeff",
    "\ud7ff",
    "😀",
    "é",
    "%00",
    "%",
    "%ZZ",
    "../../etc/passwd",
    "<script>",
    "'; DROP TABLE x;--",
    "null",
    "true",
    "-1",
    "0",
    "99999999999999999999999",
    "1e308",
    "NaN",
    "x" * 65,
    "x" * 5000,
    "a,b,,c",
    "a|b|c",
    "\\|",
    "http://x|",
    "|",
]
DATES = [
    "2026-06-01",
    "ge2026-06-01",
    "le2026-06-08",
    "gt2026-06-01T09:00:00+02:00",
    "lt2026-06-01T09:00",
    "eq2026",
    "2026-06",
    "0001-01-01",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-10:00",
    "ge0001-01-01&date=le9999-12-31",
    "sa9999",
    "eb2026-06-01",
    "2026-02-30",
    "2026-13-01",
    "ge2026-06-01T25:00:00Z",
    "2026-06-01T09:00:00+99:00",
]
IDS = ["s1", "slot1", "p1", "a1", "missing", "other-s", "x" * 64, "x" * 65, "a.b-c", "$x", "%00"]
ORGS = ["fz", "fz-other", "nope", "x" * 64, "x" * 65, "%00", "..", "-"]
PARAMS = [
    "_id",
    "id",
    "date",
    "start",
    "schedule",
    "service-category",
    "status",
    "actor",
    "active",
    "_count",
    "_offset",
    "_format",
    "_sort",
    "patient",
    "client_id",
]
BOOK_NAMES = ["start", "schedule", "practitionerRole", "status", "comment", "other", ""]
VALUE_KEYS = ["valueDateTime", "valueString", "valueInteger", "valueBoolean", "valueCode", "value"]
METHODS = ["GET", "GET", "GET", "POST", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
MEDIA = [
    None,
    "application/fhir+json",
    "application/json",
    "application/fhir+json; charset=utf-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "multipart/form-data",
    "application/fhir+xml",
    "text/plain",
    "application/json; charset=latin-1",
    "*/*",
    "\x7f",
]
ACCEPT = [None, "application/fhir+json", "application/json", "application/xml", "text/html", "*/*"]

text = st.text(max_size=24)
nasty = st.sampled_from(NASTY) | text
json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.sampled_from(NASTY + DATES)
    | text
)
json_value = st.recursive(
    json_leaf,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from([*VALUE_KEYS, "name", "reference"]) | text, children, max_size=4
        )
    ),
    max_leaves=12,
)


@st.composite
def parameters(draw: Any) -> Any:
    items = []
    for _ in range(draw(st.integers(0, 7))):
        item: dict[str, Any] = {"name": draw(st.sampled_from(BOOK_NAMES) | text)}
        item[draw(st.sampled_from(VALUE_KEYS))] = draw(st.sampled_from(DATES + IDS) | json_leaf)
        if draw(st.integers(0, 9)) == 0:
            item["part"] = draw(json_value)
        items.append(item)
    body: dict[str, Any] = {"resourceType": draw(st.sampled_from(["Parameters", "Bundle", ""]))}
    body["parameter"] = items if draw(st.booleans()) else draw(json_value)
    return body


@st.composite
def appointment_response(draw: Any) -> Any:
    return {
        "resourceType": "AppointmentResponse",
        "appointment": {"reference": "Appointment/" + draw(st.sampled_from(IDS) | text)},
        "actor": {"reference": draw(st.sampled_from(["Patient/p1", "Patient/p2"]) | text)},
        "participantStatus": draw(
            st.sampled_from(["accepted", "declined", "tentative", "maybe"]) | json_leaf
        ),
        "comment": draw(json_leaf),
        draw(st.sampled_from(["start", "end", "id", "extra"])): draw(json_leaf),
    }


def _encode_json(value: Any) -> bytes:
    # The stdlib encoder: it writes what orjson refuses (NaN, huge integers), on purpose.
    return json.dumps(value).encode("utf-8", "surrogatepass")


@st.composite
def bodies(draw: Any) -> bytes | None:
    kind = draw(st.integers(0, 11))
    if kind == 0:
        return None
    if kind == 1:
        return _encode_json(draw(json_value))
    if kind in (2, 3):
        return _encode_json(draw(parameters()))
    if kind == 4:
        return _encode_json(draw(appointment_response()))
    if kind in (5, 6):
        fields = draw(
            st.lists(
                st.tuples(
                    st.sampled_from(
                        [
                            "grant_type",
                            "client_id",
                            "client_secret",
                            "scope",
                            "client_assertion",
                            "client_assertion_type",
                        ]
                    )
                    | text,
                    st.sampled_from(["client_credentials", "fz-client", "system/Slot.rs"]) | nasty,
                ),
                max_size=6,
            )
        )
        return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in fields).encode()
    if kind == 7:
        return draw(st.binary(max_size=64))
    if kind == 8:
        depth = draw(st.sampled_from([10, 600, 2000]))
        return b"[" * depth + b"]" * depth
    if kind == 9:
        many = draw(st.integers(900, 1500))
        return "&".join(f"f{i}=1" for i in range(many)).encode()
    if kind == 10:
        size = draw(st.sampled_from([100, 100, 100, 70_000, 70_000, 1_100_000]))
        return (
            b'{"resourceType":"Parameters","parameter":[{"name":"comment","valueString":"'
            + (b"x" * size)
            + b'"}]}'
        )
    return _encode_json(
        {
            "resourceType": "Parameters",
            "parameter": [{"name": "start", "valueDateTime": "0001-01-01T00:00:00+14:00"}],
        }
    )


def _q(value: str) -> str:
    return quote(value, safe="")


@st.composite
def paths(draw: Any) -> str:
    org = _q(draw(st.sampled_from(ORGS) | text))
    one = _q(draw(st.sampled_from(IDS) | text))
    pid = _q(draw(st.sampled_from(IDS) | text))
    base = f"/v2/{org}/fhir/R4"
    templates = [
        f"{base}/metadata",
        f"{base}/Schedule",
        f"{base}/Schedule/{one}",
        f"{base}/Slot",
        f"{base}/Slot/{one}",
        f"{base}/Patient/{pid}/Appointment",
        f"{base}/Patient/{pid}/Appointment/{one}",
        f"{base}/Patient/{pid}/Appointment/$book-slot",
        f"{base}/Patient/{pid}/AppointmentResponse",
        f"{base}/{_q(draw(text))}",
        f"{base}/.well-known/smart-configuration",
        f"/v2/{_q(draw(text))}",
        "/oauth/token",
        "/oauth/token",
        "/oauth/" + _q(draw(text)),
        "/.well-known/smart-configuration",
        "/.well-known/" + _q(draw(text)),
        "/healthz",
        "/healthz?database=1",
        "/admin/login/",
        "/i18n/setlang/",
    ]
    return draw(st.sampled_from(templates))


@st.composite
def queries(draw: Any) -> str:
    if draw(st.integers(0, 30)) == 0:
        return "&".join(f"p{i}=1" for i in range(draw(st.integers(990, 1300))))
    pairs = draw(
        st.lists(
            st.tuples(
                st.sampled_from(PARAMS) | text,
                st.sampled_from(DATES + IDS) | nasty,
            ),
            max_size=6,
        )
    )
    return "&".join(f"{_q(k)}={_q(v)}" for k, v in pairs)


header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
    max_size=40,
)


@st.composite
def requests_(draw: Any) -> tuple[str, str, dict[str, str], bytes | None]:
    method = draw(st.sampled_from(METHODS))
    path = draw(paths())
    query = draw(queries())
    if query:
        path += ("&" if "?" in path else "?") + query
    headers: dict[str, str] = {}
    media = draw(st.sampled_from(MEDIA))
    if media is not None:
        headers["Content-Type"] = media
    accept = draw(st.sampled_from(ACCEPT))
    if accept is not None:
        headers["Accept"] = accept
    headers["Authorization"] = draw(
        st.sampled_from(
            [
                "",
                "valid",
                "patient",
                "foreign",
                "Bearer x",
                "Basic Zm9vOmJhcg==",
                "Basic !!",
                "Digest a",
            ]
        )
        | header_text
    )
    if draw(st.booleans()):
        headers["Idempotency-Key"] = draw(header_text)
    if draw(st.integers(0, 4)) == 0:
        headers["Prefer"] = draw(
            st.sampled_from(["handling=lenient", "handling=strict"]) | header_text
        )
    if draw(st.integers(0, 9)) == 0:
        headers["Host"] = draw(
            st.sampled_from(["evil.example", "localhost:1", "a b"]) | header_text
        )
    if draw(st.integers(0, 9)) == 0:
        headers["X-Forwarded-For"] = draw(header_text)
    body = draw(bodies())
    return method, path, headers, body


# ----------------------------------------------------------------------------- the campaign


class ServerLog(logging.Handler):
    """Errors and tracebacks logged anywhere in the process (the live server runs in it)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.bad: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # Through the same filter as settings.LOGGING's handler: Django logs a refused Host
        # header at ERROR with a traceback, which the filter turns into one plain line.
        NoTracebackForSecurityEvents().filter(record)
        if record.name.startswith("django.security") and not record.exc_info:
            return
        if record.exc_info or record.levelno >= logging.ERROR:
            trace = logging.Formatter().formatException(record.exc_info) if record.exc_info else ""
            self.bad.append(f"{record.name}: {record.getMessage()[:300]}\n{trace[-2500:]}")


@pytest.fixture
def server_log() -> Iterator[ServerLog]:
    handler = ServerLog()
    names = ["", "django", "django.request", "django.security", "django.server", "fhir_api"]
    loggers = [logging.getLogger(name) for name in names]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)


@pytest.fixture
def tokens(make_api_client: Callable[..., tuple[ApiClient, str]]) -> dict[str, str]:
    org = OrganizationFactory(id="fz", name="Fuzz Clinic")
    other = OrganizationFactory(id="fz-other", name="Other Clinic")
    schedule = ScheduleFactory(organization=org, fhir_id="s1", rrule="FREQ=DAILY")
    ScheduleFactory(organization=other, fhir_id="other-s")
    SlotFactory(organization=org, schedule=schedule, fhir_id="slot1")
    patient = PatientFactory(organization=org, fhir_id="p1")
    PatientFactory(organization=org, fhir_id="p2")
    PatientFactory(organization=other, fhir_id="p1")
    AppointmentFactory(organization=org, patient=patient, fhir_id="a1")
    _, valid = make_api_client(org)
    _, foreign = make_api_client(other)
    _, patient_token = make_api_client(
        org,
        scopes="patient/Appointment.rs patient/Appointment.c patient/AppointmentResponse.c "
        "patient/Slot.rs patient/Schedule.rs",
        patient_id="p1",
    )
    return {"valid": valid, "foreign": foreign, "patient": patient_token}


def _check(method: str, path: str, response: requests.Response, failures: list[str]) -> None:
    status = response.status_code
    shown = path if len(path) <= 300 else f"{path[:150]}...({len(path)} chars)...{path[-100:]}"
    where = f"{status} for {method} {shown}"
    if status >= 500:
        failures.append(f"{where}: {response.headers} {response.content[:300]!r}")
        return
    if not path.startswith(API_PREFIXES) or status < 400 or method == "HEAD":
        return
    content_type = response.headers.get("Content-Type", "")
    if not content_type.startswith(("application/fhir+json", "application/json")):
        failures.append(f"{where}: Content-Type {content_type!r}")
        return
    try:
        data = response.json()
    except ValueError:
        failures.append(f"{where}: not JSON: {response.content[:200]!r}")
        return
    issues = data.get("issue") if isinstance(data, dict) else None
    if data.get("resourceType") != "OperationOutcome" or not issues:
        failures.append(f"{where}: not an OperationOutcome: {response.content[:200]!r}")
        return
    first = issues[0]
    if not (first.get("severity") and first.get("code") and first.get("diagnostics")):
        failures.append(f"{where}: incomplete issue {first}")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_fuzz_every_route_never_500(
    live_server: Any, tokens: dict[str, str], server_log: ServerLog, capfd: Any
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (run with DATABASE_URL=postgres://...)")
    local = threading.local()
    pool = ThreadPoolExecutor(max_workers=SENDERS)
    lock = threading.Lock()
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    started = time.monotonic()
    sending = [0.0]

    def send(request: tuple[str, str, dict[str, str], bytes | None]) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()  # keep-alive, one per sender
        method, path, headers, body = request
        # http.client refuses leading/trailing whitespace in a header value: the client's
        # limit, not the server's.
        headers = {name: value.strip() for name, value in headers.items()}
        auth = headers.get("Authorization", "")
        if auth in tokens:
            headers["Authorization"] = f"Bearer {tokens[auth]}"
        elif not auth:
            del headers["Authorization"]
        try:
            prepared = session.prepare_request(
                requests.Request(method, live_server.url + path, headers=headers, data=body)
            )
            # The path as sent: urllib3 removes dot segments ("/v2/../x" is "/x").
            sent_path = parse_url(prepared.url).request_uri
        except (ValueError, requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL):
            # Something the HTTP client itself refuses to send: not a server test.
            with lock:
                statuses[0] += 1
            return
        clock = time.monotonic()
        try:
            response = session.send(prepared, timeout=60)
        except requests.ConnectionError:
            # The server may close after a body it refused unread (Connection: close);
            # a fresh connection is then the client's job. Retry once on a new one.
            response = session.send(prepared, timeout=60)
        found: list[str] = []
        _check(method, sent_path, response, found)
        with lock:
            sending[0] += time.monotonic() - clock
            statuses[response.status_code] += 1
            failures.extend(
                f"{f} | headers {headers} | body {(body or b'')[:200]!r}" for f in found
            )

    @settings(
        # ~0.5% of drawn requests are ones the HTTP client refuses to send (header
        # values it rejects): draw a few more so at least REQUESTS reach the server.
        max_examples=-(-REQUESTS * 102 // (100 * BATCH)),
        deadline=None,
        database=None,
        # No shrinking: a failure is reported with its request as it was; shrinking 25
        # live HTTP requests at a time would take minutes for little gain.
        phases=[Phase.explicit, Phase.generate],
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(requests_(), min_size=BATCH, max_size=BATCH))
    def campaign(batch: list[tuple[str, str, dict[str, str], bytes | None]]) -> None:
        list(pool.map(send, batch))
        if failures:
            # The live server's own report (a traceback on stderr) says why.
            err = capfd.readouterr().err
            raise AssertionError(
                f"{failures[:5]}\nserver log:\n{server_log.bad[:2]}\nstderr:\n{err[-2000:]}"
            )

    try:
        campaign()
    finally:
        pool.shutdown(wait=True)
    elapsed = time.monotonic() - started
    unsent = statuses.pop(0, 0)
    total = sum(statuses.values())
    report = ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items()))
    captured = capfd.readouterr()
    with capfd.disabled():
        print(
            f"\nfuzz: {total} requests in {elapsed:.1f} s ({sending[0]:.1f} s sending; "
            f"{report}); {unsent} unsendable"
        )
    assert total >= REQUESTS
    assert not failures, failures[:10]
    assert not server_log.bad, server_log.bad[:10]
    assert "Traceback" not in captured.err, captured.err[-3000:]
    # The campaign reached deep: real answers, not only refusals at the door.
    assert statuses[200] > 0 and statuses[404] > 0 and statuses[400] > 0
