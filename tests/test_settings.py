"""Settings come from the environment (docs/api.md section 11).

Each case imports the settings in a fresh ``python -c`` process with a controlled
environment, because settings are read once, when Django starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent

PROBE = """
import json
from django.conf import settings
db = settings.DATABASES["default"]
print(json.dumps({
    "DEBUG": settings.DEBUG,
    "ENGINE": db["ENGINE"],
    "NAME": str(db["NAME"]),
    "HOST": db.get("HOST", ""),
    "PORT": db.get("PORT", ""),
    "USER": db.get("USER", ""),
    "ALLOWED_HOSTS": settings.ALLOWED_HOSTS,
    "SESSION_COOKIE_SECURE": settings.SESSION_COOKIE_SECURE,
    "CSRF_COOKIE_SECURE": settings.CSRF_COOKIE_SECURE,
    "SECURE_HSTS_SECONDS": settings.SECURE_HSTS_SECONDS,
    "SECRET_KEY_SET": bool(settings.SECRET_KEY),
    "PREPARE_THRESHOLD": db.get("OPTIONS", {}).get("prepare_threshold"),
}))
"""


def load(**env: str) -> subprocess.CompletedProcess[str]:
    # A clean environment: the test run's own settings (conftest) must not leak in.
    clean = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DJANGO_SETTINGS_MODULE": "medikit.settings",
        "PYTHONPATH": str(BASE_DIR),
    }
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=BASE_DIR,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def settings_with(**env: str) -> dict[str, Any]:
    result = load(**env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_default_database_is_sqlite_in_the_project_root() -> None:
    values = settings_with(SECRET_KEY="k")
    assert values["ENGINE"] == "django.db.backends.sqlite3"
    assert Path(values["NAME"]) == BASE_DIR / "db.sqlite3"


def test_database_url_selects_postgresql() -> None:
    values = settings_with(
        SECRET_KEY="k", DATABASE_URL="postgres://medikit:pw@db.internal:6543/medikit_prod"
    )
    assert values["ENGINE"] == "django.db.backends.postgresql"
    assert (values["NAME"], values["HOST"], values["PORT"], values["USER"]) == (
        "medikit_prod",
        "db.internal",
        6543,
        "medikit",
    )


def test_postgresql_prepares_the_per_request_queries_unless_turned_off() -> None:
    url = "postgres://medikit@db.internal:5432/medikit"
    assert settings_with(SECRET_KEY="k", DATABASE_URL=url)["PREPARE_THRESHOLD"] == 5
    off = settings_with(SECRET_KEY="k", DATABASE_URL=url, DATABASE_PREPARED_STATEMENTS="0")
    assert off["PREPARE_THRESHOLD"] is None
    assert settings_with(SECRET_KEY="k")["PREPARE_THRESHOLD"] is None  # SQLite


def test_debug_off_without_secret_key_refuses_to_start() -> None:
    result = load()
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr
    result = load(DEBUG="0", SECRET_KEY="")
    assert result.returncode != 0


def test_debug_on_runs_without_secret_key() -> None:
    values = settings_with(DEBUG="1")
    assert values["DEBUG"] is True and values["SECRET_KEY_SET"]


def test_debug_is_off_by_default() -> None:
    assert settings_with(SECRET_KEY="k")["DEBUG"] is False


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("api.example.org", ["api.example.org"]),
        ("api.example.org, admin.example.org ,", ["api.example.org", "admin.example.org"]),
        ("", []),
    ],
)
def test_allowed_hosts_is_a_comma_separated_list(raw: str, expected: list[str]) -> None:
    assert settings_with(SECRET_KEY="k", ALLOWED_HOSTS=raw)["ALLOWED_HOSTS"] == expected


def test_secure_cookies_and_hsts_when_debug_is_off() -> None:
    values = settings_with(SECRET_KEY="k")
    assert values["SESSION_COOKIE_SECURE"] is True
    assert values["CSRF_COOKIE_SECURE"] is True
    assert values["SECURE_HSTS_SECONDS"] >= 31_536_000


def test_debug_on_relaxes_transport_security_for_local_development() -> None:
    values = settings_with(DEBUG="1")
    assert values["SESSION_COOKIE_SECURE"] is False
    assert values["SECURE_HSTS_SECONDS"] == 0
    assert "localhost" in values["ALLOWED_HOSTS"]
