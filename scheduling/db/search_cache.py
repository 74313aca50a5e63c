"""Per-process caches of search results, keyed by the organisation's data stamps.

A search's result is a pure function of the organisation's scheduling rows (and of the
search's parameters). Every write to those rows renews one of the organisation's two
stamps (:class:`~scheduling.models.DataStamp`: ``schedules`` for practitioners, roles and
schedules, ``bookings`` for slots and appointments) in the same transaction, by a database
trigger. So a worker that reads the stamps it cached a result under knows the rows are
unchanged, however many workers or machines write: nothing here needs invalidating, and
a stale entry is simply never asked for again (stamps are random and never recur). An
entry that depends on schedules only (``bookings=False``) survives bookings.

When the stamps cannot be trusted the cache is bypassed, never guessed:

* no stamps yet (an organisation whose rows were never written through the triggers);
* inside a transaction on PostgreSQL: the stamps are renewed at commit (a deferred
  trigger), so within a transaction they do not yet reflect the transaction's own writes.

One entry per search: a new stamp replaces the entry. Entries are bounded by the number
of rows they hold (``SEARCH_CACHE_ROWS``, 0 turns the caches off), least recently used
first out. Concurrent misses of one search in a worker build it once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from scheduling.models import DataStamp, Organization

T = TypeVar("T")

#: Attributes the tenancy layer sets on the organisation it loads (in the same query).
STAMP_ATTRIBUTES = ("schedules_stamp", "bookings_stamp")
_UNSET = object()


def current_stamps(organization: Organization) -> tuple[int, int] | None:
    """The organisation's (schedules, bookings) stamps if results may be cached, else None."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor == "postgresql" and connection.in_atomic_block:
        return None
    stamps = tuple(getattr(organization, name, _UNSET) for name in STAMP_ATTRIBUTES)
    if _UNSET in stamps:
        row = (
            DataStamp.objects.filter(organization_id=organization.pk)
            .values_list("schedules", "bookings")
            .first()
        )
        if row is None:
            return None
        stamps = row
    schedules, bookings = stamps
    if isinstance(schedules, int) and isinstance(bookings, int):
        return schedules, bookings
    return None


class StampedCache:
    """A thread-safe LRU of built values, bounded by their total weight (rows)."""

    def __init__(self, max_weight: int) -> None:
        self.max_weight = max_weight
        # key -> (stamp, value, weight)
        self._entries: OrderedDict[Hashable, tuple[Any, Any, int]] = OrderedDict()
        self._weight = 0
        self._lock = threading.Lock()
        self._building: dict[Hashable, threading.Lock] = {}
        self.hits = 0
        self.misses = 0

    def get_or_build(
        self,
        organization: Organization,
        key: Hashable,
        build: Callable[[], tuple[T, int]],
        *,
        bookings: bool = True,
        valid: Callable[[T], bool] | None = None,
    ) -> T:
        """The cached value for ``key`` under the organisation's stamps, or ``build()``'s.

        ``build`` returns (value, weight). With ``bookings=False`` the value depends only on
        practitioners, roles and schedules, and survives bookings. ``valid`` may refuse a
        cached value that time alone has outdated (a hold that lapsed); it is then rebuilt.
        The value is shared between requests and threads: callers must not change it.
        """
        stamps = current_stamps(organization) if self.max_weight > 0 else None
        if stamps is None:
            return build()[0]
        stamp = stamps if bookings else stamps[0]
        full_key = (organization.pk, organization.timezone, key)
        with self._lock:
            found = self._entries.get(full_key)
            if found is not None and found[0] == stamp and (valid is None or valid(found[1])):
                self._entries.move_to_end(full_key)
                self.hits += 1
                return found[1]  # type: ignore[no-any-return]
            self.misses += 1
            # One build per key and stamp at a time: after a booking, the threads that ask
            # for the same search wait for the first one's build instead of repeating it.
            flight = (full_key, stamp)
            running = self._building.get(flight)
            if running is None:
                running = self._building[flight] = threading.Lock()
                running.acquire()
                owner = True
            else:
                owner = False
        if not owner:
            with running:  # released when the owner's build is done (or failed)
                pass
            with self._lock:
                found = self._entries.get(full_key)
            if found is not None and found[0] == stamp and (valid is None or valid(found[1])):
                return found[1]  # type: ignore[no-any-return]
            return build()[0]
        try:
            value, weight = build()
            weight = max(1, weight)
            if weight <= self.max_weight:
                self._store(full_key, stamp, value, weight)
        finally:
            with self._lock:
                del self._building[flight]
            running.release()
        return value

    def _store(self, full_key: Hashable, stamp: Any, value: Any, weight: int) -> None:
        with self._lock:
            # One entry per key: a new stamp replaces the old entry, so data that changed
            # does not linger until the least recently used entries are pushed out.
            old = self._entries.pop(full_key, None)
            if old is not None:
                self._weight -= old[2]
            self._entries[full_key] = (stamp, value, weight)
            self._weight += weight
            while self._weight > self.max_weight:
                _, (_, _, dropped) = self._entries.popitem(last=False)
                self._weight -= dropped

    def clear(self) -> None:
        """Forget everything (tests, and measuring the uncached path)."""
        with self._lock:
            self._entries.clear()
            self._weight = 0
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)


class VersionedStore:
    """Values kept by a key that names the versions of the rows they are built from (a
    changed row has a new version, so a new key: nothing is ever invalidated), bounded by
    their total weight; the values stored longest ago go first. Values are shared: never
    change one, store a new one (:meth:`update`)."""

    def __init__(self, max_weight: int) -> None:
        self.max_weight = max_weight
        self._entries: dict[Hashable, tuple[Any, int]] = {}
        self._weight = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        found = self._entries.get(key)
        return None if found is None else found[0]

    def put(self, key: Hashable, value: Any, weight: int) -> None:
        self.update(key, lambda _old: (value, weight))

    def update(self, key: Hashable, make: Callable[[Any], tuple[Any, int]]) -> None:
        """Store ``make(current value or None)``, a (value, weight) pair, under ``key``:
        atomically, so concurrent updates of one key keep each other's parts."""
        if self.max_weight <= 0:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            value, weight = make(None if old is None else old[0])
            self._entries[key] = (value, weight)
            self._weight += weight - (0 if old is None else old[1])
            while self._weight > self.max_weight and self._entries:
                oldest = next(iter(self._entries))
                self._weight -= self._entries.pop(oldest)[1]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._weight = 0


def _max_rows() -> int:
    return int(getattr(settings, "SEARCH_CACHE_ROWS", 100_000))


#: Slot search: the generated slots of a window (schedules only) and, on top, which are
#: blocked (also bookings), so a booking costs a re-check, not a re-expansion.
slot_grid_cache = StampedCache(_max_rows())
slot_cache = StampedCache(_max_rows())
schedule_cache = StampedCache(_max_rows() // 4)
#: ``$book-slot``: the schedule a booking names (schedules only), so a booking does not
#: read it again while no practitioner, role or schedule of the organisation changed.
booking_schedule_cache = StampedCache(_max_rows() // 4)
#: Reads by id: the mapped resource of one stored row (fhir_api.views), one "row" each.
read_cache = StampedCache(_max_rows() // 10)
