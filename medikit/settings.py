"""One settings module, driven by the environment (docs/api.md section 11)."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from medikit.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off (set DEBUG=1 for local development)."
        )
    # Only ever used with DEBUG on, on a developer's machine.
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"

ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"] if DEBUG else []
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "axes",
    "scheduling",
    "fhir_api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "fhir_api.middleware.RequestSizeLimitMiddleware",
    "fhir_api.middleware.SecurityHeadersMiddleware",
    "fhir_api.middleware.TokenFloodMiddleware",
    "medikit.static.StaticFilesMiddleware",
    # Django's session, authentication and message middleware, skipped for API paths.
    "fhir_api.middleware.SessionMiddleware",
    # Django's language negotiation, for all but the API (which answers in English).
    "fhir_api.middleware.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "fhir_api.middleware.AuthenticationMiddleware",
    "fhir_api.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "medikit.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
            ],
        },
    },
]

WSGI_APPLICATION = "medikit.wsgi.application"

DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE: concurrent writers wait for the lock instead of failing with
    # "database is locked" halfway through a transaction (booking relies on it).
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0

if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool(
    "DATABASE_PREPARED_STATEMENTS", True
):
    # Django binds parameters on the client and disables prepared statements (for old
    # PgBouncers). The queries every request runs (scheduling/db/compiled_query.py) use
    # server-side binding and are prepared after 5 executions on a connection; Django's
    # own cursors still never prepare. Turn off behind PgBouncer < 1.21 in transaction mode.
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 5

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Rows of Slot and Schedule search results each worker process keeps, keyed by the
# organisation's data stamp (scheduling/db/search_cache.py); 0 turns the caches off.
SEARCH_CACHE_ROWS = env_int("SEARCH_CACHE_ROWS", 100_000)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("nl", "Nederlands")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# Dates per language for people (24-hour clock, day before month): medikit/formats/.
FORMAT_MODULE_PATH = ["medikit.formats"]
TIME_ZONE = "Europe/Amsterdam"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Production serves hashed, compressed files from `collectstatic` (scripts/serve.sh runs
# it); development and the test suite read the apps' static folders directly.
STATIC_MANIFEST = env_bool("STATIC_MANIFEST", not DEBUG)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if STATIC_MANIFEST
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = not STATIC_MANIFEST

# A FHIR request body is small; anything bigger is refused before parsing.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("MAX_REQUEST_BYTES", 1_048_576)

# --- Security: safe by default, relaxed only with DEBUG on ----------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# API URLs answer a CSRF refusal with an OperationOutcome, never Django's HTML page.
CSRF_FAILURE_VIEW = "fhir_api.errors.csrf_failure"

# django-axes: rate-limit admin login attempts.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = 0.25  # hours
AXES_RESET_ON_SUCCESS = True
# Lock a username at one address, never a username everywhere (anyone could lock out a
# colleague) nor an address alone (behind the proxy, the whole clinic shares one).
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_CLIENT_IP_CALLABLE = "medikit.clientip.client_address"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "fhir_api.errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["fhir_api.renderers.FHIRJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["fhir_api.parsers.FHIRJSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "fhir_api.renderers.FHIRContentNegotiation",
    "URL_FORMAT_OVERRIDE": None,
}

# OAuth 2.0 access-token lifetime in seconds (docs/api.md section 8).
ACCESS_TOKEN_LIFETIME = env_int("ACCESS_TOKEN_LIFETIME", 3600)
# The 'aud' client assertions must carry; empty means the URL the request arrived at
# (set it when a proxy rewrites the host or path).
OAUTH_TOKEN_ENDPOINT_URL = env_str("OAUTH_TOKEN_ENDPOINT_URL", "")

# Client secrets are stored as HMAC-SHA256 with this pepper (fhir_api.models.secret_digest).
# Set it explicitly in production: derived from SECRET_KEY otherwise, so rotating the
# SECRET_KEY would invalidate every client secret.
CLIENT_SECRET_PEPPER = (
    env_str("CLIENT_SECRET_PEPPER", "")
    or hmac.new(SECRET_KEY.encode(), b"medikit client secret pepper", hashlib.sha256).hexdigest()
)
# Token endpoint brute-force limits (fhir_api.throttle): failed client authentications
# per window, per client id at one address, per address, and per client id overall.
OAUTH_FAILURE_WINDOW = env_int("OAUTH_FAILURE_WINDOW", 60)
OAUTH_CLIENT_FAILURE_LIMIT = env_int("OAUTH_CLIENT_FAILURE_LIMIT", 10)
OAUTH_ADDRESS_FAILURE_LIMIT = env_int("OAUTH_ADDRESS_FAILURE_LIMIT", 50)
OAUTH_CLIENT_ID_FAILURE_LIMIT = env_int("OAUTH_CLIENT_ID_FAILURE_LIMIT", 500)
# The client's address behind a proxy (medikit.clientip): the header the trusted proxy
# sets (e.g. X-Forwarded-For) and how many trusted proxies append to it. Empty: use the
# connection's address (REMOTE_ADDR), never a header a client could forge.
TRUSTED_PROXY_HEADER = env_str("TRUSTED_PROXY_HEADER", "")
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 1)
# Seconds a client is told to wait (Retry-After) when the database is unavailable.
DATABASE_RETRY_AFTER = env_int("DATABASE_RETRY_AFTER", 5)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {"security_one_line": {"()": "medikit.logfilters.NoTracebackForSecurityEvents"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["security_one_line"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # The request logger would print request details (incl. headers) on errors.
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}
