"""Brute-force limits for the token endpoint, counted in the database.

The database is what every server process already shares, so the limits hold across
gunicorn workers and machines without another service. Counts are kept per fixed window
(``OAUTH_FAILURE_WINDOW`` seconds) for three keys:

- a client id at one address (``OAUTH_CLIENT_FAILURE_LIMIT``): stops one attacker guessing
  one client's secret while that client keeps working from its own address;
- an address (``OAUTH_ADDRESS_FAILURE_LIMIT``): stops spraying many client ids;
- a client id from anywhere (``OAUTH_CLIENT_ID_FAILURE_LIMIT``, high): stops a guess
  spread over many addresses.

Only failed client authentications count; a refused (429) attempt is not verified and
not counted, so the counts stop growing once a limit is reached.
"""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

from fhir_api.models import TokenFailure


@dataclass(frozen=True, slots=True)
class Limit:
    key: str
    limit: int


def _digest(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}\x1f{value}".encode("utf-8", "surrogatepass")).hexdigest()


def address_limit(address: str) -> Limit:
    return Limit(_digest("address", address), settings.OAUTH_ADDRESS_FAILURE_LIMIT)


def token_limits(*, client_id: str | None, address: str) -> list[Limit]:
    """The keys a token request from ``address`` for ``client_id`` is counted under."""
    limits = [address_limit(address)]
    if client_id:
        limits.append(
            Limit(
                _digest("client@address", f"{client_id}\x1f{address}"),
                settings.OAUTH_CLIENT_FAILURE_LIMIT,
            )
        )
        limits.append(Limit(_digest("client", client_id), settings.OAUTH_CLIENT_ID_FAILURE_LIMIT))
    return limits


def _window(now: float) -> tuple[int, int]:
    size = max(1, int(settings.OAUTH_FAILURE_WINDOW))
    start = int(now) // size * size
    return start, size


#: key -> end of the window in which it reached its limit, per process. Once a key is
#: known to be over its limit, refusing it again needs no query: a flood of refused
#: attempts then costs each worker one query per key and window, not one per request.
_BLOCKED: dict[str, int] = {}
_BLOCKED_MAX = 10_000


def token_wait_seconds(*, limits: list[Limit], now: float | None = None) -> int | None:
    """Seconds until the next attempt is allowed, or None when no limit is reached."""
    now = time.time() if now is None else now
    start, size = _window(now)
    for limit in limits:
        until = _BLOCKED.get(limit.key)
        if until is not None and until > now:
            return max(1, until - int(now))
    counts = dict(
        TokenFailure.objects.filter(
            key__in=[limit.key for limit in limits], window_start=start
        ).values_list("key", "count")
    )
    reached = [limit.key for limit in limits if counts.get(limit.key, 0) >= limit.limit]
    if not reached:
        return None
    if len(_BLOCKED) >= _BLOCKED_MAX:
        _BLOCKED.clear()  # bounded memory; the database still holds the counts
    for key in reached:
        _BLOCKED[key] = start + size
    return max(1, start + size - int(now))


def known_wait_seconds(*, limit: Limit, now: float | None = None) -> int | None:
    """Seconds to wait when this process already knows ``limit`` is reached, else None.

    No query: this is what lets a flood from a blocked address be refused before the
    request reaches the session, authentication and URL layers
    (``fhir_api.middleware.TokenFloodMiddleware``). None means "not known here", not
    "allowed": the token view still asks the database.
    """
    now = time.time() if now is None else now
    until = _BLOCKED.get(limit.key)
    if until is not None and until > now:
        return max(1, until - int(now))
    return None


def token_failure_record(*, limits: list[Limit], now: float | None = None) -> None:
    """Count one failed client authentication under every key (one statement)."""
    now = time.time() if now is None else now
    start, size = _window(now)
    table = connection.ops.quote_name(TokenFailure._meta.db_table)
    rows = ", ".join(["(%s, %s, 1)"] * len(limits))
    params: list[str | int] = []
    for limit in limits:
        params += [limit.key, start]
    with connection.cursor() as cursor:
        # An upsert, so concurrent failures on all workers are all counted (SQLite 3.24+
        # and PostgreSQL share this syntax).
        cursor.execute(
            f"INSERT INTO {table} (key, window_start, count) VALUES {rows} "  # noqa: S608
            f"ON CONFLICT (key, window_start) DO UPDATE SET count = {table}.count + 1",
            params,
        )
    # Past windows are cleared now and then, not on every failure: a flood of failures
    # should cost one statement each.
    if random.random() < 0.02:  # noqa: S311 - not security relevant
        TokenFailure.objects.filter(window_start__lt=start - size).delete()
