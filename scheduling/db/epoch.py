"""Epoch arithmetic in SQL and rows straight from the cursor, for the hot read paths."""

from __future__ import annotations

from typing import Any

from django.db import connections
from django.db.models import (
    BigIntegerField,
    Func,
    QuerySet,
)


class EpochMicros(Func):
    """Exact microseconds since 1970 (UTC): a cheap integer that keeps the fraction."""

    output_field = BigIntegerField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(
            compiler,
            connection,
            template="(EXTRACT(EPOCH FROM %(expressions)s) * 1000000)::bigint",
        )

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        # Django stores 'YYYY-MM-DD HH:MM:SS[.ffffff]' in UTC; the fraction is characters
        # 21-26 (padded when the stored value has none).
        return self.as_sql(
            compiler,
            connection,
            template=(
                "(CAST(strftime('%%%%s', %(expressions)s) AS INTEGER) * 1000000"
                " + CAST(substr(%(expressions)s || '.000000', 21, 6) AS INTEGER))"
            ),
        )


def plain_rows(queryset: QuerySet[Any]) -> list[tuple[Any, ...]]:
    """The rows of a ``values_list`` of integer and text columns, straight from the cursor.

    Django's per-row converter pass costs more than the rest of the loop over a thousand
    busy rows; integers and text need no conversion on either backend.
    """
    sql, params = queryset.query.get_compiler(using=queryset.db).as_sql()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(sql, params)
        rows: list[tuple[Any, ...]] = cursor.fetchall()
    return rows
