"""The token endpoint (client credentials, RFC 6749 / SMART Backend Services) and scopes."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_plus

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.test import Client
from django.utils import timezone

from fhir_api.auth import Principal, parse_scope
from fhir_api.models import AccessToken, ApiClient, ApiClientOrganization, UsedAssertion
from fhir_api.oauth import granted_scopes
from fhir_api.tokens import issue_access_token
from scheduling.models import Organization

TOKEN_URL = "http://testserver/oauth/token"
SECRET = "s3cret/with+odd:chars%"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(autouse=True)
def fast_hasher(settings: Any) -> None:
    # PBKDF2 at Django's default cost makes every client creation take ~0.3 s.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def make_client(org: Organization) -> Callable[..., ApiClient]:
    def make(
        *, scopes: str = "system/Slot.rs system/Schedule.rs", jwks: dict[str, Any] | None = None
    ) -> ApiClient:
        client = ApiClient(
            name="partner", client_id=ApiClient.new_client_id(), scopes=scopes, jwks=jwks or {}
        )
        client.set_secret(SECRET)
        client.save()
        ApiClientOrganization.objects.create(organization=org, client=client)
        return client

    return make


def post_form(
    data: dict[str, str], *, basic: tuple[str, str] | None = None, client: Client | None = None
) -> Any:
    headers: dict[str, str] = {}
    if basic is not None:
        # RFC 6749 2.3.1: each part is form-urlencoded before base64.
        pair = f"{quote_plus(basic[0])}:{quote_plus(basic[1])}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    body = "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in data.items())
    return (client or Client()).post("/oauth/token", body, content_type=FORM, headers=headers)


def assert_oauth_error(response: Any, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["error"] == error
    assert body["error_description"]
    assert SECRET not in response.content.decode()
    return body


# --- client secrets ---------------------------------------------------------------------


def test_client_secret_basic_issues_a_working_token(make_client: Callable[..., ApiClient]) -> None:
    client = make_client()
    response = post_form({"grant_type": "client_credentials"}, basic=(client.client_id, SECRET))
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "bearer"
    assert 3590 <= body["expires_in"] <= 3600
    assert set(body["scope"].split()) == {"system/Slot.rs", "system/Schedule.rs"}
    # Stored as a digest only: the raw token is nowhere in the database.
    assert not AccessToken.objects.filter(digest=body["access_token"]).exists()
    assert AccessToken.objects.filter(client=client).count() == 1


def test_client_secret_post(make_client: Callable[..., ApiClient]) -> None:
    client = make_client()
    response = post_form(
        {"grant_type": "client_credentials", "client_id": client.client_id, "client_secret": SECRET}
    )
    assert response.status_code == 200, response.content
    assert response.json()["access_token"]


def test_wrong_secret_basic_is_401_with_basic_challenge(
    make_client: Callable[..., ApiClient],
) -> None:
    client = make_client()
    response = post_form(
        {"grant_type": "client_credentials"}, basic=(client.client_id, "wrong-secret")
    )
    assert_oauth_error(response, 401, "invalid_client")
    assert response["WWW-Authenticate"].startswith("Basic")
    assert not AccessToken.objects.exists()


def test_wrong_secret_post_is_401(make_client: Callable[..., ApiClient]) -> None:
    client = make_client()
    response = post_form(
        {"grant_type": "client_credentials", "client_id": client.client_id, "client_secret": "x"}
    )
    assert_oauth_error(response, 401, "invalid_client")


def test_unknown_client_looks_like_a_wrong_secret(make_client: Callable[..., ApiClient]) -> None:
    client = make_client()
    unknown = post_form({"grant_type": "client_credentials"}, basic=("nobody", SECRET))
    wrong = post_form({"grant_type": "client_credentials"}, basic=(client.client_id, "nope"))
    assert_oauth_error(unknown, 401, "invalid_client")
    assert unknown.json() == wrong.json()


def test_revoked_client_is_refused(make_client: Callable[..., ApiClient]) -> None:
    client = make_client()
    client.revoked_at = timezone.now()
    client.active = False
    client.save()
    response = post_form({"grant_type": "client_credentials"}, basic=(client.client_id, SECRET))
    assert_oauth_error(response, 401, "invalid_client")


def test_inactive_client_is_refused(make_client: Callable[..., ApiClient]) -> None:
    client = make_client()
    client.active = False
    client.save()
    response = post_form({"grant_type": "client_credentials"}, basic=(client.client_id, SECRET))
    assert_oauth_error(response, 401, "invalid_client")


@pytest.mark.parametrize("grant_type", ["password", "authorization_code", "refresh_token"])
def test_other_grant_types_are_unsupported(
    make_client: Callable[..., ApiClient], grant_type: str
) -> None:
    client = make_client()
    response = post_form({"grant_type": grant_type}, basic=(client.client_id, SECRET))
    assert_oauth_error(response, 400, "unsupported_grant_type")


def test_missing_grant_type_is_invalid_request(make_client: Callable[..., ApiClient]) -> None:
    client = make_client()
    response = post_form({}, basic=(client.client_id, SECRET))
    assert_oauth_error(response, 400, "invalid_request")


def test_no_client_authentication_is_401(make_client: Callable[..., ApiClient]) -> None:
    response = post_form({"grant_type": "client_credentials"})
    assert_oauth_error(response, 401, "invalid_client")


def test_two_authentication_methods_are_refused(make_client: Callable[..., ApiClient]) -> None:
    client = make_client()
    response = post_form(
        {
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": SECRET,
        },
        basic=(client.client_id, SECRET),
    )
    assert_oauth_error(response, 400, "invalid_request")


def test_json_body_is_refused(make_client: Callable[..., ApiClient]) -> None:
    client = make_client()
    response = Client().post(
        "/oauth/token",
        {
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": SECRET,
        },
        content_type="application/json",
    )
    assert_oauth_error(response, 400, "invalid_request")


def test_get_is_405() -> None:
    response = Client().get("/oauth/token")
    assert response.status_code == 405
    assert response["Allow"] == "POST"


def test_malformed_basic_header_is_401(make_client: Callable[..., ApiClient]) -> None:
    response = Client().post(
        "/oauth/token",
        "grant_type=client_credentials",
        content_type=FORM,
        headers={"Authorization": "Basic !!!not-base64"},
    )
    assert_oauth_error(response, 401, "invalid_client")


# --- scopes -----------------------------------------------------------------------------


def test_scope_is_narrowed_to_what_the_client_holds(make_client: Callable[..., ApiClient]) -> None:
    client = make_client(scopes="system/Slot.rs system/Schedule.rs")
    response = post_form(
        {"grant_type": "client_credentials", "scope": "system/Slot.rs system/Appointment.rs"},
        basic=(client.client_id, SECRET),
    )
    assert response.status_code == 200, response.content
    assert response.json()["scope"] == "system/Slot.rs"
    token = AccessToken.objects.get(client=client)
    assert token.scopes == "system/Slot.rs"


def test_requesting_only_unheld_scopes_is_invalid_scope(
    make_client: Callable[..., ApiClient],
) -> None:
    client = make_client(scopes="system/Slot.rs")
    response = post_form(
        {"grant_type": "client_credentials", "scope": "system/Appointment.c"},
        basic=(client.client_id, SECRET),
    )
    assert_oauth_error(response, 400, "invalid_scope")
    assert not AccessToken.objects.exists()


@pytest.mark.parametrize(
    ("held", "requested", "granted"),
    [
        ("system/Slot.rs", "system/Slot.rs", {"system/Slot.rs"}),
        ("system/Slot.rs", "system/Slot.r", {"system/Slot.r"}),
        ("system/Slot.r", "system/Slot.rs", set()),
        ("system/*.rs", "system/Slot.rs", {"system/Slot.rs"}),
        ("system/*.read", "system/Schedule.s", {"system/Schedule.s"}),
        ("system/Slot.rs", "patient/Slot.rs", set()),  # another context is not covered
        ("system/Slot.rs", "system/*.rs", set()),  # a wildcard asks for more than held
        ("system/Slot.rs", "launch openid", set()),
        ("system/Slot.rs system/Schedule.rs", "", {"system/Slot.rs", "system/Schedule.rs"}),
    ],
)
def test_granted_scopes_table(held: str, requested: str, granted: set[str]) -> None:
    client = ApiClient(scopes=held)
    assert granted_scopes(client, requested) == frozenset(granted)


def principal(scopes: str, patient_id: str | None = None) -> Principal:
    return Principal(
        client_id="c",
        organization_ids=frozenset({"o"}),
        patient_id=patient_id,
        scopes=frozenset(scopes.split()),
    )


@pytest.mark.parametrize(
    ("scopes", "patient_id", "resource", "interaction", "allowed"),
    [
        ("system/Slot.rs", None, "Slot", "read", True),
        ("system/Slot.rs", None, "Slot", "search", True),
        ("system/Slot.rs", None, "Slot", "create", False),
        ("system/Slot.rs", None, "Schedule", "read", False),
        ("system/Slot.r", None, "Slot", "search", False),
        ("system/Slot.s", None, "Slot", "read", False),
        ("system/Appointment.c", None, "Appointment", "create", True),
        ("system/Appointment.c", None, "Appointment", "read", False),
        ("system/Appointment.cruds", None, "Appointment", "delete", True),
        ("system/AppointmentResponse.c", None, "AppointmentResponse", "create", True),
        ("system/AppointmentResponse.c", None, "Appointment", "create", False),
        ("system/*.rs", None, "Schedule", "search", True),
        ("system/*.rs", None, "Appointment", "create", False),
        ("system/*.*", None, "Appointment", "create", True),
        ("system/Slot.read", None, "Slot", "search", True),
        ("system/Slot.read", None, "Slot", "create", False),
        ("system/Appointment.write", None, "Appointment", "create", True),
        ("system/Appointment.write", None, "Appointment", "read", False),
        ("user/Slot.rs", None, "Slot", "read", True),
        # patient/ scopes only mean something with a patient in context.
        ("patient/Appointment.rs", "p1", "Appointment", "read", True),
        ("patient/Appointment.rs", None, "Appointment", "read", False),
        ("patient/*.rs", None, "Slot", "read", False),
        ("patient/Appointment.c", "p1", "Appointment", "create", True),
        # malformed or unsupported scopes grant nothing
        ("system/Slot.sr", None, "Slot", "read", False),
        ("system/Slot", None, "Slot", "read", False),
        ("Slot.rs", None, "Slot", "read", False),
        ("admin/Slot.rs", None, "Slot", "read", False),
        ("system/Slot.rs?category=x", None, "Slot", "read", False),
        ("system/slot.rs", None, "Slot", "read", False),
        ("system/Patient.rs", None, "Slot", "read", False),
        ("", None, "Slot", "read", False),
    ],
)
def test_has_scope_table(
    scopes: str, patient_id: str | None, resource: str, interaction: Any, allowed: bool
) -> None:
    assert principal(scopes, patient_id).has_scope(resource, interaction) is allowed


def test_parse_scope_v1_names() -> None:
    parsed = parse_scope("system/*.*")
    assert parsed is not None
    assert parsed.letters == frozenset("cruds")
    assert parse_scope("system/Slot.write") is not None
    assert parse_scope("system/Slot.x") is None


# --- token expiry ---------------------------------------------------------------------


def test_expired_token_is_401(org: Organization, make_client: Callable[..., ApiClient]) -> None:
    from django.test import RequestFactory

    from fhir_api.auth import AuthenticationRequired, authenticate

    client = make_client()
    raw, _ = issue_access_token(client=client, lifetime=-1)
    request = RequestFactory().get("/", headers={"Authorization": f"Bearer {raw}"})
    with pytest.raises(AuthenticationRequired, match="expired"):
        authenticate(request)
    fresh, _ = issue_access_token(client=client)
    request = RequestFactory().get("/", headers={"Authorization": f"Bearer {fresh}"})
    assert authenticate(request).organization_ids == frozenset({org.pk})


def test_token_lifetime_follows_settings(
    settings: Any, make_client: Callable[..., ApiClient]
) -> None:
    settings.ACCESS_TOKEN_LIFETIME = 120
    client = make_client()
    response = post_form({"grant_type": "client_credentials"}, basic=(client.client_id, SECRET))
    assert 110 <= response.json()["expires_in"] <= 120


# --- private_key_jwt ------------------------------------------------------------------


def rsa_key() -> tuple[Any, dict[str, Any]]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    jwk.update(kid="rsa-1", alg="RS384", use="sig")
    return private, jwk


def ec_key() -> tuple[Any, dict[str, Any]]:
    private = ec.generate_private_key(ec.SECP384R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    jwk.update(kid="ec-1", alg="ES384", use="sig")
    return private, jwk


def assertion(
    client_id: str,
    private: Any,
    *,
    alg: str = "RS384",
    kid: str | None = "rsa-1",
    aud: str = TOKEN_URL,
    exp_in: int = 240,
    jti: str | None = None,
    **extra: Any,
) -> str:
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "exp": int(time.time()) + exp_in,
        "jti": jti or uuid.uuid4().hex,
        **extra,
    }
    headers = {"kid": kid} if kid else {}
    return jwt.encode(claims, private, algorithm=alg, headers=headers)


def jwt_form(token: str, scope: str | None = None) -> dict[str, str]:
    data = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": token,
    }
    if scope:
        data["scope"] = scope
    return data


@pytest.fixture(scope="module")
def rsa_pair() -> tuple[Any, dict[str, Any]]:
    return rsa_key()


@pytest.fixture(scope="module")
def ec_pair() -> tuple[Any, dict[str, Any]]:
    return ec_key()


@pytest.fixture
def jwt_client(
    make_client: Callable[..., ApiClient],
    rsa_pair: tuple[Any, dict[str, Any]],
    ec_pair: tuple[Any, dict[str, Any]],
) -> ApiClient:
    return make_client(jwks={"keys": [rsa_pair[1], ec_pair[1]]})


def test_private_key_jwt_rs384(jwt_client: ApiClient, rsa_pair: tuple[Any, Any]) -> None:
    response = post_form(
        jwt_form(assertion(jwt_client.client_id, rsa_pair[0]), scope="system/Slot.rs")
    )
    assert response.status_code == 200, response.content
    assert response.json()["scope"] == "system/Slot.rs"


def test_private_key_jwt_es384(jwt_client: ApiClient, ec_pair: tuple[Any, Any]) -> None:
    token = assertion(jwt_client.client_id, ec_pair[0], alg="ES384", kid="ec-1")
    response = post_form(jwt_form(token))
    assert response.status_code == 200, response.content


def test_private_key_jwt_without_kid_tries_every_key(
    jwt_client: ApiClient, ec_pair: tuple[Any, Any]
) -> None:
    token = assertion(jwt_client.client_id, ec_pair[0], alg="ES384", kid=None)
    assert post_form(jwt_form(token)).status_code == 200


def test_replayed_assertion_is_refused(jwt_client: ApiClient, rsa_pair: tuple[Any, Any]) -> None:
    token = assertion(jwt_client.client_id, rsa_pair[0])
    assert post_form(jwt_form(token)).status_code == 200
    replay = post_form(jwt_form(token))
    body = assert_oauth_error(replay, 401, "invalid_client")
    assert "used before" in body["error_description"]
    assert UsedAssertion.objects.filter(client=jwt_client).count() == 1
    assert AccessToken.objects.filter(client=jwt_client).count() == 1


def test_wrong_key_is_refused(jwt_client: ApiClient) -> None:
    other_private, _ = rsa_key()
    token = assertion(jwt_client.client_id, other_private)
    assert_oauth_error(post_form(jwt_form(token)), 401, "invalid_client")
    assert not AccessToken.objects.exists()


def test_key_of_another_client_is_refused(
    make_client: Callable[..., ApiClient], rsa_pair: tuple[Any, Any]
) -> None:
    owner = make_client(jwks={"keys": [rsa_pair[1]]})
    victim = make_client(jwks={"keys": [rsa_key()[1]]})
    token = assertion(victim.client_id, rsa_pair[0])
    assert_oauth_error(post_form(jwt_form(token)), 401, "invalid_client")
    assert owner.pk != victim.pk


def test_expired_assertion_is_refused(jwt_client: ApiClient, rsa_pair: tuple[Any, Any]) -> None:
    token = assertion(jwt_client.client_id, rsa_pair[0], exp_in=-5)
    body = assert_oauth_error(post_form(jwt_form(token)), 401, "invalid_client")
    assert "expired" in body["error_description"]


def test_assertion_valid_too_long_is_refused(
    jwt_client: ApiClient, rsa_pair: tuple[Any, Any]
) -> None:
    token = assertion(jwt_client.client_id, rsa_pair[0], exp_in=3600)
    assert_oauth_error(post_form(jwt_form(token)), 401, "invalid_client")


@pytest.mark.parametrize(
    "aud", ["http://testserver/oauth/other", "https://evil.example/oauth/token", ""]
)
def test_wrong_audience_is_refused(
    jwt_client: ApiClient, rsa_pair: tuple[Any, Any], aud: str
) -> None:
    token = assertion(jwt_client.client_id, rsa_pair[0], aud=aud)
    assert_oauth_error(post_form(jwt_form(token)), 401, "invalid_client")


def test_iss_and_sub_must_match(jwt_client: ApiClient, rsa_pair: tuple[Any, Any]) -> None:
    token = jwt.encode(
        {
            "iss": jwt_client.client_id,
            "sub": "someone-else",
            "aud": TOKEN_URL,
            "exp": int(time.time()) + 60,
            "jti": "j1",
        },
        rsa_pair[0],
        algorithm="RS384",
        headers={"kid": "rsa-1"},
    )
    assert_oauth_error(post_form(jwt_form(token)), 401, "invalid_client")


def test_missing_jti_is_refused(jwt_client: ApiClient, rsa_pair: tuple[Any, Any]) -> None:
    token = jwt.encode(
        {
            "iss": jwt_client.client_id,
            "sub": jwt_client.client_id,
            "aud": TOKEN_URL,
            "exp": int(time.time()) + 60,
        },
        rsa_pair[0],
        algorithm="RS384",
        headers={"kid": "rsa-1"},
    )
    assert_oauth_error(post_form(jwt_form(token)), 401, "invalid_client")


@pytest.mark.parametrize("alg", ["RS256", "HS384", "none"])
def test_other_algorithms_are_refused(
    jwt_client: ApiClient, rsa_pair: tuple[Any, Any], alg: str
) -> None:
    claims = {
        "iss": jwt_client.client_id,
        "sub": jwt_client.client_id,
        "aud": TOKEN_URL,
        "exp": int(time.time()) + 60,
        "jti": uuid.uuid4().hex,
    }
    key: Any = {
        "RS256": rsa_pair[0],
        "HS384": "a-shared-key-that-is-long-enough-for-hs384-0123456789abcdef",
        "none": None,
    }[alg]
    token = jwt.encode(claims, key, algorithm=alg)
    assert_oauth_error(post_form(jwt_form(token)), 401, "invalid_client")


def test_revoked_jwt_client_is_refused(jwt_client: ApiClient, rsa_pair: tuple[Any, Any]) -> None:
    jwt_client.active = False
    jwt_client.revoked_at = timezone.now()
    jwt_client.save()
    token = assertion(jwt_client.client_id, rsa_pair[0])
    assert_oauth_error(post_form(jwt_form(token)), 401, "invalid_client")


def test_garbage_assertion_is_refused(jwt_client: ApiClient) -> None:
    assert_oauth_error(post_form(jwt_form("not.a.jwt")), 401, "invalid_client")


def test_wrong_assertion_type_is_invalid_request(
    jwt_client: ApiClient, rsa_pair: tuple[Any, Any]
) -> None:
    data = jwt_form(assertion(jwt_client.client_id, rsa_pair[0]))
    data["client_assertion_type"] = "urn:something:else"
    assert_oauth_error(post_form(data), 400, "invalid_request")


def test_token_from_assertion_authenticates_api_calls(
    jwt_client: ApiClient, rsa_pair: tuple[Any, Any]
) -> None:
    from django.test import RequestFactory

    from fhir_api.auth import authenticate

    response = post_form(jwt_form(assertion(jwt_client.client_id, rsa_pair[0])))
    raw = response.json()["access_token"]
    request = RequestFactory().get("/", headers={"Authorization": f"Bearer {raw}"})
    assert authenticate(request).client_id == jwt_client.client_id


# --- SMART configuration ----------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/.well-known/smart-configuration", "/v2/clinic-a/fhir/R4/.well-known/smart-configuration"],
)
def test_smart_configuration(org: Organization, path: str) -> None:
    response = Client().get(path)
    assert response.status_code == 200
    body = response.json()
    assert body["token_endpoint"] == TOKEN_URL
    assert body["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
    assert "private_key_jwt" in body["token_endpoint_auth_methods_supported"]
    assert "client_secret_basic" in body["token_endpoint_auth_methods_supported"]
    assert body["grant_types_supported"] == ["client_credentials"]
    assert "system/Appointment.c" in body["scopes_supported"]
    assert set(body["capabilities"]) == {
        "client-confidential-asymmetric",
        "client-confidential-symmetric",
    }


def test_smart_configuration_does_not_tell_which_organisations_exist(
    org: Organization,
) -> None:
    # Discovery works without a token, so it must not answer 200 for existing and 404
    # for unknown organisations: that would enumerate the tenants.
    known = Client().get(f"/v2/{org.pk}/fhir/R4/.well-known/smart-configuration")
    unknown = Client().get("/v2/nope/fhir/R4/.well-known/smart-configuration")
    assert known.status_code == unknown.status_code == 200
    assert known.content == unknown.content


def test_repeated_parameters_are_refused(make_client: Callable[..., ApiClient]) -> None:
    client = make_client()
    response = Client().post(
        "/oauth/token",
        "grant_type=client_credentials&scope=system/Slot.rs&scope=system/Schedule.rs",
        content_type=FORM,
        headers={
            "Authorization": "Basic "
            + base64.b64encode(f"{client.client_id}:{quote_plus(SECRET)}".encode()).decode()
        },
    )
    body = assert_oauth_error(response, 400, "invalid_request")
    assert "scope" in body["error_description"]


def test_narrowing_a_client_narrows_its_live_tokens(
    make_client: Callable[..., ApiClient],
) -> None:
    from django.test import RequestFactory

    from fhir_api.auth import authenticate

    client = make_client(scopes="system/Slot.rs system/Schedule.rs")
    raw = post_form({"grant_type": "client_credentials"}, basic=(client.client_id, SECRET)).json()[
        "access_token"
    ]
    client.scopes = "system/Slot.rs"
    client.save()
    request = RequestFactory().get("/", headers={"Authorization": f"Bearer {raw}"})
    principal = authenticate(request)
    assert principal.has_scope("Slot", "read")
    assert not principal.has_scope("Schedule", "read")


def test_removing_an_organisation_takes_effect_at_once(
    org: Organization, make_client: Callable[..., ApiClient]
) -> None:
    from django.test import RequestFactory

    from fhir_api.auth import authenticate

    client = make_client()
    raw, _ = issue_access_token(client=client)
    ApiClientOrganization.objects.filter(client=client).delete()
    request = RequestFactory().get("/", headers={"Authorization": f"Bearer {raw}"})
    assert authenticate(request).organization_ids == frozenset()
