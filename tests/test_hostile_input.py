"""Hostile input (issue #18): each way a security review found to get a 500, as a
regression test, plus the checks at the edge that replaced them.

Every answer here must be a 4xx with a FHIR OperationOutcome (the token endpoint adds the
RFC 6749 members), never a 500, an HTML page or a traceback in the log.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote_plus

import pytest
from django.test import Client
from rest_framework.test import APIClient

from fhir_api.errors import InvalidRequest
from fhir_api.models import ApiClient, ApiClientOrganization
from fhir_api.parsers import FHIRJSONParser
from scheduling.models import Appointment, Organization, Patient, Schedule
from tests.api_helpers import assert_outcome, body, url
from tests.factories import PatientFactory, ScheduleFactory
from tests.test_oauth import assertion, jwt_form, rsa_key

pytestmark = pytest.mark.django_db

FORM = "application/x-www-form-urlencoded"
NUL = "\x00"


def assert_token_error(response: Any, status: int, error: str) -> dict[str, Any]:
    """An RFC 6749 error that is an OperationOutcome as well."""
    assert response.status_code == status, response.content
    data = (
        assert_outcome(response, status)
        if response["Content-Type"].startswith("application/fhir+json")
        else response.json()
    )
    assert data["error"] == error
    assert data["resourceType"] == "OperationOutcome"
    assert data["issue"][0]["diagnostics"]
    return data


def no_traceback(caplog: Any) -> None:
    for record in caplog.records:
        assert record.exc_info is None, record.getMessage()
        assert record.levelno < logging.ERROR, record.getMessage()


@pytest.fixture
def partner(org: Organization) -> ApiClient:
    private, jwk = rsa_key()
    client = ApiClient(
        name="partner", client_id="partner-1", scopes="system/Slot.rs", jwks={"keys": [jwk]}
    )
    client.set_secret("right-secret")
    client.save()
    ApiClientOrganization.objects.create(organization=org, client=client)
    client.private_key = private  # type: ignore[attr-defined]
    return client


@pytest.fixture
def patient(org: Organization) -> Patient:
    return PatientFactory(organization=org, fhir_id="p1")


@pytest.fixture
def schedule(org: Organization) -> Schedule:
    return ScheduleFactory(organization=org, fhir_id="s1")


def book(api: APIClient, target: Schedule, **overrides: str) -> Any:
    values = {
        "start": target.planning_start.isoformat(),
        "schedule": target.fhir_id,
        "practitionerRole": target.practitioner_role.fhir_id,
        "status": "booked",
        **overrides,
    }
    parameters = [
        {"name": name, "valueDateTime" if name == "start" else "valueString": value}
        for name, value in values.items()
    ]
    return api.post(
        url("Patient/p1/Appointment/$book-slot"),
        {"resourceType": "Parameters", "parameter": parameters},
        format="json",
    )


# --------------------------------------------------------------------------- the token endpoint


def test_nul_in_form_client_id_is_400(partner: ApiClient, caplog: Any) -> None:
    response = Client().post(
        "/oauth/token",
        "grant_type=client_credentials&client_id=a%00b&client_secret=x",
        content_type=FORM,
    )
    data = assert_token_error(response, 400, "invalid_request")
    assert data["issue"][0]["expression"] == ["client_id"]
    no_traceback(caplog)


def test_nul_in_basic_client_id_is_400(partner: ApiClient, caplog: Any) -> None:
    credentials = base64.b64encode(b"a%00b:secret").decode()
    response = Client().post(
        "/oauth/token",
        "grant_type=client_credentials",
        content_type=FORM,
        headers={"Authorization": f"Basic {credentials}"},
    )
    assert_token_error(response, 400, "invalid_request")
    no_traceback(caplog)


def test_nul_in_assertion_issuer_is_refused(partner: ApiClient, caplog: Any) -> None:
    token = assertion(f"partner{NUL}1", partner.private_key)  # type: ignore[attr-defined]
    response = Client().post(
        "/oauth/token",
        "&".join(f"{k}={quote_plus(v)}" for k, v in jwt_form(token).items()),
        content_type=FORM,
    )
    data = assert_token_error(response, 400, "invalid_request")
    assert data["issue"][0]["expression"] == ["client_assertion.iss"]
    no_traceback(caplog)


def test_nul_in_assertion_jti_is_refused(partner: ApiClient, caplog: Any) -> None:
    token = assertion("partner-1", partner.private_key, jti=f"a{NUL}b")  # type: ignore[attr-defined]
    response = Client().post(
        "/oauth/token",
        "&".join(f"{k}={quote_plus(v)}" for k, v in jwt_form(token).items()),
        content_type=FORM,
    )
    data = assert_token_error(response, 400, "invalid_request")
    assert data["issue"][0]["expression"] == ["client_assertion.jti"]
    no_traceback(caplog)


def test_assertion_exp_far_in_the_future_is_401_not_an_overflow(
    partner: ApiClient, caplog: Any
) -> None:
    token = assertion(
        "partner-1",
        partner.private_key,  # type: ignore[attr-defined]
        exp_in=0,
        exp=10**18,
    )
    response = Client().post(
        "/oauth/token",
        "&".join(f"{k}={quote_plus(v)}" for k, v in jwt_form(token).items()),
        content_type=FORM,
    )
    data = assert_token_error(response, 401, "invalid_client")
    assert "5 minutes" in data["error_description"]
    no_traceback(caplog)


def test_more_than_1000_form_fields_on_token_is_json_400(db: Any, caplog: Any) -> None:
    form = "grant_type=client_credentials&" + "&".join(f"f{i}=1" for i in range(1200))
    response = Client().post("/oauth/token", form, content_type=FORM)
    assert response.status_code == 400
    assert not response["Content-Type"].startswith("text/html")
    data = assert_token_error(response, 400, "invalid_request")
    assert "1000" in data["error_description"]
    no_traceback(caplog)


# --------------------------------------------------------------------------- FHIR routes


def test_more_than_1000_query_parameters_is_400(api: APIClient, caplog: Any) -> None:
    query = "&".join(f"p{i}=1" for i in range(1200))
    for path in ("Schedule", "Slot", "metadata", "Patient/p1/Appointment", "Nothing"):
        response = api.get(url(f"{path}?{query}"))
        data = assert_outcome(response, 400)
        assert data["issue"][0]["code"] == "too-costly"
    # Anonymous too: the query string is read before any token is.
    assert_outcome(APIClient().get(url(f"Schedule?{query}")), 400)
    no_traceback(caplog)


def test_control_character_in_a_query_value_names_the_parameter(api: APIClient) -> None:
    data = assert_outcome(api.get(url("Schedule?_id=a%00b")), 400)
    assert data["issue"][0]["expression"] == ["_id"]
    data = assert_outcome(api.get(url("Slot?status=fr%07ee")), 400)
    assert data["issue"][0]["expression"] == ["status"]


def test_nul_in_book_slot_schedule_is_400(
    api: APIClient, patient: Patient, schedule: Schedule, caplog: Any
) -> None:
    data = assert_outcome(book(api, schedule, schedule=f"s{NUL}1"), 400)
    assert data["issue"][0]["expression"] == ["Parameters.parameter[1].valueString"]
    assert Appointment.objects.count() == 0
    no_traceback(caplog)


def test_nul_in_book_slot_comment_is_400(
    api: APIClient, patient: Patient, schedule: Schedule, caplog: Any
) -> None:
    data = assert_outcome(book(api, schedule, comment=f"late{NUL}"), 400)
    assert data["issue"][0]["expression"] == ["Parameters.parameter[4].valueString"]
    assert Appointment.objects.count() == 0
    no_traceback(caplog)


#: Every character the API refuses in a body (middleware.CONTROL_CHARACTERS).
CONTROLS = [chr(c) for c in [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F]]


@pytest.mark.parametrize("control", CONTROLS, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize("raw", [False, True], ids=["escaped", "raw"])
def test_every_control_character_in_a_body_is_refused_wherever_it_stands(
    control: str, raw: bool
) -> None:
    """In a value and in a key, escaped (as JSON encoders write it) or raw where JSON
    allows it raw (DEL): the parser's quick test of the text must not let one through."""
    for where in ("value", "key"):
        item = {"name": "start", "valueString": f"a{control}b"}
        if where == "key":
            item = {"name": "start", f"x{control}": "b"}
        text = json.dumps({"resourceType": "Parameters", "parameter": [item]})
        if raw:
            if control != "\x7f":
                continue  # JSON has no raw C0 control in a string: the decoder refuses it
            text = text.replace("\\u007f", "\x7f")
            assert "\x7f" in text and "\\u007f" not in text
        with pytest.raises(InvalidRequest) as refused:
            FHIRJSONParser().parse(io.BytesIO(text.encode()))
        expression = refused.value.issues[0]["expression"]
        assert expression[0].startswith("Parameters.parameter[0]."), (where, expression)


