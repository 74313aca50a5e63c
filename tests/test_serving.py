"""Production serving: the health endpoint, the gunicorn configuration and serve.sh."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import ModuleType

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parent.parent
SERVE_SH = ROOT / "scripts" / "serve.sh"


def load_gunicorn_conf(monkeypatch: pytest.MonkeyPatch, **env: str) -> ModuleType:
    """Import gunicorn.conf.py afresh under the given environment."""
    for name in (
        "BIND",
        "HOST",
        "PORT",
        "WEB_CONCURRENCY",
        "GUNICORN_THREADS",
        "GUNICORN_MAX_REQUESTS",
        "ACCESS_LOG",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location(
        "gunicorn_conf_under_test", ROOT / "gunicorn.conf.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- /healthz ------------------------------------------------------------------------------


def test_healthz_answers_ok_json_without_credentials() -> None:
    response = Client().get("/healthz")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok"}


def test_healthz_needs_no_database() -> None:
    # No db mark: pytest-django makes any query here raise. A probe that queried the
    # database would turn a slow database into "every app server is dead".
    for _ in range(3):
        assert Client().get("/healthz").status_code == 200


def test_healthz_refuses_writes() -> None:
    assert Client().post("/healthz").status_code == 405


# --- gunicorn.conf.py ----------------------------------------------------------------------


def test_gunicorn_defaults_are_production_sane(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = load_gunicorn_conf(monkeypatch)

    assert conf.bind == ["127.0.0.1:8000"]
    assert conf.workers == 2 * (os.cpu_count() or 1) + 1
    assert conf.worker_class == "gthread"
    assert conf.threads >= 1
    assert conf.keepalive > 0
    assert 0 < conf.timeout <= 60
    assert conf.max_requests > 0
    assert 0 < conf.max_requests_jitter < conf.max_requests
    assert conf.accesslog is None
    assert conf.preload_app is True


def test_gunicorn_settings_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = load_gunicorn_conf(
        monkeypatch,
        WEB_CONCURRENCY="3",
        PORT="9001",
        GUNICORN_THREADS="8",
        GUNICORN_MAX_REQUESTS="0",
        ACCESS_LOG="1",
    )

    assert conf.workers == 3
    assert conf.bind == ["127.0.0.1:9001"]
    assert conf.threads == 8
    assert conf.max_requests == 0
    assert conf.accesslog == "-"


def test_gunicorn_bind_overrides_host_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = load_gunicorn_conf(monkeypatch, BIND="unix:/tmp/medikit.sock", PORT="9001")

    assert conf.bind == ["unix:/tmp/medikit.sock"]


def test_gunicorn_config_is_accepted_by_gunicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every name in the file is a real gunicorn setting (a typo would be ignored silently)."""
    from gunicorn.config import Config

    conf = load_gunicorn_conf(monkeypatch)
    known = set(Config().settings)
    ours = {
        name
        for name, value in vars(conf).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    } - {"annotations", "os", "Any", "env_bool", "env_int", "env_str", "default_workers"}

    assert ours - known == set()
    assert "when_ready" in ours and "post_fork" in ours


# --- scripts/serve.sh ---------------------------------------------------------------------


def serve_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG")}
    env.update(extra)
    return env


