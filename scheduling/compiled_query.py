"""Querysets compiled to SQL once per process, for the two queries every API request runs.

Building and compiling a queryset costs more CPU than PostgreSQL spends answering a
primary-key lookup: for the token and the organisation of each request it was about a
fifth of a cached search. A :class:`CompiledQuery` compiles its queryset the first time,
with a marker as the one parameter, and afterwards only executes the SQL with the real
value. Only for querysets whose columns need no conversion by Django (text, integers,
booleans): the rows come straight from the cursor.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import connections
from django.db.models import BigIntegerField, Func, QuerySet

_MARKER = "\x00compiled-query-parameter\x00"


class CompiledQuery:
    def __init__(self, make: Callable[[str], QuerySet[Any]]) -> None:
        """``make(value)`` returns the queryset, using ``value`` exactly once as a parameter."""
        self._make = make
        self._compiled: dict[str, str] = {}  # database alias -> SQL
        self._lock = threading.Lock()

    def sql(self, alias: str) -> str:
        found = self._compiled.get(alias)
        if found is None:
            queryset = self._make(_MARKER)
            sql, params = queryset.query.get_compiler(using=alias).as_sql()
            if list(params) != [_MARKER]:
                raise ValueError(f"A compiled query takes exactly one parameter, got {params!r}")
            with self._lock:
                found = self._compiled.setdefault(alias, sql)
        return found

    def rows(self, value: str, *, alias: str = "default") -> list[tuple[Any, ...]]:
        with connections[alias].cursor() as cursor:
            cursor.execute(self.sql(alias), [value])
            rows: list[tuple[Any, ...]] = cursor.fetchall()
        return rows


class EpochSeconds(Func):
    """Whole seconds since 1970 (UTC), computed by the database.

    Loading a thousand integers is several times cheaper than loading a thousand aware
    datetimes; only the two supported backends are spelled out.
    """

    output_field = BigIntegerField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(
            compiler, connection, template="FLOOR(EXTRACT(EPOCH FROM %(expressions)s))::bigint"
        )

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        # '%%%%' survives both the template's and the SQLite wrapper's %-substitution.
        return self.as_sql(
            compiler, connection, template="CAST(strftime('%%%%s', %(expressions)s) AS INTEGER)"
        )
