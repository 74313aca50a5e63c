"""Hardening around the API: client commands, secrets at rest, admin, headers, limits."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client

from fhir_api.models import AccessToken, ApiClient
from scheduling.models import Organization
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db

FORM = "application/x-www-form-urlencoded"
SCOPES = "system/Slot.rs system/Schedule.rs"


@pytest.fixture(autouse=True)
def fast_hasher(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def create_client(*args: str) -> dict[str, Any]:
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_client", *args, "--json", stdout=out, stderr=err)
    # --json: stdout is exactly one JSON object, so scripts can parse it as is.
    return json.loads(out.getvalue())


def token_for(client_id: str, secret: str, **extra: str) -> Any:
    pair = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    data = "&".join(["grant_type=client_credentials", *(f"{k}={v}" for k, v in extra.items())])
    return Client().post(
        "/oauth/token", data, content_type=FORM, headers={"Authorization": f"Basic {pair}"}
    )


# --- create_api_client / revoke_api_client -----------------------------------------------


def test_create_api_client_json_and_the_secret_works(org: Organization) -> None:
    created = create_client("Partner EHR", "--organization", org.pk, "--scope", SCOPES)
    assert set(created) >= {"client_id", "client_secret"}
    assert created["organizations"] == [org.pk]
    response = token_for(created["client_id"], created["client_secret"])
    assert response.status_code == 200, response.content
    assert set(response.json()["scope"].split()) == set(SCOPES.split())


def test_create_api_client_plain_output_shows_id_and_secret(org: Organization) -> None:
    out = io.StringIO()
    call_command(
        "create_api_client",
        "App",
        "--organization",
        org.pk,
        "--scope",
        SCOPES,
        stdout=out,
        stderr=io.StringIO(),
    )
    client = ApiClient.objects.get()
    assert client.client_id in out.getvalue()
    secret = out.getvalue().split("client_secret:")[1].strip()
    assert client.check_secret(secret)


def test_secret_is_not_stored_readably(org: Organization) -> None:
    created = create_client("Partner", "--organization", org.pk, "--scope", SCOPES)
    secret = created["client_secret"]
    client = ApiClient.objects.get(client_id=created["client_id"])
    # Keyed with the server's pepper: not the plain SHA-256 a table dump could be tested with.
    assert client.secret_hash.startswith("hmac-sha256$")
    assert hashlib.sha256(secret.encode()).hexdigest() not in client.secret_hash
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {ApiClient._meta.db_table}")
        rows = cursor.fetchall()
    assert rows
    assert all(secret not in str(value) for row in rows for value in row)


def test_multiple_organisations_and_a_patient(
    org: Organization, outsider_org: Organization
) -> None:
    PatientFactory(organization=org, fhir_id="p1")
    PatientFactory(organization=outsider_org, fhir_id="p1")
    created = create_client(
        "Patient app",
        "--organization", org.pk,
        "--organization", outsider_org.pk,
        "--patient", "p1",
        "--scope", "patient/Appointment.rs patient/Appointment.c",
    )  # fmt: skip
    client = ApiClient.objects.get(client_id=created["client_id"])
    assert client.patient_fhir_id == "p1"
    assert set(client.organizations.values_list("id", flat=True)) == {org.pk, outsider_org.pk}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--organization", "nowhere", "--scope", SCOPES], "Unknown organisation"),
        (["--organization", "clinic-a", "--patient", "ghost", "--scope", SCOPES], "ghost"),
        (["--organization", "clinic-a", "--scope", "system/Slot.rs system/Slot.rw"], "Unknown"),
        (["--organization", "clinic-a", "--scope", "system/Patient.rs"], "Unknown scope"),
        (["--organization", "clinic-a", "--scope", "read write"], "Unknown scope"),
        (["--organization", "clinic-a", "--scope", "   "], "at least one"),
        (["--organization", "clinic-a", "--scope", "patient/Slot.rs"], "needs a patient"),
    ],
)
def test_create_api_client_refuses_bad_input(
    org: Organization, args: list[str], message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("create_api_client", "X", *args, stdout=io.StringIO())
    assert not ApiClient.objects.exists()


def test_create_api_client_with_jwks(org: Organization, tmp_path: Path) -> None:
    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public))
    jwk["kid"] = "k1"
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    created = create_client(
        "Backend", "--organization", org.pk, "--scope", SCOPES, "--jwks", str(path)
    )
    assert ApiClient.objects.get(client_id=created["client_id"]).jwks["keys"][0]["kid"] == "k1"


def test_create_api_client_refuses_a_private_key_in_jwks(org: Organization, tmp_path: Path) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private))
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    with pytest.raises(CommandError, match="private key"):
        create_client("Backend", "--organization", org.pk, "--scope", SCOPES, "--jwks", str(path))


def test_revoke_api_client_kills_tokens_and_new_requests(org: Organization) -> None:
    created = create_client("Partner", "--organization", org.pk, "--scope", SCOPES)
    raw = token_for(created["client_id"], created["client_secret"]).json()["access_token"]
    metadata = f"/v2/{org.pk}/fhir/R4/Schedule?_id=x"
    assert Client().get(metadata, headers={"Authorization": f"Bearer {raw}"}).status_code == 200

    call_command("revoke_api_client", created["client_id"], stdout=io.StringIO())

    assert not AccessToken.objects.exists()
    assert Client().get(metadata, headers={"Authorization": f"Bearer {raw}"}).status_code == 401
    refused = token_for(created["client_id"], created["client_secret"])
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_client"


def test_revoke_unknown_client_is_an_error(db: Any) -> None:
    with pytest.raises(CommandError, match="No API client"):
        call_command("revoke_api_client", "nope", stdout=io.StringIO())


def test_export_does_not_contain_client_secrets(org: Organization) -> None:
    created = create_client("Partner", "--organization", org.pk, "--scope", SCOPES)
    out = io.StringIO()
    call_command("export_fhir", "--organization", org.pk, stdout=out, stderr=io.StringIO())
    client = ApiClient.objects.get(client_id=created["client_id"])
    assert created["client_secret"] not in out.getvalue()
    assert client.secret_hash not in out.getvalue()


def test_secrets_and_tokens_are_never_logged(
    org: Organization, caplog: pytest.LogCaptureFixture
) -> None:
    created = create_client("Partner", "--organization", org.pk, "--scope", SCOPES)
    with caplog.at_level(logging.DEBUG):
        ok = token_for(created["client_id"], created["client_secret"])
        token_for(created["client_id"], created["client_secret"] + "x")
    assert ok.status_code == 200
    assert created["client_secret"] not in caplog.text
    assert ok.json()["access_token"] not in caplog.text


# --- admin ---------------------------------------------------------------------------------


@pytest.fixture
def admin_client(db: Any) -> Client:
    user = User.objects.create_superuser("root", "root@example.org", "correct horse battery")
    client = Client()
    client.force_login(user)
    return client


def test_admin_never_shows_the_secret_or_its_hash(org: Organization, admin_client: Client) -> None:
    created = create_client("Partner", "--organization", org.pk, "--scope", SCOPES)
    client = ApiClient.objects.get(client_id=created["client_id"])
    change = admin_client.get(f"/admin/fhir_api/apiclient/{client.pk}/change/")
    listing = admin_client.get("/admin/fhir_api/apiclient/")
    for response in (change, listing):
        assert response.status_code == 200
        html = response.content.decode()
        assert created["client_secret"] not in html
        assert client.secret_hash.split("$")[-1] not in html
    assert "stored hashed" in change.content.decode()
    assert 'name="secret_hash"' not in change.content.decode()


def test_admin_cannot_add_clients(admin_client: Client) -> None:
    assert admin_client.get("/admin/fhir_api/apiclient/add/").status_code == 403


def test_admin_revoke_action(org: Organization, admin_client: Client) -> None:
    created = create_client("Partner", "--organization", org.pk, "--scope", SCOPES)
    token_for(created["client_id"], created["client_secret"])
    client = ApiClient.objects.get(client_id=created["client_id"])
    response = admin_client.post(
        "/admin/fhir_api/apiclient/",
        {"action": "revoke", "_selected_action": [client.pk]},
    )
    assert response.status_code == 302
    client.refresh_from_db()
    assert client.revoked_at is not None
    assert not client.active
    assert not AccessToken.objects.filter(client=client).exists()


def test_admin_refuses_unknown_scopes(org: Organization, admin_client: Client) -> None:
    created = create_client("Partner", "--organization", org.pk, "--scope", SCOPES)
    client = ApiClient.objects.get(client_id=created["client_id"])
    response = admin_client.post(
        f"/admin/fhir_api/apiclient/{client.pk}/change/",
        {
            "name": "Partner",
            "scopes": "system/Everything.rs",
            "jwks": "{}",
            "active": "on",
            "apiclientorganization_set-TOTAL_FORMS": "0",
            "apiclientorganization_set-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200  # the form again, with the error
    assert "Unknown scope" in response.content.decode()
    client.refresh_from_db()
    assert client.scopes == SCOPES


def test_admin_login_is_locked_after_five_failures(db: Any) -> None:
    User.objects.create_superuser("root", "root@example.org", "correct horse battery")
    client = Client()
    for _ in range(4):
        failed = client.post("/admin/login/", {"username": "root", "password": "wrong"})
        assert failed.status_code == 200  # the login form again
    # axes locks out on the failure that reaches AXES_FAILURE_LIMIT (5) and stays locked.
    fifth = client.post("/admin/login/", {"username": "root", "password": "wrong"})
    sixth = client.post("/admin/login/", {"username": "root", "password": "wrong"})
    assert fifth.status_code == 429
    assert sixth.status_code == 429
    # Locked out means locked out: even the right password does not get in now.
    right = client.post("/admin/login/", {"username": "root", "password": "correct horse battery"})
    assert right.status_code == 429
    assert "_auth_user_id" not in client.session


def test_admin_post_without_csrf_token_is_refused(db: Any) -> None:
    User.objects.create_superuser("root", "root@example.org", "correct horse battery")
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        "/admin/login/", {"username": "root", "password": "correct horse battery"}
    )
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session


# --- headers, limits, error pages -------------------------------------------------------


def test_security_headers_on_admin(db: Any) -> None:
    response = Client().get("/admin/login/")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert "script-src 'self'" in response["Content-Security-Policy"]


def test_api_responses_are_not_cached_and_are_locked_down(api: Any, org: Organization) -> None:
    response = api.get(f"/v2/{org.pk}/fhir/R4/Schedule?_id=none")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"].startswith("default-src 'none'")
    unauthenticated = Client().get(f"/v2/{org.pk}/fhir/R4/Schedule")
    assert unauthenticated.status_code == 401
    assert unauthenticated["Cache-Control"] == "no-store"


def test_oversized_fhir_post_is_413(api: Any, org: Organization, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    PatientFactory(organization=org, fhir_id="p1")
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "comment", "valueString": "x" * 5000}],
    }
    response = api.post(
        f"/v2/{org.pk}/fhir/R4/Patient/p1/Appointment/$book-slot", body, format="json"
    )
    assert response.status_code == 413
    assert response["Content-Type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "too-long"


def test_oversized_token_request_is_413(db: Any, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    response = Client().post(
        "/oauth/token", "grant_type=client_credentials&scope=" + "a" * 4000, content_type=FORM
    )
    assert response.status_code == 413
    assert response.json()["error"] == "invalid_request"


def test_bad_content_length_is_400(api: Any, org: Organization) -> None:
    response = api.generic(
        "POST", f"/v2/{org.pk}/fhir/R4/Patient/p1/AppointmentResponse", b"{}",
        content_type="application/fhir+json", CONTENT_LENGTH="lots",
    )  # fmt: skip
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


def test_debug_is_off_and_unknown_urls_show_no_internals(db: Any, settings: Any) -> None:
    assert settings.DEBUG is False
    for path in ("/no-such-page", "/admin/no-such-page/x", "/v2/clinic-a/fhir/R4/Nope"):
        response = Client().get(path)
        assert response.status_code in (302, 404), path
        text = response.content.decode()
        assert "Traceback" not in text
        assert "URLconf" not in text
        assert "SECRET_KEY" not in text


def test_an_unexpected_error_shows_no_traceback(
    api: Any, org: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fhir_api import views

    def explode(**_: Any) -> Any:
        raise RuntimeError("internal-detail-that-must-not-leak")

    monkeypatch.setattr(views.selectors, "schedule_get", explode)
    client = api
    client.raise_request_exception = False
    response = client.get(f"/v2/{org.pk}/fhir/R4/Schedule/s1")
    assert response.status_code == 500
    assert response.json()["resourceType"] == "OperationOutcome"
    assert "internal-detail" not in response.content.decode()
    assert "Traceback" not in response.content.decode()


def test_production_settings_refuse_to_start_without_a_secret_key() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG")}
    env["DJANGO_SETTINGS_MODULE"] = "medikit.settings"
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_client_ids_are_safe_on_a_command_line() -> None:
    ids = {ApiClient.new_client_id() for _ in range(500)}
    assert len(ids) == 500
    assert all(len(i) == 32 and all(c in "0123456789abcdef" for c in i) for i in ids)


def test_staff_with_model_permissions_cannot_reach_api_clients(org: Organization) -> None:
    from django.contrib.auth.models import Permission

    created = create_client("Partner", "--organization", org.pk, "--scope", SCOPES)
    client_pk = ApiClient.objects.get(client_id=created["client_id"]).pk
    staff = User.objects.create_user("clerk", password="pw-for-tests-only", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="fhir_api"))
    http = Client()
    http.force_login(staff)
    assert http.get("/admin/fhir_api/apiclient/").status_code == 403
    assert http.get(f"/admin/fhir_api/apiclient/{client_pk}/change/").status_code == 403
