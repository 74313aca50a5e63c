"""Is the database there? Telling a database outage from a bug.

A lost connection, a server shutting down or a transaction cancelled for a serialization
failure, deadlock or lock/statement timeout is not the request's fault and usually passes:
clients are told ``503`` with ``Retry-After`` (OperationOutcome code ``transient``) and
the log gets one line, not a traceback per request.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection

if TYPE_CHECKING:
    from fhir_api.errors import ServiceUnavailable

logger = logging.getLogger("medikit.database")

# SQLSTATE classes and codes worth a retry (PostgreSQL appendix A): connection exceptions,
# insufficient resources (e.g. too many connections), operator intervention (shutdown,
# cancelled statement), serialization failure, deadlock, lock not available.
_TRANSIENT_CLASSES = ("08", "53", "57")
_TRANSIENT_CODES = frozenset({"40001", "40P01", "55P03"})


def _sqlstate(exc: BaseException) -> str | None:
    cause: BaseException | None = exc
    while cause is not None:
        state = getattr(cause, "sqlstate", None)
        if isinstance(state, str):
            return state
        cause = cause.__cause__
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` means the database is unreachable or asked for a retry."""
    if not isinstance(exc, DatabaseError):
        return False
    state = _sqlstate(exc)
    if state is not None:
        return state.startswith(_TRANSIENT_CLASSES) or state in _TRANSIENT_CODES
    if isinstance(exc, InterfaceError):
        return True  # the connection is closed or unusable
    if isinstance(exc, OperationalError):
        cause = exc.__cause__
        if isinstance(cause, sqlite3.OperationalError):
            # SQLite raises OperationalError for bad SQL too; only a busy database passes.
            return "locked" in str(cause) or "busy" in str(cause)
        # psycopg without a SQLSTATE: the server could not be reached at all.
        return True
    return False


def retry_after() -> int:
    return int(getattr(settings, "DATABASE_RETRY_AFTER", 5))


def unavailable_error(exc: BaseException) -> ServiceUnavailable | None:
    """The 503 answer for a transient database failure, or None for anything else."""
    if not is_transient(exc):
        return None
    from fhir_api.errors import ServiceUnavailable

    # One line per failure: during an outage every request fails the same way, and a
    # traceback each would drown the log.
    logger.warning(
        "database unavailable (%s, sqlstate %s): answered 503",
        type(exc).__name__,
        _sqlstate(exc) or "-",
    )
    seconds = retry_after()
    return ServiceUnavailable.one(
        "The database is unavailable or busy at the moment; retry the request in "
        f"{seconds} seconds (a $book-slot retry with the same Idempotency-Key never books "
        "twice).",
        code="transient",
        headers={"Retry-After": str(seconds)},
    )


def database_answers() -> bool:
    """One ``SELECT 1`` on the default connection; False when it fails for any reason."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError:
        return False
    return True
