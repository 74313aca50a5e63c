"""Health probe: ``GET /healthz`` (liveness) and ``GET /healthz?database=1`` (readiness).

``/healthz`` is deliberately the cheapest request the stack can serve (plain Django view,
no DRF, no database, orjson): load balancers poll it, and bench/load.py uses it as the
framework ceiling that API throughput is measured against. A liveness probe that queried
the database would turn a slow database into "every app server is dead".

``?database=1`` adds one ``SELECT 1`` and answers 503 (with Retry-After) when the database
does not answer, so an operator or a readiness probe sees an outage without reading logs.
"""

from __future__ import annotations

import orjson
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

from medikit.dbhealth import database_answers, retry_after

_OK_BODY = orjson.dumps({"status": "ok"})
_DB_OK_BODY = orjson.dumps({"status": "ok", "database": "ok"})
_DB_DOWN_BODY = orjson.dumps({"status": "unavailable", "database": "unreachable"})


@require_safe
def healthz(request: HttpRequest) -> HttpResponse:
    """200 while the process can serve requests; with ``?database=1`` also 503 when the
    database does not answer."""
    if request.GET.get("database") not in ("1", "true", "yes"):
        return HttpResponse(_OK_BODY, content_type="application/json")
    if database_answers():
        return HttpResponse(_DB_OK_BODY, content_type="application/json")
    response = HttpResponse(_DB_DOWN_BODY, status=503, content_type="application/json")
    response["Retry-After"] = str(retry_after())
    return response
