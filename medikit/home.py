"""``/``: a small page that says what this server is and where to go.

It lists no organisations: tenant ids must not be discoverable (docs/api.md section 1).
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

#: The documents ``/docs/{name}.md`` serves, as they are in the repository.
DOCS = ("api", "architecture", "deployment", "benchmarks")
DOCS_DIR = Path(settings.BASE_DIR) / "docs"


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    """Links to the docs, the OpenAPI description, a CapabilityStatement and the admin."""
    return render(
        request,
        "home.html",
        {"docs": DOCS, "demo": settings.DEBUG, "fhir_base": "/v2/{organizationId}/fhir/R4"},
    )


@require_safe
def doc(request: HttpRequest, name: str) -> HttpResponse:
    """A document of docs/ as plain Markdown (404 when not shipped, e.g. a wheel install)."""
    path = DOCS_DIR / f"{name}.md"
    if name not in DOCS or not path.is_file():
        raise Http404(name)
    return HttpResponse(
        path.read_text(encoding="utf-8"), content_type="text/markdown; charset=utf-8"
    )
