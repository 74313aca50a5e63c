"""An API request's objects are freed when its response is done, not by the garbage
collector (fhir_api.acyclic): through the WSGI application, as gunicorn calls it."""

from __future__ import annotations

import gc
import io
import sys
from collections.abc import Callable
from typing import Any

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from fhir_api.acyclic import AcyclicAPIView
from medikit.wsgi import application
from scheduling.models import Organization
from tests.factories import PatientFactory, ScheduleFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _keep_the_test_connection() -> Any:
    """As Django's test client does: the handler's request signals would close the test
    database's connection (inside the test's transaction)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _call(method: str, path: str, token: str, body: bytes = b"", query: str = "") -> str:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "HTTP_HOST": "testserver",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if token:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    if body:
        environ["CONTENT_TYPE"] = "application/fhir+json"
        environ["CONTENT_LENGTH"] = str(len(body))
    status: list[str] = []
    result = application(environ, lambda s, headers, exc_info=None: status.append(s))
    b"".join(result)
    result.close()  # type: ignore[attr-defined]
    return status[0]


def _cyclic_garbage(run: Callable[[], Any]) -> list[str]:
    """Type names of the objects that ``run`` left in reference cycles."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        run()
        gc.collect()
        return [type(found).__name__ for found in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def test_api_requests_leave_no_reference_cycles(
    org: Organization, make_api_client: Callable[..., tuple[Any, str]]
) -> None:
    _, token = make_api_client(org)
    ScheduleFactory(organization=org, fhir_id="morning")
    patient = PatientFactory(organization=org)
    base = f"/v2/{org.pk}/fhir/R4"
    requests: list[tuple[str, str, str, bytes, str, str]] = [
        ("GET", f"{base}/Slot", token, b"", "_count=20", "200"),
        ("GET", f"{base}/Schedule/morning", token, b"", "", "200"),
        ("GET", f"{base}/Schedule", token, b"", "bogus=1", "400"),
        ("GET", f"{base}/metadata", "", b"", "", "200"),
        ("GET", f"{base}/Slot", "not-a-token", b"", "", "401"),
        ("GET", f"{base}/Nothing", token, b"", "", "404"),
        (
            "POST",
            f"{base}/Patient/{patient.fhir_id}/Appointment/$book-slot",
            token,
            b'{"resourceType": "Parameters"}',
            "",
            "400",
        ),
    ]
    for method, path, auth, body, query, expected in requests:
        _call(method, path, auth, body, query)  # warm: first-use caches are not garbage
        statuses: list[str] = []
        garbage = _cyclic_garbage(
            lambda call=(method, path, auth, body, query), out=statuses: out.append(_call(*call))
        )
        assert statuses[0].startswith(expected), (path, statuses)
        assert garbage == [], (method, path, query, sorted(set(garbage)))


def test_without_the_break_a_request_is_cyclic_garbage(
    org: Organization,
    make_api_client: Callable[..., tuple[Any, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The test above can fail: with DRF's own dispatch the request is left in cycles."""
    _, token = make_api_client(org)
    path = f"/v2/{org.pk}/fhir/R4/Slot"
    _call("GET", path, token)
    monkeypatch.setattr(AcyclicAPIView, "dispatch", AcyclicAPIView.__mro__[1].dispatch)
    garbage = _cyclic_garbage(lambda: _call("GET", path, token))
    assert "Request" in garbage and "Response" in garbage