def test_tab_and_line_breaks_in_a_body_are_not_control_characters() -> None:
    text = json.dumps({"resourceType": "Parameters", "parameter": [{"name": "a\tb\r\nc"}]})
    assert FHIRJSONParser().parse(io.BytesIO(text.encode()))["parameter"][0]["name"] == "a\tb\r\nc"


def test_line_breaks_in_a_comment_are_fine(
    api: APIClient, patient: Patient, schedule: Schedule
) -> None:
    response = book(api, schedule, comment="first line\r\nsecond\tline")
    assert response.status_code == 201, response.content


def test_nul_in_appointment_response_comment_is_400(
    api: APIClient, patient: Patient, schedule: Schedule, caplog: Any
) -> None:
    booked = book(api, schedule)
    assert booked.status_code == 201, booked.content
    response = api.post(
        url("Patient/p1/AppointmentResponse"),
        {
            "resourceType": "AppointmentResponse",
            "appointment": {"reference": f"Appointment/{body(booked)['id']}"},
            "actor": {"reference": "Patient/p1"},
            "participantStatus": "accepted",
            "comment": f"see you{NUL}",
        },
        format="json",
    )
    data = assert_outcome(response, 400)
    assert data["issue"][0]["expression"] == ["AppointmentResponse.comment"]
    no_traceback(caplog)


