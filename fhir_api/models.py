"""API clients and their OAuth 2.0 credentials (docs/api.md section 8).

Secrets and tokens are stored hashed; the plain values are shown once, when issued.
Everything lives in the database so any number of server processes agree.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.conf import settings
from django.contrib.auth.hashers import check_password
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from scheduling.models import Organization


def token_digest(value: str) -> str:
    """Tokens are random and long, so a fast unsalted hash is enough to store them."""
    return hashlib.sha256(value.encode()).hexdigest()


#: Prefix of client secrets stored as HMAC-SHA256 (anything else is a legacy Django hash).
SECRET_SCHEME = "hmac-sha256"


def secret_digest(raw: str) -> str:
    """How a client secret is stored: HMAC-SHA256 keyed with the server's pepper.

    Client secrets are 256-bit random values, not passwords: nobody can guess one, so a
    slow password hash (PBKDF2, 0.4 s a try) buys nothing and hands anyone who can reach
    the token endpoint a CPU-exhaustion lever. The pepper (CLIENT_SECRET_PEPPER, kept
    outside the database) means a leaked table alone cannot be used to test guesses.
    """
    pepper = str(settings.CLIENT_SECRET_PEPPER).encode()
    mac = hmac.new(pepper, raw.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return f"{SECRET_SCHEME}${mac.hexdigest()}"


class ApiClient(models.Model):
    """A partner system or patient app allowed to call the FHIR API."""

    name = models.CharField(max_length=200)
    client_id = models.CharField(max_length=100, unique=True)
    secret_hash = models.CharField(max_length=200, blank=True)
    organizations = models.ManyToManyField(
        Organization, through="ApiClientOrganization", related_name="api_clients"
    )
    # A patient-facing app is bound to one patient (by FHIR id, within its organisations).
    patient_fhir_id = models.CharField(max_length=64, blank=True)
    scopes = models.TextField(help_text=_("Space-separated SMART v2 scopes."))
    # Public keys for private_key_jwt client assertions (SMART Backend Services).
    jwks = models.JSONField(default=dict, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("API client")

    def __str__(self) -> str:
        return f"{self.name} ({self.client_id})"

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scopes.split())

    def set_secret(self, raw: str) -> None:
        self.secret_hash = secret_digest(raw)

    def check_secret(self, raw: str) -> bool:
        """Whether ``raw`` is this client's secret, in constant time.

        A secret still stored with a Django password hasher (before HMAC) is checked the
        slow way once and, when it matches, stored again as HMAC: clients upgrade on their
        next successful token request without being given new secrets.
        """
        if not self.secret_hash:
            return False
        if self.secret_hash.startswith(SECRET_SCHEME + "$"):
            return hmac.compare_digest(self.secret_hash, secret_digest(raw))
        if not check_password(raw, self.secret_hash):
            return False
        self.secret_hash = secret_digest(raw)
        if self.pk is not None:
            ApiClient.objects.filter(pk=self.pk).update(secret_hash=self.secret_hash)
        return True

    @staticmethod
    def new_client_id() -> str:
        # Hex, not urlsafe base64: a leading '-' would read as an option on a command line
        # (revoke_api_client), and ':' or '%' never need escaping in HTTP Basic.
        return secrets.token_hex(16)

    @staticmethod
    def new_secret() -> str:
        return secrets.token_urlsafe(32)


class ApiClientOrganization(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE)
    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "client"], name="uniq_client_org")
        ]


class AccessToken(models.Model):
    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="tokens")
    digest = models.CharField(max_length=64, unique=True)
    scopes = models.TextField()
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["expires_at"], name="token_expiry")]

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()


class UsedAssertion(models.Model):
    """jti values of accepted client assertions, so a replay is refused."""

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE)
    jti = models.CharField(max_length=255)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["client", "jti"], name="uniq_client_jti")]


class TokenFailure(models.Model):
    """Failed client authentications at the token endpoint, counted per key and window.

    ``key`` is a digest of what is limited (a client id at an address, an address, a
    client id), so arbitrary client ids from outside never reach an index unhashed.
    Rows of past windows are deleted as new failures arrive.
    """

    key = models.CharField(max_length=64)
    window_start = models.BigIntegerField()
    count = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["key", "window_start"], name="uniq_failure_window")
        ]
        indexes = [models.Index(fields=["window_start"], name="failure_window")]