def test_serve_refuses_to_start_without_secret_key(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(SERVE_SH)],
        env=serve_env(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert "SECRET_KEY is not set" in result.stderr
    assert "MEDIKIT_ALLOW_EPHEMERAL_SECRET=1" in result.stderr
    # Refused before touching the database: nothing was migrated.
    assert not (tmp_path / "db.sqlite3").exists()


@pytest.mark.slow
def test_serve_starts_gunicorn_that_answers_healthz(tmp_path: Path) -> None:
    """A real start on SQLite: migrate, collectstatic, gunicorn, one request, clean stop."""
    port = free_port()
    env = serve_env(
        MEDIKIT_ALLOW_EPHEMERAL_SECRET="1",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        ALLOWED_HOSTS="127.0.0.1",
        PORT=str(port),
        WEB_CONCURRENCY="1",
        GUNICORN_THREADS="1",
    )
    process = subprocess.Popen(
        ["bash", str(SERVE_SH)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        body = b""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    status, body = r.status, r.read()
                    break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None:
                    break
                time.sleep(0.3)
        else:
            status = 0
        if not body:
            process.kill()
            output = process.communicate(timeout=10)[0].decode(errors="replace")
            pytest.fail(f"gunicorn did not answer /healthz:\n{output[-3000:]}")
        assert status == 200
        assert body == b'{"status":"ok"}'
        # The database was migrated by serve.sh before gunicorn started.
        assert (tmp_path / "db.sqlite3").stat().st_size > 0
    finally:
        if process.poll() is None:
            # exec: the shell's pid IS gunicorn's master; SIGTERM is its graceful stop.
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
    # SIGTERM is a graceful stop for gunicorn: it exits 0 once the workers are done.
    assert process.returncode == 0


# --- bench/load.py's measuring helpers (a wrong percentile would mislead every report) --


def load_bench_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is created.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("q", "expected"),
    [(50, 50.0), (95, 95.0), (99, 99.0), (100, 100.0), (1, 1.0)],
)
def test_percentile_is_nearest_rank(q: float, expected: float) -> None:
    client = load_bench_module("load_client")

    assert client.percentile([float(v) for v in range(1, 101)], q) == expected


def test_percentile_of_nothing_is_zero() -> None:
    assert load_bench_module("load_client").percentile([], 99) == 0.0


def test_only_booking_conflicts_are_not_errors() -> None:
    load = load_bench_module("load")
    result = {
        "kinds": {
            "book": {"statuses": {"201": 5, "409": 7, "500": 1}},
            "slot": {"statuses": {"200": 9, "409": 2, "404": 3}},
        }
    }

    # 409 is an expected race for bookings only; a 409 on a search is a bug.
    assert load.error_count(result) == 1 + 2 + 3


def test_per_core_figures_count_server_cpu_not_the_load_client() -> None:
    load = load_bench_module("load")
    # 1,200 requests for 2 CPU-seconds of gunicorn and PostgreSQL: 600 per core of the
    # server, whatever the wall time and whatever the load client used.
    measured = {"all": {"count": 1200, "rps": 400.0}, "server_cpu_seconds": 2.0}

    assert load.per_cpu_second(measured) == 600.0
    assert load.per_cpu_second({"all": {"count": 1200, "rps": 400.0}}) == 0.0


def test_memory_is_flat_against_the_warm_sample_not_the_first() -> None:
    load = load_bench_module("load")
    warming_then_steady = load.MemorySeries(pid=1, samples=[70.0, 84.0, 85.0, 86.0], warm_index=1)
    leaking = load.MemorySeries(pid=2, samples=[70.0, 84.0, 90.0, 99.0], warm_index=1)

    assert warming_then_steady.flat
    assert not leaking.flat
    assert (leaking.start, leaking.warm, leaking.end, leaking.peak) == (70.0, 84.0, 99.0, 99.0)


def test_workers_freeze_the_application_and_collect_less_often(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gc

    before = gc.get_threshold()
    try:
        conf = load_gunicorn_conf(monkeypatch, GUNICORN_GC_THRESHOLD="40000")
        conf.post_fork(None, None)
        assert gc.get_threshold()[0] == 40000
        assert gc.get_freeze_count() > 0  # the loaded application is out of the collector's way
        default = load_gunicorn_conf(monkeypatch, GUNICORN_GC_THRESHOLD="0")
        gc.set_threshold(*before)
        default.post_fork(None, None)
        assert gc.get_threshold() == before
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


# --- Connection: close after a body refused unread (issue #18) ------------------------------


@pytest.mark.slow
def test_gunicorn_closes_the_connection_after_a_body_it_did_not_read(tmp_path: Path) -> None:
    """gunicorn used to promise keep-alive for a refused 100 KB body, then drop the socket."""
    import http.client

    port = free_port()
    env = {
        **os.environ,
        "SECRET_KEY": "test-only",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "ALLOWED_HOSTS": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "MAX_REQUEST_BYTES": "65536",
        "DEBUG": "0",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "medikit.wsgi"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.3)

        def post(path: str, body: bytes) -> tuple[int, str | None]:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request(
                "POST", path, body=body, headers={"Content-Type": "application/fhir+json"}
            )
            response = connection.getresponse()
            response.read()
            connection.close()
            return response.status, response.getheader("Connection")

        big = b'{"resourceType": "Parameters", "x": "' + b"x" * 100_000 + b'"}'
        # Refused by size before anything reads it.
        assert post("/v2/clinic/fhir/R4/Schedule", big) == (413, "close")
        small = b'{"resourceType": "Parameters", "x": "' + b"x" * 30_000 + b'"}'
        # Not a route: the 404 never reads the body.
        assert post("/v2/clinic/fhir/R4/Nothing", small) == (404, "close")
        # A body-less request keeps the connection.
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/v2/clinic/fhir/R4/Nothing")
        response = connection.getresponse()
        response.read()
        assert (response.status, response.getheader("Connection")) == (404, "keep-alive")
        connection.close()
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)