@pytest.mark.parametrize("start", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-10:00"])
def test_book_slot_start_at_the_ends_of_time_is_400(
    api: APIClient, patient: Patient, schedule: Schedule, start: str, caplog: Any
) -> None:
    data = assert_outcome(book(api, schedule, start=start), 400)
    assert data["issue"][0]["expression"] == ["Parameters.parameter[start]"]
    assert "1900" in data["issue"][0]["diagnostics"]
    no_traceback(caplog)


# --------------------------------------------------------------------------- Django's own errors


def test_bad_host_header_is_an_outcome_and_one_log_line(db: Any, caplog: Any) -> None:
    for path in (url("Schedule"), "/oauth/token", "/.well-known/smart-configuration"):
        response = Client(HTTP_HOST="evil.example").get(path)
        data = assert_outcome(response, 400)
        assert data["issue"][0]["code"] == "security"
    security = [r for r in caplog.records if r.name.startswith("django.security")]
    assert security, "the refused host should still be logged"
    # The logging filter of settings.LOGGING strips the traceback when the record is handled.
    from medikit.logfilters import NoTracebackForSecurityEvents

    for record in security:
        NoTracebackForSecurityEvents().filter(record)
        assert record.exc_info is None


# --------------------------------------------------------------------------- existence leaks


def test_anonymous_metadata_is_the_same_for_known_and_unknown_organisations(
    org: Organization, outsider_org: Organization
) -> None:
    known = APIClient().get(url("metadata"))
    unknown = APIClient().get(url("metadata", org="no-such-org"))
    foreign = APIClient().get(url("metadata", org=outsider_org.pk))
    assert known.status_code == unknown.status_code == foreign.status_code == 200

    def neutral(response: Any, organization_id: str) -> str:
        # Only the URLs differ: they echo the path the caller asked for.
        return response.content.decode().replace(f"/v2/{organization_id}/", "/v2/X/")

    assert (
        neutral(known, org.pk)
        == neutral(unknown, "no-such-org")
        == neutral(foreign, outsider_org.pk)
    )
    assert "Clinic" not in known.content.decode()


def test_metadata_with_a_token_names_the_organisation(api: APIClient, org: Organization) -> None:
    response = api.get(url("metadata"))
    assert response.status_code == 200
    assert body(response)["implementation"]["description"].endswith(org.name)
    assert_outcome(api.get(url("metadata", org="no-such-org")), 404)


def test_assertion_of_unknown_and_known_client_answer_alike(partner: ApiClient) -> None:
    other_key, _ = rsa_key()

    def attempt(client_id: str) -> dict[str, Any]:
        token = assertion(client_id, other_key)
        response = Client().post(
            "/oauth/token",
            "&".join(f"{k}={quote_plus(v)}" for k, v in jwt_form(token).items()),
            content_type=FORM,
        )
        assert response.status_code == 401
        return response.json()

    assert attempt("partner-1") == attempt("no-such-client")


def make_secret_client(org: Organization, client_id: str) -> ApiClient:
    client = ApiClient(name=client_id, client_id=client_id, scopes="system/Slot.rs")
    client.set_secret(f"{client_id}-secret")
    client.save()
    ApiClientOrganization.objects.create(organization=org, client=client)
    return client


# A type alias keeps the fixture signatures readable.
MakeClient = Callable[[Organization, str], ApiClient]


# --------------------------------------------------------------------------- brute force


def token_with_secret(client_id: str, secret: str, address: str = "127.0.0.1") -> Any:
    form = f"grant_type=client_credentials&client_id={client_id}&client_secret={secret}"
    return Client(REMOTE_ADDR=address).post("/oauth/token", form, content_type=FORM)


@pytest.fixture
def one_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Counting windows are fixed (60 s by default): a test that crossed a boundary would
    see its counts start again. The throttle's clock stands still in the middle of one."""
    from fhir_api import throttle

    frozen = (int(throttle.time.time()) // 3600) * 3600 + 30.0
    monkeypatch.setattr(throttle, "time", SimpleNamespace(time=lambda: frozen))


def test_wrong_secrets_hit_429_and_correct_clients_keep_working(
    org: Organization, settings: Any, one_window: None
) -> None:
    settings.OAUTH_CLIENT_FAILURE_LIMIT = 10
    settings.OAUTH_ADDRESS_FAILURE_LIMIT = 50
    make_secret_client(org, "victim")
    make_secret_client(org, "neighbour")
    statuses = [token_with_secret("victim", f"guess-{i}").status_code for i in range(100)]
    assert statuses[:10] == [401] * 10
    assert statuses[10:] == [429] * 90
    refused = token_with_secret("victim", "guess-x")
    data = assert_token_error(refused, 429, "slow_down")
    assert data["issue"][0]["code"] == "throttled"
    assert 1 <= int(refused["Retry-After"]) <= settings.OAUTH_FAILURE_WINDOW
    # The attacker's lockout is theirs: another client at the same address, and the
    # victim itself from its own address, still get tokens.
    assert token_with_secret("neighbour", "neighbour-secret").status_code == 200
    assert token_with_secret("victim", "victim-secret", address="10.1.2.3").status_code == 200


def test_spraying_client_ids_from_one_address_is_limited(
    org: Organization, settings: Any, one_window: None
) -> None:
    settings.OAUTH_ADDRESS_FAILURE_LIMIT = 20
    statuses = [token_with_secret(f"id-{i}", "x").status_code for i in range(30)]
    assert statuses[:20] == [401] * 20
    assert set(statuses[20:]) == {429}
    make_secret_client(org, "elsewhere")
    assert token_with_secret("elsewhere", "elsewhere-secret", address="10.9.9.9").status_code == 200


def test_a_known_flood_is_refused_before_sessions_auth_and_urls(
    org: Organization,
    settings: Any,
    one_window: None,
    django_assert_num_queries: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once this process knows an address is over its limit, its next attempts get the
    token view's own 429 (body, headers) from the middleware, without a query: a
    brute force then costs the server a fraction of a request (bench_token_abuse.py)."""
    settings.OAUTH_ADDRESS_FAILURE_LIMIT = 5
    statuses = [token_with_secret(f"id-{i}", "x").status_code for i in range(6)]
    assert statuses == [401] * 5 + [429]  # the 6th asked the database and learnt it
    from fhir_api import throttle

    def view_reached(**_: Any) -> None:
        raise AssertionError("the token view ran for an address known to be over its limit")

    with monkeypatch.context() as patched, django_assert_num_queries(0):
        patched.setattr(throttle, "token_wait_seconds", view_reached)
        early = token_with_secret("id-7", "x")
    data = assert_token_error(early, 429, "slow_down")
    assert data["issue"][0]["code"] == "throttled"
    assert 1 <= int(early["Retry-After"]) <= settings.OAUTH_FAILURE_WINDOW
    assert early["Cache-Control"] == "no-store"
    assert "Content-Security-Policy" in early
    # Only that address: a client elsewhere is served, and GET still answers 405.
    make_secret_client(org, "elsewhere")
    assert token_with_secret("elsewhere", "elsewhere-secret", address="10.9.9.9").status_code == 200
    assert Client(REMOTE_ADDR="127.0.0.1").get("/oauth/token").status_code == 405


def test_limits_use_the_trusted_proxy_header_only_when_configured(
    org: Organization, settings: Any, one_window: None
) -> None:
    settings.OAUTH_ADDRESS_FAILURE_LIMIT = 3

    def attempt(forwarded: str) -> int:
        form = "grant_type=client_credentials&client_id=nobody&client_secret=x"
        return (
            Client(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=forwarded)
            .post("/oauth/token", form, content_type=FORM)
            .status_code
        )

    # Not configured: a client cannot escape the limit by inventing addresses.
    assert [attempt(f"192.0.2.{i}") for i in range(5)] == [401, 401, 401, 429, 429]
    settings.TRUSTED_PROXY_HEADER = "X-Forwarded-For"
    # Configured: the proxy's entry (the last) is the client, one limit per client.
    assert attempt("198.51.100.7") == 401
    assert attempt("forged, 198.51.100.8") == 401


def test_legacy_password_hashes_are_rehashed_on_next_use(org: Organization, settings: Any) -> None:
    from django.contrib.auth.hashers import make_password

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    client = make_secret_client(org, "old-client")
    ApiClient.objects.filter(pk=client.pk).update(secret_hash=make_password("old-client-secret"))
    assert token_with_secret("old-client", "wrong").status_code == 401
    client.refresh_from_db()
    assert client.secret_hash.startswith("md5$")  # a failed attempt changes nothing
    assert token_with_secret("old-client", "old-client-secret").status_code == 200
    client.refresh_from_db()
    assert client.secret_hash.startswith("hmac-sha256$")
    assert token_with_secret("old-client", "old-client-secret").status_code == 200


def test_admin_lockout_is_per_username_and_address(db: Any, settings: Any) -> None:
    from django.contrib.auth.models import User

    User.objects.create_user("alice", password="alice-password", is_staff=True)
    attacker = Client(REMOTE_ADDR="10.0.0.66")
    for _ in range(settings.AXES_FAILURE_LIMIT + 1):
        attacker.post("/admin/login/", {"username": "alice", "password": "nope"})
    locked = attacker.post("/admin/login/", {"username": "alice", "password": "alice-password"})
    assert locked.status_code == 429
    # Alice at her own desk is not locked out by someone else's failures.
    own = Client(REMOTE_ADDR="10.0.0.5").post(
        "/admin/login/", {"username": "alice", "password": "alice-password"}
    )
    assert own.status_code == 302


# --------------------------------------------------------------------------- database outage

_OUTAGE_SCRIPT = r"""
import json, logging, io
import django
django.setup()
from django.test import Client

stream = io.StringIO()
handler = logging.StreamHandler(stream)
handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
logging.getLogger().addHandler(handler)
results = {}
client = Client()
form = "grant_type=client_credentials&client_id=c&client_secret=s"
for name, response in [
    ("search", client.get("/v2/clinic-a/fhir/R4/Slot", HTTP_AUTHORIZATION="Bearer abc")),
    ("token", client.post("/oauth/token", form, content_type="application/x-www-form-urlencoded")),
    ("metadata", client.get("/v2/clinic-a/fhir/R4/metadata", HTTP_AUTHORIZATION="Bearer abc")),
    ("healthz", client.get("/healthz?database=1")),
    ("liveness", client.get("/healthz")),
]:
    results[name] = {
        "status": response.status_code,
        "retry": response.get("Retry-After"),
        "type": response.get("Content-Type"),
        "body": json.loads(response.content),
    }
results["log"] = stream.getvalue()
print(json.dumps(results))
"""


def test_database_outage_is_503_transient_with_retry_after(tmp_path: Any) -> None:
    """Against a closed port: every API request answers 503 'transient', one log line each."""
    import json
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:  # a port nobody listens on (bound, then released)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{port}/medikit_gone",
        "DJANGO_SETTINGS_MODULE": "medikit.settings",
        "DATABASE_RETRY_AFTER": "7",
    }
    done = subprocess.run(
        [sys.executable, "-c", _OUTAGE_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for name in ("search", "token", "metadata"):
        answer = results[name]
        assert answer["status"] == 503, (name, answer)
        assert answer["retry"] == "7"
        assert answer["body"]["resourceType"] == "OperationOutcome"
        assert answer["body"]["issue"][0]["code"] == "transient"
    assert results["healthz"]["status"] == 503
    assert results["healthz"]["body"] == {"status": "unavailable", "database": "unreachable"}
    assert results["liveness"]["status"] == 200
    log = results["log"]
    assert "Traceback" not in log and "Traceback" not in done.stderr
    assert log.count("database unavailable") == 3


def test_book_slot_retried_after_a_503_books_once(
    api: APIClient, patient: Patient, schedule: Schedule, monkeypatch: Any, caplog: Any
) -> None:
    """A serialization failure inside the booking transaction answers 503; the client's
    retry with the same Idempotency-Key books exactly once."""
    import psycopg
    from django.db import OperationalError

    from scheduling.models import AuditEvent

    original = AuditEvent.objects.create
    failures = iter([True])

    def fail_once(**kwargs: Any) -> Any:
        if next(failures, False):
            error = OperationalError("could not serialize access due to concurrent update")
            error.__cause__ = psycopg.errors.SerializationFailure("concurrent update")
            raise error
        return original(**kwargs)

    monkeypatch.setattr(AuditEvent.objects, "create", fail_once)

    def attempt() -> Any:
        parameters = [
            {"name": "start", "valueDateTime": schedule.planning_start.isoformat()},
            {"name": "schedule", "valueString": schedule.fhir_id},
            {"name": "practitionerRole", "valueString": schedule.practitioner_role.fhir_id},
            {"name": "status", "valueString": "booked"},
        ]
        return api.post(
            url("Patient/p1/Appointment/$book-slot"),
            {"resourceType": "Parameters", "parameter": parameters},
            format="json",
            HTTP_IDEMPOTENCY_KEY="retry-me-1",
        )

    first = attempt()
    data = assert_outcome(first, 503)
    assert data["issue"][0]["code"] == "transient"
    assert first["Retry-After"]
    assert Appointment.objects.count() == 0
    second, third = attempt(), attempt()
    assert second.status_code == third.status_code == 201
    assert body(second)["id"] == body(third)["id"]
    assert Appointment.objects.count() == 1
    assert not [r for r in caplog.records if r.exc_info]


def test_too_many_parameters_with_a_charset_does_not_break_the_request_itself(db: Any) -> None:
    """Found by the fuzz test: a charset in Content-Type made Django parse the query string
    inside the WSGIRequest constructor, where TooManyFieldsSent escaped as a bare 500."""
    import io

    from django.core.handlers.wsgi import WSGIHandler

    environ = {
        "REQUEST_METHOD": "PUT",
        "PATH_INFO": "/v2/x",
        "QUERY_STRING": "&".join(f"p{i}=1" for i in range(1100)),
        "CONTENT_TYPE": "application/json; charset=latin-1",
        "CONTENT_LENGTH": "2",
        "wsgi.input": io.BytesIO(b"[]"),
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "HTTP_HOST": "testserver",
        "wsgi.url_scheme": "http",
    }
    started: list[str] = []
    answer = b"".join(
        WSGIHandler()(environ, lambda status, headers, exc=None: started.append(status))
    )
    assert started == ["400 Bad Request"]
    assert b'"too-costly"' in answer
