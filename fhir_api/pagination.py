"""Searchset Bundles with absolute, followable paging links (docs/api.md section 3)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

from rest_framework.request import Request

T = TypeVar("T")

DEFAULT_COUNT = 50
MAX_COUNT = 500


_SAFE = "|,:/"


def _link(base: str, query: list[tuple[str, list[str]]], offset: int, count: int) -> str:
    """``base`` with the request's parameters, ``_offset`` and ``_count`` set (in place, or
    appended in that order), encoded as ``QueryDict.urlencode(safe=...)`` does, without
    copying a QueryDict for every link."""
    replaced = {"_offset": [str(offset)], "_count": [str(count)]}
    pairs = [(name, replaced.pop(name, values)) for name, values in query]
    pairs.extend(replaced.items())
    encoded = "&".join(
        f"{quote(name, _SAFE)}={quote(value, _SAFE)}" for name, values in pairs for value in values
    )
    return f"{base}?{encoded}"


def searchset(
    request: Request,
    items: Sequence[T],
    *,
    offset: int,
    count: int,
    to_entry: Callable[[T], tuple[str, dict[str, Any]]] | None = None,
    include: Callable[[Sequence[T]], list[tuple[str, dict[str, Any]]]] | None = None,
    summary_count: bool = False,
    page_entries: Callable[[Sequence[T]], Sequence[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """A Bundle of one page of ``items``; only that page is mapped (the cost is per page).

    ``to_entry`` returns (fullUrl, resource). ``total`` counts every match, before paging.
    ``include`` maps the resources the page references (``_include``): they follow the
    matches with ``search.mode`` ``include`` and are not counted in ``total``.
    ``summary_count`` (``_summary=count``): the total alone, nothing mapped.
    ``page_entries`` (instead of ``to_entry``) returns the page's match entries at once
    (``fullUrl``, ``resource``, ``search``), for a view that keeps them; they are copied
    into the Bundle's list, never changed.
    """
    total = len(items)
    base = request.build_absolute_uri(request.path)
    query = list(request.query_params.lists())
    links = [{"relation": "self", "url": _link(base, query, offset, count)}]
    if summary_count:
        return {"resourceType": "Bundle", "type": "searchset", "total": total, "link": links}
    page = items[offset : offset + count]
    if count and offset + count < total:
        links.append({"relation": "next", "url": _link(base, query, offset + count, count)})
    if offset > 0 and count:
        previous = _link(base, query, max(0, offset - count), count)
        links.append({"relation": "previous", "url": previous})
    if page_entries is not None:
        entries = list(page_entries(page))
    else:
        assert to_entry is not None
        entries = []
        for item in page:
            full_url, resource = to_entry(item)
            entries.append({"fullUrl": full_url, "resource": resource, "search": {"mode": "match"}})
    if include is not None:
        for full_url, resource in include(page):
            entries.append(
                {"fullUrl": full_url, "resource": resource, "search": {"mode": "include"}}
            )
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
    }
    if entries:
        bundle["entry"] = entries
    return bundle
