"""Liveness probe: ``GET /healthz`` -> ``{"status": "ok"}``.

Deliberately the cheapest request the stack can serve (plain Django view, no DRF, no
database, orjson): load balancers poll it, and bench/load.py uses it as the framework
ceiling that API throughput is measured against.
"""

from __future__ import annotations

import orjson
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

_OK_BODY = orjson.dumps({"status": "ok"})


@require_safe
def healthz(request: HttpRequest) -> HttpResponse:
    """Answer 200 with a fixed JSON body while the process can serve requests."""
    return HttpResponse(_OK_BODY, content_type="application/json")
