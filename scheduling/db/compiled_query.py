"""Querysets compiled to SQL once per process, for the queries every API request runs.

Building and compiling a queryset costs more CPU than PostgreSQL spends answering a
primary-key lookup: for the token and the organisation of each request it was about a
third of a cached search. A :class:`CompiledQuery` compiles its queryset the first time,
with markers for its arguments, and afterwards only executes the SQL with the real values.
Only for querysets whose columns need no conversion by Django (text, integers, booleans):
the rows come straight from the cursor.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import psycopg.sql
from django.db import InterfaceError, OperationalError, connections
from django.db.models import BigIntegerField, Func, QuerySet
from django.db.models.query import get_related_populators


class CompiledQuery:
    def __init__(self, make: Callable[..., QuerySet[Any]], *, arity: int = 1) -> None:
        """``make(*values)`` returns the queryset; every SQL parameter must be one of the
        ``arity`` values (each may be used several times)."""
        self._make = make
        self._markers = tuple(f"\x00compiled-query-argument-{i}\x00" for i in range(arity))
        self._compiled: dict[str, tuple[str, tuple[int, ...]]] = {}  # alias -> SQL, order
        self._lock = threading.Lock()

    def sql(self, alias: str) -> tuple[str, tuple[int, ...]]:
        """The SQL, and for each of its parameters the index of the argument it takes."""
        found = self._compiled.get(alias)
        if found is None:
            queryset = self._make(*self._markers)
            sql, params = queryset.query.get_compiler(using=alias).as_sql()
            if any(param not in self._markers for param in params):
                raise ValueError(
                    f"A compiled query's parameters must all be its arguments, got {params!r}"
                )
            order = tuple(self._markers.index(param) for param in params)
            if set(order) != set(range(len(self._markers))):
                raise ValueError("A compiled query must use each of its arguments.")
            with self._lock:
                found = self._compiled.setdefault(alias, (sql, order))
        return found

    def rows(self, *values: str, alias: str = "default") -> list[tuple[Any, ...]]:
        if len(values) != len(self._markers):
            raise TypeError(f"Expected {len(self._markers)} values, got {len(values)}.")
        sql, order = self.sql(alias)
        return _fetch(alias, sql, [values[index] for index in order])


class CompiledModelQuery:
    """A model queryset (with ``select_related``) compiled to SQL once per process; each
    call only executes the SQL and builds the instances the way Django's own iterable
    does (the compiler's converters, ``from_db``, the related populators), so the rows are
    exactly those of the queryset. For the reads by id every request of that kind runs.

    ``kinds`` names each argument's type: ``s`` text, ``i`` integer, ``d`` aware datetime
    (the markers that stand for the arguments while compiling must pass the fields' own
    preparation; a datetime is passed as the backend adapts it).
    """

    def __init__(self, make: Callable[..., QuerySet[Any]], *, kinds: str = "s") -> None:
        self._make = make
        self._kinds = kinds
        self._markers: tuple[Any, ...] = tuple(
            f"\x00compiled-query-argument-{i}\x00"
            if kind == "s"
            else datetime(2000, 1, 1 + i, 0, 0, 0, 790_001, tzinfo=UTC)
            if kind == "d"
            else -7_900_000_001 - i
            for i, kind in enumerate(kinds)
        )
        self._compiled: dict[str, tuple[Any, ...]] = {}
        self._lock = threading.Lock()

    def _adapted(self, alias: str, values: tuple[Any, ...]) -> tuple[Any, ...]:
        """The values as the backend's field preparation passes them (datetimes only)."""
        if "d" not in self._kinds:
            return values
        adapt = connections[alias].ops.adapt_datetimefield_value
        return tuple(
            adapt(value) if kind == "d" else value
            for kind, value in zip(self._kinds, values, strict=True)
        )

    def _plan(self, alias: str) -> tuple[Any, ...]:
        found = self._compiled.get(alias)
        if found is None:
            compiler = self._make(*self._markers).query.get_compiler(using=alias)
            sql, params = compiler.as_sql()
            markers = self._adapted(alias, self._markers)
            if any(param not in markers for param in params):
                raise ValueError(
                    f"A compiled query's parameters must all be its arguments, got {params!r}"
                )
            order = tuple(markers.index(param) for param in params)
            if set(order) != set(range(len(self._markers))):
                raise ValueError("A compiled query must use each of its arguments.")
            klass_info, select = compiler.klass_info, compiler.select
            fields = klass_info["select_fields"]
            start, end = fields[0], fields[-1] + 1
            init_list = [column[0].target.attname for column in select[start:end]]
            # (The installed stubs describe a newer signature than Django 5.2's.)
            populators = get_related_populators(klass_info, select, alias)  # type: ignore[call-arg]
            # What results_iter() would work out again on every call: about a fifth of
            # the CPU of a read by id's row.
            fields = [column[0] for column in select[0 : compiler.col_count]]
            if compiler.has_composite_fields(fields):
                raise ValueError("A compiled model query cannot load composite fields.")
            converters = compiler.get_converters(fields)
            plan = (
                compiler,
                sql,
                order,
                klass_info["model"],
                init_list,
                start,
                end,
                populators,
                converters,
            )
            with self._lock:
                found = self._compiled.setdefault(alias, plan)
        return found

    def all(self, *values: Any, alias: str = "default") -> list[Any]:
        if len(values) != len(self._markers):
            raise TypeError(f"Expected {len(self._markers)} values, got {len(values)}.")
        compiler, sql, order, model, init_list, start, end, populators, converters = self._plan(
            alias
        )
        values = self._adapted(alias, values)
        rows: Iterable[Sequence[Any]] = _fetch(alias, sql, [values[index] for index in order])
        if converters:
            rows = compiler.apply_converters(rows, converters)
        found = []
        for row in rows:
            obj = model.from_db(alias, init_list, row[start:end])
            for populator in populators:
                populator.populate(row, obj)
            found.append(obj)
        return found

    def first(self, *values: Any, alias: str = "default") -> Any | None:
        found = self.all(*values, alias=alias)
        return found[0] if found else None


class CompiledStatement:
    """Querysets compiled to ONE statement once per process, run with new values each time.

    For the booking's checks: several reads that would each cost a round trip and several
    milliseconds of queryset building and compiling become one statement (their SQL
    joined by ``UNION ALL``, so their columns must line up) whose text is built once.
    ``make(*arguments)`` returns the querysets; ``kinds`` names each argument's type: ``s``
    text, ``i`` integer, ``d`` an aware instant. While compiling, each argument is a
    sentinel of its type that passes the fields' own preparation (an instant becomes
    text on SQLite), so the compiled parameters show where each argument went; the real
    values are prepared the same way when run. Parameters that are no argument (the
    querysets' constants: statuses, the empty rule text) are kept as compiled. Every
    argument must be used. The rows come straight from the cursor: select integer and
    text columns only.
    """

    def __init__(self, make: Callable[..., Sequence[QuerySet[Any]]], *, kinds: str) -> None:
        if set(kinds) - set("sid"):
            raise ValueError(f"Unknown argument kinds in {kinds!r}")
        self._make = make
        self._kinds = kinds
        self._compiled: dict[str, tuple[str, tuple[tuple[bool, Any], ...]]] = {}
        self._native: dict[str, str] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _sentinel(kind: str, index: int) -> Any:
        if kind == "s":
            return f"\x00compiled-statement-argument-{index}\x00"
        if kind == "i":
            return -7_900_000_001 - index
        # An instant nobody books (1901), distinct per argument.
        return datetime(1901, 1, 1, tzinfo=UTC) + timedelta(seconds=index + 1)

    def _prepare(self, kind: str, value: Any, alias: str) -> Any:
        if kind == "d":
            return connections[alias].ops.adapt_datetimefield_value(value)
        return value

    def sql(self, alias: str = "default") -> tuple[str, tuple[tuple[bool, Any], ...]]:
        """The SQL, and per parameter (True, argument index) or (False, constant)."""
        found = self._compiled.get(alias)
        if found is None:
            sentinels = [self._sentinel(k, i) for i, k in enumerate(self._kinds)]
            prepared = [
                self._prepare(k, v, alias) for k, v in zip(self._kinds, sentinels, strict=True)
            ]
            parts, plan = [], []
            for queryset in self._make(*sentinels):
                sql, params = queryset.query.get_compiler(using=alias).as_sql()
                parts.append(sql)
                for param in params:
                    if param in prepared:
                        plan.append((True, prepared.index(param)))
                    else:
                        plan.append((False, param))
            if {index for is_arg, index in plan if is_arg} != set(range(len(self._kinds))):
                raise ValueError("A compiled statement must use each of its arguments.")
            found = (" UNION ALL ".join(parts), tuple(plan))
            if connections[alias].vendor == "postgresql":
                found = _constants_inlined(*found)
            with self._lock:
                found = self._compiled.setdefault(alias, found)
        return found

    def rows(self, *values: Any, alias: str = "default") -> list[tuple[Any, ...]]:
        cursor, sql, params = self._call(values, alias)
        with cursor:
            cursor.execute(sql, params)
            rows: list[tuple[Any, ...]] = cursor.fetchall()
        return rows

    def rows_after(
        self, before: Sequence[tuple[str, Sequence[Any]]], *values: Any, alias: str = "default"
    ) -> list[tuple[Any, ...]]:
        """Run the statements ``before`` (SQL and parameters; their results are not
        wanted), then this statement, and return this one's rows.

        On PostgreSQL all of them go in ONE round trip (psycopg's pipeline mode) instead of
        one each. Each is still a statement of its own, so under READ COMMITTED this one
        reads with a snapshot taken after the ones before finished: after a lock they
        waited for, it sees what the lock's holder committed. Elsewhere they run one after
        another. Call inside a transaction (the pipeline's end is not a commit).
        """
        connection = connections[alias]
        if connection.vendor != "postgresql":
            with connection.cursor() as cursor:
                for sql, params in before:
                    cursor.execute(sql, params)
            return self.rows(*values, alias=alias)
        cursor, sql, params = self._call(values, alias)
        with cursor, connection.wrap_database_errors:
            # Leaving the pipeline sends one Sync and collects every result (the statements
            # before are answered first; an error in one skips the rest and is raised here).
            with connection.cursor() as first, connection.connection.pipeline():
                for before_sql, before_params in before:
                    first.execute(before_sql, before_params)
                cursor.execute(sql, params)
            rows: list[tuple[Any, ...]] = cursor.fetchall()
        return rows

    def with_values(self, *values: Any) -> tuple[CompiledStatement, tuple[Any, ...]]:
        """This statement and ``values``, for :func:`rows_of_each`."""
        self._check_arity(values)
        return self, values

    def _check_arity(self, values: Sequence[Any]) -> None:
        if len(values) != len(self._kinds):
            raise TypeError(f"Expected {len(self._kinds)} values, got {len(values)}.")

    def _call(self, values: Sequence[Any], alias: str) -> tuple[Any, str, list[Any]]:
        """A cursor for this statement, its SQL for that cursor, and the parameters."""
        self._check_arity(values)
        sql, plan = self.sql(alias)
        prepared = [self._prepare(k, v, alias) for k, v in zip(self._kinds, values, strict=True)]
        params = [prepared[x] if is_arg else x for is_arg, x in plan]
        native = _native_cursor(alias)
        if native is not None:
            # psycopg re-parses the placeholders of a statement this long (over 4 KB or 50
            # parameters) on every execution; with PostgreSQL's own ($1) it parses nothing.
            found = self._native.get(alias)
            if found is None:
                found = self._native[alias] = _native_placeholders(sql)
            return native, found, params
        return _cursor(alias), sql, params


def rows_of_each(
    calls: Sequence[tuple[CompiledStatement, Sequence[Any]]], alias: str = "default"
) -> list[list[tuple[Any, ...]]]:
    """The rows of each statement with its values (:meth:`CompiledStatement.with_values`),
    in the order given, for reads that do not depend on one another.

    On PostgreSQL all of them go in ONE round trip (psycopg's pipeline mode): each
    statement still reads with its own snapshot, as it would alone, but the server answers
    them back to back instead of waking once per statement. Elsewhere they run one after
    another.
    """
    connection = connections[alias]
    if connection.vendor != "postgresql" or len(calls) < 2:
        return [statement.rows(*values, alias=alias) for statement, values in calls]
    # (Each cursor is what ``rows`` would use: with prepared statements off, Django's own,
    # which a pipeline takes as well, as in ``rows_after``.)
    prepared = [statement._call(values, alias) for statement, values in calls]
    try:
        with connection.wrap_database_errors:
            # Leaving the pipeline sends one Sync and collects every result (an error in one
            # skips the rest and is raised here).
            with connection.connection.pipeline():
                for cursor, sql, params in prepared:
                    cursor.execute(sql, params)
            return [cursor.fetchall() for cursor, _sql, _params in prepared]
    finally:
        for cursor, _sql, _params in prepared:
            cursor.close()


_PLACEHOLDER = re.compile(r"%%|%s")

#: Constants written into a statement's text as literals (others stay parameters).
_LITERAL_TYPES = (str, int, bool, type(None))


def _constants_inlined(
    sql: str, plan: tuple[tuple[bool, Any], ...]
) -> tuple[str, tuple[tuple[bool, Any], ...]]:
    """``sql`` with its constant parameters (statuses, the empty rule text, numbers) written
    as literals, and the plan of the parameters that are left (the arguments).

    A prepared statement is planned either for its values each time (a custom plan) or
    once for any values (a generic plan). A generic plan can use a partial index only
    where the statement's own text proves the index's condition (``rrule <> ''``,
    ``occupant <> ''``): with the constants as parameters it never could. Only code
    constants come here, never a request's values.
    """
    params = iter(plan)
    kept: list[tuple[bool, Any]] = []

    def replace(match: re.Match[str]) -> str:
        if match.group() == "%%":
            return "%%"
        is_arg, value = next(params)
        if not is_arg and isinstance(value, _LITERAL_TYPES):
            # (a literal containing % must not read as a placeholder)
            return psycopg.sql.quote(value).replace("%", "%%")
        kept.append((is_arg, value))
        return "%s"

    inlined = _PLACEHOLDER.sub(replace, sql)
    if next(params, None) is not None:
        raise ValueError("More parameters than placeholders in a compiled statement.")
    return inlined, tuple(kept)


def _native_placeholders(sql: str) -> str:
    """Django's ``%s`` placeholders (and ``%%`` escapes) as PostgreSQL's ``$1, $2, ...``."""
    counter = iter(range(1, 1_000_000))
    return _PLACEHOLDER.sub(lambda m: "%" if m.group() == "%%" else f"${next(counter)}", sql)


def _native_cursor(alias: str) -> Any | None:
    """:func:`_cursor`'s server-side binding cursor taking PostgreSQL's own placeholders
    (psycopg's RawCursor), or None where that cursor would not be used."""
    connection = connections[alias]
    if connection.vendor != "postgresql":
        return None
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold is None:
        return None
    connection.validate_thread_sharing()
    with connection.wrap_database_errors:
        cursor: Any = psycopg.RawCursor(raw)
    if connection.queries_logged:
        return connection.make_debug_cursor(cursor)
    return connection.make_cursor(cursor)


def _fetch(alias: str, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """The rows of ``sql``, with the query itself as the connection's health check.

    With ``CONN_HEALTH_CHECKS`` Django sends ``SELECT 1`` before the first query of every
    request on a kept connection: a whole round trip (and a PostgreSQL wake-up) on every
    API request, whose first query is a compiled one (the token's). Here that first query
    is the check instead: if it fails on a connection not yet checked in this request,
    outside a transaction, and the connection is indeed unusable (a restarted server, a
    dropped socket), the connection is closed and the query runs once more on a new one,
    which is what the health check would have achieved. A query that fails on a usable
    connection is not repeated.
    """
    connection: Any = connections[alias]  # (the stubs lack the health-check attributes)
    unchecked = (
        connection.health_check_enabled
        and not connection.health_check_done
        and connection.connection is not None
        and not connection.in_atomic_block
    )
    if unchecked:
        connection.health_check_done = True  # no SELECT 1 from Django's own cursor()
    try:
        return _execute(alias, sql, params)
    except (OperationalError, InterfaceError):
        if not unchecked or connection.is_usable():
            raise
    connection.close()
    return _execute(alias, sql, params)


def _execute(alias: str, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with _cursor(alias) as cursor:
        cursor.execute(sql, params)
        rows: list[tuple[Any, ...]] = cursor.fetchall()
    return rows


def _cursor(alias: str) -> Any:
    """A Django cursor that PostgreSQL may run as a prepared statement.

    Django's own cursors bind parameters on the client, so PostgreSQL parses and plans
    every query again; for the token query that was two thirds of its time. When the
    connection allows prepared statements (``prepare_threshold``, set from
    ``DATABASE_PREPARED_STATEMENTS`` in the settings), this is a server-side binding cursor
    instead, which psycopg prepares after a few executions on a connection. It is wrapped
    by Django as usual, so errors, query logging and execute wrappers behave the same.
    """
    connection = connections[alias]
    if connection.vendor != "postgresql":
        return connection.cursor()
    # (No close_if_health_check_failed(): _fetch checks by running the query.)
    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold is None:
        return connection.cursor()
    connection.validate_thread_sharing()
    with connection.wrap_database_errors:
        cursor: Any = psycopg.Cursor(raw)  # the stubs type make_cursor()'s argument wrongly
    # As Django wraps its own cursors (BaseDatabaseWrapper._prepare_cursor).
    if connection.queries_logged:
        return connection.make_debug_cursor(cursor)
    return connection.make_cursor(cursor)


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
